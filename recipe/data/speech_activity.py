"""Where the speech of a clip is, and what the rest of it says about the recording: trimming bounds, SNR, bandwidth.

    activity = measure_activity(waveform, sampling_rate)
    start, end = trim_bounds(activity, len(waveform), sampling_rate)   # samples kept: waveform[start:end]
    activity.snr_db, activity.bandwidth_hz

An energy detector on Hann-windowed frames of the clip (`FRAME_SECONDS` every `HOP_SECONDS`), computed at the model's
sampling rate in the `datasets.map` workers, after a `HIGHPASS_ORDER` Butterworth high-pass at `HIGHPASS_HZ`, so that
rumble, hum or wind does not count as speech (a 20 ms frame's spectrum cannot separate 15 Hz from 100 Hz). A frame
is speech when its level is above both the clip's noise floor (its `FLOOR_PERCENTILE`-th quietest frame) plus
`FLOOR_MARGIN_DB` and the loudest frame minus `PEAK_RANGE_DB`, in runs of at least `MIN_SPEECH_SECONDS` (a click
or a breath is not a sentence):

- trimming keeps from the first to the last speech frame, extended over any louder-than-threshold frame within
  `RELEASE_GAP_SECONDS` of them (the release of a final stop, 20-30 ms long, comes up to 150 ms after the vowel and is
  too short to be a run of speech itself), with `TRIM_PAD_SECONDS` on each side;
- `snr_db`: the mean power of the speech frames against the noise floor: the mean of the quietest
  `FLOOR_PERCENTILE` % of the frames (room tone, the gaps between words and the closures of stops). The mean of all
  non-speech frames would count the soft sounds of a clip cut tightly around its speech as noise (a bundled demo
  clip: 11 dB against 47 dB with its edges cut);
- `bandwidth_hz`: the highest frequency whose level in the speech frames' mean spectrum (smoothed over
  `BANDWIDTH_SMOOTHING_HZ`) is within `BANDWIDTH_RANGE_DB` of its peak: where the energy stops. Telephone audio
  resampled to 16 kHz stops at 4 kHz, a full-band recording at the model's Nyquist frequency.

The thresholds were chosen on generated clips with known defects (`benchmarks/screening.py`; figures in the README's
results): every clean clip keeps its speech whole, and the pauses between words stay in.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.signal import butter, sosfilt

FRAME_SECONDS = 0.02
HOP_SECONDS = 0.01
# Below this, what a microphone picks up is rumble, handling noise and mains hum, not speech (a low male voice's
# fundamental is around 85 Hz, and its harmonics carry its level).
HIGHPASS_HZ = 70.0
HIGHPASS_ORDER = 4
FLOOR_PERCENTILE = 10
FLOOR_MARGIN_DB = 8.0
PEAK_RANGE_DB = 40.0
MIN_SPEECH_SECONDS = 0.05
# Kept before the first and after the last speech frame: the onset of a plosive and the decay of the last sound sit
# under the threshold, and a voice trained on clips cut at the threshold learns to start abruptly.
TRIM_PAD_SECONDS = 0.1
# Loud frames this close to the speech's first or last frame belong to it (a stop's release, a soft onset): without
# it, 4 of 72 clean clips of benchmarks/screening.py lost their final release even after the pad
# (benchmarks/vad_comparison.py).
RELEASE_GAP_SECONDS = 0.25
BANDWIDTH_SMOOTHING_HZ = 250.0
BANDWIDTH_RANGE_DB = 50.0
# Speech frames whose spectra make the bandwidth's mean spectrum (1.28 s of speech): beyond that, more frames cost
# transforms and do not move the figure (tests/test_speech_activity.py)
BANDWIDTH_FRAMES = 128
# The SNR of a clip whose pauses are digital silence is unbounded: capped, so that the report's figures stay numbers.
MAX_SNR_DB = 100.0
_TINY = 1e-20


@dataclass(frozen=True)
class SpeechActivity:
    """What the detector found in one clip (at the rate it was measured at).

    Args:
        first_sample (`int`), end_sample (`int`): the speech (with the loud frames near its edges), from its first
            sample to one past its last, without the pad; both 0 when no frame is speech.
        speech_seconds (`float`): the length of the frames that are speech (pauses between runs left out).
        snr_db (`float`): speech against non-speech power, in dB, at most `MAX_SNR_DB`; NaN without speech.
        bandwidth_hz (`float`): where the speech spectrum stops (see the module docstring); NaN without speech.
    """

    first_sample: int
    end_sample: int
    speech_seconds: float
    snr_db: float
    bandwidth_hz: float

    @property
    def has_speech(self) -> bool:
        return self.end_sample > self.first_sample


def remove_dc_offset(samples: np.ndarray) -> np.ndarray:
    """`samples` (mono) less their mean: an offset shifts every level measure and the spectrum's lowest bin."""
    if samples.size == 0:
        return samples
    return (samples - samples.mean(dtype=np.float64)).astype(samples.dtype, copy=False)


@functools.lru_cache(maxsize=8)
def _highpass(sampling_rate: int) -> np.ndarray:
    """The high-pass filter's second-order sections (designed once per rate: the design costs as much as filtering)."""
    return butter(HIGHPASS_ORDER, HIGHPASS_HZ, "highpass", fs=sampling_rate, output="sos")


def _frames(waveform: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, int, int]:
    """The overlapping frames of `waveform` as a `(frames, frame)` view (no copy), frame and hop length."""
    frame = max(2, round(FRAME_SECONDS * sampling_rate))
    hop = max(1, round(HOP_SECONDS * sampling_rate))
    padded = waveform if len(waveform) >= frame else np.pad(waveform, (0, frame - len(waveform)))
    count = 1 + (len(padded) - frame) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, frame), strides=(padded.strides[0] * hop, padded.strides[0]), writeable=False
    )
    return frames, frame, hop


