"""Audio I/O and the one spectrogram implementation used for training targets and generated audio.

Reading uses soundfile (WAV, FLAC, OGG, MP3 through libsndfile >= 1.1), not the `datasets` Audio decoder, which
needs torchcodec. Resampling uses soxr. The STFT settings are the ones MMS / VITS were trained with; they are
derived from the model config so that a target spectrogram always matches what the model expects.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
import torch


class AudioDecodeError(RuntimeError):
    """A file exists but could not be decoded as audio. The message names the file."""


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Decode `path` with soundfile and mix it to mono.

    Returns:
        `tuple(np.ndarray, int)`: float32 samples of shape `(num_samples,)` in [-1, 1] and the file's sampling rate.

    Raises:
        `FileNotFoundError` when the file is missing, `AudioDecodeError` when it cannot be decoded.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    try:
        samples, sampling_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError depending on the codec
        raise AudioDecodeError(f"{path}: {error}") from error
    if samples.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no samples")
    return samples.mean(axis=1).astype(np.float32, copy=False), int(sampling_rate)


def resample(samples: np.ndarray, orig_sampling_rate: int, target_sampling_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (high quality). A no-op when the rates already match."""
    if orig_sampling_rate == target_sampling_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sampling_rate, target_sampling_rate, quality="HQ").astype(np.float32)


def load_audio(path: str, target_sampling_rate: int) -> np.ndarray:
    """Read, mix to mono and resample `path` to `target_sampling_rate`; float32."""
    samples, sampling_rate = read_audio(path)
    return resample(samples, sampling_rate, target_sampling_rate)


@dataclass(frozen=True)
class SpectrogramConfig:
    """STFT and mel geometry.

    Args:
        sampling_rate (`int`): the model's `sampling_rate`.
        n_fft (`int`): FFT size; `2 * (spectrogram_bins - 1)` for a VITS model.
        hop_length (`int`): one spectrogram frame per `hop_length` samples; the product of the decoder's
            `upsample_rates`, so that one latent frame decodes to exactly one hop of audio.
        win_length (`int`): Hann window length; `n_fft` for MMS / VITS.
        num_mel_bins (`int`, *optional*, defaults to 80): Slaney-scale mel bins.
        f_min (`float`, *optional*, defaults to 0): lowest mel frequency.
        f_max (`float`, *optional*): highest mel frequency; `sampling_rate / 2` when `None`.
    """

    sampling_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    num_mel_bins: int = 80
    f_min: float = 0.0
    f_max: float | None = None

    @classmethod
    def from_model_config(cls, config) -> SpectrogramConfig:
        """The geometry a `VitsConfig` implies (MMS / VITS training settings)."""
        n_fft = 2 * (config.spectrogram_bins - 1)
        return cls(
            sampling_rate=int(config.sampling_rate),
            n_fft=n_fft,
            hop_length=int(math.prod(config.upsample_rates)),
            win_length=n_fft,
        )

    @property
    def num_frequency_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def padding(self) -> int:
        """Reflect padding on each side, so that frame `i` is centred on samples `[i * hop, (i + 1) * hop)`."""
        return (self.n_fft - self.hop_length) // 2

    def num_frames(self, num_samples: int) -> int:
        """Number of frames `linear_spectrogram` returns for a signal of `num_samples` samples."""
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1


# The log floor of the MMS / VITS recipe. Digital silence does not reach it: the magnitude epsilon below gives every
# bin 1e-3, so silence comes out near log(0.06) = -9.7 after the Slaney filters, as in VITS.
LOG_MEL_FLOOR = 1e-5
# Added to the power before the square root, as VITS does: keeps the gradient of |STFT| finite at zero.
_MAGNITUDE_EPS = 1e-6


@functools.lru_cache(maxsize=16)
def _hann_window(win_length: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(win_length, device=device, dtype=torch.float32)


@functools.lru_cache(maxsize=16)
def _mel_basis(config: SpectrogramConfig, device: torch.device) -> torch.Tensor:
    """Slaney-normalized, Slaney-scale filterbank of shape `(num_mel_bins, num_frequency_bins)` (librosa's default)."""
    from transformers.audio_utils import mel_filter_bank

    basis = mel_filter_bank(
        num_frequency_bins=config.num_frequency_bins,
        num_mel_filters=config.num_mel_bins,
        min_frequency=config.f_min,
        max_frequency=config.f_max if config.f_max is not None else config.sampling_rate / 2,
        sampling_rate=config.sampling_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(basis.T.astype(np.float32)).to(device)


def linear_spectrogram(waveform: torch.Tensor, config: SpectrogramConfig) -> torch.Tensor:
    """Magnitude STFT of `waveform` (`(batch, samples)` or `(samples,)`), computed in float32.

    Returns:
        `torch.Tensor` of shape `(batch, n_fft // 2 + 1, num_frames)` (no batch dimension for a 1-D input).
    """
    squeeze = waveform.dim() == 1
    if squeeze:
        waveform = waveform.unsqueeze(0)
    waveform = waveform.float()
    # center=False with explicit reflect padding of (n_fft - hop) / 2: the VITS / MMS framing.
    padded = torch.nn.functional.pad(waveform.unsqueeze(1), (config.padding, config.padding), mode="reflect")
    with torch.autocast(device_type=waveform.device.type, enabled=False):
        stft = torch.stft(
            padded.squeeze(1),
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            window=_hann_window(config.win_length, waveform.device),
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        magnitude = torch.sqrt(stft.real.pow(2) + stft.imag.pow(2) + _MAGNITUDE_EPS)
    return magnitude.squeeze(0) if squeeze else magnitude


def mel_from_linear(magnitude: torch.Tensor, config: SpectrogramConfig) -> torch.Tensor:
    """Log-mel from a magnitude spectrogram (`(..., num_frequency_bins, frames)` -> `(..., num_mel_bins, frames)`)."""
    with torch.autocast(device_type=magnitude.device.type, enabled=False):
        mel = torch.matmul(_mel_basis(config, magnitude.device), magnitude.float())
        return torch.log(torch.clamp(mel, min=LOG_MEL_FLOOR))


def log_mel_spectrogram(waveform: torch.Tensor, config: SpectrogramConfig) -> torch.Tensor:
    """Log-mel spectrogram: the training target of recordings and the view of generated audio in the mel loss."""
    return mel_from_linear(linear_spectrogram(waveform, config), config)
