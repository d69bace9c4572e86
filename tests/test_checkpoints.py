"""Checkpoints that are all there or not there: staged saves, failed saves, damaged checkpoints, room checks."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import namedtuple

import pytest
import torch
from conftest import make_tiny_config
from trainer_helpers import tiny_trainer

import recipe.folders
import recipe.training.checkpoint_layout
import recipe.training.checkpoints
from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator
from recipe.training.checkpoint_layout import TRAINING_MODEL_WEIGHTS, TRAINING_STATE_DIR
from recipe.training.checkpoints import (
    CheckpointLoadError,
    CheckpointSaveError,
    estimate_checkpoint_bytes,
    file_problem,
    newest_intact_checkpoint,
)

COMMON = dict(max_steps=4, save_strategy="steps", save_steps=2, logging_steps=2)
DiskUsage = namedtuple("DiskUsage", "total used free")


def _folder_bytes(folder) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(folder) for name in files)


def _truncate(path, keep: float = 0.5) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """4 steps with the discriminator, checkpoints at 2 and 4; copied by the tests that damage them."""
    output_dir = tmp_path_factory.mktemp("saved")
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **COMMON)
    trainer.train()
    return trainer, output_dir


def test_checkpoints_are_renamed_into_place_and_the_estimate_fits(saved_run):
    trainer, output_dir = saved_run
    names = sorted(os.listdir(output_dir))
    assert [name for name in names if "checkpoint" in name] == ["checkpoint-2", "checkpoint-4"]
    newest, skipped = newest_intact_checkpoint(str(output_dir), trainer._checkpoint_files())
    assert newest == str(output_dir / "checkpoint-4") and not skipped
    for name in ("checkpoint-2", "checkpoint-4"):
        assert not recipe.training.checkpoints.verify_checkpoint(str(output_dir / name), trainer._checkpoint_files())
    # the size estimated from the parameter counts is within 25% of what a checkpoint takes on disk
    estimate = estimate_checkpoint_bytes(trainer.model, trainer.discriminator)["checkpoint"]
    actual = _folder_bytes(output_dir / "checkpoint-4")
    assert 0.75 * actual < estimate < 1.25 * actual, (estimate, actual)


def test_a_full_disk_during_a_save_leaves_no_partial_checkpoint_and_names_the_last_complete_one(tmp_path, monkeypatch):
    free = {"bytes": 10**12}
    monkeypatch.setattr(
        recipe.training.checkpoints.shutil, "disk_usage", lambda path: DiskUsage(10**12, 0, free["bytes"])
    )
    real_save = torch.save

    def save_that_fills_the_disk(obj, path, *args, **kwargs):
        # what torch's zip writer does on a full disk: part of the file, then an error without an errno
        if "checkpoint-4" in str(path):
            with open(path, "wb") as handle:
                handle.write(b"PK\x03\x04" + b"\0" * 100)
            free["bytes"] = 4096
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1637696 vs 1637584")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_that_fills_the_disk)
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, **COMMON)
    with pytest.raises(CheckpointSaveError) as error:
        trainer.train()
    message = str(error.value)
    assert "checkpoint-4 at step 4 failed: most likely no space left on the device" in message
    assert f"The last complete checkpoint is {tmp_path / 'checkpoint-2'} (step 2)" in message
    assert sorted(name for name in os.listdir(tmp_path) if "checkpoint" in name) == ["checkpoint-2"]

    # the space is back: resuming from what is left finishes the run
    monkeypatch.setattr(torch, "save", real_save)
    free["bytes"] = 10**12
    resumed = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, **COMMON)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4 and os.path.isdir(tmp_path / "checkpoint-4")


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EACCES, "permission denied")],
)
def test_an_os_error_during_a_save_says_what_failed(tmp_path, monkeypatch, code, words):
    real_save_file = recipe.training.checkpoint_layout.save_file

    def failing_save_file(tensors, path, *args, **kwargs):
        if "checkpoint-2" in str(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(recipe.training.checkpoint_layout, "save_file", failing_save_file)
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, **COMMON)
    with pytest.raises(CheckpointSaveError, match=f"{words} .*There is no complete checkpoint in {tmp_path}"):
        trainer.train()
    assert not [name for name in os.listdir(tmp_path) if "checkpoint" in name]


def test_resume_true_skips_a_truncated_checkpoint_and_an_explicit_one_names_the_file(saved_run, tmp_path, caplog):
    _, source = saved_run
    output_dir = tmp_path / "run"
    shutil.copytree(source, output_dir)
    damaged = output_dir / "checkpoint-4" / TRAINING_STATE_DIR / TRAINING_MODEL_WEIGHTS
    _truncate(damaged)
    assert "incomplete metadata" in file_problem(str(damaged))

    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **COMMON)
    with pytest.raises(CheckpointLoadError) as error:
        trainer.train(resume_from_checkpoint=str(output_dir / "checkpoint-4"))
    assert f"{damaged}: damaged (SafetensorError" in str(error.value)
    assert f"The newest intact checkpoint beside it is {output_dir / 'checkpoint-2'}" in str(error.value)

    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **{**COMMON, "max_steps": 3})
    with caplog.at_level(logging.WARNING, logger="recipe.training.checkpoint_layout"):
        trainer.train(resume_from_checkpoint=True)
    assert f"Skipping {output_dir / 'checkpoint-4'}, incomplete or damaged: {damaged}" in caplog.text
    assert f"Resuming from {output_dir / 'checkpoint-2'}" in caplog.text
    # one step after checkpoint-2, not none after checkpoint-4
    assert [entry["step"] for entry in trainer.state.log_history if "train_loss" in entry] == [3]


def test_resume_true_with_no_intact_checkpoint_lists_why(saved_run, tmp_path):
    _, source = saved_run
    output_dir = tmp_path / "run"
    shutil.copytree(source, output_dir)
    os.remove(output_dir / "checkpoint-2" / "optimizer.pt")
    _truncate(output_dir / "checkpoint-4" / "trainer_state.json", keep=0.3)
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **COMMON)
    with pytest.raises(CheckpointLoadError, match=r"nothing to resume from .*\(2 checkpoint\(s\), none intact\)"):
        trainer.train(resume_from_checkpoint=True)


def test_a_partial_checkpoint_left_by_a_killed_save_is_removed_and_never_resumed(saved_run, tmp_path, caplog):
    _, source = saved_run
    output_dir = tmp_path / "run"
    shutil.copytree(source, output_dir)
    partial = output_dir / "partial-checkpoint-6"
    shutil.copytree(output_dir / "checkpoint-4", partial)
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **{**COMMON, "max_steps": 5})
    with caplog.at_level(logging.WARNING, logger="recipe.training.checkpoints"):
        trainer.train(resume_from_checkpoint=True)
    assert f"Removing {partial}: an unfinished checkpoint" in caplog.text
    assert not partial.exists() and os.path.isdir(output_dir / "checkpoint-5")


def test_no_room_for_a_few_checkpoints_stops_before_the_first_step(tmp_path, monkeypatch):
    monkeypatch.setattr(
        recipe.training.checkpoints.shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9, 2 * 10**6)
    )
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), **COMMON)
    size = estimate_checkpoint_bytes(trainer.model, trainer.discriminator)
    with pytest.raises(CheckpointSaveError) as error:
        trainer.train()
    # 4 steps saving every 2: checkpoints 2 and 4, plus the final model
    needed = 3 * size["checkpoint"] + size["final_model"]
    assert f"3 checkpoint(s) of about {recipe.folders.format_bytes(size['checkpoint'])} each" in str(error.value)
    assert f"need {recipe.folders.format_bytes(needed)}, and 2.0 MB is free" in str(error.value)
    assert trainer.state.global_step == 0


def test_an_output_dir_that_cannot_be_written_is_named(tmp_path):
    output_dir = tmp_path / "out"
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), discriminator=False, **COMMON)
    # the folder became a file after the trainer was built (as root, permissions cannot be taken away in a test)
    shutil.rmtree(output_dir)
    output_dir.write_text("not a folder")
    with pytest.raises(CheckpointSaveError, match=f"Cannot write in the output folder {output_dir}: a file of"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_rotation_keeps_the_best_and_the_newest_checkpoint(tmp_path):
    trainer = tiny_trainer(
        make_tiny_config(),
        str(tmp_path),
        discriminator=False,
        max_steps=6,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_total_limit=1,
        load_best_model_at_end=True,
    )
    trainer.train()
    kept = sorted(name for name in os.listdir(tmp_path) if "checkpoint" in name)
    best = os.path.basename(trainer.state.best_model_checkpoint)
    assert kept == sorted({best, "checkpoint-6"})


# -- a checkpoint of another configuration, a crafted pickle ----------------------------------------------------------


class _Crafted:
    """Pickled as a call of `os.getcwd`: what a crafted file does to run code when unpickled."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_resuming_a_checkpoint_of_another_configuration_is_one_summary(saved_run, tmp_path):
    _, source = saved_run
    checkpoint = source / "checkpoint-2"
    wider = make_tiny_config(hidden_size=24, ffn_dim=48)
    trainer = tiny_trainer(wider, str(tmp_path), **COMMON)
    saved = recipe.training.checkpoint_layout.load_weights(
        str(checkpoint / TRAINING_STATE_DIR / TRAINING_MODEL_WEIGHTS)
    )
    differing = [name for name, tensor in trainer.model.state_dict().items() if saved[name].shape != tensor.shape]
    with pytest.raises(CheckpointLoadError) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    message = str(error.value)
    assert "\n" not in message and len(message) < 1500
    assert message.startswith(f"Cannot resume from {checkpoint}: it holds a model of another configuration")
    assert f"{len(differing)} of its tensors differ" in message and len(differing) > 5
    assert f"{differing[0]} {tuple(saved[differing[0]].shape)} in the checkpoint, " in message
    assert sum(name in message for name in differing) == 5  # the first few, then "..."
    assert (
        "hidden_size: 16 in the checkpoint, 24 here" in message and "ffn_dim: 32 in the checkpoint, 48 here" in message
    )
    assert "--model_name_or_path / --config_name" in message and "another --output_dir" in message
    assert trainer.state.global_step == 0
    # a discriminator of another architecture: its own summary, naming its config file and flag
    other = VitsDiscriminator(DiscriminatorConfig(periods=[2], period_channels=[1, 4], scale_channels=[1, 4]))
    with pytest.raises(CheckpointLoadError) as error:
        recipe.training.checkpoint_layout.load_training_weights(str(checkpoint), saved_run[0].model, other)
    message = str(error.value)
    assert message.startswith(f"Cannot resume from {checkpoint}: it holds a discriminator of another configuration")
    assert "The discriminator_config.json fields that differ: period_channels: [1, 4, 8] in the checkpoint" in message
    assert "--discriminator_config_name" in message
    # the same configuration finds nothing to report
    same = tiny_trainer(make_tiny_config(), str(tmp_path), **COMMON)
    assert recipe.training.checkpoint_layout.shape_mismatch_error(
        str(checkpoint), saved, same.model.state_dict(), "config.json", same.model.vits.config
    ) is None  # fmt: skip


