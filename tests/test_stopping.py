"""Ctrl-C / SIGTERM during a real training run: the step finishes, a checkpoint is saved, the printed command resumes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT
from test_run_finetune import _flags, tiny_files  # noqa: F401 - tiny_files is a fixture

from recipe.training.signals import ForcedStop, StopRequest, TrainingInterrupted

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}


def _start(flags: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "run_finetune.py"), *flags],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_step(process: subprocess.Popen, step: int, timeout: float = 240) -> list[str]:
    """Read the run's output until its progress line for `step` (or later) appears."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"step (\d+)/\d+ \| loss", line)
        if match and int(match.group(1)) >= step:
            return lines
    process.kill()
    raise AssertionError(f"no progress line for step {step}:\n{''.join(lines[-30:])}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_the_printed_command_resumes(tiny_files, tmp_path, signum):  # noqa: F811
    config, discriminator = tiny_files
    output_dir = tmp_path / "out"
    # no scheduled checkpoint: whatever is saved comes from the stop
    flags = _flags(
        config, discriminator, output_dir, tmp_path / "cache",
        "--max_steps", "5000", "--logging_steps", "1", "--save_strategy", "no",
    )  # fmt: skip
    process = _start(flags)
    lines = _wait_for_step(process, 3)
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=120)
    output = "".join(lines) + rest
    assert process.returncode == 128 + signum, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    match = re.search(
        rf"{signal.Signals(signum).name} received: training stopped after step (\d+); saved (\S+)\. To resume:\n"
        r"    (.+)\n",
        output,
    )
    assert match, output[-3000:]
    step, checkpoint, command = int(match.group(1)), match.group(2), match.group(3)
    assert checkpoint == str(output_dir / f"checkpoint-{step}") and step >= 3
    assert sorted(name for name in os.listdir(output_dir) if "checkpoint" in name) == [f"checkpoint-{step}"]
    assert command.startswith("python ") and command.endswith(f"--resume_from_checkpoint {checkpoint}")

    # the printed command resumes (two more steps, so that the test ends soon)
    words = shlex.split(command)
    resumed = subprocess.run(
        [sys.executable, *words[1:], "--max_steps", str(step + 2)],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == step + 2
    # the log history goes on from the checkpoint's: steps 1..step were trained before the stop
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry][: step + 2] == list(range(1, step + 3))


def test_the_first_signal_asks_and_the_second_quits_at_once(monkeypatch):
    request = StopRequest()
    # the handler the process had before (Python's default, or SIG_IGN in a process started in the background)
    before = signal.getsignal(signal.SIGINT)
    with request.listening():
        assert signal.getsignal(signal.SIGINT) == request._handle
        request._handle(signal.SIGTERM, None)
        assert request.requested and request.signum == signal.SIGTERM
        with pytest.raises(ForcedStop, match="second SIGINT"):
            request._handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is before


def test_an_interrupted_run_exits_with_the_signal_status(monkeypatch, capsys, tmp_path):
    import run_finetune

    checkpoint = str(tmp_path / "checkpoint-7")

    def interrupted(argv):
        raise TrainingInterrupted(signal.SIGTERM, 7, checkpoint)

    monkeypatch.setattr(run_finetune, "main", interrupted)
    argv = ["configs/demo.json", "--resume_from_checkpoint", "old", "--max_steps", "9"]
    assert run_finetune.cli(argv) == 143
    printed = capsys.readouterr().out
    assert "SIGTERM received: training stopped after step 7; saved" in printed
    assert printed.rstrip().endswith(f"configs/demo.json --max_steps 9 --resume_from_checkpoint {checkpoint}")
    assert "old" not in printed
