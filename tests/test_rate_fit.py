"""`--fit_speaking_rate`: the saved model's speaking rate fitted to the training recordings' rate."""

from __future__ import annotations

import math
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsModel, VitsTokenizer, set_seed

from recipe.evaluation.metrics import spoken_characters
from recipe.training.rate_fit import fit_speaking_rate

TEXTS = ["roj baş", "tu çawa yî", "ez baş im spas", "şev baş xewa xweş"]


RATE = 16000
SECONDS_PER_LETTER = 0.07  # the stand-in model's pace at speaking_rate 1


@pytest.fixture
def tiny(monkeypatch):
    """A tiny model whose synthesis is a stand-in: a tone as long as its text at its speaking rate, rounded up to
    whole 256-sample frames as VITS's durations are, in low noise. (A random model's noise holds no speech.)"""
    tokenizer = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    set_seed(0)
    vits = VitsModel(make_tiny_config(vocab_size=len(tokenizer)))

    def stand_in(model, tokenizer, text, seed=0, speaker_id=None):
        frames = math.ceil(spoken_characters(text) * SECONDS_PER_LETTER / model.speaking_rate * RATE / 256)
        return _clip(0.3, frames * 256 / RATE, 0.4), 0.0

    monkeypatch.setattr("recipe.training.rate_fit.synthesize", stand_in)
    return vits, tokenizer


def _clip(lead: float, speech: float, tail: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    clip = 1e-4 * rng.standard_normal(int((lead + speech + tail) * RATE))
    t = np.arange(int(speech * RATE)) / RATE
    clip[int(lead * RATE) : int(lead * RATE) + t.size] += 0.3 * np.sin(2 * np.pi * 150 * t)
    return clip.astype(np.float32)


def _split(slower: float) -> datasets.Dataset:
    """Recordings of the texts by a speaker `slower` times as slow as the stand-in, with other silences."""
    waveforms = [_clip(0.1, spoken_characters(t) * SECONDS_PER_LETTER * slower, 0.2) for t in TEXTS]
    return datasets.Dataset.from_dict(
        {"text": TEXTS, "source_text": TEXTS, "waveform": waveforms, "speaker_id": [0] * len(TEXTS)}
    )


def _trainer(vits, fit: bool):
    return SimpleNamespace(args=SimpleNamespace(fit_speaking_rate=fit, seed=0), model=SimpleNamespace(vits=vits))


def test_a_slower_speaker_gets_a_lower_speaking_rate_in_the_config(tiny, tmp_path):
    vits, tokenizer = tiny
    figures = fit_speaking_rate(_trainer(vits, True), _split(slower=1.25), tokenizer)
    assert figures["rate_fit_clips"] == len(TEXTS) and figures["rate_fit_speaking_rate_before"] == 1.0
    assert figures["rate_fit_speaking_rate"] == pytest.approx(0.8, rel=0.05)
    assert figures["rate_fit_recordings_rate"] < figures["rate_fit_synthesized_rate"]
    assert figures["rate_fit_ratio_after"] == pytest.approx(1.0, abs=0.05)
    # what a pipeline user loads
    assert vits.speaking_rate == figures["rate_fit_speaking_rate"]
    vits.save_pretrained(tmp_path)
    assert VitsModel.from_pretrained(tmp_path).speaking_rate == pytest.approx(figures["rate_fit_speaking_rate"])


def test_without_the_flag_nothing_changes(tiny):
    vits, tokenizer = tiny
    assert fit_speaking_rate(_trainer(vits, False), _split(1.25), tokenizer) == {}
    assert vits.config.speaking_rate == 1.0


def test_a_model_without_speech_keeps_its_rate(tiny, monkeypatch, caplog):
    vits, tokenizer = tiny
    monkeypatch.setattr("recipe.training.rate_fit.synthesize", lambda *a, **k: (np.zeros(RATE, np.float32), 0.0))
    assert fit_speaking_rate(_trainer(vits, True), _split(1.25), tokenizer) == {}
    assert vits.config.speaking_rate == 1.0 and "speaking_rate kept" in caplog.text
