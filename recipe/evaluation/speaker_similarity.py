"""Speaker similarity: how much synthesized clips sound like a speaker's recordings, by a speaker encoder's
embeddings (the `similarity` extra).

    embeddings = embed_waveforms(waveforms, sampling_rate)          # (clips, 256), each of norm 1
    reference = centroid(embed_waveforms(recordings, recording_rate))
    figure = similarity_to(embeddings, reference)                  # mean per-clip cosine, higher is closer

The encoder is Resemblyzer's `VoiceEncoder` (resemble-ai, Apache-2.0; `resemblyzer==0.1.4`): a 3-layer LSTM
trained with the GE2E loss (Wan et al., ICASSP 2018) that maps a clip to a 256-dimensional unit vector. It is the
speaker encoder whose weights install from PyPI (`pretrained.pt`, 17 MB, inside the wheel): the others in use for
speaker similarity (SpeechBrain's ECAPA-TDNN, WavLM-SV, pyannote) download theirs from the Hugging Face Hub at first
use, which an offline machine or CI cannot. It runs on the CPU in about 20 ms per 2-second clip.

Each clip goes through the encoder as Resemblyzer's own examples feed it: resampled to its 16 kHz (here with soxr,
as every other resampling of the recipe, `recipe.audio.resample`), then `preprocess_wav` raises its level to
-30 dBFS when quieter and cuts pauses longer than a few hundred ms (webrtcvad), so that neither the level (which
`recipe.compare` reports on its own) nor the length of the silences moves the figure. A clip with no speech for the
voice detector (a model gone silent) is embedded whole rather than as nothing: it gets the embedding of what it
is, far from any voice.

The figure of a set of synthesized clips against a speaker is the mean over the clips of the cosine between each
clip's embedding and the speaker's centroid (the mean of the unit embeddings of its recordings, renormalized).
That is SECS as YourTTS reports it (the mean per-utterance cosine to the reference), with the centroid for the
reference, since held-out recordings are other sentences than the synthesized ones: the centroid is the encoder's
best estimate of the speaker from all of them. A mean of per-clip cosines, rather than the cosine of the synthesized
clips' centroid, also counts a model whose voice drifts from sentence to sentence: the centroid of drifting clips
can sit close to the speaker while no clip does. The embeddings are non-negative (the encoder ends in a ReLU), so
the figures lie in [0, 1]; on en_US-joe-medium (tests/test_speaker_similarity.py), clips of Joe score 0.9 against
other clips of Joe and 0.5-0.6 against Joe raised by 4 semitones.

The encoder is loaded once per process (`voice_encoder`, cached), on the CPU.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import types

import numpy as np

from recipe.audio import as_mono_float, resample
from recipe.errors import MissingExtraError

# Resemblyzer's sampling rate (its hparams.sampling_rate)
ENCODER_RATE = 16000
ENCODER_PACKAGE = "resemblyzer"
INSTALL_HINT = 'pip install -e ".[similarity]"'
# What comparison.json and the logs name as the encoder
ENCODER_NAME = "Resemblyzer VoiceEncoder (GE2E, 256-d)"


def similarity_available() -> bool:
    """Whether the encoder's package is installed (without importing it)."""
    return importlib.util.find_spec(ENCODER_PACKAGE) is not None


def missing_message(feature: str = "speaker similarity") -> str:
    """The one line that says the `similarity` extra is missing and how to install it."""
    return f"{feature} needs the `similarity` extra (Resemblyzer's speaker encoder): {INSTALL_HINT}"


def _import_resemblyzer():
    """`resemblyzer`, imported where setuptools no longer ships `pkg_resources`.

    webrtcvad 2.0.10 (what Resemblyzer requires) reads its own version with `pkg_resources.get_distribution` on
    import, and setuptools >= 81 has dropped `pkg_resources`; pinning an old setuptools in a user's environment for
    one version string would be worse than answering that one call: a stand-in with `get_distribution` alone is put
    in `sys.modules` for the import and taken out after it, so that nothing else ever sees it.
    """
    if importlib.util.find_spec("pkg_resources") is not None:
        return importlib.import_module(ENCODER_PACKAGE)
    stand_in = types.ModuleType("pkg_resources")
    stand_in.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
    sys.modules["pkg_resources"] = stand_in
    try:
        return importlib.import_module(ENCODER_PACKAGE)
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]


@functools.cache
def voice_encoder():
    """Resemblyzer's `VoiceEncoder` on the CPU, made once per process; `MissingExtraError` (naming `INSTALL_HINT`)
    when the extra, or a package it needs, is not installed."""
    if not similarity_available():
        raise MissingExtraError(missing_message())
    try:
        resemblyzer = _import_resemblyzer()
    except ImportError as error:  # librosa or webrtcvad, which the extra brings, missing or broken
        raise MissingExtraError(f"{missing_message()} ({error})") from error
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


def _prepared(waveform: np.ndarray, sampling_rate: int) -> np.ndarray:
    """One clip as the encoder reads it: mono float32 at 16 kHz, in [-1, 1], level raised and long pauses cut."""
    from resemblyzer import preprocess_wav

    samples = resample(as_mono_float(waveform).astype(np.float32), sampling_rate, ENCODER_RATE)
    # webrtcvad reads 16-bit PCM: a sample beyond full scale would wrap around instead of clipping
    samples = np.clip(samples, -1.0, 1.0)
    if not np.any(samples):
        return samples  # digital silence: the level normalization would divide by its zero RMS
    trimmed = preprocess_wav(samples)
    return trimmed if trimmed.size else samples


def embed_waveforms(waveforms: list[np.ndarray], sampling_rate: int) -> np.ndarray:
    """The encoder's embeddings of mono float clips at `sampling_rate`: `(len(waveforms), 256)` float64, each row of
    norm 1. Deterministic: the same clip always gives the same row."""
    encoder = voice_encoder()
    rows = [encoder.embed_utterance(_prepared(waveform, sampling_rate)) for waveform in waveforms]
    embeddings = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("the speaker encoder returned a non-finite embedding")
    return embeddings


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if embeddings.size == 0 or np.any(norms == 0):
        raise ValueError("need at least one embedding, none of them zero")
    return embeddings / norms


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """A speaker's centroid: the mean of its clips' embeddings, each normalized first (so that no clip weighs more),
    renormalized to norm 1."""
    mean = _unit_rows(embeddings).mean(axis=0)
    return mean / np.linalg.norm(mean)


def cosines_to(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The cosine of each embedding (row) with `reference` (a centroid)."""
    return _unit_rows(embeddings) @ _unit_rows(reference)[0]


def similarity_to(embeddings: np.ndarray, reference: np.ndarray) -> float:
    """The mean per-clip cosine of `embeddings` with `reference`: the speaker-similarity figure (module docstring)."""
    return float(np.mean(cosines_to(embeddings, reference)))


def similarity_matrix(synthesized: dict[str, np.ndarray], references: dict[str, np.ndarray]) -> dict:
    """`{row: {column: figure}}`: for each set of synthesized clips (`row`, e.g. the clips read as one speaker), its
    figure against the centroid of each speaker's recordings (`column`)."""
    centroids = {name: centroid(embeddings) for name, embeddings in references.items()}
    return {
        row: {column: similarity_to(embeddings, reference) for column, reference in centroids.items()}
        for row, embeddings in synthesized.items()
    }
