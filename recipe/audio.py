"""Audio I/O and the one spectrogram implementation used for training targets and generated audio.

Reading uses soundfile (WAV, FLAC, OGG, MP3 through libsndfile >= 1.1), not the `datasets` Audio decoder, which
needs torchcodec. Resampling uses soxr. The STFT settings are the ones MMS / VITS were trained with; they are
derived from the model config so that a target spectrogram always matches what the model expects.
"""

from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr
import torch


class AudioDecodeError(RuntimeError):
    """A file exists but could not be decoded as audio. The message names the file."""


# A path, the bytes of an encoded audio file (a parquet / saved dataset's `{"bytes": ...}`) or a binary stream.
AudioSource = str | os.PathLike | bytes | BinaryIO


def _readable(source: AudioSource, name: str | None) -> tuple[str | BinaryIO, str]:
    """What soundfile can open for `source`, and the clip's name for messages. A missing path raises here."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(name or path)
        return path, name or path
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source), name or f"<{len(source)} bytes of audio>"
    if hasattr(source, "read"):
        return source, name or "<audio stream>"
    raise TypeError(f"An audio source is a path, bytes or a binary file object, not {type(source).__name__}")


# How much of a file's start is searched for a WAV `data` chunk: the chunks before it (`fmt `, `LIST`, `fact`) take
# a few hundred bytes in files from common tools; a header that does not fit is treated as declaring nothing.
WAV_HEADER_BYTES = 64 * 1024
# `data` chunk sizes that writers use when the length was unknown when writing started (a stream): 0, the 32-bit
# maximum (also RF64's placeholder) and sox's 0x7ffff000. Such a header declares no length.
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)


# MPEG audio frame headers (ISO 11172-3, 13818-3): kbit/s by bitrate index, per (MPEG-1, layer); MPEG-2 and 2.5 share
# their tables
_MPEG_KBITS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_KBITS[(False, 3)] = _MPEG_KBITS[(False, 2)]
# sampling rates by rate index, per version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5)
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# What an encoder writes into the first frame to declare the frame count: LAME / Xing ("Xing" in a VBR file, "Info"
# in a CBR one) and Fraunhofer ("VBRI"). A file with one of them is checked against that count instead.
_FRAME_COUNT_TAGS = (b"Xing", b"Info", b"VBRI")


def _mpeg_frame_size(header: bytes) -> int | None:
    """Bytes of the MPEG audio frame that the 4-byte `header` starts, or `None` when it starts none (a tag, other
    bytes, or a free-format frame, whose size its header does not give)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    bitrate = _MPEG_KBITS[(mpeg1, layer)][bitrate_index] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding


def _id3v2_end(data: bytes) -> int:
    """Where the audio starts after a leading ID3v2 tag (0 without one)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)  # a footer doubles the 10 header bytes


def mpeg_cut_inside_frame(data: bytes) -> bool:
    """Whether an MPEG audio file (`data`, all its bytes) whose first frame declares no frame count ends inside a
    frame: a file cut short, since encoders write whole frames.

    Such a file (a CBR MP3 without a Xing / Info tag) declares no length: libsndfile estimates one from the file
    size, which a cut file shares, so comparing decoded and declared frames cannot see the cut. Walking the frames
    does, unless the cut falls on a frame boundary (one cut in a frame's size: 1 in 360 bytes at 80 kbit/s and
    16 kHz, 1 in 417 at 128 kbit/s and 44.1 kHz). A walk that meets anything but a frame (an
    ID3v1 or APE tag at the end, bytes it does not understand) stops and finds the file whole.
    """
    position, first = _id3v2_end(data), True
    while position < len(data) and data[position] == 0:  # padding after the ID3v2 tag
        position += 1
    while position < len(data):
        size = _mpeg_frame_size(data[position : position + 4])
        if size is None:
            # a cut inside the 4 header bytes of the last frame leaves its first byte
            return len(data) - position < 4 and data[position] == 0xFF
        if first and any(tag in data[position : position + size] for tag in _FRAME_COUNT_TAGS):
            return False  # the count is declared: `declared_frames` is compared instead
        if position + size > len(data):
            return True
        position, first = position + size, False
    return False


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded file as it is: every channel at the file's own rate, and the length its header declares.

    Args:
        samples (`np.ndarray`): float32 of shape `(num_frames, num_channels)`, as soundfile decodes them (a lossy
            codec may give values beyond [-1, 1]).
        sampling_rate (`int`): the file's rate.
        declared_frames (`int`, *optional*): frames the header says the file holds (`None` when it does not say).
            For a WAV file, the size of its `data` chunk (libsndfile silently shortens it to the bytes present); for
            other formats, what libsndfile reads from the header: an MP3's Xing / LAME frame count, or an estimate
            from the file size when it has none, which a cut file shares.
        name (`str`): how messages name the clip.
        cut_inside_frame (`bool`, *optional*, defaults to `False`): an MP3 that declares no frame count ends inside
            an MPEG frame: it was cut short, by how much its header cannot say (`mpeg_cut_inside_frame`).
    """

    samples: np.ndarray
    sampling_rate: int
    declared_frames: int | None
    name: str
    cut_inside_frame: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.samples.shape[0])


