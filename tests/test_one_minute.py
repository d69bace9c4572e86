"""The one-minute-voice preset: what it promises (frozen text side, low rate, L2-SP, frequent checks), and a run of
it on the bundled one-minute speaker with the demo's tiny model, a handful of steps instead of 300."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DEMO_DIR, REPO_ROOT
from safetensors.torch import load_file
from transformers import VitsModel

from recipe.training.arguments import VitsTrainingArguments
from run_finetune import main, parse_arguments

PRESET = REPO_ROOT / "configs" / "one_minute_voice.json"


def preset_flags(**overrides) -> list[str]:
    """The preset as command-line flags, with `overrides` (a value of `None` drops the preset's entry)."""
    settings = json.loads(PRESET.read_text())
    settings.update(overrides)
    flags = []
    for name, value in settings.items():
        if value is not None:
            flags += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def test_preset_parses_and_sets_what_a_minute_of_audio_needs():
    model_args, data_args, training_args = parse_arguments([str(PRESET)])
    defaults = VitsTrainingArguments(output_dir="unused")
    assert model_args.freeze_text_encoder and model_args.freeze_duration_predictor
    assert not model_args.freeze_decoder and not model_args.freeze_posterior_encoder
    assert training_args.learning_rate < defaults.learning_rate
    assert training_args.l2sp_weight > 0 and training_args.amplitude_loss_weight > 0
    assert training_args.max_steps <= 500 and training_args.eval_steps <= training_args.max_steps / 10
    assert training_args.load_best_model_at_end and training_args.amplitude_patience > 0
    # the rhythm: the predictor's durations are kept, their pace fitted to the recordings (docs/results.md)
    assert training_args.fit_speaking_rate
    # The bundled data it points at is about one minute of one speaker.
    assert data_args.dataset_name == "demo/kmr_ljspeech" and (REPO_ROOT / data_args.dataset_name).is_dir()


@pytest.fixture(scope="module")
def one_minute_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_minute")
    flags = preset_flags(
        model_name_or_path=None,
        config_name=str(DEMO_DIR / "tiny_model" / "config.json"),
        tokenizer_name=str(DEMO_DIR / "tiny_model"),
        discriminator_config_name=str(DEMO_DIR / "tiny_model" / "discriminator_config.json"),
        dataset_name=str(DEMO_DIR / "kmr_ljspeech"),
        output_dir=str(folder / "out"),
        cache_dir=str(folder / "cache"),
        max_steps=4,
        eval_steps=2,
        save_steps=2,
        logging_steps=2,
        per_device_train_batch_size=4,
        report_to="none",
        disable_tqdm=True,
        # a random tiny model is no voice yet: the monitor measures it (asserted below) but must not stop the run
        amplitude_patience=0,
    )
    metrics = main(flags)
    return folder / "out", metrics


def test_preset_runs_on_one_minute_of_the_bundled_speaker(one_minute_run):
    output_dir, metrics = one_minute_run
    report = json.loads((output_dir / "data_report.json").read_text())
    seconds = (report["train"]["hours"] + report["eval"]["hours"]) * 3600
    assert 45 < seconds < 75
    assert metrics["train_hours_of_audio"] > 0 and "eval_mel" in metrics and "eval_l2sp" in metrics
    model = VitsModel.from_pretrained(str(output_dir))
    assert model.config.vocab_size == 36
    # The amplitude check ran at each of the frequent evaluations and its status is saved with the checkpoints.
    status = json.loads((output_dir / "checkpoint-4" / "amplitude_status.json").read_text())
    last = status["last_evaluation"]
    assert last["step"] == 4 and [entry["step"] for entry in status["history"]] == [2, 4]
    # the status is the one its figures give (the final evaluation measured against the same reference)
    assert status["reference_rms"] == pytest.approx(metrics["eval_amplitude_reference_rms"], rel=1e-9)
    assert last["rms"] == pytest.approx(np.mean([s["rms"] for s in last["sentences"]]), rel=1e-6)
    assert last["ratio"] == pytest.approx(last["rms"] / status["reference_rms"], rel=1e-6)
    deviation = abs(last["ratio"] - 1)
    expected = "CRITICAL" if deviation > 0.6 else "WARNING" if deviation > 0.3 else "OK"
    assert (status["warning_ratio"], status["critical_ratio"]) == (0.3, 0.6)
    assert last["status"] == status["status"] == expected


def test_preset_keeps_text_encoder_and_duration_predictor_fixed(one_minute_run):
    output_dir, _ = one_minute_run
    first = load_file(str(output_dir / "checkpoint-2" / "model.safetensors"))
    last = load_file(str(output_dir / "checkpoint-4" / "model.safetensors"))
    for name, tensor in first.items():
        if name.startswith(("text_encoder.", "duration_predictor.")):
            assert torch.equal(last[name], tensor), name
    assert any(not torch.equal(last[name], first[name]) for name in first if name.startswith("decoder."))


def test_two_rounds_with_new_letters_replay_and_the_saved_discriminator(tmp_path, monkeypatch):
    """Round 1 adds two letters to a vocabulary that lacks them, with the original rows frozen through real AdamW
    steps (weight decay on); round 2 starts from round 1's folder, picks up its discriminator and replays its data."""
    from recipe.training import run_setup

    vocabulary = json.loads((DEMO_DIR / "tiny_model" / "vocab.json").read_text(encoding="utf-8"))
    kept = sorted((token for token in vocabulary if token not in ("ş", "ê")), key=vocabulary.get)
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(kept)}, ensure_ascii=False))
    tokenizer_config = json.loads((DEMO_DIR / "tiny_model" / "tokenizer_config.json").read_text())
    tokenizer_config.pop("added_tokens_decoder")
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    model_config = json.loads((DEMO_DIR / "tiny_model" / "config.json").read_text())
    model_config["vocab_size"] = len(kept)
    (tmp_path / "config.json").write_text(json.dumps(model_config))

    specs = []
    monkeypatch.setattr(run_setup, "load_discriminator", lambda spec, *a: specs.append(spec) or _load(spec, *a))
    common = dict(
        cache_dir=str(tmp_path / "cache"),
        max_steps=3,
        eval_steps=3,
        save_steps=1,
        logging_steps=1,
        per_device_train_batch_size=4,
        weight_decay=0.1,
        learning_rate=1e-2,
        report_to="none",
        disable_tqdm=True,
        amplitude_patience=0,
        load_best_model_at_end=False,
    )
    round1 = tmp_path / "round1"
    main(
        preset_flags(
            **common,
            model_name_or_path=None,
            config_name=str(tmp_path / "config.json"),
            tokenizer_name=str(tokenizer_dir),
            discriminator="random",
            discriminator_config_name=str(DEMO_DIR / "tiny_model" / "discriminator_config.json"),
            dataset_name=str(DEMO_DIR / "kmr_ljspeech"),
            output_dir=str(round1),
            extend_vocabulary=True,
            init_new_tokens_from="ş:s",
            freeze_original_embeddings=True,
        )
    )
    saved_vocabulary = json.loads((round1 / "vocab.json").read_text(encoding="utf-8"))
    assert (saved_vocabulary["ê"], saved_vocabulary["ş"]) == (len(kept), len(kept) + 1)
    assert VitsModel.from_pretrained(str(round1)).config.vocab_size == len(kept) + 2
    added = json.loads((round1 / "vocabulary_report.json").read_text(encoding="utf-8"))["added"]
    assert [entry["character"] for entry in added] == ["ê", "ş"] and all(entry["count"] > 0 for entry in added)
    rows = [load_file(str(round1 / f"checkpoint-{step}" / "model.safetensors"))["text_encoder.embed_tokens.weight"]
            for step in (2, 3)]  # fmt: skip
    assert torch.equal(rows[0][: len(kept)], rows[1][: len(kept)])
    assert not torch.equal(rows[0][len(kept) :], rows[1][len(kept) :])

    round2 = tmp_path / "round2"
    main(
        preset_flags(
            **common,
            model_name_or_path=str(round1),
            dataset_name=str(DEMO_DIR / "kmr_common_voice"),
            replay_dataset_name=str(DEMO_DIR / "kmr_ljspeech"),
            replay_fraction=0.3,
            output_dir=str(round2),
        )
    )
    assert specs == ["random", str(round1)]  # --discriminator auto (the preset's) found round 1's
    lineage = json.loads((round2 / "lineage.json").read_text(encoding="utf-8"))
    assert [entry["round"] for entry in lineage] == [1, 2]
    assert lineage[0]["new_characters"] == "êş" and lineage[1]["started_from"] == str(round1)
    assert lineage[1]["replay"].endswith("(30%)") and lineage[1]["dataset"].endswith("kmr_common_voice")


def _load(spec, *args):
    from recipe.model.discriminator import load_discriminator

    return load_discriminator(spec, *args)
