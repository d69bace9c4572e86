"""Screening by an ASR transcript (--screen_asr_model): a clip whose recognized speech is more than
--max_transcript_cer (character error rate) away from its text is dropped as `transcript_mismatch`.

    asr = load_screening_asr(data_args)     # None when the flag is off; raises before any audio is featurized
    cers = mark_transcript_mismatches(columns["drop_reason"], waveform_of, texts, asr, rate, max_cer)

It runs in the report (`recipe.data.report.split_report`), after featurizing, on the clips every other check kept,
reading their cached (trimmed) waveforms at the model's sampling rate; `recipe.evaluation.asr.transcribe` resamples
to the recognizer's rate. Both sides are normalized as `python -m recipe.compare` scores them
(`recipe.evaluation.asr.normalize_for_scoring`: lowercase, no punctuation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from recipe.evaluation.asr import error_rates, load_asr, normalize_for_scoring, transcribe

logger = logging.getLogger(__name__)

# The flag named in the recognizer's loading errors.
FLAG = "--screen_asr_model"


def load_screening_asr(data_args):
    """The recognizer of --screen_asr_model (on the GPU when there is one), or None when the flag is off.

    Raises:
        `AsrUnavailableError` (an `InputError`): one line naming --screen_asr_model and the model, when it cannot be
        found or loaded; `UnavailableError` for a Hub id while the Hub cannot be reached.
    """
    name = getattr(data_args, "screen_asr_model", None)
    if not name:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    logger.info("Loading the screening speech recognizer %s on %s", name, device)
    return load_asr(name, device, flag=FLAG)


def transcript_cer(asr, waveform: np.ndarray, sampling_rate: int, source_text: str) -> float:
    """The character error rate of `asr`'s transcript of `waveform` against `source_text`, both normalized for
    scoring; NaN when the text is empty once normalized (only punctuation: nothing to compare with)."""
    if not normalize_for_scoring(source_text):
        return float("nan")
    hypothesis = transcribe(asr, waveform, sampling_rate)
    return error_rates(source_text, hypothesis)["cer"]


def mark_transcript_mismatches(
    reasons: list[str],
    waveform_of: Callable[[int], np.ndarray],
    texts: list[str],
    asr,
    sampling_rate: int,
    max_cer: float,
) -> list[float]:
    """Set `reasons[i]` to `transcript_mismatch` for each kept clip (`reasons[i] == ""`) whose transcript CER is above
    `max_cer`. `waveform_of(i)` reads clip i's cached waveform (called for the kept clips only), `texts[i]` is its
    text as the source wrote it. Returns every clip's CER (NaN where not measured: dropped clips, or `asr` None)."""
    cers = [float("nan")] * len(reasons)
    if asr is None:
        return cers
    for index, reason in enumerate(reasons):
        if reason:  # no recognizer run on a clip another check dropped
            continue
        cer = transcript_cer(asr, waveform_of(index), sampling_rate, texts[index])
        cers[index] = cer
        if not math.isnan(cer) and cer > max_cer:
            reasons[index] = "transcript_mismatch"
    return cers