def _wav_declared_frames(header: bytes) -> int | None:
    """Frames the `data` chunk of a RIFF WAVE `header` (the file's first bytes) declares, or `None` when `header` is
    not one, its `data` chunk starts beyond it, or the size is a streaming placeholder."""
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    block_align, offset = None, 12
    while offset + 8 <= len(header):
        chunk, size = header[offset : offset + 4], int.from_bytes(header[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 22 <= len(header):
            block_align = int.from_bytes(header[offset + 20 : offset + 22], "little")
        elif chunk == b"data":
            if not block_align or size in _WAV_UNKNOWN_SIZES:
                return None
            return size // block_align
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _file_header(source: AudioSource, readable, size: int | None = WAV_HEADER_BYTES) -> bytes:
    """The first `size` bytes of `source` (every byte for `None`; empty for a stream that cannot seek back)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:size])
    if isinstance(readable, str):
        with open(readable, "rb") as handle:
            return handle.read(-1 if size is None else size)
    if hasattr(readable, "seekable") and readable.seekable():
        start = readable.tell()
        header = readable.read(-1 if size is None else size)
        readable.seek(start)
        return header
    return b""


def decode_audio(source: AudioSource, name: str | None = None) -> DecodedAudio:
    """Decode an audio file, or the encoded bytes of one, with soundfile, keeping its channels and its rate.

    Args:
        source (`str`, `os.PathLike`, `bytes` or a binary file object): a path, the bytes of an encoded file (a
            parquet / saved dataset's `{"bytes": ...}`), or an open binary stream.
        name (`str`, *optional*): how error messages name the clip (defaults to the path).

    Returns:
        `DecodedAudio`: the samples, the file's rate and the length its header declares (`recipe.data.audio_screening`
        compares the two to find cut files).

    Raises:
        `FileNotFoundError` when a path names no file, `AudioDecodeError` when the audio cannot be decoded or holds
        no sample, `TypeError` for a `source` of another type.
    """
    readable, label = _readable(source, name)
    header = _file_header(source, readable)
    stream_start = readable.tell() if hasattr(readable, "seekable") and readable.seekable() else None
    try:
        with sf.SoundFile(readable) as handle:
            declared = int(handle.frames)
            # read() stops where the decoder stops: fewer frames than `declared` when the stream ends early
            samples = handle.read(dtype="float32", always_2d=True)
            sampling_rate, file_format = int(handle.samplerate), handle.format
    except sf.SoundFileError as error:  # LibsndfileError: unknown format, broken header or stream
        raise AudioDecodeError(f"{label}: {error}") from error
    if samples.shape[0] == 0:
        raise AudioDecodeError(f"{label}: no samples")
    if file_format in ("WAV", "WAVEX"):
        declared = _wav_declared_frames(header)
    # an MP3 is read whole for the frame walk (a 5 s clip is 40-200 KB; the walk costs well under a millisecond)
    cut = False
    if file_format == "MP3":
        if stream_start is not None:  # decoding read the stream to its end
            readable.seek(stream_start)
        cut = mpeg_cut_inside_frame(_file_header(source, readable, None))
    return DecodedAudio(
        samples=samples, sampling_rate=sampling_rate, declared_frames=declared, name=label, cut_inside_frame=cut
    )


def to_mono(samples: np.ndarray) -> np.ndarray:
    """`(num_frames, num_channels)` float32 samples mixed to `(num_frames,)` (the mean of the channels)."""
    # a mono file's one column is already the signal: mean() copied and summed it (0.5 ms per 5 s clip at 16 kHz,
    # benchmarks/README.md)
    return samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1).astype(np.float32, copy=False)


def as_mono_float(waveform, name: str = "waveform") -> np.ndarray:
    """`waveform` as a 1-D float64 array; a `(1, n)` or `(n, 1)` array is flattened. Refuses other shapes and NaN."""
    samples = np.asarray(waveform, dtype=np.float64)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mono signal, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{name} holds NaN or infinite samples")
    return samples


def audio_duration(source: AudioSource, name: str | None = None) -> float:
    """Seconds of audio from the header alone (no decoding); same inputs and errors as `decode_audio`."""
    readable, label = _readable(source, name)
    try:
        return float(sf.info(readable).duration)
    except sf.SoundFileError as error:
        raise AudioDecodeError(f"{label}: {error}") from error


def resample(samples: np.ndarray, orig_sampling_rate: int, target_sampling_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (high quality). A no-op when the rates already match."""
    if orig_sampling_rate == target_sampling_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sampling_rate, target_sampling_rate, quality="HQ").astype(np.float32)


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
