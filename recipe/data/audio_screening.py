"""Audio that decodes but must not be trained on: cut files, non-finite samples, silence, heavy clipping, and clips
that hold no clean speech (no speech, noise, telephone band).

    from recipe.data.audio_screening import AudioScreening, broken_reason, measure_levels, level_reason
    screening = AudioScreening(truncation_tolerance=0.05, silence_threshold_db=-50.0, max_clipped_fraction=0.01)
    reason = broken_reason(decoded, screening)              # "truncated", "non_finite_audio" or ""
    levels = measure_levels(decoded.samples, mono, decoded.sampling_rate)
    reason = level_reason(levels, screening)                # "silent", "clipped" or ""
    reason = activity_reason(activity, screening)           # "no_speech", "low_snr", "narrow_band" or ""
    reason = quality_reason(quality, screening)             # "low_quality" or "" (DNSMOS OVRL, recipe.data.quality)

Each check gives a drop reason of `recipe.data`; `broken_reason`'s mean a damaged file (counted towards
`--max_bad_fraction`), `level_reason`'s a recording that is whole but unfit. The defaults were measured with
`python scripts/measure_audio_screening.py` (figures in docs/results.md, "Audio screening"):

- `truncated`: the decoder stops more than `truncation_tolerance` (5%) of the frames short of what the header
  declares. Whole files decode to exactly their declared length (every bundled and generated clip: WAV, FLAC, OGG,
  MP3); cut to half its bytes, a WAV decodes to 0.499-0.500 of it, a 48 kHz MP3 with a frame count to 0.485-0.490.
  A cut FLAC does not decode (`decode_error`). A cut OGG (its length is read from the last page present) declares
  what is left of it: such a cut is not seen. Nor can the length tell for an MP3 whose header holds no frame count
  (CBR without a Xing / Info tag: libsndfile estimates its length from its size, which a cut file shares; cut to
  half, a 16 kHz one declares 40608 frames and decodes 40320); but encoders write whole MPEG frames, so such a file
  that ends inside a frame is `truncated` (`recipe.audio.mpeg_cut_inside_frame`), however much is missing. Of 300
  random cuts (10-99.9% kept) of each of 16 generated MP3s (16-48 kHz) stripped of their tag, 288-300 end inside a
  frame; the others fall on a frame boundary and are not seen. No whole file, with or without ID3v1 / ID3v2 tags,
  was flagged.
- `non_finite_audio`: a NaN or infinite sample (float WAV / FLAC files can hold them): one NaN turns the loss NaN.
- `silent`: no 50 ms frame of the mono signal is louder than `silence_threshold_db` (-50 dBFS RMS). The bundled
  clips' loudest frames are at -16.5 to -10.4 dBFS: 33.5 dB above it.
- `clipped`: more than `max_clipped_fraction` (1%) of the samples at full scale. The bundled clips have none; a demo
  clip amplified 4 times has 3.24% (WAV) / 1.72% (MP3), amplified 2 times 0.36% / 0.22%. A lossy codec rings around
  the cut peaks, so it shows about half the share the cut signal had.
- `no_speech`, `low_snr`, `narrow_band`: from the clip's `recipe.data.speech_activity.SpeechActivity`: no run of
  frames above the detector's threshold (steady noise, a hum), speech less than `min_snr_db` above the rest, a
  spectrum that stops below `min_bandwidth_hz`.
- `low_quality`: a DNSMOS overall score (`recipe.data.quality`) below `min_quality`; off (0) unless given, as it
  costs a network run per clip and needs the `quality` extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recipe.audio import DecodedAudio
from recipe.data.speech_activity import SpeechActivity

# A sample at or beyond the largest positive 16-bit PCM value (32767 / 32768, as soundfile scales it) is at full
# scale: the negative extreme of 16-bit PCM is -1.0 exactly, a lossy decoder overshoots beyond 1.
FULL_SCALE = 32767 / 32768
# Frames over which the loudness of a clip is measured: long enough that one click does not count as sound, short
# enough that one spoken syllable fills a frame.
LEVEL_FRAME_SECONDS = 0.05


@dataclass(frozen=True)
class AudioScreening:
    """Thresholds of the audio checks (`DataArguments` flags of the same names).

    Args:
        truncation_tolerance (`float`): share of the declared frames that may be missing before a clip is
            `truncated`; 1 turns the check off.
        silence_threshold_db (`float`): dBFS RMS that at least one 50 ms frame must exceed, else the clip is `silent`.
        max_clipped_fraction (`float`): share of samples at full scale above which a clip is `clipped`; 1 turns the
            check off.
        trim_silence (`bool`): cut the non-speech around the speech (`recipe.data.speech_activity.trim_bounds`).
        min_snr_db (`float`): SNR below which a clip is `low_snr`; 0 turns the check off.
        min_bandwidth_hz (`float`): bandwidth below which a clip is `narrow_band`; 0 turns the check off.
        min_quality (`float`): DNSMOS overall score below which a clip is `low_quality`; 0 (the default, also in
            `run_finetune.py`) turns the check off and the score is not computed.
    """

    truncation_tolerance: float = 0.05
    silence_threshold_db: float = -50.0
    max_clipped_fraction: float = 0.01
    # off unless given (`run_finetune.py` turns them on: `recipe.training.screening_arguments`)
    trim_silence: bool = False
    min_snr_db: float = 0.0
    min_bandwidth_hz: float = 0.0
    min_quality: float = 0.0

    @classmethod
    def from_args(cls, data_args) -> AudioScreening:
        return cls(**{name: getattr(data_args, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AudioLevels:
    """Loudness and clipping of one decoded clip.

    Args:
        loudest_frame_db (`float`): RMS of the loudest 50 ms frame of the mono signal, in dBFS (`-inf` for digital
            silence).
        clipped_fraction (`float`): share of the samples (every channel) at or beyond full scale.
    """

    loudest_frame_db: float
    clipped_fraction: float


def broken_reason(decoded: DecodedAudio, screening: AudioScreening) -> str:
    """`"truncated"` or `"non_finite_audio"` for a damaged file, `""` when it is whole."""
    declared = decoded.declared_frames
    if declared and decoded.num_frames < (1 - screening.truncation_tolerance) * declared:
        return "truncated"
    # an MP3 without a frame count cut inside a frame: how much is missing is unknown, so any such cut counts
    if decoded.cut_inside_frame and screening.truncation_tolerance < 1:
        return "truncated"
    if not np.isfinite(decoded.samples).all():
        return "non_finite_audio"
    return ""


def measure_levels(samples: np.ndarray, mono: np.ndarray, sampling_rate: int) -> AudioLevels:
    """`AudioLevels` of a clip from its decoded channels (`(frames, channels)`, for clipping: a mix to mono would
    hide one clipped channel) and its mono mix (for loudness, what the model is trained on), at the file's rate."""
    frame = max(1, round(LEVEL_FRAME_SECONDS * sampling_rate))
    count = max(1, len(mono) // frame)
    # a clip shorter than one frame is one frame; the last partial frame is left out of a longer one
    framed = mono[: count * frame] if len(mono) >= frame else mono
    power = np.square(framed.reshape(count, -1), dtype=np.float64).mean(axis=1)
    loudest = float(power.max())
    loudest_db = 10 * math.log10(loudest) if loudest > 0 else -math.inf
    clipped = np.count_nonzero(np.abs(samples) >= FULL_SCALE) / samples.size
    return AudioLevels(loudest_frame_db=loudest_db, clipped_fraction=float(clipped))


def activity_reason(activity: SpeechActivity, screening: AudioScreening) -> str:
    """`"no_speech"`, `"low_snr"` or `"narrow_band"` for a clip that is loud enough but not clean speech, else `""`."""
    if not activity.has_speech:
        return "no_speech"
    if activity.snr_db < screening.min_snr_db:
        return "low_snr"
    if activity.bandwidth_hz < screening.min_bandwidth_hz:
        return "narrow_band"
    return ""


def quality_reason(quality: float, screening: AudioScreening) -> str:
    """`"low_quality"` for a clip whose DNSMOS overall score is below `min_quality` (when that is not 0), else `""`."""
    if screening.min_quality and quality < screening.min_quality:
        return "low_quality"
    return ""


def level_reason(levels: AudioLevels, screening: AudioScreening) -> str:
    """`"silent"` or `"clipped"` for a whole recording that is unfit to train on, `""` otherwise."""
    if levels.loudest_frame_db <= screening.silence_threshold_db:
        return "silent"
    if levels.clipped_fraction > screening.max_clipped_fraction:
        return "clipped"
    return ""
