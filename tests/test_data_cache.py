"""The feature cache's disk: the room check before featurizing, a disk that fills up while featurizing, the build
folders a killed run leaves, the one line that says where the features are; and the two data errors met before it
(a broken LJSpeech metadata line, a dataset path that does not exist)."""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from conftest import DEMO_DIR, REPO_ROOT
from test_data import ljspeech_copy

import recipe.data.features
from recipe.audio import SpectrogramConfig
from recipe.data import feature_cache
from recipe.data.feature_cache import (
    CACHE_FOLDER,
    ROOM_MARGIN,
    building_folder,
    cache_bytes_per_second,
    folder_bytes,
    remove_stale_builds,
)
from recipe.data.pipeline import prepare_datasets
from recipe.data.source import DataError
from recipe.data.sources import load_source, looks_like_path
from recipe.errors import MissingInputError, UnavailableError, run_command
from recipe.training.arguments import DataArguments

DiskUsage = collections.namedtuple("DiskUsage", "total used free")
KEY = "0123456789abcdef0123456789abcdef"


def _args(dataset: Path, cache_dir: Path, **overrides) -> DataArguments:
    return DataArguments(dataset_name=str(dataset), cache_dir=str(cache_dir), eval_fraction=0.25, **overrides)


def _cache_folder(cache_dir: Path) -> Path:
    return cache_dir / CACHE_FOLDER


