"""`python -m recipe.compare`: the level a voice is judged against (`--level_reference`) and the speaking rate."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DEMO_DIR
from test_compare import save_tiny_tts

from recipe.errors import ArgumentsError
from recipe.evaluation.compare import CompareArgumentParser, main
from recipe.evaluation.metrics import rate_ratios, speaking_rate, spoken_characters
from recipe.evaluation.verdicts import verdicts

RATE = 16000


def _means(original_rms, finetuned_rms, reference_rms=None):
    means = {"original": {"rms": original_rms}, "finetuned": {"rms": finetuned_rms}}
    if reference_rms is not None:
        means["reference"] = {"rms": reference_rms}
    return means


def _amplitude(means, level_reference):
    args = SimpleNamespace(
        level_reference=level_reference, amplitude_tolerance=0.3, max_silence_ratio=0.5, similarity_margin=0.05
    )
    sentences = [{"index": 0, "finetuned": {"silence_ratio": 0.1}}]
    return verdicts(sentences, {"means": means}, args, None, "off")[0]


def test_a_new_speaker_louder_than_the_original_passes_against_its_own_recordings():
    # the real-voice benchmark's flite:slt run: Joe at 0.055, the fine-tune at 0.118 like the target's recordings
    means = _means(0.055, 0.118, reference_rms=0.11)
    by_original = _amplitude(means, "original")
    assert by_original["status"] == "FAIL" and "vs original 0.0550" in by_original["message"]
    by_recordings = _amplitude(means, "recordings")
    assert by_recordings["status"] == "PASS" and "vs recordings 0.1100 (+7%" in by_recordings["message"]
    # today's behaviour without --original: the recordings
    assert "vs recordings" in _amplitude({"finetuned": {"rms": 0.1}, "reference": {"rms": 0.1}}, "original")["message"]
    skipped = _amplitude(_means(0.055, 0.118), "recordings")
    assert skipped["status"] == "SKIP" and "no recordings" in skipped["message"]


def test_level_reference_is_checked_when_parsed(tmp_path):
    parser = CompareArgumentParser()
    with pytest.raises(ArgumentsError, match="--level_reference recordings needs --references"):
        parser.parse(["--finetuned", str(tmp_path), "--texts", "t.txt", "--level_reference", "recordings"])
    with pytest.raises(ArgumentsError, match="--level_reference must be one of original, recordings"):
        parser.parse(["--finetuned", str(tmp_path), "--texts", "t.txt", "--level_reference", "target"])
    assert parser.parse(["--finetuned", str(tmp_path), "--texts", "t.txt"]).level_reference == "original"


def _clip(lead: float, speech: float, tail: float, level: float = 0.3) -> np.ndarray:
    """Low noise, then `speech` seconds of a loud harmonic tone (a "voice"), then low noise again."""
    rng = np.random.default_rng(0)
    n = int((lead + speech + tail) * RATE)
    clip = 1e-4 * rng.standard_normal(n)
    t = np.arange(int(speech * RATE)) / RATE
    start = int(lead * RATE)
    clip[start : start + t.size] += level * (np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 450 * t))
    return clip.astype(np.float32)


def test_speaking_rate_counts_letters_over_the_speech_with_the_edges_cut():
    assert spoken_characters("Roj baş, tu çawa yî?") == 14
    figures = speaking_rate("Roj baş, tu çawa yî?", _clip(0.5, 1.4, 0.8), RATE)
    assert figures["speech_s"] == pytest.approx(1.4, abs=0.05)  # the detector works in 20 ms frames
    assert figures["speaking_rate"] == pytest.approx(14 / 1.4, rel=0.04)
    # the level does not move it (the detector's thresholds follow the clip's floor and peak) ...
    quiet = speaking_rate("Roj baş, tu çawa yî?", _clip(0.5, 1.4, 0.8, level=0.01), RATE)
    assert quiet["speaking_rate"] == pytest.approx(figures["speaking_rate"], rel=0.02)
    # ... nor more silence around the same speech
    assert speaking_rate("Roj baş, tu çawa yî?", _clip(1.5, 1.4, 2.0), RATE)["speech_s"] == pytest.approx(
        1.4, abs=0.05
    )
    assert speaking_rate("text", np.zeros(RATE, np.float32), RATE) == {"speech_s": 0.0}


def test_rate_ratios_are_each_models_mean_over_the_recordings():
    means = {"reference": {"speaking_rate": 10.0}, "original": {"speaking_rate": 12.0}, "finetuned": {"rms": 1.0}}
    assert rate_ratios(means) == {"original": pytest.approx(1.2)}
    assert rate_ratios({"original": {"speaking_rate": 12.0}}) == {}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("rate")
    original, finetuned = save_tiny_tts(root / "original", seed=0), save_tiny_tts(root / "finetuned", seed=1)
    out = root / "comparison"
    status = main(
        [
            "--original", original, "--finetuned", finetuned,
            "--references", str(DEMO_DIR / "kmr_ljspeech"), "--references_split", "eval", "--max_samples", "2",
            "--level_reference", "recordings", "--speaker_similarity", "off",
            "--device", "cpu", "--output_dir", str(out), "--cache_dir", str(root / "cache"),
        ]
    )  # fmt: skip
    return status, json.loads((out / "comparison.json").read_text(encoding="utf-8"))


def test_compare_reports_the_rate_of_every_clip_model_and_recording(compared, capsys):
    status, comparison = compared
    for sentence in comparison["sentences"]:
        reference = sentence["reference"]
        assert reference["speaking_rate"] == pytest.approx(
            spoken_characters(sentence["scoring_text"]) / reference["speech_s"]
        )
        for label in ("original", "finetuned"):
            clip = sentence[label]
            if "speaking_rate" in clip:  # a random model's hum may hold no speech by the detector
                assert clip["rate_ratio"] == pytest.approx(clip["speaking_rate"] / reference["speaking_rate"])
    summary = comparison["summary"]
    assert summary["rate_ratio"] == pytest.approx(rate_ratios(summary["means"]))
    # judged against the recordings, whatever the original's level
    amplitude = comparison["verdicts"][0]
    assert f"vs recordings {summary['means']['reference']['rms']:.4f}" in amplitude["message"]
    assert status in (0, 1)


def test_texts_with_references_take_the_recordings_rate_as_the_baseline(tmp_path):
    finetuned = save_tiny_tts(tmp_path / "finetuned", seed=1)
    texts = tmp_path / "texts.txt"
    texts.write_text("Roj baş.\nSpas.\n", encoding="utf-8")
    out = tmp_path / "comparison"
    main(
        [
            "--finetuned", finetuned, "--texts", str(texts),
            "--references", str(DEMO_DIR / "kmr_ljspeech"), "--references_split", "eval", "--max_samples", "2",
            "--speaker_similarity", "off", "--device", "cpu", "--output_dir", str(out),
            "--cache_dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    reference = comparison["summary"]["means"]["reference"]
    assert set(reference) == {"rms", "speaking_rate"} and reference["speaking_rate"] > 0
    assert all("rate_ratio" not in s["finetuned"] for s in comparison["sentences"])  # no recording of these texts
