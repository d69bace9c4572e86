"""Trainer callbacks for what a run shows while it trains: audio samples in TensorBoard, log lines, progress bars.

- `AudioSamplesCallback`: audio and mel images of a few sentences in TensorBoard at each evaluation.
- `TrainingLogLineCallback`: one log line per logging step with the loss, samples/s, peak GPU memory and ETA, and
  one per evaluation.
- `ProgressBarCallback`: transformers' progress bar without the log dicts it prints; on a terminal only.
- `show_progress_as_log_lines`: makes a trainer's log lines the recipe's alone, each printed once
  (`configure_progress_bars` does the same for the bars of transformers, datasets and the Hub).

The amplitude monitor, which can stop a run, has a module of its own (`recipe.training.amplitude_monitor`).
Every callback receives the unwrapped `VitsForTraining` as `model` and synthesizes with `model.vits`; under DDP only
the main process synthesizes and writes.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time

import datasets
import huggingface_hub
import numpy as np
import torch
import transformers
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.training.amplitude_probe import synthesize_texts
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.training.listening import LISTENING_PREFIXES
from recipe.voices.speaker_map import write_speaker_map

logger = logging.getLogger(__name__)

# Figures that callbacks add to the eval metrics after the Trainer has logged them (so this writer writes them)
SCALAR_PREFIXES = ("eval_amplitude_", *LISTENING_PREFIXES)


class AudioSamplesCallback(TrainerCallback):
    """Writes audio samples and mel images of a few sentences to TensorBoard at each evaluation.

    The writer is a `SummaryWriter` of its own in `log_dir` (TensorBoard shows it beside the `TensorBoardCallback`
    run). When an `AmplitudeMonitorCallback` (and a `ListeningCallback`) ran before it in the same evaluation, their
    `eval_amplitude_*` (and listening) figures are written as scalars too: the Trainer logs the eval metrics to
    TensorBoard before callbacks add to them.

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
            if key.startswith(SCALAR_PREFIXES):
                writer.add_scalar(f"eval/{key[len('eval_') :]}", value, step)
        writer.flush()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return control


class TrainingLogLineCallback(TrainerCallback):
    """One log line per logging step: step, loss (and its components), learning rate, gradient norm, samples/s, peak
    GPU memory, ETA; and one per evaluation: step, the eval loss and its components, seconds taken.

    Samples/s is measured over the last logging window (`per_device_train_batch_size x gradient_accumulation_steps
    x world_size` samples per optimizer step); the ETA extrapolates the mean step time since training (re)started.
    Lines go to the `recipe.training.callbacks` logger at INFO, on the main process only; the last training line is
    kept in `last_line`, the last evaluation's in `last_eval_line`. They are the run's only printed logs:
    `show_progress_as_log_lines` removes transformers' printed dicts, which repeated them.
    """

    # Loss components logged by the VITS trainer under these stable names.
    COMPONENTS = ("mel", "kl", "duration", "generator", "feature_matching", "amplitude", "l2sp", "discriminator")

    def __init__(self):
        self.last_line: str | None = None
        self.last_eval_line: str | None = None
        self._start_time = self._window_time = None
        self._start_step = self._window_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_time = self._window_time = time.perf_counter()
        self._start_step = self._window_step = state.global_step
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        if "eval_loss" in logs:
            self.last_eval_line = self._eval_line(state, logs)
            logger.info(self.last_eval_line)
        elif "loss" in logs and self._start_time is not None:
            self.last_line = self._training_line(args, state, logs)
            logger.info(self.last_line)
        return control

    def _training_line(self, args, state, logs: dict) -> str:
        now = time.perf_counter()
        parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        parts += self._components(logs, prefix="")
        if isinstance(logs.get("learning_rate"), (int, float)):
            parts.append(f"lr {logs['learning_rate']:.3g}")
        if isinstance(logs.get("grad_norm"), (int, float)):
            parts.append(f"grad norm {logs['grad_norm']:.3g}")
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
        return " | ".join(parts)

    def _eval_line(self, state, logs: dict) -> str:
        parts = [f"eval at step {state.global_step}", f"loss {logs['eval_loss']:.4f}"]
        parts += self._components(logs, prefix="eval_")
        if isinstance(logs.get("eval_runtime"), (int, float)):
            parts.append(f"{logs['eval_runtime']:.1f} s")
        return " | ".join(parts)

    def _components(self, logs: dict, prefix: str) -> list[str]:
        values = ((name, logs.get(prefix + name)) for name in self.COMPONENTS)
        return [f"{name} {value:.4f}" for name, value in values if isinstance(value, (int, float))]


class ProgressBarCallback(ProgressCallback):
    """transformers' progress bar of training and evaluation, without the log dicts it prints under it
    (`TrainingLogLineCallback` writes the lines); log records are written above the bar while it runs, instead of
    breaking it. For a terminal: `show_progress_as_log_lines` adds it only when `--disable_tqdm` is off.
    """

    def __init__(self):
        super().__init__()
        self._redirect = contextlib.ExitStack()

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if state.is_world_process_zero:
            self._redirect.enter_context(logging_redirect_tqdm())

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._redirect.close()
        super().on_train_end(args, state, control, **kwargs)


def show_progress_as_log_lines(trainer) -> None:
    """Make `trainer`'s printed logs the recipe's lines alone, each once: transformers' `PrinterCallback` and
    `ProgressCallback` printed every log as a dict besides `TrainingLogLineCallback`'s line. The bar stays, on a
    terminal only (`ProgressBarCallback` unless `--disable_tqdm`); a `TrainingLogLineCallback` is added when the
    trainer has none.
    """
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(ProgressBarCallback)
    if not any(isinstance(callback, TrainingLogLineCallback) for callback in trainer.callback_handler.callbacks):
        trainer.add_callback(TrainingLogLineCallback)


def configure_progress_bars(on_terminal: bool) -> None:
    """The progress bars of the libraries a command uses: transformers' own ("Loading weights", "Writing model
    shards" at every save: a blink for a VITS model) never; those of datasets (preprocessing) and of the Hub
    (downloads) only `on_terminal`, since in a log file each redraw of a bar is one more line.

    A hook rather than `transformers.utils.logging.disable_progress_bar()`, which turns the Hub's bars off too.
    """
    transformers.utils.logging.set_tqdm_hook(_no_bar)
    # both ways: the switches are global, and an earlier run in the same process may have turned them off
    if on_terminal:
        datasets.utils.logging.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()
    else:
        datasets.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()


def _no_bar(factory, args, kwargs):
    return transformers.utils.logging.EmptyTqdm(*args, **kwargs)


class SpeakerMapCallback(CheckpointAwareCallback):
    """Writes a multi-speaker run's speaker map (`recipe.voices.speaker_map`) into every checkpoint, so that a
    checkpoint folder says which `speaker_id` is whom, as the final folder does."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def save_to_checkpoint(self, folder: str, checkpoint: str, args, state) -> None:
        write_speaker_map(folder, self.mapping)
