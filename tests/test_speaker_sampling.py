"""`--speaker_sampling proportional | balanced | temperature:T`: how often each speaker's clips are drawn, the same
draw on every process and after a resume, and what the Trainer's batches then hold."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from conftest import REPO_ROOT, make_tiny_config
from torch.utils.data import DataLoader, RandomSampler
from trainer_helpers import RecordingCollator, StopAtStep, speaker_features, tiny_trainer

from recipe.audio import SpectrogramConfig
from recipe.training.arguments import VitsTrainingArguments
from recipe.training.speaker_sampling import (
    SpeakerSampling,
    SpeakerSamplingMixin,
    SpeakerWeightedSampler,
    parse_speaker_sampling,
    speaker_sampler,
)
from run_finetune import cli, parse_arguments

# speakers of 90 and 10 clips
NINETY_TEN = [0] * 90 + [1] * 10


def _shares(sampler: SpeakerWeightedSampler, speaker_ids, epochs: int = 50) -> dict[int, float]:
    drawn = Counter(speaker_ids[i] for epoch in range(epochs) for i in sampler.draw(epoch))
    return {speaker: count / sum(drawn.values()) for speaker, count in sorted(drawn.items())}


def test_the_forms_parse_and_others_are_refused_naming_the_value():
    assert parse_speaker_sampling("proportional") == SpeakerSampling("proportional")
    assert parse_speaker_sampling(" balanced ") == SpeakerSampling("balanced")
    assert parse_speaker_sampling("temperature:2") == SpeakerSampling("temperature", 2.0)
    assert parse_speaker_sampling("temperature:1") == SpeakerSampling("proportional"), "T=1 is proportional"
    for bad, why in (
        ("uniform", "use proportional, balanced or temperature:T"),
        ("temperature", "give the temperature"),
        ("temperature:", "give the temperature"),
        ("temperature:hot", "'hot' is not a number"),
        ("temperature:0.5", "a temperature below 1 would favour"),
        ("temperature:inf", "the limit of a growing temperature is 'balanced'"),
    ):
        with pytest.raises(ValueError, match=f"--speaker_sampling '{bad}': {why}"):
            parse_speaker_sampling(bad)


def test_a_bad_value_is_one_line_with_exit_status_2(tmp_path, capsys):
    assert cli(["--output_dir", str(tmp_path), "--speakers", "all", "--speaker_sampling", "temperature:hot"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "run_finetune.py: error: --speaker_sampling 'temperature:hot': 'hot' is not a number" in error


def test_a_weighted_draw_without_speakers_is_refused_and_the_default_is_not(tmp_path, capsys):
    base = ["--output_dir", str(tmp_path), "--dataset_name", "demo/kmr_ljspeech"]
    assert cli([*base, "--speaker_sampling", "balanced"]) == 2
    assert "--speaker_sampling balanced weighs the speakers of a --speakers run" in capsys.readouterr().err
    # the default, and the forms that are the default's draw, stay accepted
    for value in ("proportional", "temperature:1"):
        assert parse_arguments([*base, "--speaker_sampling", value])[2].speaker_sampling == value
    _, data_args, training_args = parse_arguments([*base, "--speakers", "all", "--speaker_sampling", "temperature:2"])
    assert data_args.speakers == "all" and training_args.speaker_sampling == "temperature:2"


def test_a_weighted_draw_combines_with_group_by_length_and_refuses_the_samplers_it_replaces(tmp_path):
    VitsTrainingArguments(
        output_dir=str(tmp_path), speaker_sampling="balanced", train_sampling_strategy="group_by_length"
    )
    for strategy in ("sequential", "batch_rebalance"):
        with pytest.raises(ValueError, match=f"--train_sampling_strategy {strategy} would replace"):
            VitsTrainingArguments(
                output_dir=str(tmp_path), speaker_sampling="balanced", train_sampling_strategy=strategy
            )
    # proportional is the Trainer's own sampler, whichever it is
    VitsTrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="sequential")


@pytest.mark.parametrize(
    "value, expected",
    [("balanced", {0: 0.5, 1: 0.5}), ("temperature:2", {0: 0.75, 1: 0.25}), ("temperature:1.5", None)],
)
def test_the_speakers_are_drawn_in_the_expected_shares(value, expected):
    sampling = parse_speaker_sampling(value)
    if expected is None:  # n_s ** (1 / T): 90 ** (2/3) against 10 ** (2/3)
        expected = {
            0: 90 ** (2 / 3) / (90 ** (2 / 3) + 10 ** (2 / 3)),
            1: 10 ** (2 / 3) / (90 ** (2 / 3) + 10 ** (2 / 3)),
        }
    assert sampling.speaker_probabilities(Counter(NINETY_TEN)) == pytest.approx(expected)
    sampler = SpeakerWeightedSampler(NINETY_TEN, sampling, seed=0)
    assert len(sampler) == len(NINETY_TEN) and len(sampler.draw(0)) == len(NINETY_TEN)
    assert _shares(sampler, NINETY_TEN) == pytest.approx(expected, abs=0.02)


def test_a_speakers_share_is_split_evenly_over_its_clips():
    draw = SpeakerWeightedSampler(NINETY_TEN, parse_speaker_sampling("balanced"), seed=0).draw(0)
    big = [i for i in draw if NINETY_TEN[i] == 0]
    small = Counter(i for i in draw if NINETY_TEN[i] == 1)
    # the big speaker is drawn fewer times than it has clips: no clip of it twice in the epoch
    assert len(big) < 90 and len(set(big)) == len(big)
    # the small one is drawn ~5 times per clip: each clip in every round, so at most one apart
    assert len(small) == 10 and max(small.values()) - min(small.values()) <= 1


def test_the_draw_depends_on_the_seed_and_the_epoch_only():
    balanced = parse_speaker_sampling("balanced")
    first, again = (SpeakerWeightedSampler(NINETY_TEN, balanced, seed=7) for _ in range(2))
    assert first.draw(3) == again.draw(3)
    again.set_epoch(3)
    assert list(again) == first.draw(3)
    assert first.draw(3) != first.draw(4)
    assert first.draw(3) != SpeakerWeightedSampler(NINETY_TEN, balanced, seed=8).draw(3)


def test_group_by_length_orders_the_same_draw_into_batches_of_similar_length():
    lengths = list(np.random.default_rng(0).integers(1000, 50000, len(NINETY_TEN)))
    sampling = parse_speaker_sampling("balanced")
    plain = SpeakerWeightedSampler(NINETY_TEN, sampling, seed=0).draw(0)
    grouped = SpeakerWeightedSampler(NINETY_TEN, sampling, seed=0, lengths=lengths, group_size=4).draw(0)
    assert sorted(grouped) == sorted(plain), "the same clips, in another order"

    def spread(order):
        batches = [[lengths[i] for i in order[start : start + 4]] for start in range(0, len(order), 4)]
        return sum(max(batch) - min(batch) for batch in batches)

    assert spread(grouped) < spread(plain) / 3


def test_the_trainers_sampler_orders_by_length_under_group_by_length(tmp_path):
    features = speaker_features(make_tiny_config(), {0: 6, 1: 2})
    args = VitsTrainingArguments(
        output_dir=str(tmp_path), speaker_sampling="balanced", train_sampling_strategy="group_by_length"
    )
    sampler = speaker_sampler(args, features)
    assert sampler.lengths == list(features["waveform_length"]) and sampler.group_size == args.train_batch_size
    plain = speaker_sampler(VitsTrainingArguments(output_dir=str(tmp_path), speaker_sampling="balanced"), features)
    assert plain.lengths is None


def _prepared(sampler, process_index: int, num_processes: int = 2, batch_size: int = 3):
    """The DataLoader the Trainer builds around `sampler`, prepared by accelerate as for process `process_index`."""
    loader = DataLoader(list(range(len(sampler))), sampler=sampler, batch_size=batch_size, collate_fn=list)
    return prepare_data_loader(loader, num_processes=num_processes, process_index=process_index, put_on_device=False)


def test_each_process_gets_a_disjoint_share_of_each_epochs_draw():
    speaker_ids = [0] * 18 + [1] * 6
    sampler = SpeakerWeightedSampler(speaker_ids, parse_speaker_sampling("balanced"), seed=0)
    for epoch in (0, 1):
        shares = []
        for rank in (0, 1):
            loader = _prepared(sampler, rank)
            loader.set_epoch(epoch)
            shares.append(list(loader))
        # batches alternate between the processes: together they are the epoch's draw, each position once
        interleaved = [index for pair in zip(*shares) for batch in pair for index in batch]
        assert interleaved == sampler.draw(epoch)
        assert len(shares[0]) == len(shares[1]) == 4


class _Loop:
    """What `Trainer._run_epoch` (transformers 5.25) does with the epoch: tell the dataloader, which accelerate
    forwards where it can, and the sampler under accelerate's `BatchSamplerShard` when it has `set_epoch`."""

    def _run_epoch(self, model, epoch, train_dataloader):
        train_dataloader.set_epoch(epoch)
        underlying_sampler = getattr(getattr(train_dataloader, "batch_sampler", None), "batch_sampler", None)
        if hasattr(underlying_sampler, "set_epoch"):
            underlying_sampler.set_epoch(epoch)
        return list(train_dataloader)


