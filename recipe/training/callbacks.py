"""Trainer callbacks for what a run shows while it trains: audio samples in TensorBoard, and log lines.

- `AudioSamplesCallback`: audio and mel images of a few sentences in TensorBoard at each evaluation.
- `TrainingLogLineCallback`: one log line per logging step with the loss, samples/s, peak GPU memory and ETA.

The amplitude monitor, which can stop a run, has a module of its own (`recipe.training.amplitude_monitor`).
Every callback receives the unwrapped `VitsForTraining` as `model` and synthesizes with `model.vits`; under DDP only
the main process synthesizes and writes.
"""

from __future__ import annotations

import datetime
import logging
import os
import time

import numpy as np
import torch
from transformers import TrainerCallback

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.training.amplitude_probe import synthesize_texts

logger = logging.getLogger(__name__)


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


class TrainingLogLineCallback(TrainerCallback):
    """One log line per logging step: step, loss (and its components), samples/s, peak GPU memory, ETA.

    Samples/s is measured over the last logging window (`per_device_train_batch_size x gradient_accumulation_steps
    x world_size` samples per optimizer step); the ETA extrapolates the mean step time since training (re)started.
    Lines go to the `recipe.training.callbacks` logger at INFO, on the main process only; the last one is kept in
    `last_line`.
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
