"""Audio metrics as plain functions: one implementation for the trainer's amplitude monitor and `recipe.compare`.

- `amplitude_stats`: loudness, silence and zero-crossing figures of one waveform.
- `amplitude_status`: OK / WARNING / CRITICAL from an RMS and a reference RMS.
- `synthesize`: deterministic, timed inference of one sentence with a `VitsModel`.
- `mel_cepstral_distortion`: MCD between a synthesized clip and a recording, aligned by DTW (the
  `mel-cepstral-distance` package's, Kubichek 1993).
- `duration_ratio`: how much longer (> 1) or shorter (< 1) the synthesized clip is than the recording.
- `load_asr` / `transcribe` / `error_rates`: intelligibility (CER, WER with jiwer) through a `transformers`
  speech-recognition pipeline.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from mel_cepstral_distance import compare_amplitude_spectrograms
from mel_cepstral_distance.computation import get_X_km
from mel_cepstral_distance.helper import ms_to_samples

# A frame is silent when its RMS is below -40 dBFS (full scale = amplitude 1.0).
SILENCE_THRESHOLD_DBFS = -40.0
# Silence is measured on non-overlapping 20 ms frames: short enough to find leading / trailing pauses, long enough
# that the zero crossings of a quiet voiced sound do not count as silence.
SILENCE_FRAME_SECONDS = 0.02
# dBFS reported for digital silence instead of -inf, so that every figure stays valid JSON.
MIN_DBFS = -200.0


def to_dbfs(amplitude: float) -> float:
    """`20 * log10(amplitude)`, floored at `MIN_DBFS` for zero."""
    return max(MIN_DBFS, 20.0 * math.log10(amplitude)) if amplitude > 0 else MIN_DBFS


def _as_mono_float(waveform, name: str = "waveform") -> np.ndarray:
    samples = np.asarray(waveform, dtype=np.float64)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mono signal, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{name} holds NaN or infinite samples")
    return samples


def amplitude_stats(waveform: np.ndarray, sampling_rate: int) -> dict[str, float]:
    """Loudness, silence and zero-crossing figures of a mono waveform in [-1, 1].

    Args:
        waveform (`np.ndarray`): samples of shape `(num_samples,)` (a `(1, num_samples)` array is accepted).
        sampling_rate (`int`): samples per second.

    Returns:
        `dict[str, float]` with
            - `peak`: max |x|; `mean_abs`: mean |x|; `rms`: sqrt(mean x^2); `rms_dbfs`: 20 log10(rms)
              (`MIN_DBFS` for digital silence).
            - `silence_ratio`: share of 20 ms frames whose RMS is below -40 dBFS (a trailing partial frame counts).
            - `leading_silence_s`, `trailing_silence_s`: length of the silent frames before the first and after the
              last non-silent frame (the whole duration for a fully silent clip).
            - `duration_s`: num_samples / sampling_rate.
            - `energy`: sum of x^2 (grows with duration; compare `rms` across clips of different length).
            - `zero_crossing_rate`: share of adjacent sample pairs whose sign differs (0 counts as positive), so a
              sine of frequency f gives 2 f / sampling_rate.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    samples = _as_mono_float(waveform)
    num_samples = samples.size
    if num_samples == 0:
        raise ValueError("waveform is empty: no statistics for a clip of 0 samples")
    duration = num_samples / sampling_rate
    magnitude = np.abs(samples)
    rms = float(np.sqrt(np.mean(samples**2)))

    frame_length = max(1, int(round(SILENCE_FRAME_SECONDS * sampling_rate)))
    num_frames = math.ceil(num_samples / frame_length)
    padded = np.zeros(num_frames * frame_length)
    padded[:num_samples] = samples**2
    frame_power_sums = padded.reshape(num_frames, frame_length).sum(axis=1)
    frame_sizes = np.full(num_frames, frame_length)
    frame_sizes[-1] = num_samples - (num_frames - 1) * frame_length
    frame_rms = np.sqrt(frame_power_sums / frame_sizes)
    silent = frame_rms < 10 ** (SILENCE_THRESHOLD_DBFS / 20)
    voiced = np.flatnonzero(~silent)
    if voiced.size == 0:
        leading = trailing = duration
    else:
        leading = voiced[0] * frame_length / sampling_rate
        trailing = duration - min(num_samples, (voiced[-1] + 1) * frame_length) / sampling_rate

    non_negative = samples >= 0
    crossings = np.count_nonzero(non_negative[1:] != non_negative[:-1])
    return {
        "peak": float(magnitude.max()),
        "mean_abs": float(magnitude.mean()),
        "rms": rms,
        "rms_dbfs": to_dbfs(rms),
        "silence_ratio": float(silent.mean()),
        "leading_silence_s": float(leading),
        "trailing_silence_s": float(trailing),
        "duration_s": float(duration),
        "energy": float(np.sum(samples**2)),
        "zero_crossing_rate": float(crossings / (num_samples - 1)) if num_samples > 1 else 0.0,
    }