class _Trainer(SpeakerSamplingMixin, _Loop):
    pass


def test_a_ddp_process_resumed_mid_epoch_draws_that_epoch_again():
    speaker_ids = [0] * 18 + [1] * 6
    balanced = parse_speaker_sampling("balanced")
    straight = _prepared(SpeakerWeightedSampler(speaker_ids, balanced, seed=0), process_index=1)
    straight.set_epoch(2)
    expected = list(straight)
    # a fresh process: the sampler starts at epoch 0, the loader skips the batch trained before the stop
    trainer = _Trainer()
    trainer.speaker_sampler = SpeakerWeightedSampler(speaker_ids, balanced, seed=0)
    resumed = skip_first_batches(_prepared(trainer.speaker_sampler, process_index=1), 1)
    assert trainer._run_epoch(None, 2, train_dataloader=resumed) == expected[1:]


def _train(tmp_path, name, config, features, **overrides):
    collator = RecordingCollator(SpectrogramConfig.from_model_config(config))
    settings = dict(max_steps=-1, num_train_epochs=3, per_device_train_batch_size=4, save_strategy="no")
    settings.update(overrides)
    trainer = tiny_trainer(
        config, str(tmp_path / name), discriminator=False, features=features, data_collator=collator, **settings
    )
    trainer.train()
    return trainer, collator.batches


