"""The amplitude monitor stops a fading model and names the last healthy checkpoint; samples reach TensorBoard."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import string
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_tiny_config
from transformers import TrainerControl, TrainerState, TrainingArguments, VitsModel, VitsTokenizer, set_seed

from recipe.evaluation.metrics import amplitude_stats
from recipe.training.amplitude_history import AMPLITUDE_STATUS_FILE, AmplitudeHistory
from recipe.training.amplitude_monitor import AmplitudeCollapseError, AmplitudeMonitorCallback
from recipe.training.amplitude_probe import reference_rms_from_dataset
from recipe.training.callbacks import AudioSamplesCallback, TrainingLogLineCallback
from recipe.training.distributed import broadcast_from_main
from recipe.voices.synthesis import synthesize

TEXTS = ["roj baş", "heval"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's ops are too small to gain from threads, and spinning threads slow the tests to a crawl when
    the machine is busy (measured: 81 s with 2 threads vs 17 s with 1 at load 5 on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    characters = ["<pad>", "<unk>", " "] + list(string.ascii_lowercase) + list("çêîûş.,")
    vocab_file = tmp_path_factory.mktemp("tokenizer") / "vocab.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(characters)}), encoding="utf-8")
    return VitsTokenizer(str(vocab_file), phonemize=False)


@pytest.fixture
def model(tokenizer):
    """A minimal stand-in for VitsForTraining: the callbacks only use `.vits`. In train mode, as while training."""
    set_seed(0)
    return SimpleNamespace(vits=VitsModel(make_tiny_config(vocab_size=len(tokenizer))).train())


def initial_rms(model, tokenizer) -> float:
    return float(np.mean([amplitude_stats(synthesize(model.vits, tokenizer, t)[0], 16000)["rms"] for t in TEXTS]))


def fade(model, factor: float):
    """Scale the decoder's last convolution: the model's output gets quieter, as in a collapsing fine-tune."""
    with torch.no_grad():
        model.vits.decoder.conv_post.weight.mul_(factor)


def make_args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)


def evaluate(monitor, args, state, control, model, step):
    """What the Trainer does at an evaluation: log the eval metrics, then call `on_evaluate` with them."""
    state.global_step = step
    metrics = {"eval_loss": 1.0}
    state.log_history.append({**metrics, "step": step})
    monitor.on_evaluate(args, state, control, metrics=metrics, model=model)
    return metrics


def save(monitor, args, state, control, step):
    """What the Trainer does at a save: write checkpoint-N, then call `on_save`."""
    state.global_step = step
    os.makedirs(os.path.join(args.output_dir, f"checkpoint-{step}"), exist_ok=True)
    monitor.on_save(args, state, control)


def test_fading_model_goes_ok_to_critical_and_stops_naming_last_healthy_checkpoint(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=initial_rms(model, tokenizer), patience=3)

    metrics = evaluate(monitor, args, state, control, model, 10)
    assert metrics["eval_amplitude_status"] == 0  # OK: the model sounds like the reference
    assert metrics["eval_amplitude_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert model.vits.training, "the monitor must put the model back in train mode"
    save(monitor, args, state, control, 10)

    fade(model, 0.01)
    for step in (20, 30):
        metrics = evaluate(monitor, args, state, control, model, step)
        assert metrics["eval_amplitude_status"] == 2  # CRITICAL
        assert metrics["eval_amplitude_ratio"] < 0.4
        save(monitor, args, state, control, step)
    assert not control.should_training_stop, "two CRITICAL evaluations must not stop a run with patience 3"

    with pytest.raises(AmplitudeCollapseError) as error:
        evaluate(monitor, args, state, control, model, 40)
    message = str(error.value)
    assert control.should_training_stop
    assert "3 evaluations in a row" in message
    assert f"{tmp_path}/checkpoint-10" in message  # the last checkpoint saved while the voice was healthy
    assert "checkpoint-30" not in message
    assert "step 40: RMS" in message

    # Figures reached log_history, inside the eval entry of each step.
    entries = {entry["step"]: entry for entry in state.log_history}
    assert [entries[s]["eval_amplitude_status"] for s in (10, 20, 30, 40)] == [0, 2, 2, 2]
    assert entries[40]["eval_loss"] == 1.0


def test_checkpoint_status_file_and_resume_keep_the_streak(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    reference = initial_rms(model, tokenizer)
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=reference, patience=2)
    evaluate(monitor, args, state, control, model, 5)
    save(monitor, args, state, control, 5)
    fade(model, 0.01)
    evaluate(monitor, args, state, control, model, 10)
    save(monitor, args, state, control, 10)

    saved = json.loads((tmp_path / "checkpoint-10" / AMPLITUDE_STATUS_FILE).read_text())
    assert saved["status"] == "CRITICAL"
    assert saved["critical_streak"] == 1
    assert saved["healthy_checkpoints"] == [{"checkpoint": f"{tmp_path}/checkpoint-5", "step": 5, "status": "OK"}]
    assert [s["text"] for s in saved["last_evaluation"]["sentences"]] == TEXTS
    assert json.loads((tmp_path / "checkpoint-5" / AMPLITUDE_STATUS_FILE).read_text())["status"] == "OK"

    # A new process resumes from checkpoint-10: one more CRITICAL evaluation reaches patience 2.
    resumed = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=reference, patience=2)
    resumed_state = TrainerState(global_step=10)
    resumed.resuming_from(str(tmp_path / "checkpoint-10"))
    resumed.on_train_begin(args, resumed_state, control)
    with pytest.raises(AmplitudeCollapseError, match="checkpoint-5"):
        evaluate(resumed, args, resumed_state, control, model, 15)


def test_resume_reads_the_checkpoint_vits_trainer_resumes_from_not_output_dir(tmp_path, tokenizer):
    from trainer_helpers import tiny_trainer

    config = make_tiny_config()
    common = dict(
        discriminator=False, max_steps=2, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2
    )
    # a reference far louder than the random model: CRITICAL at step 2 (patience 0: the run goes on)
    first = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=10.0, patience=0)
    tiny_trainer(config, str(tmp_path / "first"), callbacks=[first], **common).train()
    assert first.critical_streak == 1 and [h["step"] for h in first.history] == [2]
    moved = tmp_path / "elsewhere" / "kept"
    shutil.copytree(tmp_path / "first" / "checkpoint-2", moved)
    # the resumed run's output_dir holds another run's checkpoint-2, which must not be read
    decoy = tmp_path / "second" / "checkpoint-2"
    decoy.mkdir(parents=True)
    (decoy / AMPLITUDE_STATUS_FILE).write_text(
        json.dumps({"critical_streak": 7, "history": [{"step": 99}], "healthy_checkpoints": []})
    )

    resumed = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=10.0, patience=0)
    tiny_trainer(config, str(tmp_path / "second"), callbacks=[resumed], **common).train(
        resume_from_checkpoint=str(moved)
    )
    assert resumed.resume_checkpoint == str(moved)
    # the moved checkpoint's history and streak (the decoy's would be step 99 and a streak of 7 or more), then
    # whatever the resumed run evaluated itself, all CRITICAL
    assert resumed.history[: len(first.history)] == first.history
    assert resumed.critical_streak == len(resumed.history)


def test_resume_without_a_named_checkpoint_warns_and_starts_empty(tmp_path, tokenizer, caplog):
    args, control = make_args(tmp_path), TrainerControl()
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / AMPLITUDE_STATUS_FILE).write_text(json.dumps({"critical_streak": 7}))
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=0.1)
    with caplog.at_level(logging.WARNING, logger="recipe.training.amplitude_monitor"):
        monitor.on_train_begin(args, TrainerState(global_step=10), control)
    assert "did not name the checkpoint" in caplog.text
    assert monitor.critical_streak == 0 and monitor.history == []


def test_no_healthy_checkpoint_is_said(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    # The reference is far louder than the model: CRITICAL from the first evaluation.
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=initial_rms(model, tokenizer) * 10, patience=1)
    with pytest.raises(AmplitudeCollapseError, match="No checkpoint with a healthy status"):
        evaluate(monitor, args, state, control, model, 1)


def test_rotated_away_healthy_checkpoint_is_not_named(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=initial_rms(model, tokenizer), patience=1)
    evaluate(monitor, args, state, control, model, 1)
    save(monitor, args, state, control, 1)
    shutil.rmtree(tmp_path / "checkpoint-1")  # save_total_limit deleted it
    fade(model, 0.01)
    with pytest.raises(AmplitudeCollapseError, match="no longer on disk"):
        evaluate(monitor, args, state, control, model, 2)


def test_warning_band_and_patience_zero_never_stops(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    rms = initial_rms(model, tokenizer)
    # Synthesized RMS 45% above the reference: beyond warning_ratio 0.3, within critical_ratio 0.6.
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=rms / 1.45, patience=0)
    assert evaluate(monitor, args, state, control, model, 1)["eval_amplitude_status"] == 1
    fade(model, 0.01)
    for step in range(2, 6):
        assert evaluate(monitor, args, state, control, model, step)["eval_amplitude_status"] == 2
    assert monitor.critical_streak == 4 and not control.should_training_stop


def test_each_step_counts_once_and_the_last_step_never_raises(tmp_path, model, tokenizer, caplog):
    args, state, control = make_args(tmp_path), TrainerState(max_steps=40), TrainerControl()
    # a reference far louder than the model: CRITICAL at every evaluation; patience 2 is reached at the last step
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=initial_rms(model, tokenizer) * 10, patience=2)
    monitor.on_train_begin(args, state, control)
    evaluate(monitor, args, state, control, model, 20)
    with caplog.at_level(logging.WARNING, logger="recipe.training.amplitude_monitor"):
        evaluate(monitor, args, state, control, model, 40)  # the run's last step: reported, not raised
        monitor.on_train_end(args, state, control)
        # the final evaluation of the same weights (run_finetune.py's, after training)
        metrics = evaluate(monitor, args, state, control, model, 40)
    assert [entry["step"] for entry in monitor.history] == [20, 40]
    assert monitor.critical_streak == 2 and not control.should_training_stop
    assert metrics["eval_amplitude_status"] == 2  # the final evaluation still reports its figures
    critical = [record for record in caplog.records if record.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "CRITICAL at the end of the run (step 40)" in critical[0].message
    assert "No checkpoint with a healthy status" in critical[0].message
    assert "final evaluation: this step is already counted" in caplog.text


def test_monitoring_leaves_the_training_rng_untouched(tmp_path, model, tokenizer):
    args, state, control = make_args(tmp_path), TrainerState(), TrainerControl()
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=0.5)
    set_seed(123)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(123)
    evaluate(monitor, args, state, control, model, 1)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_bad_arguments_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="reference_rms"):
        AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=0.0)
    with pytest.raises(ValueError, match="texts"):
        AmplitudeMonitorCallback(tokenizer, "one sentence", reference_rms=0.1)
    with pytest.raises(ValueError, match="warning_ratio"):
        AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=0.1, warning_ratio=0.7, critical_ratio=0.6)


def test_the_history_counts_each_step_once_and_reads_back_what_it_wrote(tmp_path):
    history = AmplitudeHistory()
    healthy = {"step": 5, "status": "OK", "rms": 0.1, "peak": 0.5, "ratio": 1.0, "reference_rms": 0.1}
    assert not history.add_evaluation({**healthy, "sentences": [{"text": "roj baş", "rms": 0.1}]})
    history.add_checkpoint(str(tmp_path / "checkpoint-5"), 5)
    critical = {**healthy, "step": 10, "status": "CRITICAL", "rms": 0.01, "ratio": 0.1, "sentences": []}
    assert not history.add_evaluation(critical)
    assert history.add_evaluation(critical)  # the final evaluation of the same step
    history.add_checkpoint(str(tmp_path / "checkpoint-10"), 10)  # saved after a CRITICAL evaluation: not healthy
    assert history.critical_streak == 1 and [entry["step"] for entry in history.entries] == [5, 10]
    assert history.entries[0] == healthy  # the per-sentence figures stay in the last result only
    assert history.critical_entries() == [history.entries[1]]
    assert history.healthy_checkpoints == [{"checkpoint": str(tmp_path / "checkpoint-5"), "step": 5, "status": "OK"}]
    assert history.last_healthy_checkpoint() is None  # not on disk
    (tmp_path / "checkpoint-5").mkdir()
    assert history.last_healthy_checkpoint()["step"] == 5

    history.save(str(tmp_path), {"patience": 2})
    saved = json.loads((tmp_path / AMPLITUDE_STATUS_FILE).read_text())
    assert (saved["status"], saved["evaluated_at_step"], saved["patience"]) == ("CRITICAL", 10, 2)
    assert vars(AmplitudeHistory.load(str(tmp_path))) == vars(history)


def test_broadcast_from_main_returns_floats_with_and_without_a_process_group(tmp_path):
    values = broadcast_from_main([1, 0.125], torch.device("cpu"))
    assert values == [1.0, 0.125] and all(isinstance(value, float) for value in values)
    # a one-process gloo group takes the broadcast path (tests/test_ddp.py runs it over two processes)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        values = broadcast_from_main([2, 0.25], torch.device("cpu"))
    finally:
        torch.distributed.destroy_process_group()
    assert values == [2.0, 0.25] and all(isinstance(value, float) for value in values)


def test_reference_rms_from_dataset_matches_amplitude_stats():
    from datasets import Dataset

    t = np.arange(16000) / 16000
    waves = [0.5 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t[:8000])]
    dataset = Dataset.from_dict({"waveform": [w.astype(np.float32) for w in waves], "text": ["a", "b"]})
    expected = np.mean([amplitude_stats(w.astype(np.float32), 16000)["rms"] for w in waves])
    assert reference_rms_from_dataset(dataset, 16000) == pytest.approx(expected, rel=1e-5)
    assert reference_rms_from_dataset(dataset, 16000, max_clips=1) == pytest.approx(0.5 / np.sqrt(2), rel=1e-4)
    with pytest.raises(ValueError, match="no 'waveform' column"):
        reference_rms_from_dataset(dataset.remove_columns("waveform"), 16000)
    with pytest.raises(ValueError, match="silent"):
        reference_rms_from_dataset(Dataset.from_dict({"waveform": [np.zeros(100, dtype=np.float32)]}), 16000)
    broken = [w.astype(np.float32) for w in waves] + [np.array([0.1, np.nan], dtype=np.float32)]
    with pytest.raises(ValueError, match="Eval clip 2: waveform holds NaN"):
        reference_rms_from_dataset(Dataset.from_dict({"waveform": broken}), 16000)


def test_audio_samples_reach_tensorboard(tmp_path, model, tokenizer):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args, state, control = make_args(tmp_path), TrainerState(global_step=7), TrainerControl()
    callback = AudioSamplesCallback(tokenizer, TEXTS + ["extra sentence"], sampling_rate=16000, max_samples=2)
    callback.on_evaluate(args, state, control, metrics={"eval_amplitude_rms": 0.2}, model=model)
    callback.on_train_end(args, state, control)
    assert model.vits.training

    events = EventAccumulator(callback.log_dir, size_guidance={"audio": 0, "images": 0, "scalars": 0})
    events.Reload()
    assert sorted(events.Tags()["audio"]) == ["samples/0", "samples/1"]
    assert sorted(events.Tags()["images"]) == ["mel/0", "mel/1"]
    audio = events.Audio("samples/0")[0]
    assert audio.step == 7 and audio.sample_rate == 16000 and audio.length_frames > 0
    assert events.Scalars("eval/amplitude_rms")[0].value == pytest.approx(0.2)


def test_progress_line_has_loss_throughput_and_eta(tmp_path, caplog):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_train_batch_size=4)
    state, control = TrainerState(global_step=0, max_steps=100), TrainerControl()
    callback = TrainingLogLineCallback()
    callback.on_train_begin(args, state, control)
    time.sleep(0.2)
    state.global_step = 10
    with caplog.at_level(logging.INFO, logger="recipe.training.callbacks"):
        callback.on_log(args, state, control, logs={"loss": 12.5, "mel": 3.25, "learning_rate": 1e-5})
    line = callback.last_line
    assert line in caplog.text
    assert line.startswith("step 10/100 | loss 12.5000 | mel 3.2500 | ")
    samples_per_second = float(line.split(" samples/s")[0].split(" | ")[-1])
    assert 0 < samples_per_second <= 40 / 0.2  # 10 steps x 4 samples in at least 0.2 s
    eta = line.split("ETA ")[1]
    hours, minutes, seconds = (int(x) for x in eta.split(":"))
    assert 1 <= hours * 3600 + minutes * 60 + seconds <= 60  # 90 steps left at >= 0.02 s per step
    # eval logs have no training loss: no progress line
    callback.on_log(args, state, control, logs={"eval_loss": 1.0})
    assert callback.last_line == line


class FadingWrapper(torch.nn.Module):
    """A stand-in for VitsForTraining whose loss is the size of the decoder's last convolution: SGD on it makes the
    voice fade step by step, as a collapsing fine-tune does."""

    def __init__(self, vits):
        super().__init__()
        self.vits = vits

    def forward(self, x):
        return {"loss": 0.5 * self.vits.decoder.conv_post.weight.pow(2).sum() + 0 * x.sum()}


def test_real_trainer_stops_a_fading_run(tmp_path, model, tokenizer):
    from datasets import Dataset
    from transformers import Trainer

    wrapper = FadingWrapper(model.vits)
    monitor = AmplitudeMonitorCallback(tokenizer, TEXTS, reference_rms=initial_rms(model, tokenizer), patience=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        optim="sgd",
        learning_rate=0.2,
        lr_scheduler_type="constant",
        max_steps=30,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        per_device_train_batch_size=1,
        disable_tqdm=True,
    )
    data = Dataset.from_dict({"x": [0.0] * 4})
    trainer = Trainer(
        model=wrapper,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        data_collator=lambda rows: {"x": torch.tensor([r["x"] for r in rows])},
        callbacks=[monitor],
    )
    with pytest.raises(AmplitudeCollapseError) as error:
        trainer.train()
    statuses = [e["eval_amplitude_status"] for e in trainer.state.log_history if "eval_amplitude_status" in e]
    assert statuses[0] == 0 and statuses[-2:] == [2, 2]
    assert trainer.state.global_step < 30
    named = monitor.last_healthy_checkpoint()["checkpoint"]
    assert named in str(error.value)
    assert json.loads(open(os.path.join(named, AMPLITUDE_STATUS_FILE)).read())["status"] in ("OK", "WARNING")
    # the checkpoint saved after the first CRITICAL evaluation is not called healthy
    last_saved = os.path.join(str(tmp_path), f"checkpoint-{trainer.state.global_step - 2}")
    assert json.loads(open(os.path.join(last_saved, AMPLITUDE_STATUS_FILE)).read())["status"] == "CRITICAL"
