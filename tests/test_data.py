"""The data pipeline on small copies of the bundled demo data: each layout, each drop reason, the stops, the cache."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import DEMO_DIR, cache_key_inputs, make_tiny_config

import recipe.data.features
import recipe.data.pipeline
import recipe.data.splits
from recipe.data.pipeline import DROP_REASONS, DataError, prepare_datasets
from recipe.training.arguments import DataArguments

LJSPEECH = DEMO_DIR / "kmr_ljspeech"
COMMON_VOICE = DEMO_DIR / "kmr_common_voice"
SAMPLING_RATE = 16000
HOP = 256


def ljspeech_copy(folder: Path, count: int) -> Path:
    """The first `count` demo clips in an LJSpeech folder of their own."""
    (folder / "wavs").mkdir(parents=True)
    lines = (LJSPEECH / "metadata.csv").read_text(encoding="utf-8").splitlines()[:count]
    for line in lines:
        clip_id = line.split("|")[0]
        shutil.copy(LJSPEECH / "wavs" / f"{clip_id}.wav", folder / "wavs" / f"{clip_id}.wav")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        writer.writeheader()
        writer.writerows(rows)


def common_voice_copy(folder: Path, train_count: int, dev_count: int) -> Path:
    """A Common Voice folder with the first clips of the demo's train.tsv and dev.tsv (validated.tsv = both)."""
    (folder / "clips").mkdir(parents=True)
    columns = list(read_tsv(COMMON_VOICE / "train.tsv")[0])
    splits = {
        "train": read_tsv(COMMON_VOICE / "train.tsv")[:train_count],
        "dev": read_tsv(COMMON_VOICE / "dev.tsv")[:dev_count],
        "test": [],
    }
    splits["validated"] = splits["train"] + splits["dev"]
    for split, rows in splits.items():
        write_tsv(folder / f"{split}.tsv", rows, columns)
    for row in splits["validated"]:
        shutil.copy(COMMON_VOICE / "clips" / row["path"], folder / "clips" / row["path"])
    return folder


def data_args(dataset: Path, tmp_path: Path, **overrides) -> DataArguments:
    return DataArguments(dataset_name=str(dataset), cache_dir=str(tmp_path / "cache"), **overrides)


def assert_accounted(report: dict) -> None:
    for split in report.values():
        assert set(split["dropped"]) == set(DROP_REASONS)
        assert split["seen"] == split["kept"] + sum(entry["count"] for entry in split["dropped"].values())