def test_the_batches_speaker_mix_follows_the_flag(tmp_path):
    config = make_tiny_config(num_speakers=2, speaker_embedding_size=4)
    features = speaker_features(config, {0: 20, 1: 4})
    speaker_of = dict(zip(features["path"], features["speaker_id"]))

    proportional, batches = _train(tmp_path, "proportional", config, features)
    assert isinstance(proportional._get_train_sampler(), RandomSampler), "today's sampler, unchanged"
    drawn = [speaker_of[path] for batch in batches for path in batch]
    # three epochs of a permutation: every clip once per epoch
    assert len(drawn) == 72 and Counter(drawn) == {0: 60, 1: 12}

    balanced, batches = _train(tmp_path, "balanced", config, features, speaker_sampling="balanced")
    paths = [path for batch in batches for path in batch]
    # the batches hold exactly the sampler's draw, epoch after epoch
    sampler = balanced.speaker_sampler
    assert paths == [features["path"][i] for epoch in range(3) for i in sampler.draw(epoch)]
    share = Counter(speaker_of[path] for path in paths)[1] / len(paths)
    assert 0.35 < share < 0.65, f"the small speaker's share of the draws, balanced: {share}"


def test_a_resumed_run_trains_on_the_batches_the_straight_run_did(tmp_path):
    config = make_tiny_config(num_speakers=2, speaker_embedding_size=4)
    features = speaker_features(config, {0: 20, 1: 4})
    common = dict(speaker_sampling="temperature:2", save_strategy="steps", save_steps=8)
    _, straight = _train(tmp_path, "straight", config, features, **common)
    # step 8 is the second step of the second epoch (6 steps an epoch)
    _train(tmp_path, "stopped", config, features, callbacks=[StopAtStep(8)], **common)
    collator = RecordingCollator(SpectrogramConfig.from_model_config(config))
    resumed = tiny_trainer(
        config, str(tmp_path / "stopped"), discriminator=False, features=features, data_collator=collator,
        max_steps=-1, num_train_epochs=3, per_device_train_batch_size=4, **common,
    )  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "stopped" / "checkpoint-8"))
    assert resumed.state.global_step == 18
    assert collator.batches == straight[8:]


def test_one_speaker_has_nothing_to_weigh_and_keeps_the_trainers_sampler(tmp_path, caplog):
    args = VitsTrainingArguments(output_dir=str(tmp_path), speaker_sampling="balanced", report_to="none")
    one_speaker = speaker_features(make_tiny_config(), {0: 6})
    with caplog.at_level(logging.INFO, logger="recipe.training.speaker_sampling"):
        assert speaker_sampler(args, one_speaker) is None
    assert "the training set has one speaker, nothing to weigh" in caplog.text
    assert isinstance(
        speaker_sampler(args, speaker_features(make_tiny_config(), {0: 4, 1: 2})), SpeakerWeightedSampler
    )


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_ddp_processes_train_on_disjoint_shares_of_each_epochs_draw(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(port),
        str(REPO_ROOT / "tests" / "speaker_sampling_ddp_worker.py"), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank-{index}.json").read_text()) for index in (0, 1))
    assert rank0["draws"] == rank1["draws"], "every process draws the same epochs"
    assert rank0["global_step"] == rank1["global_step"] == 8
    # 24 clips, 3 per batch: each epoch's 8 batches alternate between the processes, 4 each
    for epoch, draw in enumerate(rank0["draws"]):
        shares = [rank["batches"][4 * epoch : 4 * (epoch + 1)] for rank in (rank0, rank1)]
        assert [path for pair in zip(*shares) for batch in pair for path in batch] == draw