def test_a_crafted_pickle_in_a_checkpoint_is_named_and_refused_for_safety(saved_run, tmp_path):
    _, source = saved_run
    output_dir = tmp_path / "run"
    shutil.copytree(source, output_dir)
    checkpoint = output_dir / "checkpoint-4"
    crafted = checkpoint / "rng_state.pth"
    torch.save({"python": _Crafted()}, crafted)
    assert file_problem(str(checkpoint / "rng_state.pth")).startswith(
        "holds pickled objects other than tensors (posix.getcwd), refused for safety"
    )
    assert file_problem(str(checkpoint / "optimizer.pt")) is None  # a real one passes (and numpy's RNG state)
    assert file_problem(str(output_dir / "checkpoint-2" / "rng_state.pth")) is None
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **COMMON)
    with pytest.raises(CheckpointLoadError) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    message = str(error.value)
    assert f"{crafted}: holds pickled objects other than tensors" in message and "trusted source" in message
    assert "weights_only" not in message and "\n" not in message

    # the loaders name the file too, when they meet one
    torch.save({"state": _Crafted()}, checkpoint / "scheduler.pt")
    with pytest.raises(CheckpointLoadError, match=f"^{checkpoint / 'scheduler.pt'}: holds pickled objects"):
        recipe.training.checkpoint_layout.torch_load(str(checkpoint / "scheduler.pt"))
    with pytest.raises(CheckpointLoadError, match=f"^{checkpoint / 'scheduler.pt'}: holds pickled objects"):
        with recipe.training.checkpoint_layout.naming_trainer_files(str(checkpoint)):
            torch.load(checkpoint / "scheduler.pt", weights_only=True)
