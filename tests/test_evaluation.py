"""Audio metrics on synthetic signals with hand-computed answers, and deterministic synthesis with a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_config

from recipe.evaluation.metrics import MIN_DBFS, amplitude_stats, amplitude_status
from recipe.voices.synthesis import synthesize

SR = 16000


def sine(frequency: float, amplitude: float, seconds: float, sampling_rate: int = SR) -> np.ndarray:
    # a quarter-sample phase offset keeps every sample off zero, so the sign changes are unambiguous
    t = (np.arange(int(seconds * sampling_rate)) + 0.25) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_char_tokenizer(folder) -> str:
    """A VitsTokenizer over lowercase letters and space (MMS-style characters, no phonemizer)."""
    from transformers import VitsTokenizer

    vocab = {"<pad>": 0, "<unk>": 1, " ": 2}
    for letter in "abcdefghijklmnopqrstuvwxyzçêîşû":
        vocab[letter] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    VitsTokenizer(str(folder / "vocab.json"), phonemize=False, add_blank=True).save_pretrained(folder)
    return str(folder)


# ---------------------------------------------------------------- amplitude_stats


def test_sine_stats_match_closed_form():
    amplitude, frequency = 0.5, 250.0
    stats = amplitude_stats(sine(frequency, amplitude, 1.0), SR)
    # a sine of amplitude A over whole periods: RMS A / sqrt(2), mean |x| 2A / pi, 2 f crossings per second
    assert stats["rms"] == pytest.approx(amplitude / math.sqrt(2), rel=1e-4)
    assert stats["rms_dbfs"] == pytest.approx(20 * math.log10(amplitude / math.sqrt(2)), abs=1e-3)
    assert stats["mean_abs"] == pytest.approx(2 * amplitude / math.pi, rel=1e-3)
    assert stats["peak"] == pytest.approx(amplitude, rel=1e-3)
    # zeros of sin at t = k / (2 f), k = 1 .. 2 f T - 1, lie between samples; t = T is past the last sample
    assert stats["zero_crossing_rate"] == pytest.approx((2 * frequency * 1.0 - 1) / (SR - 1), rel=1e-9)
    assert stats["duration_s"] == pytest.approx(1.0)
    assert stats["energy"] == pytest.approx(SR * amplitude**2 / 2, rel=1e-4)
    assert stats["silence_ratio"] == 0.0
    assert stats["leading_silence_s"] == 0.0
    assert stats["trailing_silence_s"] == 0.0


def test_pure_silence():
    stats = amplitude_stats(np.zeros(SR // 2, dtype=np.float32), SR)
    assert stats["peak"] == stats["rms"] == stats["energy"] == stats["zero_crossing_rate"] == 0.0
    assert stats["rms_dbfs"] == MIN_DBFS
    assert stats["silence_ratio"] == 1.0
    assert stats["leading_silence_s"] == stats["trailing_silence_s"] == pytest.approx(0.5)
    json.dumps(stats)  # every figure must be valid JSON (no -inf)


def test_leading_and_trailing_silence_are_measured_in_frames():
    # 0.2 s silence, 0.5 s tone, 0.3 s silence: 10 + 25 + 15 frames of 20 ms
    signal = np.concatenate([np.zeros(3200), sine(440, 0.3, 0.5), np.zeros(4800)]).astype(np.float32)
    stats = amplitude_stats(signal, SR)
    assert stats["leading_silence_s"] == pytest.approx(0.2)
    assert stats["trailing_silence_s"] == pytest.approx(0.3)
    assert stats["silence_ratio"] == pytest.approx(25 / 50)
    assert stats["duration_s"] == pytest.approx(1.0)


def test_quiet_tone_below_minus_40_dbfs_counts_as_silence():
    # RMS 0.005 = -46 dBFS < -40 dBFS; RMS 0.02 = -34 dBFS is sound
    assert amplitude_stats(sine(440, 0.005 * math.sqrt(2), 0.5), SR)["silence_ratio"] == 1.0
    assert amplitude_stats(sine(440, 0.02 * math.sqrt(2), 0.5), SR)["silence_ratio"] == 0.0


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros(0), "empty"), (np.zeros((2, 100)), "1-D"), (np.array([0.0, np.nan]), "NaN")],
)
def test_stats_reject_bad_waveforms(bad, message):
    with pytest.raises(ValueError, match=message):
        amplitude_stats(bad, SR)


# ---------------------------------------------------------------- amplitude_status


@pytest.mark.parametrize(
    "rms, status",
    [
        (0.1, "OK"),
        (0.125, "OK"),
        (0.075, "OK"),
        (0.14, "WARNING"),
        (0.05, "WARNING"),
        (0.03, "CRITICAL"),
        (0.0, "CRITICAL"),
        (0.2, "CRITICAL"),
    ],
)
def test_amplitude_status_thresholds(rms, status):
    assert amplitude_status(rms, 0.1) == status


def test_amplitude_status_custom_ratios_and_bad_reference():
    assert amplitude_status(0.085, 0.1, warning_ratio=0.1, critical_ratio=0.2) == "WARNING"
    with pytest.raises(ValueError, match="reference_rms"):
        amplitude_status(0.1, 0.0)
    with pytest.raises(ValueError, match="warning_ratio"):
        amplitude_status(0.1, 0.1, warning_ratio=0.7, critical_ratio=0.6)


# ---------------------------------------------------------------- synthesize


@pytest.fixture(scope="module")
def tiny_model_and_tokenizer(tmp_path_factory):
    from transformers import VitsModel, VitsTokenizer, set_seed

    set_seed(0)
    tokenizer = VitsTokenizer.from_pretrained(write_char_tokenizer(tmp_path_factory.mktemp("tok")))
    model = VitsModel(make_tiny_config(vocab_size=len(tokenizer)))
    return model, tokenizer


def test_synthesize_is_deterministic_and_restores_train_mode(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    model.train()
    first, seconds = synthesize(model, tokenizer, "roj baş", seed=3)
    assert model.training, "synthesize must leave the model in the mode it found it in"
    second, _ = synthesize(model, tokenizer, "roj baş", seed=3)
    other_seed, _ = synthesize(model, tokenizer, "roj baş", seed=4)
    assert first.dtype == np.float32 and first.ndim == 1 and first.size > 0
    assert first.size % 256 == 0  # whole hops of the decoder
    np.testing.assert_array_equal(first, second)
    assert first.shape != other_seed.shape or not np.array_equal(first, other_seed)
    assert seconds > 0


def test_synthesize_rejects_text_without_known_characters(tiny_model_and_tokenizer):
    model, tokenizer = tiny_model_and_tokenizer
    with pytest.raises(ValueError, match="no tokens"):
        synthesize(model, tokenizer, "12345")


def test_synthesize_speaker_id_for_multi_speaker_model(tiny_model_and_tokenizer):
    from transformers import VitsModel

    _, tokenizer = tiny_model_and_tokenizer
    model = VitsModel(make_tiny_config(vocab_size=len(tokenizer), num_speakers=3, speaker_embedding_size=8))
    with torch.no_grad():
        model.embed_speaker.weight.mul_(50)  # make speakers audibly different in a random model
    a, _ = synthesize(model, tokenizer, "roj", seed=0, speaker_id=0)
    b, _ = synthesize(model, tokenizer, "roj", seed=0, speaker_id=2)
    assert a.shape != b.shape or not np.allclose(a, b)
    with pytest.raises(ValueError, match="out of range"):
        synthesize(model, tokenizer, "roj", speaker_id=3)


# ---------------------------------------------------------------- MCD, duration


def spectrogram_config(sampling_rate: int = SR):
    from recipe.audio import SpectrogramConfig

    return SpectrogramConfig(sampling_rate=sampling_rate, n_fft=1024, hop_length=256, win_length=1024)


# (F1, F2, F3) in Hz of four vowels: /a/, /i/, /u/, /e/
VOWEL_FORMANTS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480)]


def vowels(seed: int, sampling_rate: int = SR, f0: float = 120.0, seconds_per_vowel: float = 0.2) -> np.ndarray:
    """A toy voice: a 120 Hz pulse train plus breath noise (drawn from `seed`) through three formant resonators per
    vowel. Two seeds are the same voice with another noise draw, as two renderings of a VITS voice are."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    parts = []
    for formants in VOWEL_FORMANTS:
        num_samples = int(seconds_per_vowel * sampling_rate)
        signal = np.zeros(num_samples)
        signal[np.round(np.arange(0, num_samples, sampling_rate / f0)).astype(int)] = 1.0
        signal += 0.05 * rng.standard_normal(num_samples)
        for frequency in formants:
            radius, angle = np.exp(-np.pi * 80 / sampling_rate), 2 * np.pi * frequency / sampling_rate
            signal = lfilter([1 - radius], [1, -2 * radius * np.cos(angle), radius**2], signal)
        parts.append(signal)
    signal = np.concatenate(parts)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def shifted_up(waveform: np.ndarray, semitones: float, sampling_rate: int = SR) -> np.ndarray:
    """Pitch and formants up by `semitones` (and faster): resampled to a lower rate and played at the same one."""
    import soxr

    return soxr.resample(waveform, sampling_rate, sampling_rate / 2 ** (semitones / 12)).astype(np.float32)


