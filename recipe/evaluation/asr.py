"""Intelligibility: speech recognition (a `transformers` pipeline or a CTranslate2 Whisper folder through
faster-whisper) and the character / word error rates of its transcript (jiwer)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from recipe.errors import InputError, MissingInputError
from recipe.hub_access import check_before_loading


class AsrUnavailableError(InputError, RuntimeError):
    """The speech-recognition model or a package it needs cannot be loaded; the message says which and how to fix."""


def _require_jiwer():
    try:
        import jiwer
    except ImportError as error:
        raise AsrUnavailableError("CER / WER need the `jiwer` package: pip install jiwer") from error
    return jiwer


def is_ctranslate2_whisper(path: str) -> bool:
    """A CTranslate2 Whisper folder (as faster-whisper runs it): `model.bin`, `config.json` and a tokenizer file."""
    return os.path.isdir(path) and all(
        os.path.isfile(os.path.join(path, name)) for name in ("model.bin", "config.json", "tokenizer.json")
    )


@dataclass
class FasterWhisperAsr:
    """A CTranslate2 Whisper model run by faster-whisper, with the call `transcribe` makes of a pipeline."""

    model: object
    sampling_rate: int = 16000

    def __call__(self, samples: np.ndarray) -> str:
        # beam search and no previous-text conditioning: each clip is scored alone, the same way every time
        segments, _ = self.model.transcribe(samples, beam_size=5, condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments).strip()


def load_asr(model_name_or_path: str, device: str | torch.device = "cpu", flag: str = "--asr_model"):
    """A speech recognizer for CER / WER: a `transformers` "automatic-speech-recognition" pipeline (Whisper, MMS /
    wav2vec2 CTC, ...), or, for a CTranslate2 Whisper folder (`model.bin` + `config.json` + `tokenizer.json`), that
    model run by faster-whisper.

    Raises:
        `AsrUnavailableError` naming the model when it cannot be found (a path that does not exist) or loaded, or
        the missing package; `UnavailableError` for a Hub id while the Hub is unreachable or, offline, not in the
        cache (`recipe.hub_access.check_before_loading`). The messages name `flag`, the option that gave the model.
    """
    _require_jiwer()
    try:
        check_before_loading(model_name_or_path, flag)
    except MissingInputError as error:
        raise AsrUnavailableError(str(error)) from error
    if is_ctranslate2_whisper(model_name_or_path):
        try:
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise AsrUnavailableError(
                f"{flag} {model_name_or_path!r} is a CTranslate2 Whisper folder, which needs faster-whisper: "
                'pip install -e ".[real-voice]"'
            ) from error
        device_type = torch.device(device).type
        return FasterWhisperAsr(WhisperModel(model_name_or_path, device=device_type, compute_type="float32"))
    from transformers import pipeline

    try:
        return pipeline("automatic-speech-recognition", model=model_name_or_path, device=torch.device(device))
    except ImportError as error:
        raise AsrUnavailableError(
            f"{flag} {model_name_or_path!r} needs a package that is not installed: {error}"
        ) from error
    except (OSError, ValueError, KeyError) as error:
        raise AsrUnavailableError(
            f"Could not load the speech-recognition model {flag} {model_name_or_path!r} (a local folder with "
            f"a model and its processor, a CTranslate2 Whisper folder, or a Hub id reachable from here): {error}"
        ) from error


def transcribe(asr, waveform: np.ndarray, sampling_rate: int) -> str:
    """Transcribe one clip, resampled to the rate the recognizer reads."""
    from recipe.audio import as_mono_float, resample

    if isinstance(asr, FasterWhisperAsr):
        return asr(resample(as_mono_float(waveform).astype(np.float32), sampling_rate, asr.sampling_rate))
    target_rate = asr.feature_extractor.sampling_rate
    samples = resample(as_mono_float(waveform).astype(np.float32), sampling_rate, target_rate)
    return asr({"raw": samples, "sampling_rate": target_rate})["text"]


def normalize_for_scoring(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace: ASR output and reference are compared on words only."""
    jiwer = _require_jiwer()
    transform = jiwer.Compose(
        [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
    )
    return transform(text)


def error_rates(reference: str, hypothesis: str) -> dict[str, float]:
    """Character and word error rates of `hypothesis` against `reference`, after `normalize_for_scoring`.

    Returns:
        `dict[str, float]`: `cer` and `wer` (0 is perfect; can exceed 1 with many insertions).
    """
    jiwer = _require_jiwer()
    reference, hypothesis = normalize_for_scoring(reference), normalize_for_scoring(hypothesis)
    if not reference:
        raise ValueError("The reference text is empty after normalization: no error rate can be computed")
    return {"cer": float(jiwer.cer(reference, hypothesis)), "wer": float(jiwer.wer(reference, hypothesis))}
