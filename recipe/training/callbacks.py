"""Trainer callbacks: the amplitude monitor, audio samples for TensorBoard, and progress lines.

- `AmplitudeMonitorCallback`: at each evaluation, synthesizes fixed sentences through the inference path and
  compares their loudness with the eval recordings; stops the run with `AmplitudeCollapseError` when the voice has
  faded (or blown up) for `patience` evaluations in a row, naming the last healthy checkpoint.
- `AudioSamplesCallback`: audio and mel images of a few sentences in TensorBoard at each evaluation.
- `ProgressCallback`: one log line per logging step with the loss, samples/s, peak GPU memory and ETA.

Every callback receives the unwrapped `VitsForTraining` as `model` and synthesizes with `model.vits`. Under DDP
only the main process synthesizes and writes; the monitor broadcasts its verdict so that every rank stops together.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import random
import time

import numpy as np
import torch
from transformers import TrainerCallback

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.evaluation.metrics import amplitude_stats, amplitude_status
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.voices.synthesis import synthesize

logger = logging.getLogger(__name__)

AMPLITUDE_STATUS_FILE = "amplitude_status.json"
# Numeric codes of the statuses, for `log_history` and TensorBoard scalars.
STATUS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
HEALTHY_STATUSES = ("OK", "WARNING")


class AmplitudeCollapseError(RuntimeError):
    """The synthesized speech stayed CRITICAL (far too quiet or too loud) for `patience` evaluations in a row."""


@contextlib.contextmanager
def preserved_rng_state():
    """Restore the Python, NumPy and torch (CPU and CUDA) generators on exit.

    `synthesize` seeds every generator so that the monitored sentences are comparable across evaluations; without
    this, monitoring would reseed the training run and change its trajectory (and break exact resume).
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def synthesize_texts(vits, tokenizer, texts: list[str], seed: int = 0) -> list[np.ndarray]:
    """Synthesize `texts` with `recipe.voices.synthesis.synthesize` (eval mode, no grad, mode restored), keeping RNG state."""
    with preserved_rng_state():
        # speaker 0 for a multi-speaker model; `synthesize` ignores it for a single-speaker one
        return [synthesize(vits, tokenizer, text, seed=seed, speaker_id=0)[0] for text in texts]


def reference_rms_from_dataset(eval_dataset, sampling_rate: int, max_clips: int | None = None) -> float:
    """Mean RMS of the eval recordings, the loudness the synthesized sentences are compared with.

    Args:
        eval_dataset (`datasets.Dataset`): cached features with a `waveform` column (float32 at the model's rate).
        sampling_rate (`int`): the recordings' (and the model's) sampling rate.
        max_clips (`int`, *optional*): read only the first `max_clips` clips (large eval sets).

    Returns:
        `float`: the mean over clips of `recipe.evaluation.metrics.amplitude_stats`'s `rms`, so that the recordings and the
        synthesized sentences are measured the same way.
    """
    if "waveform" not in eval_dataset.column_names:
        raise ValueError(
            f"The eval dataset has no 'waveform' column (it has {eval_dataset.column_names}); "
            "build it with recipe.data.pipeline.prepare_datasets"
        )
    num_clips = len(eval_dataset) if max_clips is None else min(max_clips, len(eval_dataset))
    if num_clips == 0:
        raise ValueError("The eval dataset is empty: no recordings to take the reference RMS from")
    waveforms = eval_dataset.select(range(num_clips)).select_columns(["waveform"]).with_format("numpy")
    rms_values = []
    for index, row in enumerate(waveforms):
        try:
            rms_values.append(amplitude_stats(row["waveform"], sampling_rate)["rms"])
        except ValueError as error:
            raise ValueError(f"Eval clip {index}: {error}") from error
    reference = float(np.mean(rms_values))
    if not (math.isfinite(reference) and reference > 0):
        raise ValueError(f"The eval recordings have no usable loudness (mean RMS {reference}): are they silent?")
    return reference