@pytest.mark.parametrize("sampling_rate", [SR, 22050])
def test_mcd_is_the_librarys_compare_audio_files(tmp_path, sampling_rate):
    from mel_cepstral_distance import compare_audio_files
    from scipy.io import wavfile

    from recipe.evaluation.metrics import mel_cepstral_distortion

    reference = vowels(0, sampling_rate)
    pairs = {
        "same voice": vowels(1, sampling_rate),
        "+4 semitones": shifted_up(vowels(2, sampling_rate), 4, sampling_rate),
    }
    for name, waveform in pairs.items():
        # float64 WAV files hold the float32 samples exactly, so the library reads what the recipe is given
        wavfile.write(tmp_path / "a.wav", sampling_rate, waveform.astype(np.float64))
        wavfile.write(tmp_path / "b.wav", sampling_rate, reference.astype(np.float64))
        expected, _ = compare_audio_files(tmp_path / "a.wav", tmp_path / "b.wav", sample_rate=sampling_rate)
        measured = mel_cepstral_distortion(waveform, reference, spectrogram_config(sampling_rate))
        assert measured == pytest.approx(expected, rel=1e-9), name


def test_mcd_of_identical_audio_is_zero_and_level_does_not_count():
    from recipe.evaluation.metrics import mel_cepstral_distortion

    audio = vowels(0)
    assert mel_cepstral_distortion(audio, audio.copy(), spectrogram_config()) == 0.0
    # each clip is scaled to peak 1: a quieter copy differs by float rounding only
    assert mel_cepstral_distortion(0.1 * audio, audio, spectrogram_config()) == pytest.approx(0.0, abs=1e-3)


