"""Parity of an export: the runtime's waveform against `VitsModel`'s for the same text, noise off.

With the noise scales at 0 both sides are deterministic, so they should give the same samples up to float rounding:
at most `MAX_ABS_DIFFERENCE` apart and the same length (a length that differs means a duration was rounded the
other way, or the runtime read other ids).
"""

from __future__ import annotations

import contextlib

import numpy as np

MAX_ABS_DIFFERENCE = 1e-3


@contextlib.contextmanager
def noise_off(model):
    """`model` (a `VitsModel`) with its noise scales at 0 and speaking rate 1 for the duration of the block."""
    saved = model.noise_scale, model.noise_scale_duration, model.speaking_rate
    model.noise_scale, model.noise_scale_duration, model.speaking_rate = 0.0, 0.0, 1.0
    try:
        yield model
    finally:
        model.noise_scale, model.noise_scale_duration, model.speaking_rate = saved


def reference_waveform(model, tokenizer, text: str, speaker_id: int | None = None) -> tuple[np.ndarray, float]:
    """`VitsModel`'s waveform for `text` with noise off, through the recipe's inference path
    (`recipe.voices.synthesis.synthesize`: the training tokenization), and the seconds the forward took."""
    from recipe.voices.synthesis import synthesize

    with noise_off(model):
        return synthesize(model, tokenizer, text, speaker_id=speaker_id)


def compare(waveform: np.ndarray, reference: np.ndarray) -> dict:
    """How far `waveform` is from `reference`: `samples`, `reference_samples`, `same_length`, `max_abs_difference`
    (over the common length; `inf` for a non-finite waveform) and `passed` (same length, difference within
    `MAX_ABS_DIFFERENCE`)."""
    waveform = np.asarray(waveform, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    common = min(waveform.size, reference.size)
    if not np.all(np.isfinite(waveform)):
        difference = float("inf")
    elif common == 0:
        difference = float("nan")
    else:
        difference = float(np.max(np.abs(waveform[:common] - reference[:common])))
    same_length = waveform.size == reference.size
    return {
        "samples": int(waveform.size),
        "reference_samples": int(reference.size),
        "same_length": same_length,
        "max_abs_difference": difference,
        "passed": bool(same_length and difference <= MAX_ABS_DIFFERENCE),
    }
