"""One run per output folder (`recipe.training.run_lock`): a second run is refused naming the holder, a lock left by
a dead process is taken over, the lock is released however a run ends, and the processes of one launch share it."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from test_run_finetune import _flags, tiny_files  # noqa: F401 - tiny_files is a fixture

import run_finetune
from recipe.data.source import DataError
from recipe.errors import UnavailableError
from recipe.training import run_lock
from recipe.training.run_lock import LOCK_FILE_NAME, Holder, OutputDirLock
from recipe.training.signals import TrainingInterrupted

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_record(output_dir, **fields) -> None:
    record = {"pid": _dead_pid(), "host": socket.gethostname(), "started_at": "2026-01-01 00:00:00 UTC"}
    record.update(command="python run_finetune.py", **fields)
    os.makedirs(output_dir, exist_ok=True)
    (output_dir / LOCK_FILE_NAME).write_text(json.dumps(record))


def _recorded_pid(output_dir) -> int:
    return json.loads((output_dir / LOCK_FILE_NAME).read_text())["pid"]


@pytest.fixture
def without_flock(monkeypatch):
    """A file system that does not implement flock: the file's existence is the lock."""

    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", unsupported)


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "no-flock"])
def test_a_second_lock_is_refused_naming_the_folder_and_the_holder(tmp_path, request, flock):
    if not flock:
        request.getfixturevalue("without_flock")
    output_dir = tmp_path / "out"
    first = OutputDirLock(str(output_dir))
    first.acquire()
    with pytest.raises(UnavailableError) as refused:
        OutputDirLock(str(output_dir)).acquire()
    message = str(refused.value)
    holder = first.holder
    assert "\n" not in message and message.startswith(f"--output_dir {output_dir} is in use by the run with ")
    assert f"pid {os.getpid()} on {socket.gethostname()}, started {holder.started_at}" in message
    assert "choose another --output_dir" in message and f"remove {output_dir / LOCK_FILE_NAME}" in message
    assert _recorded_pid(output_dir) == os.getpid()
    first.release()
    assert not (output_dir / LOCK_FILE_NAME).exists()
    second = OutputDirLock(str(output_dir))
    second.acquire()
    second.release()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    output_dir = tmp_path / "out"
    _write_record(output_dir)
    dead = _recorded_pid(output_dir)
    lock = OutputDirLock(str(output_dir))
    with caplog.at_level(logging.WARNING, logger="recipe.training.run_lock"):
        lock.acquire()
    assert f"taking over the lock of the run with pid {dead} on {socket.gethostname()}" in caplog.text
    assert _recorded_pid(output_dir) == os.getpid()
    lock.release()


def test_without_flock_only_a_dead_process_of_this_machine_loses_its_lock(tmp_path, without_flock, caplog):
    output_dir = tmp_path / "out"
    # this machine, process ended: taken over
    _write_record(output_dir)
    lock = OutputDirLock(str(output_dir))
    with caplog.at_level(logging.WARNING, logger="recipe.training.run_lock"):
        lock.acquire()
    assert "that process has ended" in caplog.text and _recorded_pid(output_dir) == os.getpid()
    lock.release()
    # this machine before its last boot: that pid names no live process, whatever runs under it now
    _write_record(output_dir, pid=os.getppid(), boot_id="an-earlier-boot")
    lock.acquire()
    lock.release()
    # a live process of this machine, and any process of another machine (which cannot be checked from here)
    for fields in ({"pid": os.getppid()}, {"host": "another-machine"}):
        _write_record(output_dir, **fields)
        with pytest.raises(UnavailableError, match=f"started 2026-01-01 00:00:00 UTC.* remove {output_dir}"):
            OutputDirLock(str(output_dir)).acquire()
        assert (output_dir / LOCK_FILE_NAME).exists()
    # an unreadable record is refused too, said as such
    (output_dir / LOCK_FILE_NAME).write_text("")
    with pytest.raises(UnavailableError, match="another run \\(its record is unreadable\\)"):
        OutputDirLock(str(output_dir)).acquire()


