"""Audio metrics as plain functions: one implementation for the trainer's amplitude monitor and `recipe.compare`.

- `amplitude_stats`: loudness, silence and zero-crossing figures of one waveform.
- `amplitude_status`: OK / WARNING / CRITICAL from an RMS and a reference RMS.
- `mel_cepstral_distortion`: MCD between a synthesized clip and a recording, aligned by DTW (the
  `mel-cepstral-distance` package's, Kubichek 1993).
- `duration_ratio`: how much longer (> 1) or shorter (< 1) the synthesized clip is than the recording.
- `speaking_rate`: characters per second of speech of one clip, its leading and trailing silence cut where the data
  pipeline's trimming finds the speech (`recipe.data.speech_activity`); `rate_ratios`: each model's mean rate
  against the recordings'.

Intelligibility (ASR, CER) is in `recipe.evaluation.asr`, synthesis in `recipe.voices.synthesis`.
"""

from __future__ import annotations

import math

import numpy as np
from mel_cepstral_distance import compare_amplitude_spectrograms
from mel_cepstral_distance.computation import get_X_km
from mel_cepstral_distance.helper import ms_to_samples

from recipe.audio import as_mono_float
from recipe.data.speech_activity import measure_activity, remove_dc_offset

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
    samples = as_mono_float(waveform)
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


# Relative RMS deviations from the recordings' level at which a voice is WARNING / CRITICAL (the amplitude monitor's
# and `--amplitude_warning_ratio` / `--amplitude_critical_ratio`'s defaults)
DEFAULT_WARNING_RATIO = 0.3
DEFAULT_CRITICAL_RATIO = 0.6


def amplitude_status(
    rms: float,
    reference_rms: float,
    warning_ratio: float = DEFAULT_WARNING_RATIO,
    critical_ratio: float = DEFAULT_CRITICAL_RATIO,
) -> str:
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
    spectrogram = _mcd_spectrogram(as_mono_float(waveform, "waveform"), sampling_rate, "waveform")
    reference = _mcd_spectrogram(
        as_mono_float(reference_waveform, "reference_waveform"), sampling_rate, "reference_waveform"
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
# Speaking rate


def spoken_characters(text: str) -> int:
    """The letters and digits of `text` (what is spoken; spaces and punctuation are not)."""
    return sum(char.isalnum() for char in text)


def speaking_rate(text: str, waveform: np.ndarray, sampling_rate: int) -> dict[str, float]:
    """How fast a clip speaks `text`: `speech_s`, the seconds from the first to the last sample of speech (the
    bounds the data pipeline trims to, `recipe.data.speech_activity.measure_activity`, without its pad: leading and
    trailing silence cut, pauses between words kept), and `speaking_rate`, the letters and digits of `text`
    (`spoken_characters`) per second of it. A clip without speech gives `speech_s` 0 and no `speaking_rate`.

    The detector's thresholds are relative to the clip's own floor and peak, so that a quieter model is not
    measured as speaking longer or shorter."""
    activity = measure_activity(remove_dc_offset(as_mono_float(waveform).astype(np.float32)), sampling_rate)
    if not activity.has_speech:
        return {"speech_s": 0.0}
    seconds = (activity.end_sample - activity.first_sample) / sampling_rate
    return {"speech_s": float(seconds), "speaking_rate": spoken_characters(text) / seconds}


def rate_ratios(means: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each model's mean speaking rate over the recordings' (`means["reference"]`): > 1 speaks faster than the
    recordings, < 1 slower; empty without the recordings' rate."""
    reference = means.get("reference", {}).get("speaking_rate")
    if not reference:
        return {}
    return {
        label: figures["speaking_rate"] / reference
        for label, figures in means.items()
        if label != "reference" and "speaking_rate" in figures
    }
