"""`recipe.audio` against an independent numpy reference (framing, periodic Hann, rfft, a hand-built Slaney mel
bank), and its decoding of files, bytes and streams."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DEMO_DIR, make_tiny_config

from recipe.audio import (
    AudioDecodeError,
    SpectrogramConfig,
    decode_audio,
    linear_spectrogram,
    log_mel_spectrogram,
    resample,
    to_mono,
)


def read_mono(source, name=None) -> tuple[np.ndarray, int]:
    """`source` decoded and mixed to mono, as the data pipeline reads a clip, with the file's rate."""
    decoded = decode_audio(source, name)
    return to_mono(decoded.samples), decoded.sampling_rate


def slaney_hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def slaney_mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def reference_mel_bank(sampling_rate, n_fft, num_mels):
    """Triangles on the Slaney mel scale between 0 and sr/2, each scaled to unit area (Slaney normalization)."""
    fft_hz = np.linspace(0, sampling_rate / 2, n_fft // 2 + 1)
    edges = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(0), slaney_hz_to_mel(sampling_rate / 2), num_mels + 2))
    bank = np.zeros((num_mels, len(fft_hz)))
    for m in range(num_mels):
        lower, centre, upper = edges[m], edges[m + 1], edges[m + 2]
        rising = (fft_hz - lower) / (centre - lower)
        falling = (upper - fft_hz) / (upper - centre)
        bank[m] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (upper - lower)
    return bank


def reference_magnitude(wave, n_fft, hop):
    padding = (n_fft - hop) // 2
    padded = np.pad(wave.astype(np.float64), padding, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * window, axis=-1)
    return np.sqrt(np.abs(spectrum) ** 2 + 1e-6).T  # (bins, frames)


@pytest.fixture
def config():
    return SpectrogramConfig.from_model_config(make_tiny_config())


def test_geometry_from_the_model_config(config):
    assert (config.n_fft, config.hop_length, config.win_length, config.num_mel_bins) == (1024, 256, 1024, 80)
    assert config.sampling_rate == 16000
    assert [config.num_frames(n) for n in (1024, 16000, 16383)] == [4, 62, 63]  # samples // hop


def test_spectrogram_matches_numpy_reference(config):
    rng = np.random.default_rng(0)
    t = np.arange(12345) / config.sampling_rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)

    magnitude = linear_spectrogram(torch.from_numpy(wave), config).numpy()
    expected = reference_magnitude(wave, config.n_fft, config.hop_length)
    assert magnitude.shape == expected.shape == (513, 12345 // 256)
    np.testing.assert_allclose(magnitude, expected, rtol=1e-3, atol=1e-3)

    log_mel = log_mel_spectrogram(torch.from_numpy(wave)[None], config)[0].numpy()
    bank = reference_mel_bank(config.sampling_rate, config.n_fft, 80)
    expected_mel = np.log(np.maximum(bank @ expected, 1e-5))
    assert log_mel.shape == (80, 12345 // 256)
    np.testing.assert_allclose(log_mel, expected_mel, atol=2e-3)
    # the 440 Hz tone is the loudest mel bin
    assert abs(slaney_mel_to_hz(np.linspace(0, slaney_hz_to_mel(8000), 82))[1:-1][log_mel.mean(1).argmax()] - 440) < 60


def test_silence_level_follows_the_vits_magnitude_epsilon(config):
    """|STFT| of silence is sqrt(1e-6) per bin (VITS adds 1e-6 before the root): its log-mel sits above the 1e-5 floor,
    at the level the reference computes, identical in every frame."""
    log_mel = log_mel_spectrogram(torch.zeros(4096), config).numpy()
    bank = reference_mel_bank(config.sampling_rate, config.n_fft, 80)
    expected = np.log(np.maximum(bank.sum(axis=1) * 1e-3, 1e-5))
    np.testing.assert_allclose(log_mel, np.repeat(expected[:, None], log_mel.shape[1], axis=1), atol=1e-4)
    assert (log_mel > np.log(1e-5)).all()


def test_read_and_resample(tmp_path):
    mp3 = next((DEMO_DIR / "kmr_common_voice" / "clips").glob("*.mp3"))
    samples, rate = read_mono(str(mp3))
    assert rate == 48000 and samples.dtype == np.float32 and samples.ndim == 1
    resampled = resample(samples, rate, 16000)
    assert resampled.dtype == np.float32 and abs(len(resampled) - len(samples) / 3) <= 2

    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 8000)
    mono, rate = read_mono(str(tmp_path / "stereo.wav"))
    assert rate == 8000 and mono.shape == (800,) and np.allclose(mono, 0.2, atol=1e-4)

    with pytest.raises(FileNotFoundError):
        decode_audio(str(tmp_path / "missing.wav"))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not a wave file" * 8)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        decode_audio(str(tmp_path / "broken.wav"))


def test_decode_audio_from_bytes_and_streams(tmp_path):
    import io

    from recipe.audio import audio_duration

    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 8000)
    data = (tmp_path / "stereo.wav").read_bytes()
    for source in (data, io.BytesIO(data), tmp_path / "stereo.wav"):
        mono, rate = read_mono(source)
        assert rate == 8000 and mono.shape == (800,) and np.allclose(mono, 0.2, atol=1e-4)
        assert audio_duration(source if not isinstance(source, io.BytesIO) else io.BytesIO(data)) == 0.1
    assert len(resample(*read_mono(data), 16000)) == 1600

    # undecodable bytes and empty audio are decode errors that carry the clip's name; a missing path is not
    for broken in (b"RIFF not a wave file" * 8, b""):
        with pytest.raises(AudioDecodeError, match="clip_7.wav"):
            decode_audio(broken, name="clip_7.wav")
    with pytest.raises(AudioDecodeError, match="clip_7.wav"):
        audio_duration(b"RIFF not a wave file" * 8, name="clip_7.wav")
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(0, np.float32), 8000, format="WAV")
    with pytest.raises(AudioDecodeError, match="no samples"):
        decode_audio(buffer.getvalue())
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio_duration(str(tmp_path / "missing.wav"))
    with pytest.raises(TypeError, match="not int"):
        decode_audio(3)


def test_decode_keeps_channels_and_the_declared_length(tmp_path):
    import io

    from recipe.audio import decode_audio

    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)], axis=1).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", stereo, 8000, subtype="PCM_16")
    data = (tmp_path / "stereo.wav").read_bytes()
    for source in (str(tmp_path / "stereo.wav"), data, io.BytesIO(data)):
        decoded = decode_audio(source, "stereo.wav")
        assert decoded.samples.shape == (800, 2) and decoded.sampling_rate == 8000
        assert decoded.declared_frames == decoded.num_frames == 800
    # a WAV cut short: libsndfile shortens the length to the bytes present, the data chunk still says 800 frames
    cut = decode_audio(data[: len(data) - 1200])
    assert cut.num_frames == 500 and cut.declared_frames == 800
    # a stream writer's placeholder size (0xFFFFFFFF: length unknown when writing started) declares nothing
    offset = data.index(b"data") + 4
    unknown = data[:offset] + (0xFFFFFFFF).to_bytes(4, "little") + data[offset + 4 :]
    assert decode_audio(unknown).declared_frames is None and decode_audio(unknown).num_frames == 800
