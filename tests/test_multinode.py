"""Two "machines" on this one: two `accelerate launch --num_machines 2 --machine_rank 0|1` launchers, one process
each, gloo on CPU, the same --output_dir and --cache_dir (shared storage), running `run_finetune.py` itself.

- The features are built once, by the main process; the other waits and reads them.
- A SIGTERM to one machine's process stops both after the same step, with one checkpoint (both RNG states in it);
  the printed command resumes, and both ranks end with identical weights.
- A process killed mid-run makes the other fail at once, saying so; a process that hangs is given up after
  --ddp_timeout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file
from test_run_finetune import _flags, tiny_files  # noqa: F401 - tiny_files is a fixture

pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYTHONPATH": str(REPO_ROOT),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TwoMachines:
    """The two launchers of one run, their logs, and their training processes' pids."""

    def __init__(self, folder, flags: list[str]):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.logs = [folder / f"machine-{rank}.log" for rank in (0, 1)]
        self.launchers = []
        for rank in (0, 1):
            command = [
                sys.executable, "-m", "accelerate.commands.launch",
                "--multi_gpu", "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
                "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
                "--mixed_precision", "no", "--dynamo_backend", "no",
                str(REPO_ROOT / "tests" / "multinode_worker.py"), str(folder), *flags,
            ]  # fmt: skip
            with open(self.logs[rank], "w") as log:
                self.launchers.append(
                    subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
                )

    def log(self, rank: int) -> str:
        return self.logs[rank].read_text()

    def pid(self, rank: int) -> int:
        return int((self.folder / f"rank-{rank}.pid").read_text())

    def wait_for_step(self, step: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            steps = [int(s) for s in re.findall(r"step (\d+)/\d+ \| loss", self.log(0))]
            if steps and max(steps) >= step:
                return
            if any(launcher.poll() is not None for launcher in self.launchers):
                break
            time.sleep(0.5)
        self.kill()
        raise AssertionError(f"no step {step} on rank 0:\n{self.log(0)[-3000:]}\n{self.log(1)[-3000:]}")

    def wait(self, rank: int, timeout: float) -> int:
        try:
            return self.launchers[rank].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        for rank, launcher in enumerate(self.launchers):
            if launcher.poll() is None:
                if (self.folder / f"rank-{rank}.pid").exists():
                    try:
                        os.kill(self.pid(rank), signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # already gone: nothing to stop
                launcher.kill()
                launcher.wait(timeout=60)


def _run_flags(tiny_files, tmp_path, *extra):  # noqa: F811
    config, discriminator = tiny_files
    return _flags(
        config, discriminator, tmp_path / "out", tmp_path / "cache",
        "--logging_steps", "1", "--report_to", "none", *extra,
    )  # fmt: skip


def test_two_machines_share_the_features_stop_together_and_resume_to_identical_weights(tiny_files, tmp_path):  # noqa: F811
    flags = _run_flags(tiny_files, tmp_path, "--max_steps", "5000", "--save_steps", "1000")
    run = TwoMachines(tmp_path / "first", flags)
    run.wait_for_step(3)
    # a scheduler pre-empting one machine: its process alone gets SIGTERM
    os.kill(run.pid(1), signal.SIGTERM)
    assert run.wait(0, timeout=180) != 0 and run.wait(1, timeout=180) != 0
    log0, log1 = run.log(0), run.log(1)

    # features: built by the main process only, read by the other
    assert "Preprocessing" in log0 and f"into {tmp_path / 'cache'}" in log0
    assert "Loading cached features from" in log1 and "Preprocessing demo" not in log1
    # both stopped after the same step; one checkpoint, with both processes' RNG states
    match = re.search(
        r"SIGTERM received: training stopped after step (\d+); saved (\S+)\. To resume:\n    (.+)\n", log0
    )
    assert match, log0[-3000:]
    step, checkpoint, command = int(match.group(1)), match.group(2), match.group(3)
    assert re.search(r"exitcode\s*: 143", log0) and re.search(r"exitcode\s*: 143", log1), log0[-2000:] + log1[-2000:]
    output_dir = tmp_path / "out"
    assert sorted(name for name in os.listdir(output_dir) if "checkpoint" in name) == [f"checkpoint-{step}"]
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= set(os.listdir(checkpoint))
    assert json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())["global_step"] == step

    # the printed command, two more steps
    prefix = "accelerate launch <the same launch options> "
    assert command.startswith(prefix)
    script, *arguments = shlex.split(command[len(prefix) :])
    assert os.path.samefile(script, REPO_ROOT / "run_finetune.py")
    resumed = TwoMachines(tmp_path / "resumed", [*arguments, "--max_steps", str(step + 2)])
    assert resumed.wait(0, timeout=300) == 0, resumed.log(0)[-3000:]
    assert resumed.wait(1, timeout=120) == 0, resumed.log(1)[-3000:]
    rank0, rank1 = (load_file(tmp_path / "resumed" / f"rank-{rank}.safetensors") for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == step + 2
    assert not [name for name in os.listdir(output_dir) if name.startswith("partial-")]


def test_a_killed_machine_makes_the_other_stop_with_a_clear_error(tiny_files, tmp_path):  # noqa: F811
    flags = _run_flags(tiny_files, tmp_path, "--max_steps", "5000", "--save_steps", "2")
    run = TwoMachines(tmp_path / "run", flags)
    run.wait_for_step(3)
    os.kill(run.pid(1), signal.SIGKILL)
    started = time.monotonic()
    assert run.wait(0, timeout=120) != 0
    waited = time.monotonic() - started
    run.wait(1, timeout=60)
    log0 = run.log(0)
    assert "Process 0 of 2: the connection to another process of the run broke or timed out at step" in log0
    assert re.search(r"Resume from \S+/checkpoint-\d+ \(--resume_from_checkpoint", log0), log0[-3000:]
    assert waited < 60, waited  # a dead peer closes its connections: no waiting for --ddp_timeout


def test_a_hung_machine_is_given_up_after_ddp_timeout(tiny_files, tmp_path):  # noqa: F811
    flags = _run_flags(tiny_files, tmp_path, "--max_steps", "5000", "--save_steps", "1000", "--ddp_timeout", "10")
    run = TwoMachines(tmp_path / "run", flags)
    run.wait_for_step(3)
    os.kill(run.pid(1), signal.SIGSTOP)  # alive, connections open, answering nothing
    started = time.monotonic()
    try:
        assert run.wait(0, timeout=120) != 0
        waited = time.monotonic() - started
    finally:
        run.kill()
    log0 = run.log(0)
    assert "the connection to another process of the run broke or timed out" in log0, log0[-3000:]
    assert "given up after --ddp_timeout (10 s)" in log0
    assert 8 < waited < 60, waited