def test_ljspeech_folder_features(tmp_path, tokenizer, model_config):
    dataset = ljspeech_copy(tmp_path / "lj", 6)
    features, report = prepare_datasets(data_args(dataset, tmp_path), tokenizer, model_config, str(tmp_path / "out"))

    assert set(features) == {"train", "eval"}
    # no dev split in an LJSpeech folder: 5 % of 6 clips rounds to the minimum of one held-out clip
    assert (len(features["train"]), len(features["eval"])) == (5, 1)
    assert report["train"]["seen"] == 5 and report["eval"]["seen"] == 1
    assert_accounted(report)
    assert json.loads((tmp_path / "out" / "data_report.json").read_text()) == report

    row = features["train"].with_format("numpy")[0]
    waveform, log_mel = row["waveform"], row["log_mel"]
    assert waveform.dtype == np.float32 and log_mel.dtype == np.float32
    assert len(waveform) == row["waveform_length"]
    info = sf.info(row["path"])
    assert info.samplerate == SAMPLING_RATE and len(waveform) == info.frames
    assert log_mel.shape == (row["waveform_length"] // HOP, 80) and row["mel_length"] == log_mel.shape[0]
    assert row["tokens_length"] == len(row["input_ids"]) == 2 * len(row["text"]) + 1  # add_blank
    assert list(row["input_ids"]) == tokenizer(row["text"]).input_ids
    # the third metadata column (numbers spelled out) is the text used
    texts = set(features["train"]["text"]) | set(features["eval"]["text"])
    assert all(text == text.lower() and "," not in text for text in texts)
    assert features["train"].features["speaker_id"].names == ["speaker"]
    hours = sum(features["train"]["waveform_length"]) / SAMPLING_RATE / 3600
    assert report["train"]["hours"] == pytest.approx(hours)


def test_ljspeech_uses_normalized_column(tmp_path, tokenizer, model_config):
    dataset = ljspeech_copy(tmp_path / "lj", 2)
    wav = next((dataset / "wavs").iterdir())
    (dataset / "metadata.csv").write_text(
        f"{wav.stem}|Ez 3 sêvan dixwim.|Ez sê sêvan dixwim.\n" + (dataset / "metadata.csv").read_text().splitlines()[1]
    )
    args = data_args(dataset, tmp_path, eval_fraction=0.5)
    features, _ = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    texts = set(features["train"]["text"]) | set(features["eval"]["text"])
    assert "ez sê sêvan dixwim" in texts


def test_common_voice_folder_48khz_mp3(tmp_path, tokenizer, model_config):
    dataset = common_voice_copy(tmp_path / "cv", train_count=4, dev_count=2)
    features, report = prepare_datasets(data_args(dataset, tmp_path), tokenizer, model_config, str(tmp_path / "out"))

    # dev.tsv is the eval split
    assert (len(features["train"]), len(features["eval"])) == (4, 2)
    assert_accounted(report)
    row = features["eval"][0]
    assert Path(row["path"]).name == read_tsv(dataset / "dev.tsv")[0]["path"]
    # resampled from 48 kHz to the model's 16 kHz
    mp3_seconds = sf.info(row["path"]).duration
    assert sf.info(row["path"]).samplerate == 48000
    assert row["waveform_length"] / SAMPLING_RATE == pytest.approx(mp3_seconds, abs=0.06)
    speakers = {r["client_id"] for r in read_tsv(dataset / "validated.tsv")}
    assert set(features["train"].features["speaker_id"].names) == speakers


def test_common_voice_validated_excludes_eval_clips(tmp_path, tokenizer, model_config):
    dataset = common_voice_copy(tmp_path / "cv", train_count=3, dev_count=2)
    args = data_args(dataset, tmp_path, train_split_name="validated")
    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert len(features["train"]) == 3 and report["train"]["overlap_with_eval_removed"] == 2
    assert not set(features["train"]["path"]) & set(features["eval"]["path"])


def test_speaker_selection(tmp_path, tokenizer, model_config):
    dataset = common_voice_copy(tmp_path / "cv", train_count=8, dev_count=4)
    rows = read_tsv(dataset / "train.tsv")
    seconds = {}
    for row in rows:
        seconds[row["client_id"]] = (
            seconds.get(row["client_id"], 0) + sf.info(dataset / "clips" / row["path"]).duration
        )
    top = max(seconds, key=seconds.get)

    features, report = prepare_datasets(
        data_args(dataset, tmp_path, speaker_id="top"), tokenizer, model_config, str(tmp_path / "out")
    )
    kept_train = [row for row in rows if row["client_id"] == top]
    assert len(features["train"]) == len(kept_train)
    assert report["train"]["dropped"]["speaker_filtered"]["count"] == len(rows) - len(kept_train)
    assert report["train"]["speaker_id"] == top
    assert features["train"].features["speaker_id"].names == [top]
    assert set(features["train"]["speaker_id"]) == {0}
    assert_accounted(report)

    other = next(row["client_id"] for row in rows if row["client_id"] != top)
    features, _ = prepare_datasets(
        data_args(dataset, tmp_path, speaker_id=other, max_bad_fraction=0.5),
        tokenizer,
        model_config,
        str(tmp_path / "out"),
    )
    assert len(features["train"]) == sum(row["client_id"] == other for row in rows)

    with pytest.raises(DataError, match="no clip in the training split"):
        prepare_datasets(data_args(dataset, tmp_path, speaker_id="nobody"), tokenizer, model_config, str(tmp_path))


def test_each_drop_reason_is_counted_with_its_path(tmp_path, tokenizer, model_config):
    dataset = common_voice_copy(tmp_path / "cv", train_count=3, dev_count=1)
    clips = dataset / "clips"
    rows = read_tsv(dataset / "train.tsv")
    speaker = read_tsv(dataset / "dev.tsv")[0]["client_id"]
    for row in rows:
        row["client_id"] = speaker
    rng = np.random.default_rng(0)

    voice = sf.read(DEMO_DIR / "kmr_ljspeech" / "wavs" / "KMR-0001.wav", dtype="float32")[0]

    def write(name: str, samples: np.ndarray) -> str:
        sf.write(clips / name, np.clip(samples, -1, 1).astype(np.float32), SAMPLING_RATE)
        return name

    def speech(name: str, seconds: float, gain: float = 1.0) -> str:
        """A demo clip repeated or cut to `seconds`, times `gain`: speech that every audio check passes at gain 1."""
        samples = np.tile(voice, 1 + int(seconds * SAMPLING_RATE) // len(voice))[: int(seconds * SAMPLING_RATE)]
        return write(name, gain * samples)

    def noise(name: str, seconds: float) -> str:
        return write(name, 0.1 * rng.standard_normal(int(SAMPLING_RATE * seconds)))

    (clips / "corrupt.mp3").write_bytes(b"ID3\x03\x00 not really audio" * 10)
    sf.write(tmp_path / "outside.wav", np.zeros(SAMPLING_RATE, np.float32), SAMPLING_RATE)
    whole = (clips / speech("cut.mp3", 1.5)).read_bytes()
    (clips / "cut.mp3").write_bytes(whole[: len(whole) // 2])
    sf.write(clips / "nan.wav", np.full(SAMPLING_RATE, np.nan, np.float32), SAMPLING_RATE, subtype="FLOAT")
    bad = [
        (speech("short.wav", 0.2), "Kurt."),
        (speech("long.wav", 3.0), "Dirêj."),
        (speech("silent.wav", 1.0, gain=0.0), "Bêdeng."),
        (speech("loud.wav", 1.0, gain=30.0), "Bilind."),
        (noise("hiss.wav", 1.5), "Xişxiş."),
        (write("noisy.wav", voice + 0.3 * voice.std() * rng.standard_normal(len(voice))), "Bi deng."),
        (
            write("phone.wav", soxr.resample(soxr.resample(voice, SAMPLING_RATE, 8000), 8000, SAMPLING_RATE)),
            "Telefon.",
        ),
        (speech("digits.wav", 1.0), "Ez 2 sêvan dixwim."),
        (speech("no_text.wav", 1.0), "... !!!"),
        (speech("wordy.wav", 1.0), "gelek peyv " * 20),
        ("corrupt.mp3", "Xirab."),
        ("cut.mp3", "Qut."),
        ("nan.wav", "Ne hejmar."),
        ("missing.mp3", "Tune ye."),
        ("../../outside.wav", "Li derve."),
    ]
    rows += [{**rows[0], "path": path, "sentence": text} for path, text in bad]
    rows.append({**rows[0], "client_id": "another speaker", "path": speech("other.wav", 1.0)})
    write_tsv(dataset / "train.tsv", rows, list(rows[0]))

    args = data_args(
        dataset,
        tmp_path,
        speaker_id=speaker,
        max_duration_in_seconds=2.6,
        max_tokens_length=150,
        max_bad_fraction=1,
        max_text_not_in_vocabulary_fraction=0.5,
    )
    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    dropped = report["train"]["dropped"]
    # rate_outlier needs a speaker with 5 kept clips: tests/test_speech_activity.py; low_quality --min_quality and
    # the quality extra: tests/test_quality.py
    # transcript_mismatch --screen_asr_model: tests/test_transcript_screening.py
    expected = {**dict.fromkeys(DROP_REASONS, 1), "rate_outlier": 0, "low_quality": 0, "transcript_mismatch": 0}
    assert {reason: entry["count"] for reason, entry in dropped.items()} == expected
    examples = {reason: [Path(p).name for p in entry["examples"]] for reason, entry in dropped.items()}
    assert examples == {
        "path_outside_dataset": ["outside.wav"],
        "speaker_filtered": ["other.wav"],
        "missing_file": ["missing.mp3"],
        "decode_error": ["corrupt.mp3"],
        "truncated": ["cut.mp3"],
        "non_finite_audio": ["nan.wav"],
        "too_short": ["short.wav"],
        "too_long": ["long.wav"],
        "silent": ["silent.wav"],
        "clipped": ["loud.wav"],
        "no_speech": ["hiss.wav"],
        "low_snr": ["noisy.wav"],
        "narrow_band": ["phone.wav"],
        "low_quality": [],
        "text_not_in_vocabulary": ["digits.wav"],
        "empty_text": ["no_text.wav"],
        "too_many_tokens": ["wordy.wav"],
        "transcript_mismatch": [],
        "rate_outlier": [],
    }
    assert dropped["text_not_in_vocabulary"]["lost_characters"] == ["2"]
    assert dropped["text_not_in_vocabulary"]["characters"] == {"2": 1}
    assert (report["train"]["seen"], report["train"]["kept"], len(features["train"])) == (19, 3, 3)
    assert_accounted(report)


def test_more_tokens_than_frames_is_too_many_tokens(tmp_path, tokenizer, model_config):
    """A text too long for its clip (2 * characters + 1 tokens against 62.5 frames a second) is dropped before
    training, whose alignment would fail on it, under `too_many_tokens` even below --max_tokens_length."""
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    lines = (dataset / "metadata.csv").read_text(encoding="utf-8").splitlines()
    clip_id = lines[3].split("|")[0]
    frames = sf.info(dataset / "wavs" / f"{clip_id}.wav").frames // HOP
    text = "roj baş tu çawa yî ez baş im spas navê min azad e"
    assert 2 * len(text) + 1 > frames and 2 * len(text) + 1 < 500
    lines[3] = f"{clip_id}|{text}|{text}"
    (dataset / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    features, report = prepare_datasets(
        data_args(dataset, tmp_path, eval_fraction=0.3), tokenizer, model_config, str(tmp_path / "out")
    )
    dropped = [report[name]["dropped"]["too_many_tokens"] for name in report]
    assert sum(entry["count"] for entry in dropped) == 1
    assert [Path(path).name for entry in dropped for path in entry["examples"]] == [f"{clip_id}.wav"]
    assert_accounted(report)
    for split in features.values():
        assert all(t <= m for t, m in zip(split["tokens_length"], split["mel_length"]))


def test_bad_fraction_stops_with_examples(tmp_path, tokenizer, model_config):
    dataset = ljspeech_copy(tmp_path / "lj", 8)
    missing = sorted((dataset / "wavs").iterdir())[:2]
    for path in missing:
        path.unlink()
    with pytest.raises(DataError, match="max_bad_fraction") as error:
        prepare_datasets(
            data_args(dataset, tmp_path, eval_fraction=0.2), tokenizer, model_config, str(tmp_path / "out")
        )
    assert any(path.name in str(error.value) for path in missing)
    # the report is written before the run stops
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert sum(split["dropped"]["missing_file"]["count"] for split in report.values()) == 2

    # the same data passes with a looser bound
    args = data_args(dataset, tmp_path, eval_fraction=0.2, max_bad_fraction=0.5)
    features, _ = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert len(features["train"]) + len(features["eval"]) == 6


def test_empty_split_stops_with_counts(tmp_path, tokenizer, model_config):
    dataset = ljspeech_copy(tmp_path / "lj", 3)
    args = data_args(dataset, tmp_path, min_duration_in_seconds=30, max_duration_in_seconds=40)
    with pytest.raises(DataError, match="no clip left.*too_short"):
        prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))


def test_absolute_path_outside_common_voice_folder_is_not_read(tmp_path, tokenizer, model_config, monkeypatch):
    dataset = common_voice_copy(tmp_path / "cv", train_count=4, dev_count=1)
    elsewhere = tmp_path / "private.wav"
    sf.write(elsewhere, np.zeros(SAMPLING_RATE, np.float32), SAMPLING_RATE)
    rows = read_tsv(dataset / "train.tsv")
    rows.append({**rows[0], "path": str(elsewhere)})
    write_tsv(dataset / "train.tsv", rows, list(rows[0]))

    opened = []
    real_decode = recipe.data.features.decode_audio
    monkeypatch.setattr(
        recipe.data.features, "decode_audio", lambda path, name: opened.append(path) or real_decode(path, name)
    )
    args = data_args(dataset, tmp_path, max_bad_fraction=0.5)
    _, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert report["train"]["dropped"]["path_outside_dataset"] == {"count": 1, "examples": [str(elsewhere)]}
    assert str(elsewhere) not in opened and len(opened) == 5
    # the stop names what to do about it, and the flag that reads audio elsewhere is refused for a folder layout
    with pytest.raises(DataError, match="path_outside_dataset.*--allow_audio_outside_dataset"):
        prepare_datasets(data_args(dataset, tmp_path, max_bad_fraction=0.1), tokenizer, model_config, str(tmp_path))
    with pytest.raises(DataError, match="--allow_audio_outside_dataset is for a saved dataset.*common_voice folder"):
        prepare_datasets(
            data_args(dataset, tmp_path, allow_audio_outside_dataset=True), tokenizer, model_config, str(tmp_path)
        )


def test_cache_is_reused_and_keyed_by_arguments(tmp_path, tokenizer, model_config, monkeypatch):
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    args = data_args(dataset, tmp_path, eval_fraction=0.25)
    first, first_report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))

    def must_not_run(*_, **__):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(recipe.data.features, "featurize", must_not_run)
    second, second_report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert second_report == first_report
    assert second["train"]["input_ids"] == first["train"]["input_ids"]
    assert np.array_equal(np.asarray(second["train"][0]["log_mel"]), np.asarray(first["train"][0]["log_mel"]))
    # the features are memory-mapped from the cache folder
    assert all(str(tmp_path / "cache") in f["filename"] for f in second["train"].cache_files)

    # a cap is applied to the cached features and reported separately
    capped, capped_report = prepare_datasets(
        data_args(dataset, tmp_path, eval_fraction=0.25, max_train_samples=2), tokenizer, model_config, str(tmp_path)
    )
    assert len(capped["train"]) == 2
    assert capped_report["train"]["kept"] == 3 and capped_report["train"]["max_samples"]["kept"] == 2

    # a changed filter, a changed clip or --overwrite_cache means new features
    for changed in (
        data_args(dataset, tmp_path, eval_fraction=0.25, max_tokens_length=60),
        data_args(dataset, tmp_path, eval_fraction=0.25, truncation_tolerance=0.5),
        data_args(dataset, tmp_path, eval_fraction=0.25, silence_threshold_db=-40),
        data_args(dataset, tmp_path, eval_fraction=0.25, max_clipped_fraction=0.5),
        data_args(dataset, tmp_path, eval_fraction=0.25, keep_clips_with_dropped_characters=True),
        data_args(dataset, tmp_path, eval_fraction=0.25, overwrite_cache=True),
    ):
        with pytest.raises(AssertionError, match="recomputed"):
            prepare_datasets(changed, tokenizer, model_config, str(tmp_path / "out"))
    sf.write(next((dataset / "wavs").iterdir()), np.zeros(SAMPLING_RATE, np.float32), SAMPLING_RATE)
    with pytest.raises(AssertionError, match="recomputed"):
        prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))


