"""Screening by an ASR transcript (--screen_asr_model, `recipe.data.transcript_screening`): a fake recognizer that
"hears" each clip's true sentence, so that the clip whose metadata holds another sentence is dropped as
`transcript_mismatch` with its CER in data_clips.tsv; the flag off changes nothing and loads nothing; a bad
--max_transcript_cer and a model that cannot be loaded are refused before any audio is featurized."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR, cache_key_inputs, make_tiny_config

import recipe.data.feature_cache as feature_cache
import recipe.data.transcript_screening as transcript_screening
from recipe.data.pipeline import prepare_datasets
from recipe.evaluation.asr import AsrUnavailableError
from recipe.training.arguments import DataArguments

RATE = 16000
# clip i is a modulated tone at CARRIERS[i]: the fake recognizer tells the clips apart by it, trimmed or not
CARRIERS = [150 + 40 * i for i in range(8)]
MISMATCH = 3  # the clip whose metadata holds another sentence
WRONG_TEXT = "Pisîk li ser maseyê razaye û xewn dibîne."


def tone(carrier: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    signal = np.sin(2 * np.pi * carrier * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


class FakeAsr:
    """What `recipe.evaluation.asr.transcribe` calls of a transformers pipeline: the clip's true sentence, found by
    its carrier frequency."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.calls = 0
        self.feature_extractor = type("Extractor", (), {"sampling_rate": RATE})()

    def __call__(self, inputs: dict) -> dict:
        self.calls += 1
        samples, rate = inputs["raw"], inputs["sampling_rate"]
        spectrum = np.abs(np.fft.rfft(samples))
        peak = np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]
        index = int(np.argmin([abs(peak - carrier) for carrier in CARRIERS]))
        return {"text": self.texts[index]}


