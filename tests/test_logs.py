"""What a run prints: each log once as the recipe's line, progress bars only on a terminal (none in a log file, no
"Writing model shards"), and the checkpoint a resumed run starts from."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import datasets
import huggingface_hub
import pytest
import torch
import transformers
from conftest import REPO_ROOT
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from recipe.errors import DEBUG_VARIABLE
from recipe.training.arguments import VitsTrainingArguments
from recipe.training.callbacks import (
    ProgressBarCallback,
    TrainingLogLineCallback,
    configure_progress_bars,
    show_progress_as_log_lines,
)
from recipe.training.resume_log import checkpoint_step, log_resume


def _demo_run(log_path, output_dir, cache_dir, *flags: str) -> str:
    """`run_finetune.py configs/demo.json` with stdout and stderr redirected to one file, as a user logs a run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(DEBUG_VARIABLE, None)
    command = [
        sys.executable, "run_finetune.py", "configs/demo.json", "--output_dir", str(output_dir),
        "--cache_dir", str(cache_dir), "--logging_steps", "2", "--eval_steps", "4", "--save_steps", "4",
        "--report_to", "none", *flags,
    ]  # fmt: skip
    with open(log_path, "w", encoding="utf-8") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
    text = open(log_path, encoding="utf-8").read()
    assert completed.returncode == 0, text[-3000:]
    return text


def test_a_logged_run_holds_each_line_once_no_bars_and_the_checkpoint_it_resumed_from(tmp_path):
    output, cache = tmp_path / "run", tmp_path / "cache"
    text = _demo_run(tmp_path / "first.log", output, cache, "--max_steps", "4")
    assert "\r" not in text  # no bar: neither the Trainer's, nor preprocessing's, nor "Writing model shards"
    assert "Writing model shards" not in text and "Preprocessing train" not in text
    assert "{'loss'" not in text and "{'eval_loss'" not in text  # transformers' printed dicts
    for step in (2, 4):
        assert sum(f"step {step}/4 | loss " in line for line in text.splitlines()) == 1, text[-3000:]
    assert sum("eval at step 4 | loss " in line for line in text.splitlines()) == 2  # at step 4, and the final one
    assert "Resuming from" not in text

    text = _demo_run(tmp_path / "resumed.log", output, cache, "--max_steps", "6", "--resume_from_checkpoint", "True")
    assert f"Resuming from {output / 'checkpoint-4'} (the newest intact checkpoint, step 4)" in text
    assert sum("step 6/6 | loss " in line for line in text.splitlines()) == 1 and "\r" not in text


def test_the_resumed_from_line_names_the_folder_and_its_step(tmp_path, caplog):
    checkpoint = tmp_path / "checkpoint-150"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 150}), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="recipe.training.resume_log"):
        log_resume(str(checkpoint), str(checkpoint))
        log_resume(None, None)  # a fresh start says nothing
    assert caplog.messages == [f"Resuming from {checkpoint} (step 150)"]
    # without its trainer_state.json, the folder's name still says the step; another name does not
    (checkpoint / "trainer_state.json").unlink()
    assert checkpoint_step(str(checkpoint)) == 150
    assert checkpoint_step(str(tmp_path)) == "unknown"


class _Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return {"loss": self.weight.sum() + 0 * x.sum()}


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_the_trainer_prints_the_recipes_lines_alone_and_a_bar_only_when_asked(tmp_path, disable_tqdm):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=disable_tqdm)
    trainer = Trainer(model=_Constant(), args=args)
    show_progress_as_log_lines(trainer)
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    assert PrinterCallback not in kinds and ProgressCallback not in kinds
    assert (ProgressBarCallback in kinds) is not disable_tqdm
    assert kinds.count(TrainingLogLineCallback) == 1
    show_progress_as_log_lines(trainer)  # a trainer that already has the line callback keeps the one it has
    assert [type(callback) for callback in trainer.callback_handler.callbacks].count(TrainingLogLineCallback) == 1


def test_bars_are_off_by_default_unless_stderr_is_a_terminal(tmp_path, monkeypatch):
    arguments = {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True}
    assert VitsTrainingArguments(**arguments).disable_tqdm  # pytest's stderr is not a terminal
    assert not VitsTrainingArguments(**arguments, disable_tqdm=False).disable_tqdm  # asked for: honoured

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not VitsTrainingArguments(**arguments).disable_tqdm


@pytest.fixture
def restored_progress_bars():
    """The libraries' bar switches are global: put them back for the tests that follow."""
    previous_hook = transformers.utils.logging.set_tqdm_hook(None)
    transformers.utils.logging.set_tqdm_hook(previous_hook)
    yield
    transformers.utils.logging.set_tqdm_hook(previous_hook)
    datasets.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def test_library_bars_follow_the_terminal_and_model_shard_bars_never_show(restored_progress_bars):
    configure_progress_bars(on_terminal=True)
    assert isinstance(transformers.utils.logging.tqdm(range(3)), transformers.utils.logging.EmptyTqdm)
    assert datasets.utils.logging.is_progress_bar_enabled()
    assert not huggingface_hub.utils.are_progress_bars_disabled()
    configure_progress_bars(on_terminal=False)
    assert not datasets.utils.logging.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled()