def test_overwrite_cache_rebuilds_on_the_main_process_only(tmp_path, tokenizer, model_config, monkeypatch):
    dataset = ljspeech_copy(tmp_path / "lj", 3)
    prepare_datasets(data_args(dataset, tmp_path, eval_fraction=0.4), tokenizer, model_config, str(tmp_path))
    built = []
    real_featurize = recipe.data.features.featurize
    monkeypatch.setattr(recipe.data.features, "featurize", lambda *a, **k: built.append(1) or real_featurize(*a, **k))
    overwrite = data_args(dataset, tmp_path, eval_fraction=0.4, overwrite_cache=True)

    # another rank of a distributed run comes after the main one (`main_process_first`): it reuses the new cache
    monkeypatch.setenv("RANK", "1")
    prepare_datasets(overwrite, tokenizer, model_config, str(tmp_path))
    prepare_datasets(overwrite, tokenizer, model_config, str(tmp_path), is_main_process=False)
    assert built == []
    # rank 0 (or a run without RANK) rebuilds
    monkeypatch.setenv("RANK", "0")
    prepare_datasets(overwrite, tokenizer, model_config, str(tmp_path))
    assert len(built) == 3
    monkeypatch.delenv("RANK")
    prepare_datasets(overwrite, tokenizer, model_config, str(tmp_path))
    assert len(built) == 6