@pytest.fixture
def folder(tmp_path):
    """An LJSpeech folder of 8 two-second tones with the demo's sentences (clip MISMATCH's replaced by another one)
    and a 0.3 s one, `too_short`, on which no recognizer may run. Returns the folder and the true sentences."""
    lines = (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()
    texts = [line.split("|")[1] for line in lines[: len(CARRIERS)]]
    root = tmp_path / "lj"
    (root / "wavs").mkdir(parents=True)
    rows = []
    for index, (carrier, text) in enumerate(zip(CARRIERS, texts)):
        sf.write(root / "wavs" / f"clip{index}.wav", tone(carrier), RATE)
        written = WRONG_TEXT if index == MISMATCH else text
        rows.append(f"clip{index}|{written}|{written}")
    sf.write(root / "wavs" / "short.wav", tone(CARRIERS[0], 0.3), RATE)
    rows.append(f"short|{texts[0]}|{texts[0]}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root, texts


def _args(root: Path, tmp_path: Path, **overrides) -> DataArguments:
    # the tones are narrow band and steady: the spectral checks and the rate check are not what is tested here
    return DataArguments(
        dataset_name=str(root),
        eval_fraction=0.2,
        cache_dir=str(tmp_path / "cache"),
        min_snr_db=0,
        min_bandwidth_hz=0,
        max_rate_deviation=0,
        **overrides,
    )


def _prepare(args: DataArguments, output: Path):
    from transformers import VitsTokenizer

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    features, report = prepare_datasets(args, tokenizer, make_tiny_config(vocab_size=len(tokenizer)), str(output))
    with open(output / "data_clips.tsv", encoding="utf-8") as handle:
        rows = {Path(row["path"]).stem: row for row in csv.DictReader(handle, delimiter="\t")}
    for split in report.values():
        assert split["seen"] == split["kept"] + sum(entry["count"] for entry in split["dropped"].values())
    return features, report, rows


def test_a_clip_whose_transcript_is_another_sentence_is_dropped(folder, tmp_path, monkeypatch):
    root, texts = folder
    asr = FakeAsr(texts)
    loaded = []
    monkeypatch.setattr(
        transcript_screening, "load_asr", lambda name, device, flag: loaded.append((name, flag)) or asr
    )
    features, report, rows = _prepare(_args(root, tmp_path, screen_asr_model="fake-asr"), tmp_path / "on")

    assert loaded == [("fake-asr", "--screen_asr_model")]  # once, for every split
    assert asr.calls == len(CARRIERS)  # every otherwise kept clip, not the too_short one
    assert {clip: row["drop_reason"] for clip, row in rows.items()} == {
        **{f"clip{i}": "" for i in range(len(CARRIERS))},
        f"clip{MISMATCH}": "transcript_mismatch",
        "short": "too_short",
    }
    assert float(rows[f"clip{MISMATCH}"]["transcript_cer"]) > 0.5
    assert all(float(rows[f"clip{i}"]["transcript_cer"]) == 0.0 for i in range(len(CARRIERS)) if i != MISMATCH)
    assert rows["short"]["transcript_cer"] == ""
    assert sum(split["dropped"]["transcript_mismatch"]["count"] for split in report.values()) == 1
    assert sum(len(split) for split in features.values()) == len(CARRIERS) - 1
    speakers = [entry for split in report.values() for entry in split["screening"]["speakers"]]
    assert all(entry["transcript_cer"]["min"] == 0.0 for entry in speakers if entry["transcript_cer"])
    assert max(entry["transcript_cer"]["max"] for entry in speakers if entry["transcript_cer"]) > 0.5

    # a looser bound is another cache (the bound is in the key) and keeps the clip
    asr.calls = 0
    _, _, rows = _prepare(_args(root, tmp_path, screen_asr_model="fake-asr", max_transcript_cer=1.0), tmp_path / "lax")
    assert asr.calls == len(CARRIERS) and rows[f"clip{MISMATCH}"]["drop_reason"] == ""


def test_the_flag_off_loads_nothing_and_changes_nothing(folder, tmp_path, monkeypatch):
    root, _ = folder

    def refuse(*args, **kwargs):
        raise AssertionError("no recognizer may be loaded without --screen_asr_model")

    monkeypatch.setattr(transcript_screening, "load_asr", refuse)
    features, report, rows = _prepare(_args(root, tmp_path), tmp_path / "off")
    assert {clip: row["drop_reason"] for clip, row in rows.items() if row["drop_reason"]} == {"short": "too_short"}
    assert all(row["transcript_cer"] == "" for row in rows.values())
    assert all(split["dropped"]["transcript_mismatch"]["count"] == 0 for split in report.values())
    assert sum(len(split) for split in features.values()) == len(CARRIERS)


@pytest.mark.parametrize("bound", [0, -0.1, 1.5, float("nan")])
def test_a_bound_outside_0_1_is_refused(bound):
    with pytest.raises(ValueError, match="--max_transcript_cer"):
        DataArguments(dataset_name="x", max_transcript_cer=bound)
    assert DataArguments(dataset_name="x", max_transcript_cer=1.0).max_transcript_cer == 1.0


def test_a_model_that_cannot_be_loaded_stops_before_any_clip_is_featurized(folder, tmp_path, monkeypatch):
    root, _ = folder

    def featurize_batch(*args, **kwargs):
        raise AssertionError("featurized before the recognizer was loaded")

    monkeypatch.setattr(feature_cache, "featurize_batch", featurize_batch)
    missing = tmp_path / "no_such_model"
    with pytest.raises(AsrUnavailableError, match="--screen_asr_model") as error:
        _prepare(_args(root, tmp_path, screen_asr_model=str(missing)), tmp_path / "missing")
    assert str(missing) in str(error.value) and "\n" not in str(error.value)
    # a folder that holds no model either
    missing.mkdir()
    with pytest.raises(AsrUnavailableError, match="--screen_asr_model"):
        _prepare(_args(root, tmp_path, screen_asr_model=str(missing)), tmp_path / "missing")


def test_the_model_and_its_bound_are_in_the_cache_key():
    source, tokenizer, spectrogram = cache_key_inputs()

    def key(**overrides):
        return feature_cache.feature_cache_key(
            source, DataArguments(dataset_name="x", **overrides), tokenizer, spectrogram
        )

    off = key()
    assert key(max_transcript_cer=0.4) == off  # without a model the bound changes nothing
    assert len({off, key(screen_asr_model="a"), key(screen_asr_model="b")}) == 3
    assert key(screen_asr_model="a", max_transcript_cer=0.4) != key(screen_asr_model="a")


def test_a_real_recognizer_scores_a_clip(tmp_path):
    """The plumbing through transformers: the tiny random wav2vec2 CTC model of tests/test_compare.py loads under
    --screen_asr_model and gives a clip at another rate a CER (garbage, but a number)."""
    from test_compare import save_tiny_asr

    asr = transcript_screening.load_screening_asr(
        DataArguments(dataset_name="x", screen_asr_model=save_tiny_asr(tmp_path / "asr"))
    )
    cer = transcript_screening.transcript_cer(asr, tone(200, 1.0)[::2].copy(), RATE // 2, "Roj baş")
    assert np.isfinite(cer) and cer >= 0
    assert np.isnan(transcript_screening.transcript_cer(asr, tone(200, 1.0), RATE, " ?! "))
