"""How loud the model speaks: fixed sentences synthesized through the inference path, classified against the
loudness of the eval recordings, without disturbing the training run's random generators.

- `AmplitudeProbe`: the sentences, the tokenizer, the seed and the reference level; `measure(vits)` synthesizes the
  sentences and returns their figures and status (OK, WARNING, CRITICAL).
- `reference_rms_from_dataset`: the reference level, the mean RMS of the eval recordings.
- `synthesize_texts`: seeded synthesis that leaves the Python, NumPy and torch generators as they were.
"""

from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import torch

from recipe.evaluation.metrics import amplitude_stats, amplitude_status
from recipe.voices.synthesis import synthesize


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
    """Synthesize `texts` with `recipe.voices.synthesis.synthesize` (eval mode, no grad, mode restored), keeping the
    RNG state."""
    with preserved_rng_state():
        # a multi-speaker model reads the sentences with its speakers in turn (text i by speaker i mod N), so the
        # monitor hears several of its voices; `synthesize` ignores the id for a single-speaker model
        speakers = max(1, int(getattr(vits.config, "num_speakers", 1)))
        return [
            synthesize(vits, tokenizer, text, seed=seed, speaker_id=index % speakers)[0]
            for index, text in enumerate(texts)
        ]


def reference_rms_from_dataset(eval_dataset, sampling_rate: int, max_clips: int | None = None) -> float:
    """Mean RMS of the eval recordings, the loudness the synthesized sentences are compared with.

    Args:
        eval_dataset (`datasets.Dataset`): cached features with a `waveform` column (float32 at the model's rate).
        sampling_rate (`int`): the recordings' (and the model's) sampling rate.
        max_clips (`int`, *optional*): read only the first `max_clips` clips (large eval sets).

    Returns:
        `float`: the mean over clips of `recipe.evaluation.metrics.amplitude_stats`'s `rms`, so that the recordings
        and the synthesized sentences are measured the same way.
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


class AmplitudeProbe:
    """Fixed sentences whose loudness, synthesized by the model, is compared with the eval recordings'.

    The status is `recipe.evaluation.metrics.amplitude_status` of the sentences' mean RMS: OK within
    `warning_ratio` of `reference_rms`, WARNING up to `critical_ratio`, CRITICAL beyond.

    Args:
        tokenizer (`VitsTokenizer`): the model's tokenizer; `texts` are passed to it as they are.
        texts (`list[str]`): the fixed sentences (normalized like the training texts).
        reference_rms (`float`): RMS of the eval recordings (`reference_rms_from_dataset`).
        warning_ratio (`float`): relative RMS deviation above which it is WARNING.
        critical_ratio (`float`): relative RMS deviation above which it is CRITICAL.
        sampling_rate (`int`): the model's sampling rate (for durations and silence).
        seed (`int`): seed of the sampled noise, the same at every measure so that the figures move only with the
            weights.
    """

    def __init__(
        self,
        tokenizer,
        texts: list[str],
        reference_rms: float,
        warning_ratio: float,
        critical_ratio: float,
        sampling_rate: int,
        seed: int,
    ):
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be a non-empty list of non-empty sentences, got {texts!r}")
        if not (math.isfinite(reference_rms) and reference_rms > 0):
            raise ValueError(f"reference_rms must be a positive number, got {reference_rms}")
        if not 0 <= warning_ratio <= critical_ratio:
            raise ValueError(f"Need 0 <= warning_ratio <= critical_ratio, got {warning_ratio} and {critical_ratio}")
        self.tokenizer = tokenizer
        self.texts = list(texts)
        self.reference_rms = float(reference_rms)
        self.warning_ratio = warning_ratio
        self.critical_ratio = critical_ratio
        self.sampling_rate = sampling_rate
        self.seed = seed

    def measure(self, vits) -> dict:
        """Synthesize the sentences with `vits` and classify their loudness.

        Returns:
            `dict`: `status` ("OK", "WARNING" or "CRITICAL"), `rms` (mean over the sentences), `peak` (their
            largest), `sentences` (per sentence: `text`, `rms`, `peak`, `duration_s`, `silence_ratio`) and
            `waveforms` (the synthesized sentences, for the listening metrics to score without a second synthesis).
        """
        sentences = []
        waveforms = synthesize_texts(vits, self.tokenizer, self.texts, self.seed)
        for text, waveform in zip(self.texts, waveforms):
            stats = amplitude_stats(waveform, self.sampling_rate)
            sentences.append({"text": text, **{k: stats[k] for k in ("rms", "peak", "duration_s", "silence_ratio")}})
        rms = float(np.mean([s["rms"] for s in sentences]))
        peak = float(max(s["peak"] for s in sentences))
        status = amplitude_status(rms, self.reference_rms, self.warning_ratio, self.critical_ratio)
        return {"status": status, "rms": rms, "peak": peak, "sentences": sentences, "waveforms": waveforms}