def test_eval_split_alone_is_featurized_and_cached_apart(tmp_path, tokenizer, model_config, monkeypatch):
    dataset = ljspeech_copy(tmp_path / "lj", 5)
    args = data_args(dataset, tmp_path, eval_fraction=0.4)
    featurized = []
    real_featurize = recipe.data.features.featurize
    monkeypatch.setattr(
        recipe.data.features, "featurize", lambda row, **k: featurized.append(row) or real_featurize(row, **k)
    )

    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"), splits=("eval",))
    assert set(features) == set(report) == {"eval"} and len(features["eval"]) == 2
    assert len(featurized) == 2  # the three training clips are never decoded
    # the full run has a cache of its own (the eval-only one lacks the training split), with the same eval clips
    full, full_report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert len(featurized) == 7 and set(full) == {"train", "eval"}
    assert full["eval"]["path"] == features["eval"]["path"] and full_report["eval"] == report["eval"]
    assert len(list((tmp_path / "cache" / "vits_features").iterdir())) == 2
    # and each is reused
    prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"), splits=("eval",))
    assert len(featurized) == 7

    with pytest.raises(ValueError, match="'test'"):
        prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"), splits=("test",))


def test_cache_is_the_map_output_written_once(tmp_path, tokenizer, model_config):
    dataset = ljspeech_copy(tmp_path / "lj", 6)
    (dataset / "wavs" / "extra.wav").write_bytes(b"not audio")
    with open(dataset / "metadata.csv", "a", encoding="utf-8") as handle:
        handle.write("extra|Roj baş.|roj baş\n")
    features, report = prepare_datasets(
        data_args(dataset, tmp_path, eval_fraction=0.3, max_bad_fraction=0.5), tokenizer, model_config, str(tmp_path)
    )
    (cache,) = (tmp_path / "cache" / "vits_features").iterdir()
    # no second copy of the features: only the map's Arrow files, its report and the manifest
    assert sorted(os.listdir(cache)) == ["build_report.json", "eval.arrow", "features.json", "train.arrow"]
    dropped = sum(split["seen"] - split["kept"] for split in report.values())
    assert (
        report["train"]["dropped"]["decode_error"]["count"] + report["eval"]["dropped"]["decode_error"]["count"] == 1
    )
    assert dropped == 1
    # the broken clip's empty row stays in the file but is never loaded, nor are the report-only columns
    assert len(features["train"]) + len(features["eval"]) == 6
    assert "extra" not in " ".join(list(features["train"]["path"]) + list(features["eval"]["path"]))
    assert min(features["train"]["waveform_length"]) > 0
    assert set(features["train"].column_names) == {
        "input_ids", "waveform", "log_mel", "waveform_length", "mel_length", "tokens_length", "speaker_id", "text",
        "source_text", "path",
    }  # fmt: skip


