"""Continued fine-tuning: the replay share of the training mix, the discriminator a new round picks up, the lineage."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsTokenizer

from recipe.data.pipeline import DataError, prepare_datasets
from recipe.data.replay import mix_replay, replay_args, replay_count
from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator, load_discriminator, save_discriminator
from recipe.training.arguments import DataArguments
from recipe.training.hub import build_model_card
from recipe.voices.lineage import append_round, read_lineage, resolve_discriminator, round_entry, write_lineage


def _features(count: int, speakers: list[str], tag: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"input_ids": [[1, 2, 3]] * count, "path": [f"{tag}-{i}" for i in range(count)], "speaker_id": [0] * count},
        features=datasets.Features(
            {
                "input_ids": datasets.List(datasets.Value("int32")),
                "path": datasets.Value("string"),
                "speaker_id": datasets.ClassLabel(names=speakers),
            }
        ),
    )


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.8])
def test_replay_share_of_the_mix_is_the_requested_fraction(fraction):
    new, replay = _features(200, ["a"], "new"), _features(1000, ["a"], "old")
    mixed, report = mix_replay(new, replay, fraction, seed=3)
    share = sum(mixed["is_replay"]) / len(mixed)
    # whole clips: off by at most half a clip of the mix
    assert abs(share - fraction) <= 1 / len(mixed)
    assert report["fraction"] == pytest.approx(share)
    # every new clip is there once; replay clips are distinct (enough were available)
    paths = mixed["path"]
    assert sorted(p for p in paths if p.startswith("new")) == sorted(new["path"])
    assert len(set(paths)) == len(paths) and not report["repeated"]

    # What training draws: the share in random batches (the Trainer's RandomSampler) is within sampling error.
    generator = torch.Generator().manual_seed(0)
    drawn = [mixed[int(i)]["is_replay"] for i in torch.utils.data.RandomSampler(mixed, generator=generator)][:256]
    sigma = math.sqrt(fraction * (1 - fraction) / len(drawn))
    assert abs(np.mean(drawn) - fraction) < 4 * sigma


def test_replay_is_shuffled_into_the_new_data_and_deterministic():
    new, replay = _features(50, ["a"], "new"), _features(50, ["a"], "old")
    mixed, _ = mix_replay(new, replay, 0.5, seed=1)
    flags = mixed["is_replay"]
    assert flags != sorted(flags)  # not all new clips first
    again, _ = mix_replay(new, replay, 0.5, seed=1)
    assert again["path"] == mixed["path"]


def test_scarce_replay_data_is_repeated_and_said_so():
    new, replay = _features(90, ["a"], "new"), _features(4, ["a"], "old")
    mixed, report = mix_replay(new, replay, 0.1, seed=0)
    assert report["replay_clips"] == replay_count(90, 0.1) == 10 and report["repeated"]
    assert sum(mixed["is_replay"]) == 10


def test_speaker_labels_of_other_voices_are_refused_for_a_multi_speaker_model():
    new, replay = _features(10, ["a", "b"], "new"), _features(10, ["c", "d"], "old")
    with pytest.raises(DataError, match="speakers"):
        mix_replay(new, replay, 0.2, num_speakers=2)
    mixed, _ = mix_replay(new, replay, 0.2, num_speakers=1)
    assert mixed.features["speaker_id"] == new.features["speaker_id"]


def test_replay_fraction_needs_a_replay_dataset():
    with pytest.raises(ValueError, match="go together"):
        DataArguments(dataset_name="x", replay_fraction=0.2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        DataArguments(dataset_name="x", replay_dataset_name="y", replay_fraction=1.0)


def test_bundled_data_as_new_and_replay_rounds(tmp_path):
    """Common Voice clips replayed into an LJSpeech round: both prepared with the same tokenizer, then mixed."""
    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    config = make_tiny_config(vocab_size=len(tokenizer.get_vocab()))
    data_args = DataArguments(
        dataset_name=str(DEMO_DIR / "kmr_ljspeech"),
        eval_fraction=0.125,
        cache_dir=str(tmp_path / "cache"),
        replay_dataset_name=str(DEMO_DIR / "kmr_common_voice"),
        replay_fraction=0.25,
        max_train_samples=12,
    )
    new, _ = prepare_datasets(data_args, tokenizer, config, str(tmp_path / "out"))
    replay, _ = prepare_datasets(replay_args(data_args), tokenizer, config, str(tmp_path / "out" / "replay"))
    assert len(replay["train"]) > 12  # the replay reads its own data, without the new round's cap
    mixed, report = mix_replay(new["train"], replay["train"], data_args.replay_fraction, seed=0)
    assert report == {"new_clips": 12, "replay_clips": 4, "replay_available": len(replay["train"]),
                      "replay_clips_per_speaker": {"speaker": 4}, "fraction": 0.25, "repeated": False}  # fmt: skip
    replayed = [path for path, flag in zip(mixed["path"], mixed["is_replay"]) if flag]
    assert all(path.endswith(".mp3") for path in replayed)
    assert json.loads((tmp_path / "out" / "data_report.json").read_text())["train"]["seen"] > 0


def test_auto_discriminator_is_the_starting_folders_when_it_has_one(tmp_path):
    assert resolve_discriminator("auto", "facebook/mms-tts-kmr-script_latin") == "random"
    assert resolve_discriminator("auto", str(tmp_path)) == "random"
    assert resolve_discriminator("none", str(tmp_path)) == "none"
    small = DiscriminatorConfig(periods=[2], period_channels=[1, 4], scale_channels=[1, 4])
    saved = VitsDiscriminator(small)
    save_discriminator(saved, str(tmp_path))
    spec = resolve_discriminator("auto", str(tmp_path))
    assert spec == str(tmp_path)
    loaded = load_discriminator(spec)
    for name, tensor in saved.plain_state_dict().items():
        assert torch.allclose(loaded.plain_state_dict()[name], tensor, atol=1e-6)  # weight norm recomputed
    # an explicit choice is kept, and a fresh architecture asked for wins
    assert resolve_discriminator("random", str(tmp_path)) == "random"
    assert resolve_discriminator("auto", str(tmp_path), "small_discriminator.json") == "random"


def test_lineage_grows_by_one_round_per_run_and_reaches_the_model_card(tmp_path):
    class Args:
        model_name_or_path = "facebook/mms-tts-kmr-script_latin"
        config_name = None
        dataset_name = "data/round1"
        replay_dataset_name = None
        replay_fraction = None

    first = append_round(read_lineage(Args.model_name_or_path), round_entry(Args, Args, 100, 0.5, ["ş"]))
    round1 = tmp_path / "round1"
    write_lineage(str(round1), first)

    Args.model_name_or_path, Args.dataset_name = str(round1), "data/round2"
    Args.replay_dataset_name, Args.replay_fraction = "data/round1", 0.2
    second = append_round(read_lineage(str(round1)), round_entry(Args, Args, 50, 0.1, []))
    assert [entry["round"] for entry in second] == [1, 2]
    assert second[0]["started_from"] == "facebook/mms-tts-kmr-script_latin" and second[0]["new_characters"] == "ş"
    assert second[1]["replay"] == "data/round1 (20%)" and second[1]["started_from"] == str(round1)

    card = build_model_card(str(round1), "data/round2", 0.1, 50, {"mel": 1.0}, "OK", lineage=second)
    assert "## Lineage" in card and "data/round1 (20%)" in card and "facebook/mms-tts-kmr-script_latin" in card


def test_a_broken_lineage_file_is_named(tmp_path):
    (tmp_path / "lineage.json").write_text('{"round": 1}')
    with pytest.raises(ValueError, match="lineage.json"):
        read_lineage(str(tmp_path))
