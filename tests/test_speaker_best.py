"""`--speaker_id best` / `--speakers best:N`: speakers chosen by what the screening keeps of them, on a generated
Common Voice folder whose biggest speaker is mostly noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR
from test_data import assert_accounted, data_args, write_tsv

import recipe.data.features
from recipe.data.pipeline import DataError, format_report, prepare_datasets
from recipe.data.screening_report import rank_speakers
from recipe.data.speaker_best import choose_best
from recipe.training.arguments import DataArguments

RATE = 16000
# training clips per speaker, and how many of them get white noise (dropped as low_snr)
PLAN = {"a": (12, 9), "b": (8, 0), "c": (6, 1)}


def noisy(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`samples` with white noise at half their RMS mixed in (6 dB SNR, as `test_screening` mixes it: the detector
    measures 11-12 dB, under --min_snr_db 20; at 0 dB it finds no speech at all, `no_speech`), scaled below full
    scale so that it is not clipped."""
    mixed = samples + 0.5 * np.sqrt(np.mean(samples**2)) * rng.standard_normal(len(samples))
    return mixed * min(1.0, 0.9 / np.abs(mixed).max())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A Common Voice folder of the demo's LJSpeech clips as three speakers: `a` has the most audio (the longest
    clips), most of it noisy; `b` less, all clean; `c` the least, one noisy clip. One clean dev clip each."""
    folder = tmp_path_factory.mktemp("best") / "cv"
    (folder / "clips").mkdir(parents=True)
    lines = (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()
    clips = sorted(
        (line.split("|") for line in lines),
        key=lambda parts: -sf.info(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{parts[0]}.wav").duration,
    )
    rng = np.random.default_rng(0)
    rows = {"train": [], "dev": []}
    for speaker, (count, noisy_count) in PLAN.items():
        for position in range(count + 1):
            clip_id, _, text = clips.pop(0)
            samples = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"{clip_id}.wav", dtype="float32")[0]
            if position < noisy_count:
                samples = noisy(samples, rng)
            sf.write(folder / "clips" / f"{clip_id}.wav", samples.astype(np.float32), RATE, subtype="FLOAT")
            split = "dev" if position == count else "train"
            rows[split].append({"client_id": speaker, "path": f"{clip_id}.wav", "sentence": text})
    for split, split_rows in rows.items():
        write_tsv(folder / f"{split}.tsv", split_rows, ["client_id", "path", "sentence"])
    return folder


def speakers_of(folder: Path, split: str) -> dict[str, str]:
    """Clip file name -> speaker, from a TSV."""
    lines = (folder / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {line.split("\t")[1]: line.split("\t")[0] for line in lines}


def prepare(folder, tmp_path, tokenizer, model_config, **flags):
    args = data_args(folder, tmp_path, **flags)
    return prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))


def test_the_cleaner_speaker_wins_over_the_one_with_the_most_audio(
    folder, tmp_path, tokenizer, model_config, monkeypatch
):
    train_speakers = speakers_of(folder, "train")
    raw = {s: sum(sf.info(folder / "clips" / p).duration for p, o in train_speakers.items() if o == s) for s in PLAN}
    assert max(raw, key=raw.get) == "a" and raw["a"] > raw["b"] > raw["c"]  # what --speaker_id top would take

    features, report = prepare(folder, tmp_path, tokenizer, model_config, speaker_id="best")
    assert features["train"].features["speaker_id"].names == ["b"]
    assert set(features["train"]["speaker_id"]) == {0}
    assert {train_speakers[Path(p).name] for p in features["train"]["path"]} == {"b"}
    assert len(features["train"]) == report["train"]["kept"] == 8
    # the eval split: b's dev clip only
    assert [speakers_of(folder, "dev")[Path(p).name] for p in features["eval"]["path"]] == ["b"]
    assert report["train"]["speaker_id"] == report["eval"]["speaker_id"] == "b"
    assert_accounted(report)
    assert report["train"]["dropped"]["speaker_filtered"]["count"] == 12 + 6
    assert report["eval"]["dropped"]["speaker_filtered"]["count"] == 2

    ranking = report["train"]["speaker_ranking"]
    assert ranking["rule"] == "--speaker_id best" and ranking["chosen"] == ["b"]
    entries = {entry["speaker"]: entry for entry in ranking["speakers"]}
    assert [entry["speaker"] for entry in ranking["speakers"]] == ["b", "c", "a"]
    assert [entry["rank"] for entry in ranking["speakers"]] == [1, 2, 3]
    assert [entry["chosen"] for entry in ranking["speakers"]] == [True, False, False]
    assert entries["a"]["dropped"] == {"low_snr": 9} and entries["c"]["dropped"] == {"low_snr": 1}
    assert entries["b"]["clean_share"] == 1 and entries["b"]["kept"] == 8
    for entry in entries.values():
        assert entry["clean_share"] == pytest.approx(entry["kept"] / entry["clips"], abs=1e-4)
        assert entry["score"] == pytest.approx(entry["minutes_kept"] * entry["clean_share"], abs=2e-3)
        assert entry["kept"] + sum(entry["dropped"].values()) == entry["clips"]
    assert json.loads((tmp_path / "out" / "data_report.json").read_text())["train"]["speaker_ranking"] == ranking
    summary = format_report(report)
    assert "speakers ranked for --speaker_id best" in summary
    assert all(f" {speaker}: score " in summary for speaker in PLAN)

    # from the cache: the same choice, the same speaker index, nothing featurized
    def must_not_run(*_, **__):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(recipe.data.features, "featurize", must_not_run)
    cached, cached_report = prepare(folder, tmp_path, tokenizer, model_config, speaker_id="best")
    assert cached_report == report
    assert (
        cached["train"].features["speaker_id"].names == ["b"] and cached["train"]["path"] == features["train"]["path"]
    )


def test_best_two_picks_the_two_cleanest_and_indexes_them(folder, tmp_path, tokenizer, model_config):
    features, report = prepare(folder, tmp_path, tokenizer, model_config, speakers="best:2")
    names = features["train"].features["speaker_id"].names
    assert names == ["b", "c"] and report["train"]["speaker_ranking"]["chosen"] == ["b", "c"]
    assert report["train"]["speaker_id"] == ["b", "c"]
    train_speakers, dev_speakers = speakers_of(folder, "train"), speakers_of(folder, "dev")
    # every row's speaker_id is its own speaker's index among the chosen
    for split, owners in (("train", train_speakers), ("eval", dev_speakers)):
        rows = features[split]
        assert [names[index] for index in rows["speaker_id"]] == [owners[Path(p).name] for p in rows["path"]]
    assert set(features["train"]["speaker_id"]) == set(features["eval"]["speaker_id"]) == {0, 1}
    assert_accounted(report)
    assert report["train"]["dropped"]["speaker_filtered"]["count"] == 12
    assert report["eval"]["dropped"]["speaker_filtered"]["count"] == 1
    assert (
        report["train"]["kept"]
        == len(features["train"])
        == 8 + report["train"]["speaker_ranking"]["speakers"][1]["kept"]
    )
    # the multi-speaker report table names the chosen speakers
    assert [entry["name"] for entry in report["train"]["speakers"]] == ["b", "c"]
    assert [entry["chosen"] for entry in report["train"]["speaker_ranking"]["speakers"]] == [True, True, False]

    # the eval split alone: the training split is featurized too (the choice is made on it), the same eval clips
    args = data_args(folder, tmp_path, speakers="best:2")
    alone, alone_report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "alone"), splits=("eval",))
    assert set(alone) == {"eval"} and alone["eval"]["path"] == features["eval"]["path"]
    assert alone["eval"]["speaker_id"] == features["eval"]["speaker_id"]
    assert alone_report["train"]["speaker_ranking"] == report["train"]["speaker_ranking"]


def test_bad_values_are_refused_with_what_to_do(folder, tmp_path, tokenizer, model_config, monkeypatch):
    with pytest.raises(DataError, match=r"'best:1'.*use --speaker_id best"):
        DataArguments(dataset_name=str(folder), speakers="best:1")
    with pytest.raises(DataError, match=r"'best:0'.*N >= 2"):
        DataArguments(dataset_name=str(folder), speakers="best:0")
    with pytest.raises(DataError, match=r"'best': give the number"):
        DataArguments(dataset_name=str(folder), speakers="best")

    def must_not_run(*_, **__):
        raise AssertionError("a clip was featurized")

    with monkeypatch.context() as patch:  # refused before any clip is decoded
        patch.setattr(recipe.data.features, "featurize", must_not_run)
        with pytest.raises(DataError, match=r"--speakers best:4: the training split has 3 speaker\(s\), not 4"):
            prepare(folder, tmp_path, tokenizer, model_config, speakers="best:4")
        with pytest.raises(DataError, match=r"--speaker_id 'best': .* has no speaker column"):
            prepare(DEMO_DIR / "kmr_ljspeech", tmp_path, tokenizer, model_config, speaker_id="best")

    # every clip too short: no speaker keeps one; the report (with the ranking) is written before the stop
    with pytest.raises(DataError, match=r"--speaker_id best: no speaker keeps a clip .*too_short 26"):
        prepare(folder, tmp_path, tokenizer, model_config, speaker_id="best", min_duration_in_seconds=5)
    written = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert [entry["kept"] for entry in written["train"]["speaker_ranking"]["speakers"]] == [0, 0, 0]


def _columns(rows):
    """Report columns for (speaker, drop reason, samples) rows."""
    return {
        "speaker": [row[0] for row in rows],
        "drop_reason": [row[1] for row in rows],
        "waveform_length": [row[2] for row in rows],
    }


def test_ties_go_to_the_smaller_id_and_too_few_keeping_speakers_are_refused():
    rows = [("y", "", 32000), ("x", "", 16000), ("x", "", 16000), ("z", "low_snr", 0), ("z", "", 64000)]
    ranking = rank_speakers(_columns(rows), RATE)
    # x and y keep 2 s each, all clean; z 4 s with half its clips: the same score, in id order
    assert [entry["speaker"] for entry in ranking] == ["x", "y", "z"]
    assert ranking[0]["score"] == ranking[2]["score"] == pytest.approx(2 / 60, abs=1e-4)
    assert choose_best(ranking, 2) == ("x", "y")
    with pytest.raises(DataError, match="only 1 of the 2 speakers keep a clip after screening: use --speaker_id best"):
        choose_best(rank_speakers(_columns([("x", "", 16000), ("y", "low_snr", 0)]), RATE), 2)