def test_small_splits_skip_the_worker_pool(monkeypatch):
    monkeypatch.setattr(recipe.data.features, "MIN_CLIPS_PER_WORKER", 100)
    assert recipe.data.features.workers_for(199, 2) is None
    assert recipe.data.features.workers_for(200, 2) == 2
    assert recipe.data.features.workers_for(10_000, None) is None


def test_parallel_workers_give_the_same_features(tmp_path, tokenizer, model_config, monkeypatch):
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    single, _ = prepare_datasets(
        data_args(dataset, tmp_path / "a", eval_fraction=0.25), tokenizer, model_config, str(tmp_path)
    )
    # 3 training clips are far too few for a pool to pay: lower the bar so that the pool really runs here
    monkeypatch.setattr(recipe.data.features, "MIN_CLIPS_PER_WORKER", 1)
    parallel, report = prepare_datasets(
        data_args(dataset, tmp_path / "b", eval_fraction=0.25, preprocessing_num_workers=2),
        tokenizer,
        model_config,
        str(tmp_path),
    )
    (cache,) = (tmp_path / "b" / "cache" / "vits_features").iterdir()
    assert len([name for name in os.listdir(cache) if name.startswith("train_")]) == 2  # one file per worker
    assert parallel["train"]["path"] == single["train"]["path"]
    assert np.allclose(np.asarray(parallel["train"][1]["log_mel"]), np.asarray(single["train"][1]["log_mel"]))


def _audio_rows(count: int):
    lines = (LJSPEECH / "metadata.csv").read_text(encoding="utf-8").splitlines()[:count]
    return [(LJSPEECH / "wavs" / f"{line.split('|')[0]}.wav", line.split("|")[2]) for line in lines]


def test_audiofolder_parquet_and_saved_dataset(tmp_path, tokenizer, model_config):
    import datasets

    rows = _audio_rows(4)
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription", "speaker"])
        for index, (path, text) in enumerate(rows):
            shutil.copy(path, folder / path.name)
            writer.writerow([path.name, text, f"s{index % 2}"])
    args = data_args(folder, tmp_path, text_column_name="transcription", speaker_id_column_name="speaker")
    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path / "out"))
    assert len(features["train"]) + len(features["eval"]) == 4
    assert features["train"].features["speaker_id"].names == ["s0", "s1"]
    assert_accounted(report)

    # parquet and save_to_disk hold the audio bytes: clips are decoded from bytes, without a file
    audio = [{"bytes": path.read_bytes(), "path": path.name} for path, _ in rows]
    table = datasets.Dataset.from_dict({"audio": audio, "text": [text for _, text in rows]})
    table = table.cast_column("audio", datasets.Audio(decode=False))
    table.to_parquet(str(tmp_path / "clips.parquet"))
    features, _ = prepare_datasets(
        data_args(tmp_path / "clips.parquet", tmp_path), tokenizer, model_config, str(tmp_path / "out")
    )
    assert len(features["train"]) + len(features["eval"]) == 4
    row = features["train"][0]
    assert len(row["log_mel"]) == row["waveform_length"] // HOP

    saved = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_parquet(str(tmp_path / "clips.parquet")).select(range(3)),
            "validation": datasets.Dataset.from_parquet(str(tmp_path / "clips.parquet")).select([3]),
        }
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    features, report = prepare_datasets(
        data_args(tmp_path / "saved", tmp_path), tokenizer, model_config, str(tmp_path)
    )
    # the validation split is the eval split
    assert (len(features["train"]), len(features["eval"])) == (3, 1)


def test_wrong_column_lists_the_real_columns(tmp_path, tokenizer, model_config):
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    path, text = _audio_rows(1)[0]
    shutil.copy(path, folder / path.name)
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["file_name", "transcription"], [path.name, text]])
    with pytest.raises(DataError, match=r"--text_column_name 'text'.*\['audio', 'transcription'\]"):
        prepare_datasets(data_args(folder, tmp_path), tokenizer, model_config, str(tmp_path))

    dataset = common_voice_copy(tmp_path / "cv", train_count=2, dev_count=1)
    rows = read_tsv(dataset / "train.tsv")
    write_tsv(dataset / "train.tsv", [{"path": r["path"], "text": r["sentence"]} for r in rows], ["path", "text"])
    with pytest.raises(DataError, match=r"train.tsv: no column \['sentence'.*\['path', 'text'\]"):
        prepare_datasets(data_args(dataset, tmp_path), tokenizer, model_config, str(tmp_path))