def amplitude_status(rms: float, reference_rms: float, warning_ratio: float = 0.3, critical_ratio: float = 0.6) -> str:
    """Classify an RMS against a reference by relative deviation `|rms / reference_rms - 1|`.

    Args:
        rms (`float`): RMS of the synthesized audio.
        reference_rms (`float`): RMS it should have (the recordings or the original model), > 0.
        warning_ratio (`float`, *optional*, defaults to 0.3): deviation above which the status is "WARNING".
        critical_ratio (`float`, *optional*, defaults to 0.6): deviation above which the status is "CRITICAL";
            a model gone quiet (rms 0) always deviates by 1.0.

    Returns:
        `str`: "OK", "WARNING" or "CRITICAL".
    """
    if not (math.isfinite(reference_rms) and reference_rms > 0):
        raise ValueError(f"reference_rms must be a positive number, got {reference_rms}")
    if not (math.isfinite(rms) and rms >= 0):
        raise ValueError(f"rms must be a non-negative number, got {rms}")
    if not 0 <= warning_ratio <= critical_ratio:
        raise ValueError(f"Need 0 <= warning_ratio <= critical_ratio, got {warning_ratio} and {critical_ratio}")
    deviation = abs(rms / reference_rms - 1.0)
    if deviation > critical_ratio:
        return "CRITICAL"
    if deviation > warning_ratio:
        return "WARNING"
    return "OK"


