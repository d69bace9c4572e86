"""The speech detector on a bundled demo clip made into each defect it must see: silence and room tone around the
speech (trimmed to the pad, DC offset or not), noise (low SNR), telephone band (narrow), steady noise (no speech);
and the speaking rate of a transcript that does not match its reading (`rate_outlier`)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import DEMO_DIR

from recipe.data.audio_screening import AudioScreening, activity_reason
from recipe.data.screening_report import MIN_RATE_CLIPS, mark_rate_outliers, speaking_rates
from recipe.data.speech_activity import TRIM_PAD_SECONDS, measure_activity, remove_dc_offset, trim_bounds

RATE = 16000
SCREENING = AudioScreening(trim_silence=True, min_snr_db=12.0, min_bandwidth_hz=5000.0)


def speech(name: str = "KMR-0003") -> np.ndarray:
    """A bundled demo clip (16 kHz) with its own edges cut to the detector's bounds: speech from end to end."""
    samples = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{name}.wav", dtype="float32")[0]
    activity = measure_activity(samples, RATE)
    return samples[activity.first_sample : activity.end_sample]


def rms_db(samples: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(samples, dtype=np.float64)))


def room_tone(seconds: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(round(seconds * RATE))
    return (noise * 10 ** (level_db / 20)).astype(np.float32)


@pytest.mark.parametrize("surround", ["digital_silence", "room_tone", "room_tone_with_dc_offset"])
def test_silence_around_speech_is_trimmed_to_the_pad(surround):
    rng = np.random.default_rng(0)
    voice = speech()
    before, after = 1.3, 0.7
    if surround == "digital_silence":
        clip = np.concatenate([np.zeros(round(before * RATE)), voice, np.zeros(round(after * RATE))]).astype(
            np.float32
        )
    else:
        clip = np.concatenate([room_tone(before, -60, rng), voice, room_tone(after, -60, rng)])
        clip[round(before * RATE) : round(before * RATE) + len(voice)] += room_tone(len(voice) / RATE, -60, rng)
    if surround.endswith("dc_offset"):
        clip = remove_dc_offset(clip + 0.25)
        assert abs(clip.mean()) < 1e-6
    activity = measure_activity(clip, RATE)
    start, end = trim_bounds(activity, len(clip), RATE)
    # the speech starts at `before`: trimmed to the pad, within a frame (the detector's 10 ms hop and 20 ms frame)
    assert start / RATE == pytest.approx(before - TRIM_PAD_SECONDS, abs=0.03)
    assert (len(clip) - end) / RATE == pytest.approx(after - TRIM_PAD_SECONDS, abs=0.03)
    assert activity_reason(activity, SCREENING) == ""
    assert activity.snr_db > 30 and activity.bandwidth_hz > 7000


def test_a_clip_of_speech_alone_is_not_trimmed_and_pauses_stay():
    voice = speech()
    activity = measure_activity(voice, RATE)
    assert trim_bounds(activity, len(voice), RATE) == (0, len(voice))
    # the pauses between words are left out of speech_seconds, not cut from the clip
    assert 0.5 * len(voice) / RATE < activity.speech_seconds <= len(voice) / RATE


def padded(voice: np.ndarray, rng: np.random.Generator, seconds: float = 0.5) -> np.ndarray:
    """`voice` in room tone at -65 dBFS, `seconds` before and after: a browser recording."""
    tone = room_tone(2 * seconds + len(voice) / RATE, -65, rng)
    tone[round(seconds * RATE) : round(seconds * RATE) + len(voice)] += voice
    return tone


def test_noise_gives_low_snr_at_the_level_it_was_mixed():
    rng = np.random.default_rng(1)
    voice = padded(speech(), rng)
    snrs = {}
    for mixed_db in (3, 6, 10, 30):
        noise = rng.standard_normal(len(voice)).astype(np.float32)
        noise *= 10 ** ((rms_db(speech()) - mixed_db) / 20) / noise.std()
        activity = measure_activity(voice + noise, RATE)
        snrs[mixed_db] = activity.snr_db
        expected = "low_snr" if mixed_db <= 6 else ""
        assert activity_reason(activity, SCREENING) == expected, (mixed_db, activity)
    # more noise, lower SNR; measured on the speech frames alone, a few dB above the SNR over the whole reading
    assert snrs[3] < snrs[6] < snrs[10] < snrs[30]
    assert all(0 <= snrs[mixed] - mixed < 7 for mixed in (3, 6, 10)), snrs
    # drowned at 0 dB, no frame stands out of the noise: not speech
    noise = rng.standard_normal(len(voice)).astype(np.float32) * 10 ** (rms_db(speech()) / 20)
    assert activity_reason(measure_activity(voice + noise, RATE), SCREENING) in ("no_speech", "low_snr")


def test_telephone_band_is_narrow():
    voice = padded(speech(), np.random.default_rng(3))
    telephone = soxr.resample(soxr.resample(voice, RATE, 8000), 8000, RATE).astype(np.float32)
    assert 3500 < measure_activity(telephone, RATE).bandwidth_hz < 4100
    assert activity_reason(measure_activity(telephone, RATE), SCREENING) == "narrow_band"
    assert activity_reason(measure_activity(voice, RATE), SCREENING) == ""
    # 0 turns the check off
    assert activity_reason(measure_activity(telephone, RATE), AudioScreening(min_bandwidth_hz=0)) == ""


def test_the_bandwidth_of_a_sample_of_frames_is_that_of_all_frames(monkeypatch):
    """A long clip's bandwidth comes from `BANDWIDTH_FRAMES` of its speech frames: the same figure as from all."""
    import recipe.data.speech_activity as speech_activity

    voice = np.concatenate([speech(f"KMR-{index:04d}") for index in range(1, 9)])
    for clip in (voice, soxr.resample(soxr.resample(voice, RATE, 8000), 8000, RATE).astype(np.float32)):
        sampled = measure_activity(clip, RATE)
        assert sampled.speech_seconds / speech_activity.HOP_SECONDS > 4 * speech_activity.BANDWIDTH_FRAMES
        monkeypatch.setattr(speech_activity, "BANDWIDTH_FRAMES", 10**6)
        every = measure_activity(clip, RATE)
        monkeypatch.undo()
        assert abs(sampled.bandwidth_hz - every.bandwidth_hz) <= 100  # two bins of 50 Hz
        assert (sampled.first_sample, sampled.end_sample, sampled.snr_db) == (
            every.first_sample, every.end_sample, every.snr_db
        )  # fmt: skip


@pytest.mark.parametrize("kind", ["white_noise", "hum", "rumble_under_room_tone"])
def test_steady_sound_is_no_speech(kind):
    rng = np.random.default_rng(2)
    t = np.arange(3 * RATE) / RATE
    if kind == "white_noise":
        clip = room_tone(3, -30, rng)
    elif kind == "hum":
        clip = (0.1 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    else:  # a loud 15 Hz rumble rising and falling, under room tone: below the detector's high-pass
        clip = (0.3 * np.sin(2 * np.pi * 15 * t) * np.sin(2 * np.pi * 0.5 * t) + room_tone(3, -60, rng)).astype(
            np.float32
        )
    activity = measure_activity(clip, RATE)
    assert activity_reason(activity, SCREENING) == "no_speech", activity
    assert trim_bounds(activity, len(clip), RATE) == (0, len(clip))


def test_digital_silence_has_no_speech():
    activity = measure_activity(np.zeros(RATE, np.float32), RATE)
    assert not activity.has_speech and activity_reason(activity, SCREENING) == "no_speech"


def test_rate_outliers_are_measured_against_their_speaker():
    # speaker a reads 15 characters a second; one clip's transcript is three times too long, one is a third
    num_characters = [30, 45, 31, 29, 60, 90, 10, 30]
    speech_seconds = [2.0, 3.0, 2.0, 2.0, 4.0, 2.0, 2.0, 2.0]
    columns = {
        "drop_reason": [""] * 7 + ["too_long"],
        "num_characters": num_characters,
        "speech_seconds": speech_seconds,
        "speaker": ["a"] * 8,
    }
    rates = speaking_rates(columns)
    assert rates["rate"][:3] == [15.0, 15.0, 15.5] and rates["rate"][7] is None
    assert rates["speaker_rate"][0] == pytest.approx(15.0)
    reasons = list(columns["drop_reason"])
    mark_rate_outliers(reasons, rates, 0.35)
    assert reasons == ["", "", "", "", "", "rate_outlier", "rate_outlier", "too_long"]
    # 0: off; a speaker with too few clips is not checked
    unchanged = list(columns["drop_reason"])
    mark_rate_outliers(unchanged, rates, 0.0)
    assert unchanged == columns["drop_reason"]
    few = {name: values[: MIN_RATE_CLIPS - 1] for name, values in columns.items()}
    assert speaking_rates(few)["speaker_rate"] == [None] * (MIN_RATE_CLIPS - 1)


def test_a_final_stop_release_after_a_gap_is_kept():
    """The release of a final stop ("...at work.") is 20-30 ms of noise up to 150 ms after the vowel: too short to be
    a run of speech, and part of it. Trimming keeps it (and the pad after it); a burst far after the speech is cut."""
    rng = np.random.default_rng(0)
    voice = speech()
    gap, burst = room_tone(0.15, -60, rng), room_tone(0.025, -25, rng)
    tail = room_tone(1.0, -60, rng)
    clip = np.concatenate([room_tone(0.5, -60, rng), voice, gap, burst, tail])
    burst_end = (0.5 + 0.15 + 0.025) * RATE + len(voice)
    start, end = trim_bounds(measure_activity(clip, RATE), len(clip), RATE)
    assert end / RATE == pytest.approx((burst_end / RATE) + TRIM_PAD_SECONDS, abs=0.03)
    # the same burst a second after the speech is a click in the room, not the speech's end
    far = np.concatenate([room_tone(0.5, -60, rng), voice, room_tone(1.0, -60, rng), burst, tail])
    start, end = trim_bounds(measure_activity(far, RATE), len(far), RATE)
    assert end / RATE == pytest.approx((0.5 * RATE + len(voice)) / RATE + TRIM_PAD_SECONDS, abs=0.03)