def test_dropped_characters_are_reported(tmp_path, model_config):
    """A vocabulary without ê and ş: with --keep_clips_with_dropped_characters, the report names the lost letters,
    most frequent first, with counts (without it, the run stops: `test_text_screening.py`)."""
    from transformers import VitsTokenizer

    vocab = {"<pad>": 0, " ": 1, **{c: i + 2 for i, c in enumerate("abcçdefghiîjklmnopqrstuûvwxyz")}}
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lossy = VitsTokenizer(str(tmp_path / "tok" / "vocab.json"), phonemize=False, unk_token="<pad>")

    dataset = ljspeech_copy(tmp_path / "lj", 6)
    texts = [line.split("|")[2] for line in (dataset / "metadata.csv").read_text(encoding="utf-8").splitlines()]
    _, report = prepare_datasets(
        data_args(dataset, tmp_path, keep_clips_with_dropped_characters=True), lossy, model_config, str(tmp_path)
    )
    assert all(split["dropped"]["text_not_in_vocabulary"]["count"] == 0 for split in report.values())
    counted = {}
    for split in report.values():
        for entry in split["dropped_characters"]["top"]:
            counted[entry["character"]] = counted.get(entry["character"], 0) + entry["count"]
    expected = {char: sum(text.lower().count(char) for text in texts) for char in "êş"}
    assert {char: counted.get(char, 0) for char in "êş"} == expected and expected["ê"] > 0
    assert report["train"]["dropped_characters"]["letters_fraction"] > 0
    entry = next(e for e in report["train"]["dropped_characters"]["top"] if e["character"] == "ê")
    assert entry["is_letter"] and entry["name"] == "LATIN SMALL LETTER E WITH CIRCUMFLEX"


def test_bundled_tokenizer_covers_the_demo_data(tokenizer):
    from recipe.data.text_screening import lost_characters
    from recipe.text import encode_text_with_dropped

    def lost(text: str) -> str:
        return lost_characters("".join(encode_text_with_dropped(text, tokenizer)[2].elements()))

    for line in (LJSPEECH / "metadata.csv").read_text(encoding="utf-8").splitlines():
        _, text, normalized = line.split("|")
        # the text column writes two numbers as digits ("Ez 3 sêvan"); the normalized one, which is trained on,
        # spells them out: no letter or digit of it is lost
        assert lost(normalized) == "", normalized
    assert tokenizer.pad_token_id == 0 and not tokenizer.phonemize and not tokenizer.is_uroman
    for split in ("train", "dev", "test", "validated"):
        rows = read_tsv(COMMON_VOICE / f"{split}.tsv")
        assert {"client_id", "path", "sentence", "up_votes", "down_votes", "locale"} <= set(rows[0])
        assert all(lost(row["sentence"]) == "" for row in rows)


@pytest.mark.parametrize("folder", [LJSPEECH, COMMON_VOICE])
def test_the_demo_data_keeps_every_clip(tmp_path, tokenizer, model_config, folder):
    """Every screening default (audio and text) keeps all 32 bundled clips; `configs/demo.json` trains on them."""
    demo = json.loads((DEMO_DIR.parent / "configs" / "demo.json").read_text())
    args = data_args(folder, tmp_path, eval_fraction=demo["eval_fraction"])
    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path))
    if folder == LJSPEECH:
        clips = 32
    else:  # train.tsv and dev.tsv (test.tsv is not read)
        clips = len(read_tsv(folder / "train.tsv")) + len(read_tsv(folder / "dev.tsv"))
    assert [sum(split[key] for split in report.values()) for key in ("seen", "kept")] == [clips, clips]
    assert len(features["train"]) + len(features["eval"]) == clips


def test_audiofolder_fingerprint_covers_clips_in_sub_folders(tmp_path):
    from recipe.data.sources import load_source

    folder = tmp_path / "audiofolder"
    (folder / "clips").mkdir(parents=True)
    rows = _audio_rows(2)
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        for path, text in rows:
            shutil.copy(path, folder / "clips" / path.name)
            writer.writerow([f"clips/{path.name}", text])
    before = load_source(str(folder)).fingerprint
    assert load_source(str(folder)).fingerprint == before
    # an edited clip: the metadata and the top folder's listing are unchanged
    clip = folder / "clips" / rows[0][0].name
    sf.write(clip, np.zeros(SAMPLING_RATE, np.float32), SAMPLING_RATE)
    edited = load_source(str(folder)).fingerprint
    assert edited != before
    clip.unlink()
    assert load_source(str(folder)).fingerprint not in (before, edited)


def test_token_reaches_load_dataset(tmp_path, monkeypatch):
    import datasets

    import recipe.data.hub_layout
    import recipe.data.sources

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("token")))
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"audio": ["a.wav"], "text": ["roj"]})})

    monkeypatch.setattr(recipe.data.hub_layout.datasets, "load_dataset", fake_load_dataset)
    source = recipe.data.sources.load_source("someone/private-tts", dataset_config_name="kmr", token="hf_secret")
    assert calls == [("someone/private-tts", "kmr", "hf_secret")] and len(source.split("train")) == 1

    # prepare_datasets passes its `token` on
    monkeypatch.setattr(
        recipe.data.pipeline,
        "load_source_from_args",
        lambda args, token=None: calls.append(token) or (_ for _ in ()).throw(DataError("stop here")),
    )
    with pytest.raises(DataError, match="stop here"):
        prepare_datasets(data_args(tmp_path, tmp_path), None, make_tiny_config(), str(tmp_path), token="hf_other")
    assert calls[-1] == "hf_other"


def test_config_name_is_refused_where_it_would_be_ignored(tmp_path):
    import datasets

    from recipe.data.sources import load_source

    lj = ljspeech_copy(tmp_path / "lj", 1)
    cv = common_voice_copy(tmp_path / "cv", train_count=1, dev_count=1)
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    (folder / "metadata.csv").write_text("file_name,text\na.wav,roj\n", encoding="utf-8")
    datasets.Dataset.from_dict({"audio": ["a.wav"], "text": ["roj"]}).save_to_disk(str(tmp_path / "saved"))
    datasets.Dataset.from_dict({"audio": ["a.wav"], "text": ["roj"]}).to_parquet(str(tmp_path / "clips.parquet"))
    for dataset in (lj, cv, folder, tmp_path / "saved", tmp_path / "clips.parquet"):
        with pytest.raises(DataError, match=r"--dataset_config_name 'kmr'.*" + dataset.name):
            load_source(str(dataset), dataset_config_name="kmr")
        assert load_source(str(dataset)).splits