def test_a_holder_record_survives_its_round_trip_and_keeps_no_token(monkeypatch):
    argv = ["run_finetune.py", "--token", "hf_secret", "--hub_token=hf_other", "--output_dir", "out"]
    monkeypatch.setattr(sys, "argv", argv)
    holder = Holder.this_process()
    assert Holder.from_text(holder.to_text()) == holder
    assert holder.command.endswith("run_finetune.py --token '***' '--hub_token=***' --output_dir out")
    for damaged in ("", "[1]", '{"pid": "1", "host": "vm"}', '{"pid": 1}'):
        assert Holder.from_text(damaged) is None


def _fake_prepare_datasets(output_dir, outcome):
    """A `prepare_datasets` that checks the lock is held while the data is prepared, then ends as `outcome` says."""

    def prepare_datasets(data_args, tokenizer, config, run_output_dir, **kwargs):
        assert _recorded_pid(output_dir) == os.getpid(), "the lock is taken before the data is prepared"
        if outcome is not None:
            raise outcome
        return {"train": [], "eval": []}, {"kept": 0}

    return prepare_datasets


@pytest.mark.parametrize(
    "outcome, status",
    [
        (None, 0),  # --preprocessing_only: the run ends after the features
        (DataError("no usable clip"), 2),
        (KeyboardInterrupt(), 130),
        (TrainingInterrupted(15, step=3, checkpoint=None), 143),
    ],
    ids=["ends", "error", "ctrl-c", "sigterm"],
)
def test_the_lock_is_held_from_before_the_data_and_released_however_the_run_ends(
    tiny_files,  # noqa: F811
    tmp_path,
    monkeypatch,
    outcome,
    status,
):
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    monkeypatch.setattr(run_finetune, "prepare_datasets", _fake_prepare_datasets(output_dir, outcome))
    flags = _flags(config, discriminator, output_dir, tmp_path / "cache", "--preprocessing_only", "true")
    assert run_finetune.cli(flags) == status
    assert not (output_dir / LOCK_FILE_NAME).exists()


def test_the_command_refuses_a_folder_in_use_in_one_line_with_status_3(tiny_files, tmp_path):  # noqa: F811
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    held = OutputDirLock(str(output_dir))
    held.acquire()
    try:
        completed = subprocess.run(
            [sys.executable, str(REPO_ROOT / "run_finetune.py"),
             *_flags(config, discriminator, output_dir, tmp_path / "cache", "--preprocessing_only", "true")],
            cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        held.release()
    assert completed.returncode == 3, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"run_finetune.py: error: --output_dir {output_dir} is in use by the run with pid ")
    assert f"pid {os.getpid()} on {socket.gethostname()}" in last_line
    # refused before any data was prepared or written
    assert os.listdir(output_dir) == [] and not (tmp_path / "cache").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch_two_processes(flags: list[str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(REPO_ROOT / "run_finetune.py"), *flags,
    ]  # fmt: skip
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_one_launch_of_two_processes_holds_the_folder_once_and_is_refused_whole(tiny_files, tmp_path):  # noqa: F811
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    flags = _flags(config, discriminator, output_dir, tmp_path / "cache", "--preprocessing_only", "true")
    # another run holds the folder: both processes stop, with the main process's line, instead of one of them hanging
    held = OutputDirLock(str(output_dir))
    held.acquire()
    try:
        refused = _launch_two_processes(flags)
    finally:
        held.release()
    output = refused.stdout + refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("run_finetune.py: error: ")]
    assert refused.returncode != 0 and len(errors) == 2 and errors[0] == errors[1], output[-5000:]
    assert f"is in use by the run with pid {os.getpid()}" in errors[0]
    # free: the second process does not take the lock the main process holds, and the launch ends well
    done = _launch_two_processes(flags)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (output_dir / "data_report.json").is_file() and not (output_dir / LOCK_FILE_NAME).exists()
