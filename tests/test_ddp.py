"""Two-process DDP on CPU (gloo) through `accelerate launch --multi_gpu --num_processes 2`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file

from recipe.evaluation.metrics import amplitude_status


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_processes_end_with_identical_weights_plan_verdict_and_one_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", "29531",
        str(REPO_ROOT / "tests" / "ddp_worker.py"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    rank0, rank1 = (load_file(tmp_path / f"rank-{index}.safetensors") for index in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)

    # the monitor's verdict and the --target_hours plan are the main process's on both ranks
    seen0, seen1 = (json.loads((tmp_path / f"rank-{index}.json").read_text()) for index in (0, 1))
    assert seen0 == seen1
    assert seen0["planned_max_steps"] == 3 and seen0["global_step"] == 3 and not seen0["stopped_by_budget"]
    history = seen0["amplitude_history"]
    # evaluations at step 2 and at the end; rank 1 synthesizes nothing and holds rank 0's figures
    assert [entry["step"] for entry in history] == [2, 3]
    for entry in history:
        assert entry["rms"] > 0 and entry["status"] == amplitude_status(entry["rms"], 0.1)

    # one checkpoint folder, written by the main process; one RNG state per rank
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("checkpoint-")) == ["checkpoint-3"]
    checkpoint = tmp_path / "checkpoint-3"
    assert {"model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(checkpoint))
    assert os.path.isfile(checkpoint / "training_state" / "discriminator_optimizer.pt")