def _dead_pid() -> int:
    """The pid of a process that has ended (not reused in the instant the test takes)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _finetune_flags(dataset, tmp_path: Path) -> list[str]:
    model = DEMO_DIR / "tiny_model"
    return [
        "--config_name", str(model / "config.json"),
        "--tokenizer_name", str(model),
        "--discriminator_config_name", str(model / "discriminator_config.json"),
        "--dataset_name", str(dataset),
        "--cache_dir", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / "out"),
        "--preprocessing_only", "true",
    ]  # fmt: skip


def _run_finetune(flags: list[str], *, free_bytes: int) -> subprocess.CompletedProcess:
    """`python run_finetune.py FLAGS` in a process of its own, where every disk has `free_bytes` free."""
    patch = (
        "import collections, runpy, shutil, sys\n"
        "usage = collections.namedtuple('usage', 'total used free')\n"
        f"shutil.disk_usage = lambda path: usage(10**12, 10**12 - {free_bytes}, {free_bytes})\n"
        "sys.argv = ['run_finetune.py', *sys.argv[1:]]\n"
        "runpy.run_path('run_finetune.py', run_name='__main__')\n"
    )
    command = [sys.executable, "-c", patch, *flags]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    environment.pop("RECIPE_DEBUG", None)
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("run_finetune.py: error:")]


# -- room -------------------------------------------------------------------------------------------------------------


def test_bytes_per_second_is_the_two_float32_arrays(model_config):
    spectrogram = SpectrogramConfig.from_model_config(model_config)
    # 16 kHz float32 waveform + 80 float32 mel bins per 256-sample hop
    assert cache_bytes_per_second(spectrogram) == 4 * 16000 + 4 * 80 * 16000 / 256 == 84000


def test_the_estimate_is_within_its_margin_of_the_cache_built(tmp_path, tokenizer, model_config, monkeypatch):
    seen = []
    check = feature_cache.check_cache_room
    monkeypatch.setattr(feature_cache, "check_cache_room", lambda *args: seen.append(check(*args)) or seen[-1])
    prepare_datasets(_args(DEMO_DIR / "kmr_ljspeech", tmp_path / "cache"), tokenizer, model_config, str(tmp_path))
    [room] = seen
    built = folder_bytes(str(_cache_folder(tmp_path / "cache")))
    assert room["clips"] == room["measured"] == 32  # a split under ROOM_SAMPLE_CLIPS is measured whole
    # measured: the cache takes 1.007x the arrays' bytes; the margin covers it
    assert built <= room["bytes"] <= built * ROOM_MARGIN
    assert room["free"] > 0


def test_the_estimate_of_a_sample_extrapolates_to_the_split(tmp_path, model_config, monkeypatch):
    dataset = ljspeech_copy(tmp_path / "lj", 30)
    source = load_source(str(dataset))
    settings = recipe.data.features.FeatureSettings.for_source(
        source, _args(dataset, tmp_path), SpectrogramConfig.from_model_config(model_config), single_thread=False
    )
    whole, measured = feature_cache.estimate_audio_seconds(source.split("train"), settings)
    assert measured == 30
    monkeypatch.setattr(feature_cache, "ROOM_SAMPLE_CLIPS", 10)
    sampled, measured = feature_cache.estimate_audio_seconds(source.split("train"), settings)
    assert measured == 10
    assert abs(sampled - whole) < 0.2 * whole


def test_too_little_room_stops_before_featurizing(tmp_path, tokenizer, model_config, monkeypatch):
    featurized = []
    monkeypatch.setattr(feature_cache, "featurize_batch", lambda *args, **kwargs: featurized.append(1))
    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 10**6, 10**6))
    cache_dir = tmp_path / "cache"
    with pytest.raises(UnavailableError) as raised:
        prepare_datasets(_args(DEMO_DIR / "kmr_ljspeech", cache_dir), tokenizer, model_config, str(tmp_path))
    message = str(raised.value)
    assert str(_cache_folder(cache_dir)) in message
    assert re.search(r"need about 5\.\d MB .* and 1\.0 MB is free", message), message
    assert "--cache_dir" in message and "Free some space" in message
    assert not featurized
    assert os.listdir(_cache_folder(cache_dir)) == []


def test_too_little_room_is_one_line_with_status_3(tmp_path):
    result = _run_finetune(_finetune_flags(DEMO_DIR / "kmr_ljspeech", tmp_path), free_bytes=10**6)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    [line] = _error_lines(result.stderr)
    assert "Not enough free space for the feature cache in " + str(tmp_path / "cache" / CACHE_FOLDER) in line
    assert os.listdir(tmp_path / "cache" / CACHE_FOLDER) == []


@pytest.mark.parametrize("workers", [None, 2])
def test_a_disk_that_fills_up_names_the_cache_folder(tmp_path, tokenizer, model_config, monkeypatch, workers):
    write_table = datasets.arrow_writer.ArrowWriter.write_table

    def full_disk(self, *args, **kwargs):
        if ".building-" not in str(self._path):  # the text pass, kept in memory, is written
            return write_table(self, *args, **kwargs)
        # what pyarrow raises on a full disk: the errno, no file name
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_table", full_disk)
    monkeypatch.setattr(recipe.data.features, "MIN_CLIPS_PER_WORKER", 1)  # so that the pool runs for 2 workers
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    cache_dir = tmp_path / "cache"
    args = _args(dataset, cache_dir, preprocessing_num_workers=workers)
    status = run_command("prog", lambda argv: prepare_datasets(args, tokenizer, model_config, str(tmp_path)), [])
    assert status == 3
    with pytest.raises(UnavailableError) as raised:
        prepare_datasets(args, tokenizer, model_config, str(tmp_path))
    message = str(raised.value)
    assert f"The disk of the feature cache {_cache_folder(cache_dir)} filled up" in message
    assert "No space left on device" in message and "--cache_dir" in message
    assert os.listdir(_cache_folder(cache_dir)) == [], "the partial build is removed"


def test_other_errors_of_the_build_stay_bugs(tmp_path, tokenizer, model_config, monkeypatch):
    write_table = datasets.arrow_writer.ArrowWriter.write_table

    def broken(self, *args, **kwargs):
        if ".building-" not in str(self._path):
            return write_table(self, *args, **kwargs)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_table", broken)
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    with pytest.raises(OSError, match="Input/output error") as raised:
        prepare_datasets(_args(dataset, tmp_path / "cache"), tokenizer, model_config, str(tmp_path))
    assert not isinstance(raised.value, UnavailableError)
    assert os.listdir(_cache_folder(tmp_path / "cache")) == []


# -- build folders ----------------------------------------------------------------------------------------------------


def test_stale_builds_are_removed_and_live_ones_kept(tmp_path, caplog):
    folder = tmp_path / CACHE_FOLDER
    dead, host = _dead_pid(), feature_cache._host_name()
    stale = folder / f"{KEY}.building-{host}-{dead}"
    legacy = folder / f"{KEY}.building-{dead}"  # named by an earlier version, without the host
    live = folder / f"{KEY}.building-{host}-{os.getppid()}"
    elsewhere = folder / f"{KEY}.building-another-machine-{dead}"
    unrelated = folder / KEY
    for path in (stale, legacy, live, elsewhere, unrelated):
        path.mkdir(parents=True)
        (path / "train.arrow").write_bytes(b"0" * 10)
    with caplog.at_level(logging.INFO, logger="recipe.data.feature_cache"):
        removed = remove_stale_builds(str(folder))
    assert sorted(removed) == sorted([str(stale), str(legacy)])
    assert sorted(os.listdir(folder)) == sorted(path.name for path in (live, elsewhere, unrelated))
    assert any(f"Removed {stale}" in record.message and str(dead) in record.message for record in caplog.records)
    assert any(f"Leaving {elsewhere}" in record.message for record in caplog.records)


def test_a_build_folder_records_host_and_pid_and_the_next_build_removes_a_killed_one(
    tmp_path, tokenizer, model_config, caplog
):
    folder_name = os.path.basename(building_folder(str(tmp_path / KEY)))
    assert folder_name == f"{KEY}.building-{feature_cache._host_name()}-{os.getpid()}"
    cache_dir = tmp_path / "cache"
    killed = _cache_folder(cache_dir) / f"{KEY}.building-{feature_cache._host_name()}-{_dead_pid()}"
    killed.mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="recipe.data.feature_cache"):
        prepare_datasets(_args(ljspeech_copy(tmp_path / "lj", 4), cache_dir), tokenizer, model_config, str(tmp_path))
    assert not killed.exists()
    assert any(f"Removed {killed}" in record.message for record in caplog.records)
    assert [name for name in os.listdir(_cache_folder(cache_dir)) if ".building-" in name] == []


# -- where the features are -------------------------------------------------------------------------------------------


def test_one_line_says_where_the_features_are_and_their_size(tmp_path, tokenizer, model_config, caplog, monkeypatch):
    args = _args(ljspeech_copy(tmp_path / "lj", 4), tmp_path / "cache")
    for how in ("built by this run", "reused from an earlier run"):
        if how.startswith("reused"):  # a new run: a new process, which has built nothing yet
            monkeypatch.setattr(feature_cache, "_BUILT_HERE", set())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="recipe.data.feature_cache"):
            prepare_datasets(args, tokenizer, model_config, str(tmp_path))
        lines = [record.message for record in caplog.records if record.message.startswith("Features: ")]
        assert len(lines) == 1
        [cache] = os.listdir(_cache_folder(tmp_path / "cache"))
        assert lines[0].startswith(f"Features: {_cache_folder(tmp_path / 'cache') / cache} ({how}, ")
        assert re.search(r"\(\w[^,]*, \d+\.\d kB; all feature caches in .*: \d+\.\d kB;", lines[0]), lines[0]


def test_the_cache_goes_to_hf_datasets_cache_without_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    args = DataArguments(dataset_name=str(DEMO_DIR / "kmr_ljspeech"))
    assert feature_cache.feature_cache_path(args, KEY) == str(tmp_path / "hf" / CACHE_FOLDER / KEY)


# -- data errors met before the cache ---------------------------------------------------------------------------------


def test_a_metadata_line_without_separator_names_file_line_and_format(tmp_path):
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    metadata = dataset / "metadata.csv"
    lines = metadata.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("|", " ") + " and a long tail" * 10
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_source(str(dataset))
    message = str(raised.value)
    assert message.startswith(f"{metadata}:3: no '|' between the clip id and its text in '{lines[2][:77]}...'")
    assert "'id|text' or 'id|text|normalized_text'" in message
    assert "a long tail" * 10 not in message


def test_a_first_metadata_line_without_separator_is_still_read_as_ljspeech(tmp_path):
    dataset = ljspeech_copy(tmp_path / "lj", 4)
    metadata = dataset / "metadata.csv"
    lines = metadata.read_text(encoding="utf-8").splitlines()
    metadata.write_text("\n".join([lines[0].replace("|", ",")] + lines[1:]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(metadata))}:1: no '\|'.*file_name column\)$"):
        load_source(str(dataset))


def test_a_broken_metadata_line_is_one_line_with_status_2(tmp_path, capsys):
    from run_finetune import cli

    dataset = ljspeech_copy(tmp_path / "lj", 4)
    metadata = dataset / "metadata.csv"
    lines = metadata.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("|", " ")
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli(_finetune_flags(dataset, tmp_path)) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    [line] = _error_lines(stderr)
    assert line.startswith(f"run_finetune.py: error: {metadata}:2: no '|' between the clip id and its text")


@pytest.mark.parametrize("name", ["./no/such/folder", "no/such/folder/", "~/no-such-folder-here", "{tmp}/missing"])
def test_a_missing_path_says_no_such_folder(tmp_path, name):
    name = name.format(tmp=tmp_path)
    assert looks_like_path(name)
    with pytest.raises(MissingInputError, match=rf"^{re.escape(name)}: no such folder \("):
        load_source(name)


def test_a_relative_path_under_an_existing_folder_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    name = os.path.join("data", "kmr")
    assert looks_like_path(name)
    assert not looks_like_path(name, "hub")  # --dataset_format hub: an owner/name Hub id
    assert not looks_like_path("someone/kmr-tts")  # no folder `someone` here: a Hub id
    with pytest.raises(MissingInputError, match=r"no such folder .* the nearest folder that does is .*data\)"):
        load_source(name)
    for format_name in ("ljspeech", "common_voice"):
        with pytest.raises(MissingInputError, match="no such folder"):
            load_source(name, format_name)


def test_a_missing_path_is_one_line_with_status_2(tmp_path, capsys):
    from run_finetune import cli

    assert cli(_finetune_flags("./no/such/folder", tmp_path)) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("run_finetune.py: error: ./no/such/folder: no such folder (")
    assert "Hub" not in line