class AmplitudeMonitorCallback(CheckpointAwareCallback):
    """Stops a run whose synthesized voice fades to silence (or blows up), naming the last healthy checkpoint.

    At each evaluation the main process synthesizes `texts` with `model.vits` through the inference path and
    compares their mean RMS with `reference_rms` (`recipe.evaluation.metrics.amplitude_status`): OK within `warning_ratio`
    of the reference, WARNING up to `critical_ratio`, CRITICAL beyond. The result goes to
        - the log (a line per evaluation),
        - the evaluation's metrics and `state.log_history` as `eval_amplitude_rms`, `eval_amplitude_peak`,
          `eval_amplitude_ratio` (RMS / reference), `eval_amplitude_reference_rms`, `eval_amplitude_status`
          (0 OK, 1 WARNING, 2 CRITICAL),
        - `amplitude_status.json` in each checkpoint saved after it.
    After `patience` CRITICAL evaluations in a row it raises `AmplitudeCollapseError` on every rank, unless the run
    is at its last step or over: then it logs the CRITICAL status at CRITICAL level, and the run ends with its model
    and results written. Each trained step counts once: the final evaluation of a step already measured reports
    its figures without adding to the streak.

    Args:
        tokenizer (`VitsTokenizer`): the model's tokenizer; `texts` are passed to it as they are.
        texts (`list[str]`): the fixed sentences (normalized like the training texts).
        reference_rms (`float`): RMS of the eval recordings (`reference_rms_from_dataset`).
        warning_ratio (`float`, *optional*, defaults to 0.3): relative RMS deviation above which it is WARNING.
        critical_ratio (`float`, *optional*, defaults to 0.6): relative RMS deviation above which it is CRITICAL.
        patience (`int`, *optional*, defaults to 3): CRITICAL evaluations in a row that stop the run; 0 never stops.
        sampling_rate (`int`, *optional*, defaults to 16000): the model's sampling rate (for durations and silence).
        seed (`int`, *optional*, defaults to 0): seed of the sampled noise, the same at every evaluation so that
            the figures move only with the weights.
    """

    def __init__(
        self,
        tokenizer,
        texts: list[str],
        reference_rms: float,
        warning_ratio: float = 0.3,
        critical_ratio: float = 0.6,
        patience: int = 3,
        sampling_rate: int = 16000,
        seed: int = 0,
    ):
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be a non-empty list of non-empty sentences, got {texts!r}")
        if not (math.isfinite(reference_rms) and reference_rms > 0):
            raise ValueError(f"reference_rms must be a positive number, got {reference_rms}")
        if not 0 <= warning_ratio <= critical_ratio:
            raise ValueError(f"Need 0 <= warning_ratio <= critical_ratio, got {warning_ratio} and {critical_ratio}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0 (0 never stops), got {patience}")
        self.tokenizer = tokenizer
        self.texts = list(texts)
        self.reference_rms = float(reference_rms)
        self.warning_ratio = warning_ratio
        self.critical_ratio = critical_ratio
        self.patience = patience
        self.sampling_rate = sampling_rate
        self.seed = seed
        # Run state, saved in each checkpoint's amplitude_status.json and restored on resume.
        self.critical_streak = 0
        self.last_result: dict | None = None
        self.history: list[dict] = []
        self.healthy_checkpoints: list[dict] = []
        # the checkpoint a resumed run restarts from, as the trainer names it (`resuming_from`)
        self.resume_checkpoint: str | None = None
        # set at the end of training: evaluations after it (the final one) report but never stop anything
        self.training_ended = False
        # the step whose checkpoint `save_to_checkpoint` wrote (VitsTrainer, before the folder's rename)
        self._saved_step: int | None = None

    # -- measuring ------------------------------------------------------------------------------------------------

    def measure(self, vits) -> dict:
        """Synthesize the sentences and classify their loudness. Returns the figures and the status."""
        sentences = []
        for text, waveform in zip(self.texts, synthesize_texts(vits, self.tokenizer, self.texts, self.seed)):
            stats = amplitude_stats(waveform, self.sampling_rate)
            sentences.append({"text": text, **{k: stats[k] for k in ("rms", "peak", "duration_s", "silence_ratio")}})
        rms = float(np.mean([s["rms"] for s in sentences]))
        peak = float(max(s["peak"] for s in sentences))
        status = amplitude_status(rms, self.reference_rms, self.warning_ratio, self.critical_ratio)
        return {"status": status, "rms": rms, "peak": peak, "sentences": sentences}

    def _shared_verdict(self, args, result: dict | None) -> dict:
        """The main process's status, RMS and peak, broadcast to every rank so that all take the same decision."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return result
        packed = torch.zeros(3, dtype=torch.float64, device=args.device)
        if result is not None:
            packed = torch.tensor(
                [STATUS_CODES[result["status"]], result["rms"], result["peak"]],
                dtype=torch.float64,
                device=args.device,
            )
        torch.distributed.broadcast(packed, src=0)
        if result is not None:
            return result
        code, rms, peak = packed.tolist()
        return {"status": STATUS_NAMES[int(code)], "rms": rms, "peak": peak, "sentences": []}

    # -- callback events ------------------------------------------------------------------------------------------

    def resuming_from(self, checkpoint: str) -> None:
        """Called by `VitsTrainer` before `on_train_begin` when it resumes from `checkpoint` (any folder)."""
        self.resume_checkpoint = checkpoint

    def on_train_begin(self, args, state, control, **kwargs):
        self.training_ended = False
        # On resume, pick up the streak and the healthy checkpoints from the checkpoint the run restarts from.
        if state.global_step == 0:
            return
        if self.resume_checkpoint is None:
            # a trainer other than VitsTrainer does not say which checkpoint it resumed from; guessing
            # output_dir/checkpoint-N could read another run's history
            logger.warning(
                f"Amplitude monitor: training resumes at step {state.global_step} but the trainer did not name the "
                "checkpoint (VitsTrainer does; else call resuming_from(checkpoint) before training): starting with "
                "an empty history"
            )
            return
        path = os.path.join(self.resume_checkpoint, AMPLITUDE_STATUS_FILE)
        if not os.path.isfile(path):
            logger.info(f"Amplitude monitor: no {path}; starting with an empty history at step {state.global_step}")
            return
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        self.critical_streak = int(saved["critical_streak"])
        self.last_result = saved.get("last_evaluation")
        self.history = list(saved.get("history", []))
        self.healthy_checkpoints = list(saved.get("healthy_checkpoints", []))
        logger.info(f"Amplitude monitor: resumed from {path} (CRITICAL streak {self.critical_streak})")

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        """Measures the voice; each trained step counts once towards the CRITICAL streak.

        An evaluation of a step already measured (the final evaluation after training, of the last step's or the
        best checkpoint's weights) reports its figures but leaves the history and the streak alone. Evaluations at
        the last step or after training never raise: the run is over, and its results must be written; a CRITICAL
        status is logged at CRITICAL level instead.
        """
        if model is None:
            raise ValueError("AmplitudeMonitorCallback needs the model passed to on_evaluate (a VitsForTraining)")
        result = self.measure(model.vits) if state.is_world_process_zero else None
        result = self._shared_verdict(args, result)
        ratio = result["rms"] / self.reference_rms
        entry = {
            "step": state.global_step,
            "status": result["status"],
            "rms": result["rms"],
            "peak": result["peak"],
            "ratio": ratio,
            "reference_rms": self.reference_rms,
            "sentences": result["sentences"],
        }
        already_counted = bool(self.history) and self.history[-1]["step"] == state.global_step
        run_over = self.training_ended or (state.max_steps > 0 and state.global_step >= state.max_steps)
        self.last_result = entry
        if not already_counted:
            self.history.append({k: v for k, v in entry.items() if k != "sentences"})
            self.critical_streak = self.critical_streak + 1 if entry["status"] == "CRITICAL" else 0

        figures = {
            "eval_amplitude_rms": entry["rms"],
            "eval_amplitude_peak": entry["peak"],
            "eval_amplitude_ratio": ratio,
            "eval_amplitude_reference_rms": self.reference_rms,
            "eval_amplitude_status": STATUS_CODES[entry["status"]],
        }
        if metrics is not None:
            metrics.update(figures)
        self._add_to_log_history(state, figures)

        line = (
            f"Amplitude monitor at step {state.global_step}: {entry['status']} - synthesized RMS {entry['rms']:.4f} "
            f"({ratio:.0%} of the eval recordings' {self.reference_rms:.4f}), peak {entry['peak']:.3f}"
        )
        if already_counted:
            line += " (final evaluation: this step is already counted)"
        elif entry["status"] == "CRITICAL":
            line += f"; CRITICAL {self.critical_streak} time(s) in a row"
            if self.patience and not run_over:
                line += f", the run stops at {self.patience}"
        if state.is_world_process_zero:
            (logger.info if entry["status"] == "OK" else logger.warning)(line)

        if entry["status"] == "CRITICAL" and run_over:
            # once per step and status: the final evaluation of a step already logged CRITICAL does not repeat it
            repeated = already_counted and self.history[-1]["status"] == "CRITICAL"
            if state.is_world_process_zero and not repeated:
                logger.critical(self._critical_at_end_message(entry))
        elif self.patience and self.critical_streak >= self.patience and not already_counted:
            control.should_training_stop = True
            raise AmplitudeCollapseError(self._collapse_message())
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.training_ended = True
        return control

    def save_to_checkpoint(self, folder: str, checkpoint: str, args, state) -> None:
        """Writes `amplitude_status.json` into `folder`, the checkpoint being written that becomes `checkpoint`.

        Called by `VitsTrainer` before it renames the folder into place, so that the status is part of the
        complete checkpoint; `on_save` does the same for other trainers, after their save.
        """
        self._record_checkpoint(checkpoint, state.global_step)
        if args.should_save:
            self._write_status(folder)

    def on_save(self, args, state, control, **kwargs):
        if self._saved_step == state.global_step:
            return control  # written into the checkpoint before it was renamed into place
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self._record_checkpoint(checkpoint, state.global_step)
        if args.should_save and os.path.isdir(checkpoint):
            self._write_status(checkpoint)
        return control

    def _record_checkpoint(self, checkpoint: str, step: int) -> None:
        status = self.last_result["status"] if self.last_result else None
        if status in HEALTHY_STATUSES:
            self.healthy_checkpoints.append({"checkpoint": checkpoint, "step": step, "status": status})
        self._saved_step = step

    def _write_status(self, folder: str) -> None:
        payload = {
            # None: no evaluation ran before this checkpoint, so its health is unknown
            "status": self.last_result["status"] if self.last_result else None,
            "evaluated_at_step": self.last_result["step"] if self.last_result else None,
            "reference_rms": self.reference_rms,
            "warning_ratio": self.warning_ratio,
            "critical_ratio": self.critical_ratio,
            "patience": self.patience,
            "critical_streak": self.critical_streak,
            "last_evaluation": self.last_result,
            "history": self.history,
            "healthy_checkpoints": self.healthy_checkpoints,
        }
        with open(os.path.join(folder, AMPLITUDE_STATUS_FILE), "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False)

    # -- helpers --------------------------------------------------------------------------------------------------

    @staticmethod
    def _add_to_log_history(state, figures: dict):
        # The Trainer logged the eval metrics just before `on_evaluate`: add the figures to that entry.
        last = state.log_history[-1] if state.log_history else None
        if last is not None and last.get("step") == state.global_step and any(k.startswith("eval_") for k in last):
            last.update(figures)
        else:
            state.log_history.append({**figures, "step": state.global_step})

    def last_healthy_checkpoint(self) -> dict | None:
        """The newest checkpoint saved with an OK / WARNING status that is still on disk (or None)."""
        for record in reversed(self.healthy_checkpoints):
            if os.path.isdir(record["checkpoint"]):
                return record
        return None

    def _critical_at_end_message(self, entry: dict) -> str:
        healthy = self.last_healthy_checkpoint()
        where = (
            f"The last healthy checkpoint is {healthy['checkpoint']} (status {healthy['status']} at step "
            f"{healthy['step']})."
            if healthy is not None
            else "No checkpoint with a healthy status (OK or WARNING) is on disk."
        )
        return (
            f"The trained model's synthesized speech is CRITICAL at the end of the run (step {entry['step']}): RMS "
            f"{entry['rms']:.4f}, {entry['ratio']:.0%} of the eval recordings' {self.reference_rms:.4f}, "
            f"CRITICAL {self.critical_streak} evaluation(s) in a row. The model is saved and its results written, "
            f"but listen before using it: it may be fading to silence (or clipping). {where}"
        )

    def _collapse_message(self) -> str:
        critical = self.history[-self.critical_streak :]
        figures = "; ".join(
            f"step {h['step']}: RMS {h['rms']:.4f} ({h['ratio']:.0%} of reference), peak {h['peak']:.3f}"
            for h in critical
        )
        healthy = self.last_healthy_checkpoint()
        if healthy is not None:
            where = (
                f"The last healthy checkpoint is {healthy['checkpoint']} (status {healthy['status']} at step "
                f"{healthy['step']}): resume from it (--resume_from_checkpoint) with a lower learning rate, or "
                "turn on --amplitude_loss_weight / --normalized_mel_loss / --l2sp_weight."
            )
        elif self.healthy_checkpoints:
            where = (
                f"The checkpoints saved with a healthy status ({', '.join(r['checkpoint'] for r in self.healthy_checkpoints)}) "
                "are no longer on disk (save_total_limit?); no healthy checkpoint is left."
            )
        else:
            where = "No checkpoint with a healthy status (OK or WARNING) was saved in this run."
        return (
            f"The synthesized speech was CRITICAL at {self.critical_streak} evaluations in a row (patience "
            f"{self.patience}): its RMS is more than {self.critical_ratio:.0%} off the eval recordings' RMS "
            f"{self.reference_rms:.4f} - {figures}. The model is fading to silence (or clipping); training stopped. "
            + where
        )


class AudioSamplesCallback(TrainerCallback):
    """Writes audio samples and mel images of a few sentences to TensorBoard at each evaluation.

    The writer is a `SummaryWriter` of its own in `log_dir` (TensorBoard shows it beside the `TensorBoardCallback`
    run). When an `AmplitudeMonitorCallback` ran before it in the same evaluation, its `eval_amplitude_*` figures
    are written as scalars too: the Trainer logs the eval metrics to TensorBoard before callbacks add to them.

    Args:
        tokenizer (`VitsTokenizer`): the model's tokenizer.
        texts (`list[str]`): sentences to synthesize; the first `max_samples` are used.
        sampling_rate (`int`): the model's sampling rate.
        max_samples (`int`, *optional*, defaults to 2): sentences per evaluation.
        log_dir (`str`, *optional*): TensorBoard folder; defaults to `$TENSORBOARD_LOGGING_DIR`, else
            `<output_dir>/runs/audio_samples`.
        seed (`int`, *optional*, defaults to 0): seed of the sampled noise (the same at every evaluation).
    """

    def __init__(
        self,
        tokenizer,
        texts: list[str],
        sampling_rate: int,
        max_samples: int = 2,
        log_dir: str | None = None,
        seed: int = 0,
    ):
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts must be a non-empty list of sentences, got {texts!r}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.tokenizer = tokenizer
        self.texts = list(texts)[:max_samples]
        self.sampling_rate = sampling_rate
        self.log_dir = log_dir
        self.seed = seed
        self.writer = None

    def _get_writer(self, args):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = self.log_dir or os.environ.get("TENSORBOARD_LOGGING_DIR")
            log_dir = log_dir or os.path.join(args.output_dir, "runs", "audio_samples")
            self.log_dir = log_dir
            self.writer = SummaryWriter(log_dir=log_dir)
        return self.writer

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not state.is_world_process_zero:
            return control
        if model is None:
            raise ValueError("AudioSamplesCallback needs the model passed to on_evaluate (a VitsForTraining)")
        import matplotlib

        matplotlib.use("Agg")  # no display on training machines
        import matplotlib.pyplot as plt

        writer = self._get_writer(args)
        step = state.global_step
        spectrogram_config = SpectrogramConfig.from_model_config(model.vits.config)
        waveforms = synthesize_texts(model.vits, self.tokenizer, self.texts, self.seed)
        for index, (text, waveform) in enumerate(zip(self.texts, waveforms)):
            audio = torch.from_numpy(np.clip(waveform, -1.0, 1.0)).unsqueeze(0)
            writer.add_audio(f"samples/{index}", audio, step, sample_rate=self.sampling_rate)
            writer.add_text(f"samples/{index}/text", text, step)
            log_mel = log_mel_spectrogram(torch.from_numpy(waveform), spectrogram_config).numpy()
            figure, axis = plt.subplots(figsize=(8, 3))
            image = axis.imshow(log_mel, aspect="auto", origin="lower", interpolation="none")
            figure.colorbar(image, ax=axis, label="log mel")
            axis.set_title(f"step {step}: {text[:60]}")
            axis.set_xlabel("frame")
            axis.set_ylabel("mel bin")
            figure.tight_layout()
            writer.add_figure(f"mel/{index}", figure, step, close=True)
        for key, value in (metrics or {}).items():
            if key.startswith("eval_amplitude_"):
                writer.add_scalar(f"eval/{key[len('eval_') :]}", value, step)
        writer.flush()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return control


class ProgressCallback(TrainerCallback):
    """One log line per logging step: step, loss (and its components), samples/s, peak GPU memory, ETA.

    Samples/s is measured over the last logging window (`per_device_train_batch_size x gradient_accumulation_steps
    x world_size` samples per optimizer step); the ETA extrapolates the mean step time since training (re)started.
    Lines go to the `recipe.training.callbacks` logger at INFO, on the main process only; the last one is kept in `last_line`.
    """

    # Loss components logged by the VITS trainer under these stable names.
    COMPONENTS = ("mel", "kl", "duration", "generator", "feature_matching", "amplitude", "l2sp", "discriminator")

    def __init__(self):
        self.last_line: str | None = None
        self._start_time = self._window_time = None
        self._start_step = self._window_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_time = self._window_time = time.perf_counter()
        self._start_step = self._window_step = state.global_step
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs or self._start_time is None:
            return control
        now = time.perf_counter()
        parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        parts += [f"{name} {logs[name]:.4f}" for name in self.COMPONENTS if isinstance(logs.get(name), (int, float))]
        steps_in_window = state.global_step - self._window_step
        if steps_in_window > 0 and now > self._window_time:
            samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            parts.append(f"{steps_in_window * samples_per_step / (now - self._window_time):.2f} samples/s")
        if torch.cuda.is_available():
            parts.append(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        steps_done = state.global_step - self._start_step
        if steps_done > 0 and state.max_steps > 0:
            seconds_left = (now - self._start_time) / steps_done * max(0, state.max_steps - state.global_step)
            parts.append(f"ETA {datetime.timedelta(seconds=round(seconds_left))}")
        self._window_time, self._window_step = now, state.global_step
        self.last_line = " | ".join(parts)
        logger.info(self.last_line)
        return control