def _settings(**overrides) -> recipe.data.features.FeatureSettings:
    from recipe.audio import SpectrogramConfig

    base = dict(
        audio_column="audio",
        text_column="text",
        speaker_column="speaker",
        source_root=None,
        audio_dir=None,
        audio_suffix="",
        spectrogram=SpectrogramConfig.from_model_config(make_tiny_config()),
        min_seconds=0.5,
        max_seconds=20.0,
        max_tokens=500,
        selected_speakers=None,
        speaker_names=(),
        single_thread=False,
    )
    return recipe.data.features.FeatureSettings(**{**base, **overrides})


def test_clip_bytes_are_decoded_by_read_audio(monkeypatch):
    settings = _settings()
    path = _audio_rows(1)[0][0]
    waveform, name, reason, levels = recipe.data.features._decode(
        {"bytes": path.read_bytes(), "path": path.name}, None, settings
    )
    assert reason == "" and name == path.name and len(waveform) == sf.info(path).frames
    assert levels.clipped_fraction == 0 and -20 < levels.loudest_frame_db < 0
    for broken in (b"RIFF not a wave file" * 8, b""):
        assert recipe.data.features._decode({"bytes": broken, "path": "x.wav"}, None, settings) == (
            None,
            "x.wav",
            "decode_error",
            None,
        )

    # anything but a decode error is a bug to see, not a clip to drop
    def failing(*_, **__):
        raise MemoryError("out of memory")

    monkeypatch.setattr(recipe.data.features, "decode_audio", failing)
    with pytest.raises(MemoryError):
        recipe.data.features._decode({"bytes": path.read_bytes(), "path": path.name}, None, settings)


def test_speaker_probe_counts_unreadable_clips(tmp_path, monkeypatch, caplog):
    import datasets

    (tmp_path / "broken.wav").write_bytes(b"RIFF not a wave file" * 8)
    (long, _), (short, _) = sorted(_audio_rows(6), key=lambda row: -sf.info(row[0]).duration)[::5]
    split = datasets.Dataset.from_dict(
        {
            "audio": [str(long), str(short), str(tmp_path / "missing.wav"), str(tmp_path / "broken.wav")],
            "speaker": ["a", "b", "b", "b"],
        }
    )
    with caplog.at_level("WARNING", logger="recipe.data"):
        assert recipe.data.splits._speaker_with_most_audio(split, _settings(), None) == "a"
    assert "2 of 4 clips could not be measured" in caplog.text

    def failing(*_, **__):
        raise PermissionError("denied")

    monkeypatch.setattr(recipe.data.splits, "audio_duration", failing)
    with pytest.raises(PermissionError):
        recipe.data.splits._speaker_with_most_audio(split, _settings(), None)


def four_clip_copy(tmp_path, layout: str):
    """A 4-clip copy of the demo in `layout` and its metadata file (LJSpeech's metadata.csv, Common Voice's train.tsv)."""
    if layout == "ljspeech":
        dataset = ljspeech_copy(tmp_path / "lj", 4)
        return dataset, dataset / "metadata.csv"
    dataset = common_voice_copy(tmp_path / "cv", train_count=3, dev_count=1)
    return dataset, dataset / "train.tsv"


@pytest.mark.parametrize("layout", ["ljspeech", "common_voice"])
def test_metadata_with_a_byte_order_mark_keeps_its_first_clip(tmp_path, tokenizer, model_config, layout):
    dataset, metadata = four_clip_copy(tmp_path, layout)
    metadata.write_bytes(b"\xef\xbb\xbf" + metadata.read_bytes())  # what Notepad and Excel save as "UTF-8"
    features, report = prepare_datasets(
        data_args(dataset, tmp_path, eval_fraction=0.25), tokenizer, model_config, str(tmp_path)
    )
    assert sum(split["seen"] for split in report.values()) == 4
    assert len(features["train"]) + len(features["eval"]) == 4
    assert not any("\ufeff" in path for split in features.values() for path in split["path"])


@pytest.mark.parametrize("layout", ["ljspeech", "common_voice"])
def test_metadata_in_another_encoding_names_the_file_and_line(tmp_path, tokenizer, model_config, layout):
    dataset, metadata = four_clip_copy(tmp_path, layout)
    text = metadata.read_text(encoding="utf-8")
    # Latin-1 has "ç", "ê", "î", "û" but not "ş" (written as "?"): the first line with one of them is the one named
    line = next(n for n, content in enumerate(text.splitlines(), 1) if any(c in content for c in "çêîû"))
    metadata.write_bytes(text.encode("latin-1", errors="replace"))
    with pytest.raises(DataError, match=rf"{metadata.name}:{line}: byte 0x[0-9a-f]{{2}} is not UTF-8.*Latin-1.*UTF-8"):
        prepare_datasets(data_args(dataset, tmp_path), tokenizer, model_config, str(tmp_path))


def _saved_elsewhere(tmp_path: Path, kind: str) -> Path:
    """A dataset whose audio column holds absolute paths of clips in another folder: a saved dataset with a path
    string column, or a parquet file of an Audio column without bytes (as `Dataset.to_parquet` writes local files)."""
    import datasets

    elsewhere = tmp_path / "recordings"
    elsewhere.mkdir()
    rows = _audio_rows(4)
    for path, _ in rows:
        shutil.copy(path, elsewhere / path.name)
    table = datasets.Dataset.from_dict(
        {"audio": [str(elsewhere / path.name) for path, _ in rows], "text": [text for _, text in rows]}
    )
    if kind == "saved":
        table.save_to_disk(str(tmp_path / "saved"))
        return tmp_path / "saved"
    (tmp_path / "table").mkdir()
    table.cast_column("audio", datasets.Audio()).to_parquet(str(tmp_path / "table" / "clips.parquet"))
    return tmp_path / "table" / "clips.parquet"