def _frame_power(frames: np.ndarray) -> np.ndarray:
    """Each Hann-windowed frame's mean power. By Parseval this is its power spectrum's mean, computed without a
    transform: the spectra are only needed for the bandwidth, of a sample of the speech frames."""
    window = np.hanning(frames.shape[1]).astype(np.float32)
    return np.einsum("ij,ij,j->i", frames, frames, window * window, dtype=np.float64) / frames.shape[1]


def _spectra(frames: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of the Hann-windowed `frames` at and above `HIGHPASS_HZ`, and those bins' frequencies."""
    # scipy's FFT keeps float32 (numpy's computes in float64, 7x slower on 20 ms frames at 16 kHz); pocketfft is
    # fast on any length with small factors (320, 441), so frames are not zero-padded
    n_fft = scipy.fft.next_fast_len(frames.shape[1], real=True)
    spectra = np.abs(scipy.fft.rfft(frames * np.hanning(frames.shape[1]).astype(np.float32), n=n_fft)) ** 2
    frequencies = np.fft.rfftfreq(n_fft, 1 / sampling_rate)
    return spectra[:, frequencies >= HIGHPASS_HZ], frequencies[frequencies >= HIGHPASS_HZ]


def _speech_frames(level_db: np.ndarray, hop: int, sampling_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames above the threshold in runs of at least `MIN_SPEECH_SECONDS` (speech), and all frames above it."""
    floor = np.percentile(level_db, FLOOR_PERCENTILE, method="lower")
    threshold = max(floor + FLOOR_MARGIN_DB, level_db.max() - PEAK_RANGE_DB)
    loud = level_db > threshold
    min_run = max(1, math.ceil(MIN_SPEECH_SECONDS * sampling_rate / hop))
    # run lengths from the edges of the boolean mask
    edges = np.flatnonzero(np.diff(np.concatenate(([0], loud.view(np.int8), [0]))))
    speech = np.zeros_like(loud)
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start >= min_run:
            speech[start:end] = True
    return speech, loud


def _extended_edges(speech: np.ndarray, loud: np.ndarray, hop: int, sampling_rate: int) -> tuple[int, int]:
    """The first and last frame of the speech, each moved outwards over loud frames no more than
    `RELEASE_GAP_SECONDS` from the edge reached so far."""
    gap = max(1, round(RELEASE_GAP_SECONDS * sampling_rate / hop))
    indices, loud_indices = np.flatnonzero(speech), np.flatnonzero(loud)
    first, last = int(indices[0]), int(indices[-1])
    for index in loud_indices[loud_indices > last]:
        if index - last > gap:
            break
        last = int(index)
    for index in loud_indices[loud_indices < first][::-1]:
        if first - index > gap:
            break
        first = int(index)
    return first, last


def _bandwidth(spectra: np.ndarray, frequencies: np.ndarray) -> float:
    """The highest frequency within `BANDWIDTH_RANGE_DB` of the peak of the smoothed mean spectrum of `spectra`."""
    mean = spectra.mean(axis=0)
    width = max(1, round(BANDWIDTH_SMOOTHING_HZ / (frequencies[1] - frequencies[0])))
    smoothed = np.convolve(mean, np.ones(width) / width, mode="same")
    level = 10 * np.log10(smoothed + _TINY)
    within = np.flatnonzero(level >= level.max() - BANDWIDTH_RANGE_DB)
    return float(frequencies[within[-1]])


def measure_activity(waveform: np.ndarray, sampling_rate: int) -> SpeechActivity:
    """The `SpeechActivity` of a mono clip (float samples, DC removed) at `sampling_rate`."""
    filtered = sosfilt(_highpass(sampling_rate), waveform).astype(np.float32)
    frames, frame, hop = _frames(filtered, sampling_rate)
    power = _frame_power(frames)
    if not power.max() > 0:
        return SpeechActivity(0, 0, 0.0, math.nan, math.nan)
    level_db = 10 * np.log10(power + _TINY)
    speech, loud = _speech_frames(level_db, hop, sampling_rate)
    if not speech.any():
        return SpeechActivity(0, 0, 0.0, math.nan, math.nan)
    indices = np.flatnonzero(speech)
    first_frame, last_frame = _extended_edges(speech, loud, hop, sampling_rate)
    first, end = first_frame * hop, min(len(waveform), last_frame * hop + frame)
    floor = np.sort(power)[: max(1, len(power) * FLOOR_PERCENTILE // 100)]
    snr = 10 * math.log10(power[speech].mean() / max(floor.mean(), _TINY))
    # evenly spread over the speech: as many frames as a short clip has
    sample = indices[np.linspace(0, len(indices) - 1, min(len(indices), BANDWIDTH_FRAMES)).round().astype(int)]
    return SpeechActivity(
        first_sample=first,
        end_sample=end,
        speech_seconds=float(speech.sum() * hop / sampling_rate),
        snr_db=min(MAX_SNR_DB, snr),
        bandwidth_hz=_bandwidth(*_spectra(frames[sample], sampling_rate)),
    )


def trim_bounds(activity: SpeechActivity, num_samples: int, sampling_rate: int) -> tuple[int, int]:
    """The samples to keep, `[start, end)`: the speech with `TRIM_PAD_SECONDS` on each side, within the clip; the
    whole clip when it has no speech (the caller drops it)."""
    if not activity.has_speech:
        return 0, num_samples
    pad = round(TRIM_PAD_SECONDS * sampling_rate)
    return max(0, activity.first_sample - pad), min(num_samples, activity.end_sample + pad)
