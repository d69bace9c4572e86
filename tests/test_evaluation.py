"""Audio metrics on synthetic signals with hand-computed answers, and deterministic synthesis with a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_config

from recipe.evaluation import (
    MIN_DBFS,
    amplitude_stats,
    amplitude_status,
    synthesize,
)

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


# ---------------------------------------------------------------- MCD, DTW, duration


def spectrogram_config():
    from recipe.audio import SpectrogramConfig

    return SpectrogramConfig.from_model_config(make_tiny_config())


def naive_dtw_cost(cost):
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    return total[n, m]


def test_dtw_path_is_optimal_and_monotonic():
    from recipe.evaluation import dtw_path

    rng = np.random.default_rng(0)
    for shape in [(7, 11), (12, 5), (1, 4), (6, 6)]:
        cost = rng.random(shape)
        rows, columns = dtw_path(cost)
        assert (rows[0], columns[0]) == (0, 0) and (rows[-1], columns[-1]) == (shape[0] - 1, shape[1] - 1)
        steps = np.stack([np.diff(rows), np.diff(columns)], axis=1)
        assert set(map(tuple, steps)) <= {(1, 0), (0, 1), (1, 1)}
        assert cost[rows, columns].sum() == pytest.approx(naive_dtw_cost(cost))


def test_mcd_of_identical_audio_is_zero():
    from recipe.evaluation import mel_cepstral_distortion

    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(SR // 2) + sine(300, 0.3, 0.5)).astype(np.float32)
    assert mel_cepstral_distortion(audio, audio.copy(), spectrogram_config()) == pytest.approx(0.0, abs=1e-9)


def test_mcd_of_a_known_cepstral_offset():
    from recipe.evaluation import _dct_matrix, mel_cepstral_distortion_from_cepstra, mel_cepstrum_from_log_mel

    rng = np.random.default_rng(2)
    log_mel = rng.normal(-4, 2, size=(80, 40))
    offset = np.zeros(80)
    offset[3] = 0.5  # c3 += 0.5 (orthonormal DCT: the inverse is the transpose)
    shifted = log_mel + (_dct_matrix(80, 80).T @ offset)[:, None]
    cepstra, shifted_cepstra = mel_cepstrum_from_log_mel(log_mel), mel_cepstrum_from_log_mel(shifted)
    np.testing.assert_allclose(shifted_cepstra - cepstra, np.tile(offset[1:14], (40, 1)), atol=1e-12)
    expected = 10 / math.log(10) * math.sqrt(2 * 0.5**2)  # 3.0710 dB
    assert mel_cepstral_distortion_from_cepstra(shifted_cepstra, cepstra) == pytest.approx(expected, rel=1e-9)
    # a level change moves c0 only, which MCD leaves out
    assert mel_cepstral_distortion_from_cepstra(mel_cepstrum_from_log_mel(log_mel + 1.0), cepstra) == pytest.approx(
        0.0, abs=1e-9
    )


def test_mcd_dtw_forgives_a_time_stretch_but_not_a_different_sound():
    from recipe.evaluation import mel_cepstral_distortion

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


def test_duration_ratio():
    from recipe.evaluation import duration_ratio

    assert duration_ratio(24000, 16000) == 1.5
    with pytest.raises(ValueError, match="positive"):
        duration_ratio(10, 0)


# ---------------------------------------------------------------- intelligibility


def test_error_rates_on_normalized_text():
    from recipe.evaluation import error_rates

    # punctuation and case do not count; "bas" for "baş" is 1 of 18 characters (spaces count), 1 of 5 words
    rates = error_rates("Roj baş, tu çawa yî?", "roj bas tu çawa yî")
    assert rates["cer"] == pytest.approx(1 / 18)
    assert rates["wer"] == pytest.approx(1 / 5)
    assert error_rates("Roj baş", "") == {"cer": 1.0, "wer": 1.0}
    with pytest.raises(ValueError, match="empty"):
        error_rates("?!", "roj")


def test_missing_asr_model_is_named(tmp_path):
    from recipe.evaluation import AsrUnavailableError, load_asr

    missing = tmp_path / "no-such-asr-model"
    with pytest.raises(AsrUnavailableError, match="no-such-asr-model"):
        load_asr(str(missing))


def test_missing_jiwer_is_named(monkeypatch):
    import sys

    from recipe.evaluation import AsrUnavailableError, error_rates

    monkeypatch.setitem(sys.modules, "jiwer", None)  # makes `import jiwer` raise ImportError
    with pytest.raises(AsrUnavailableError, match="pip install jiwer"):
        error_rates("roj", "roj")