@pytest.mark.parametrize("kind", ["saved", "parquet"])
def test_absolute_audio_paths_elsewhere_need_the_flag(tmp_path, tokenizer, model_config, kind, monkeypatch):
    dataset = _saved_elsewhere(tmp_path, kind)
    flag = "--allow_audio_outside_dataset"
    with pytest.raises(DataError, match=rf"train: 3 of 3 clips are broken.*path_outside_dataset.*{flag}"):
        prepare_datasets(data_args(dataset, tmp_path, eval_fraction=0.25), tokenizer, model_config, str(tmp_path))

    args = data_args(dataset, tmp_path, eval_fraction=0.25, allow_audio_outside_dataset=True)
    features, report = prepare_datasets(args, tokenizer, model_config, str(tmp_path))
    assert len(features["train"]) + len(features["eval"]) == 4
    assert {Path(path).parent for split in features.values() for path in split["path"]} == {tmp_path / "recordings"}

    # a clip replaced where it lives means new features
    def must_not_run(*_, **__):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(recipe.data.features, "featurize", must_not_run)
    prepare_datasets(args, tokenizer, model_config, str(tmp_path))
    shutil.copy(LJSPEECH / "wavs" / "KMR-0010.wav", tmp_path / "recordings" / "KMR-0001.wav")
    with pytest.raises(AssertionError, match="recomputed"):
        prepare_datasets(args, tokenizer, model_config, str(tmp_path))


def test_the_outside_audio_flag_is_refused_for_folder_layouts(tmp_path):
    from recipe.data.sources import load_source

    lj = ljspeech_copy(tmp_path / "lj", 1)
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    (folder / "metadata.csv").write_text("file_name,text\na.wav,roj\n", encoding="utf-8")
    for dataset, layout in ((lj, "ljspeech folder"), (folder, "an audiofolder")):
        with pytest.raises(DataError, match=rf"--allow_audio_outside_dataset is for .*{layout}.*leave the flag out"):
            load_source(str(dataset), allow_audio_outside_dataset=True)


def test_every_layout_list_derives_from_the_registry():
    """The `--dataset_format` values, their check in both flags and their `--help` text come from `LAYOUTS`."""
    import dataclasses
    import re

    from recipe.data.sources import DATASET_FORMAT_HELP, DATASET_FORMATS, LAYOUTS, load_source

    names = [layout.name for layout in LAYOUTS]
    assert DATASET_FORMATS == ("auto", *names) and set(names) == {"hub", "common_voice", "ljspeech"}
    # exactly one layout takes what no other recognizes
    assert [layout.name for layout in LAYOUTS if layout.detects is None] == ["hub"]
    helps = {field.name: field.metadata["help"] for field in dataclasses.fields(DataArguments)}
    for layout in LAYOUTS:
        assert f"{layout.name}: {layout.description}" in DATASET_FORMAT_HELP
        assert DATASET_FORMAT_HELP in helps["dataset_format"] and layout.name in helps["replay_dataset_format"]
    listed = re.escape(", ".join(DATASET_FORMATS))
    for flag in ("dataset_format", "replay_dataset_format"):
        with pytest.raises(ValueError, match=rf"^--{flag} must be one of {listed}, not 'lj'$"):
            DataArguments(dataset_name=str(LJSPEECH), **{flag: "lj"})
    with pytest.raises(DataError, match=rf"^--dataset_format must be one of {listed}, not 'lj'$"):
        load_source(str(LJSPEECH), "lj")


def test_each_layout_is_detected_and_read_by_its_entry(tmp_path, monkeypatch):
    import dataclasses

    from recipe.data.sources import LAYOUTS_BY_NAME, detect_format, load_source

    audiofolder = tmp_path / "audiofolder"
    audiofolder.mkdir()
    (audiofolder / "metadata.csv").write_text("file_name,text\nKMR-0001.wav,roj\n", encoding="utf-8")
    shutil.copy(LJSPEECH / "wavs" / "KMR-0001.wav", audiofolder / "KMR-0001.wav")
    # an LJSpeech-like folder whose metadata is comma-separated is an audiofolder
    (audiofolder / "wavs").mkdir()
    for dataset, name in ((LJSPEECH, "ljspeech"), (COMMON_VOICE, "common_voice"), (audiofolder, "hub")):
        assert detect_format(str(dataset)) == name
        assert load_source(str(dataset)).format == load_source(str(dataset), name).format == name
    assert detect_format("someone/kmr-tts") == "hub"
    # load_source calls the loader of the layout's entry, with the options it was given
    calls = []
    ljspeech = dataclasses.replace(LAYOUTS_BY_NAME["ljspeech"], load=lambda *call: calls.append(call))
    monkeypatch.setitem(LAYOUTS_BY_NAME, "ljspeech", ljspeech)
    load_source(str(LJSPEECH), text_column_name="sentence", cache_dir="cache")
    [(dataset_name, options)] = calls
    assert (dataset_name, options.text_column, options.cache_dir) == (str(LJSPEECH), "sentence", "cache")


def test_the_cache_key_of_the_same_inputs_never_changes():
    """Existing caches stay valid: the key of fixed inputs is the one earlier versions of the recipe computed (it
    holds no module path, so moving code does not change it). A change that must invalidate caches (`FEATURE_VERSION`,
    a default of an argument the features depend on) updates these values."""
    from recipe.data.feature_cache import feature_cache_key

    source, tokenizer, spectrogram = cache_key_inputs()
    args = DataArguments(dataset_name=str(LJSPEECH))
    assert feature_cache_key(source, args, tokenizer, spectrogram) == "9071e44c34619ed1dcada58b093fad7b"
    assert feature_cache_key(source, args, tokenizer, spectrogram, ("eval",)) == "aa7e35d0a5c6a957572d8092270b9af5"