def test_mcd_grows_with_a_more_different_voice():
    from recipe.evaluation.metrics import mel_cepstral_distortion

    config = spectrogram_config()
    reference = vowels(0)
    same_voice = mel_cepstral_distortion(vowels(1), reference, config)
    other_voice = mel_cepstral_distortion(shifted_up(vowels(2), 4), reference, config)
    further_voice = mel_cepstral_distortion(shifted_up(vowels(3), 8), reference, config)
    assert 0 < same_voice < 0.5 * other_voice
    assert other_voice < further_voice


def test_mcd_dtw_forgives_a_time_stretch_but_not_a_different_sound():
    from recipe.evaluation.metrics import mel_cepstral_distortion

    config = spectrogram_config()
    rng = np.random.default_rng(3)
    # three distinct "phones" of 0.2 s each; the stretched version holds the middle one twice as long
    phones = [sine(200, 0.4, 0.2), (0.2 * rng.standard_normal(3200)).astype(np.float32), sine(1500, 0.3, 0.2)]
    reference = np.concatenate(phones)
    stretched = np.concatenate([phones[0], phones[1], phones[1], phones[2]])
    other = np.concatenate([phones[2], phones[2], phones[2]])
    stretch_mcd = mel_cepstral_distortion(stretched, reference, config)
    other_mcd = mel_cepstral_distortion(other, reference, config)
    assert stretch_mcd < 0.5 * other_mcd


def test_mcd_of_digital_silence_is_finite():
    from recipe.evaluation.metrics import mel_cepstral_distortion

    config = spectrogram_config()
    silence = np.zeros(SR // 2, dtype=np.float32)
    assert mel_cepstral_distortion(silence, silence[: SR // 4], config) == 0.0
    gone_quiet = mel_cepstral_distortion(silence, vowels(0), config)
    assert math.isfinite(gone_quiet) and gone_quiet > mel_cepstral_distortion(vowels(1), vowels(0), config)


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros(512), "too short"), (np.zeros((2, 4000)), "1-D"), (np.array([0.0, np.nan] * 2000), "NaN")],
)
def test_mcd_rejects_bad_waveforms(bad, message):
    from recipe.evaluation.metrics import mel_cepstral_distortion

    with pytest.raises(ValueError, match=message):
        mel_cepstral_distortion(bad, vowels(0), spectrogram_config())
    with pytest.raises(ValueError, match=message):
        mel_cepstral_distortion(vowels(0), bad, spectrogram_config())


def test_duration_ratio():
    from recipe.evaluation.metrics import duration_ratio

    assert duration_ratio(24000, 16000) == 1.5
    with pytest.raises(ValueError, match="positive"):
        duration_ratio(10, 0)


# ---------------------------------------------------------------- intelligibility


def test_error_rates_on_normalized_text():
    from recipe.evaluation.asr import error_rates

    # punctuation and case do not count; "bas" for "baş" is 1 of 18 characters (spaces count), 1 of 5 words
    rates = error_rates("Roj baş, tu çawa yî?", "roj bas tu çawa yî")
    assert rates["cer"] == pytest.approx(1 / 18)
    assert rates["wer"] == pytest.approx(1 / 5)
    assert error_rates("Roj baş", "") == {"cer": 1.0, "wer": 1.0}
    with pytest.raises(ValueError, match="empty"):
        error_rates("?!", "roj")


def test_missing_asr_model_is_named(tmp_path):
    from recipe.evaluation.asr import AsrUnavailableError, load_asr

    missing = tmp_path / "no-such-asr-model"
    with pytest.raises(AsrUnavailableError, match="no-such-asr-model"):
        load_asr(str(missing))


def test_missing_jiwer_is_named(monkeypatch):
    import sys

    from recipe.evaluation.asr import AsrUnavailableError, error_rates

    monkeypatch.setitem(sys.modules, "jiwer", None)  # makes `import jiwer` raise ImportError
    with pytest.raises(AsrUnavailableError, match="pip install jiwer"):
        error_rates("roj", "roj")