def synthesize(model, tokenizer, text: str, seed: int = 0, speaker_id: int | None = None) -> tuple[np.ndarray, float]:
    """Synthesize one sentence deterministically and time it.

    The model is switched to eval mode for the call (no dropout) and put back in the mode it was in, so the
    trainer can call this between steps. `seed` is set right before the forward because the duration predictor
    and the prior sample noise.

    Args:
        model (`VitsModel`): the model, on any device.
        tokenizer (`VitsTokenizer`): its tokenizer; `text` goes through `recipe.text.encode_text` (NFC, uroman when
            the tokenizer asks for it, the tokenizer's own normalization), as in training.
        text (`str`): the sentence.
        seed (`int`, *optional*, defaults to 0): seed of the sampled noise.
        speaker_id (`int`, *optional*): speaker index for a multi-speaker model; ignored by a single-speaker one.

    Returns:
        `tuple(np.ndarray, float)`: the float32 waveform `(num_samples,)` at `model.config.sampling_rate`, and the
        wall-clock seconds the forward took.
    """
    from transformers import set_seed

    from .text import encode_text

    # the tokenization of training (NFC, uroman once per process), so that the model hears what it learned
    _, token_ids = encode_text(text, tokenizer)
    if not token_ids:
        raise ValueError(f"The tokenizer turned {text!r} into no tokens: none of its characters is in the vocabulary")
    device = next(model.parameters()).device
    input_ids = torch.tensor([token_ids], dtype=torch.long, device=device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    num_speakers = getattr(model.config, "num_speakers", 1)
    if speaker_id is not None and num_speakers > 1 and not 0 <= speaker_id < num_speakers:
        raise ValueError(f"speaker_id {speaker_id} is out of range for a model with {num_speakers} speakers")
    extra = {"speaker_id": int(speaker_id)} if speaker_id is not None and num_speakers > 1 else {}

    was_training = model.training
    model.eval()
    try:
        set_seed(seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            output = model(**inputs, **extra)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    num_samples = int(output.sequence_lengths[0]) if output.sequence_lengths is not None else output.waveform.shape[-1]
    waveform = output.waveform[0, :num_samples].float().cpu().numpy()
    return waveform, seconds


# ---------------------------------------------------------------------------------------------------------------
# Distance to a recording

# MCD comes from the `mel-cepstral-distance` package (Kubichek 1993), with the defaults of its
# `compare_audio_files`: 32 ms Hann windows every 8 ms, 20 mel bands from 0 Hz to Nyquist, rows 1..15 of its
# cepstrum (its s = 1, D = 16), DTW (fastdtw, radius 10) on the log-mel frames, each clip scaled to peak 1 first.
# Of the kept libraries of the field it is the one that installs wherever the recipe does (numpy, scipy, fastdtw):
# diffsptk needs torchaudio, which has no build for the torch the recipe runs on, and pysptk ships only as a source
# distribution that needs a C compiler. Its scale on a real voice: benchmarks/mcd_scale.py.
MCD_WINDOW_MS = 32.0
MCD_HOP_MS = 8.0
MCD_MEL_BANDS = 20
MCD_FIRST_COEFFICIENT = 1
MCD_END_COEFFICIENT = 16
MCD_DTW_RADIUS = 10


def _mcd_spectrogram(samples: np.ndarray, sampling_rate: int, name: str) -> np.ndarray:
    """The complex STFT `compare_audio_files` computes of a clip it read: peak-normalized, 32 ms Hann frames."""
    window = ms_to_samples(MCD_WINDOW_MS, sampling_rate)
    if samples.size <= window:
        raise ValueError(
            f"{name} of {samples.size} samples is too short for MCD: it needs more than one {MCD_WINDOW_MS:g} ms "
            f"window ({window} samples at {sampling_rate} Hz)"
        )
    peak = np.abs(samples).max()
    # the package's norm_audio; digital silence is left as it is (0 / 0 would make every figure NaN)
    if peak > 0:
        samples = samples / peak
    return get_X_km(samples, window, window, ms_to_samples(MCD_HOP_MS, sampling_rate), "hanning")


def mel_cepstral_distortion(waveform: np.ndarray, reference_waveform: np.ndarray, spectrogram_config) -> float:
    """Mel-cepstral distance (Kubichek 1993), DTW-aligned, between a synthesized clip and a recording.

    The value is the `mel-cepstral-distance` package's: `compare_audio_files(a, b, sample_rate=rate)[0]` for the two
    clips written as WAV files, with its default parameters (the `MCD_*` constants), computed here on the arrays
    through the same functions (`get_X_km`, then `compare_amplitude_spectrograms`). Its unit is the package's: no
    scaling factor (alpha = 1, as in Kubichek's paper), so it is not in dB. Loudness does not count: each clip is
    scaled to peak 1 and no coefficient of the package's cepstrum depends on the level (its rows are
    `cos(i (n - 1/2) pi / M)` for `i = 1..M`, which sum to 0 over the bands); a digitally silent clip is compared as
    it is and gives a finite distance. 0 for identical audio.

    Args:
        waveform (`np.ndarray`): the synthesized clip, mono, `(num_samples,)` (or `(1, num_samples)`).
        reference_waveform (`np.ndarray`): the recording, mono, at the same sampling rate.
        spectrogram_config (`SpectrogramConfig`): gives the `sampling_rate` of both clips; the MCD analysis keeps
            its own geometry (above), so that figures compare across models of different mel settings.

    Returns:
        `float`: the mean distance of the frames along the DTW path.

    Raises:
        `ValueError`: a clip that is not mono, holds NaN or infinite samples, or is not longer than one 32 ms window.
    """
    sampling_rate = int(spectrogram_config.sampling_rate)
    spectrogram = _mcd_spectrogram(_as_mono_float(waveform, "waveform"), sampling_rate, "waveform")
    reference = _mcd_spectrogram(
        _as_mono_float(reference_waveform, "reference_waveform"), sampling_rate, "reference_waveform"
    )
    distance, _ = compare_amplitude_spectrograms(
        spectrogram,
        reference,
        sampling_rate,
        MCD_WINDOW_MS,
        fmin=0,
        fmax=None,
        M=MCD_MEL_BANDS,
        s=MCD_FIRST_COEFFICIENT,
        D=MCD_END_COEFFICIENT,
        aligning="dtw",
        align_target="mel",
        remove_silence="no",
        dtw_radius=MCD_DTW_RADIUS,
    )
    return float(distance)


def duration_ratio(num_samples: int, reference_num_samples: int) -> float:
    """Synthesized length over recorded length (same sampling rate): > 1 speaks slower, < 1 faster."""
    if reference_num_samples <= 0:
        raise ValueError(f"reference length must be positive, got {reference_num_samples}")
    return num_samples / reference_num_samples


# ---------------------------------------------------------------------------------------------------------------
# Intelligibility


class AsrUnavailableError(RuntimeError):
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


def load_asr(model_name_or_path: str, device: str | torch.device = "cpu"):
    """A speech recognizer for CER / WER: a `transformers` "automatic-speech-recognition" pipeline (Whisper, MMS /
    wav2vec2 CTC, ...), or, for a CTranslate2 Whisper folder (`model.bin` + `config.json` + `tokenizer.json`), that
    model run by faster-whisper.

    Raises:
        `AsrUnavailableError` naming the model when it cannot be found or loaded, or the missing package.
    """
    _require_jiwer()
    if is_ctranslate2_whisper(model_name_or_path):
        try:
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise AsrUnavailableError(
                f"--asr_model {model_name_or_path!r} is a CTranslate2 Whisper folder, which needs faster-whisper: "
                'pip install -e ".[real-voice]"'
            ) from error
        device_type = torch.device(device).type
        return FasterWhisperAsr(WhisperModel(model_name_or_path, device=device_type, compute_type="float32"))
    from transformers import pipeline

    try:
        return pipeline("automatic-speech-recognition", model=model_name_or_path, device=torch.device(device))
    except ImportError as error:
        raise AsrUnavailableError(
            f"--asr_model {model_name_or_path!r} needs a package that is not installed: {error}"
        ) from error
    except (OSError, ValueError, KeyError) as error:
        raise AsrUnavailableError(
            f"Could not load the speech-recognition model --asr_model {model_name_or_path!r} (a local folder with "
            f"a model and its processor, a CTranslate2 Whisper folder, or a Hub id reachable from here): {error}"
        ) from error


def transcribe(asr, waveform: np.ndarray, sampling_rate: int) -> str:
    """Transcribe one clip, resampled to the rate the recognizer reads."""
    from .audio import resample

    if isinstance(asr, FasterWhisperAsr):
        return asr(resample(_as_mono_float(waveform).astype(np.float32), sampling_rate, asr.sampling_rate))
    target_rate = asr.feature_extractor.sampling_rate
    samples = resample(_as_mono_float(waveform).astype(np.float32), sampling_rate, target_rate)
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
