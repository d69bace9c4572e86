"""`run_finetune.main()` end to end on the bundled demo data with a tiny model: train, eval, save, reload."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from conftest import DEMO_DIR, REPO_ROOT, make_tiny_config
from transformers import VitsModel, VitsTokenizer, pipeline

from recipe.training.amplitude_monitor import AmplitudeMonitorCallback
from recipe.voices import load_tokenizer, tokenizer_kind
from run_finetune import main, parse_arguments

# the conftest tiny config made smaller still: main() runs end to end in these tests
TINY_CONFIG = make_tiny_config(
    vocab_size=36,
    num_hidden_layers=1,
    upsample_initial_channel=16,
    prior_encoder_num_flows=1,
    prior_encoder_num_wavenet_layers=1,
    posterior_encoder_num_wavenet_layers=1,
    duration_predictor_num_flows=1,
    depth_separable_num_layers=1,
).to_dict()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_files")
    config = folder / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    discriminator = folder / "discriminator.json"
    discriminator.write_text(json.dumps({"periods": [2], "period_channels": [1, 4], "scale_channels": [1, 4, 16]}))
    return config, discriminator


def _flags(config, discriminator, output_dir, cache_dir, *extra):
    return [
        "--config_name", str(config),
        "--tokenizer_name", str(DEMO_DIR / "tiny_model"),
        "--discriminator_config_name", str(discriminator),
        "--dataset_name", str(DEMO_DIR / "kmr_ljspeech"),
        "--eval_fraction", "0.125",
        "--cache_dir", str(cache_dir),
        "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4",
        "--segment_size", "8",
        "--learning_rate", "1e-3",
        "--report_to", "tensorboard",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


def test_main_trains_evaluates_saves_and_reloads(tiny_files, tmp_path):
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    metrics = main(
        _flags(
            config, discriminator, output_dir, tmp_path / "cache",
            "--max_steps", "4", "--logging_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--save_steps", "2", "--load_best_model_at_end", "true", "--amplitude_patience", "0",
        )
    )  # fmt: skip
    assert {"train_loss", "eval_loss", "eval_mel", "eval_kl", "eval_duration", "eval_discriminator"} <= set(metrics)
    assert metrics["train_hours_of_audio"] > 0

    files = set(os.listdir(output_dir))
    assert {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "discriminator.safetensors",
        "trainer_state.json",
    } <= files
    assert {"checkpoint-2", "checkpoint-4"} <= files
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert any("mel" in entry and "loss" in entry for entry in state["log_history"])
    # the amplitude monitor ran at each evaluation and left its figures in the log history
    assert any("eval_amplitude_rms" in entry for entry in state["log_history"])
    assert os.listdir(output_dir / "runs"), "TensorBoard logs are written"

    model = VitsModel.from_pretrained(output_dir)
    assert model.config.vocab_size == 36
    tokenizer = VitsTokenizer.from_pretrained(output_dir)
    assert not tokenizer.phonemize
    speech = pipeline("text-to-speech", model=str(output_dir))("roj baş")
    assert speech["audio"].size > 0 and np.isfinite(speech["audio"]).all()


def test_preprocessing_only_builds_the_cache_and_stops(tiny_files, tmp_path, caplog):
    config, discriminator = tiny_files
    flags = _flags(config, discriminator, tmp_path / "out", tmp_path / "cache", "--preprocessing_only", "true")
    result = main(flags)
    assert set(result) == {"data_report"}
    assert os.path.isfile(tmp_path / "out" / "data_report.json")
    assert not os.path.exists(tmp_path / "out" / "model.safetensors")
    assert os.listdir(tmp_path / "cache" / "vits_features")
    # a second run says it re-uses the cache, at the default --log_level (the recipe's INFO lines are shown)
    caplog.clear()
    main(flags)
    assert any(record.message.startswith("Loading cached features") for record in caplog.records)


def test_arguments_from_a_json_file_and_the_demo_config(tmp_path):
    model_args, data_args, training_args = parse_arguments([str(REPO_ROOT / "configs" / "demo.json")])
    assert model_args.config_name == "demo/tiny_model/config.json"
    assert data_args.dataset_name == "demo/kmr_ljspeech"
    assert training_args.metric_for_best_model == "eval_mel" and training_args.greater_is_better is False
    assert training_args.precision == "fp32"  # CPU
    assert os.path.isfile(REPO_ROOT / model_args.config_name)


def test_bad_arguments_fail_early_with_clear_messages(tiny_files, tmp_path):
    config, discriminator = tiny_files
    with pytest.raises(FileNotFoundError, match="no-such-config.json"):
        main(_flags(tmp_path / "no-such-config.json", discriminator, tmp_path / "o", tmp_path / "c"))
    with pytest.raises(ValueError, match="--hub_model_id"):
        main(_flags(config, discriminator, tmp_path / "o", tmp_path / "c", "--push_to_hub", "true"))
    small_vocabulary = tmp_path / "small.json"
    small_vocabulary.write_text(json.dumps({**TINY_CONFIG, "vocab_size": 10}))
    with pytest.raises(ValueError, match="vocab_size is 10"):
        main(_flags(small_vocabulary, discriminator, tmp_path / "o", tmp_path / "c"))


def test_contradictory_or_ineffective_arguments_are_refused(tiny_files, tmp_path):
    config, discriminator = tiny_files
    base = _flags(config, discriminator, tmp_path / "o", tmp_path / "c")
    with pytest.raises(ValueError, match="not both"):
        parse_arguments([*base, "--model_name_or_path", "facebook/mms-tts-kmr-script_latin"])
    with pytest.raises(ValueError, match=r"--amplitude_target_peak 0.85 .*\(--amplitude_loss_weight 0.0\)"):
        parse_arguments([*base, "--amplitude_target_peak", "0.85"])
    _, _, training_args = parse_arguments([*base, "--amplitude_target_peak", "0.85", "--amplitude_loss_weight", "1.0"])
    assert training_args.amplitude_target_peak == 0.85
    with pytest.raises(ValueError, match="--eval_steps 0.1 .* whole number"):
        parse_arguments([*base, "--target_hours", "1", "--eval_strategy", "steps", "--eval_steps", "0.1"])
    with pytest.raises(ValueError, match="--logging_steps 0.5, --save_steps 0.25"):
        parse_arguments([*base, "--target_hours", "1", "--logging_steps", "0.5", "--save_steps", "0.25"])
    # fractions of a fixed --max_steps stay allowed without --target_hours
    _, _, training_args = parse_arguments(
        [*base, "--max_steps", "100", "--eval_strategy", "steps", "--eval_steps", "0.1"]
    )
    assert training_args.eval_steps == 0.1
    for flags in (["--torch_compile", "true"], ["--torch_compile_mode", "max-autotune"]):
        with pytest.raises(ValueError, match="--torch_compile is not supported"):
            parse_arguments([*base, *flags])


def test_amplitude_flags_without_evaluation_are_said_to_do_nothing(tiny_files, tmp_path, caplog):
    from run_finetune import build_callbacks

    config, discriminator = tiny_files
    _, _, training_args = parse_arguments(
        _flags(config, discriminator, tmp_path / "o", tmp_path / "c", "--amplitude_patience", "5")
    )
    assert training_args.eval_strategy == "no"
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    with caplog.at_level(logging.WARNING, logger="run_finetune"):
        callbacks = build_callbacks(training_args, tokenizer, eval_dataset=[], sampling_rate=16000)
    assert not any(isinstance(callback, AmplitudeMonitorCallback) for callback in callbacks)
    assert "--eval_strategy is 'no'" in caplog.text and "--amplitude_patience (5)" in caplog.text


def test_the_hub_token_reaches_the_data_and_the_replay_data(tiny_files, tmp_path, monkeypatch):
    import run_finetune

    class _Stop(Exception):
        pass

    tokens = []

    def fake_prepare_datasets(data_args, tokenizer, config, output_dir, **kwargs):
        tokens.append(kwargs.get("token"))
        if len(tokens) == 2:
            raise _Stop
        return None, None

    monkeypatch.setattr(run_finetune, "prepare_datasets", fake_prepare_datasets)
    config, discriminator = tiny_files
    flags = _flags(config, discriminator, tmp_path / "o", tmp_path / "c", "--token", "hf_secret")
    with pytest.raises(_Stop):
        main([*flags, "--replay_dataset_name", str(DEMO_DIR / "kmr_ljspeech"), "--replay_fraction", "0.2"])
    assert tokens == ["hf_secret", "hf_secret"]


def test_phoneme_vocabularies_are_told_apart(tmp_path):
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps({"a": 0, "ˈ": 1, "ə": 2}), encoding="utf-8")
    VitsTokenizer(str(vocab_file), phonemize=True).save_pretrained(tmp_path / "ipa")
    VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model", phonemize=True).save_pretrained(tmp_path / "letters")
    # the loader keeps phonemize for the IPA vocabulary and turns it off for the letters
    assert tokenizer_kind(load_tokenizer(str(tmp_path / "ipa"))) == "phonemes"
    assert tokenizer_kind(load_tokenizer(str(tmp_path / "letters"))) == "characters"


def test_flags_after_a_config_file_override_its_values(tmp_path):
    model_args, data_args, training_args = parse_arguments(
        [str(REPO_ROOT / "configs" / "demo.json"), "--max_steps", "7", "--output_dir", str(tmp_path / "o")]
    )
    assert training_args.max_steps == 7 and training_args.output_dir == str(tmp_path / "o")
    # everything not overridden still comes from the file
    assert data_args.dataset_name == "demo/kmr_ljspeech" and model_args.tokenizer_name == "demo/tiny_model"
    assert (
        training_args.learning_rate == json.loads((REPO_ROOT / "configs" / "demo.json").read_text())["learning_rate"]
    )

    config = tmp_path / "bad.yaml"
    config.write_text("dataset_name: demo/kmr_ljspeech\nlerning_rate: 0.1\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        parse_arguments([str(config)])


def test_a_run_that_reaches_its_last_step_critical_exits_with_its_results(tiny_files, tmp_path, caplog):
    # every evaluation CRITICAL (a critical ratio of 0); patience 2 is reached at the last step, then the final
    # evaluation measures the same weights again: counted once, reported, and the results are written
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    flags = _flags(
        config, discriminator, output_dir, tmp_path / "cache",
        "--max_steps", "4", "--logging_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
        "--save_steps", "2", "--amplitude_patience", "2", "--amplitude_warning_ratio", "0",
        "--amplitude_critical_ratio", "0",
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="recipe.training.amplitude_monitor"):
        metrics = main(flags)
    assert metrics["eval_amplitude_status"] == 2
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_amplitude_status"] == 2
    status = json.loads((output_dir / "checkpoint-4" / "amplitude_status.json").read_text())
    assert [entry["step"] for entry in status["history"]] == [2, 4] and status["critical_streak"] == 2
    critical = [r.message for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "CRITICAL at the end of the run (step 4)" in critical[0]


def test_help_shows_the_recipe_groups_first_then_all_trainer_arguments(capsys):
    from recipe.training.arguments import VitsTrainingArguments
    from recipe.training.parser import TRAINING_GROUPS, argument_groups
    from run_finetune import cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    titles = ["data:", "model:", "training:", "objectives:", "amplitude monitor:", "time budget:", "Hub:"]
    positions = [text.index(f"\n{title}\n") for title in [*titles, "all other Trainer arguments:"]]
    assert positions == sorted(positions)
    # every argument the recipe adds to TrainingArguments is in one of its groups
    from dataclasses import fields

    from transformers import TrainingArguments

    own = {f.name for f in fields(VitsTrainingArguments)} - {f.name for f in fields(TrainingArguments)}
    placed = [name for _, _, names in TRAINING_GROUPS for name in names]
    assert own <= set(placed) and len(placed) == len(set(placed))
    assert {name for _, _, names in argument_groups() for name in names} >= own
    # each flag once, in its underscore spelling
    assert "--max_steps MAX_STEPS" in text and "--max-steps" not in text


def test_a_mistyped_flag_or_key_is_one_line_with_the_closest_names(tiny_files, tmp_path, capsys):
    from run_finetune import cli

    config, discriminator = tiny_files
    base = _flags(config, discriminator, tmp_path / "o", tmp_path / "c")
    assert cli([*base, "--lerning_rate", "0.1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "unknown argument(s): --lerning_rate (did you mean --learning_rate" in error

    assert cli([*base, "--max_steps", "many"]) == 2
    assert "argument --max_steps/--max-steps: invalid int value: 'many'" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset_name: demo/kmr_ljspeech\nlerning_rate: 0.1\n")
    assert cli([str(bad)]) == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1 and f"unknown argument(s) in {bad}: lerning_rate (did you mean learning_rate" in error
    )


def test_fp32_on_a_cpu_with_native_bf16_says_what_bf16_would_give(monkeypatch):
    from recipe.training import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert "--precision bf16 ran the MMS-size training step 1.6-1.9x faster" in precision.cpu_bf16_hint("fp32", True)
    assert precision.cpu_bf16_hint("bf16", True) is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.cpu_bf16_hint("fp32", True) is None
