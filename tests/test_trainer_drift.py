"""`VitsTrainer._save_checkpoint` is a near copy of `transformers.Trainer._save_checkpoint`: this test fails when the
installed transformers' method is no longer the one the copy follows, so that the copy is brought up to date."""

from __future__ import annotations

import hashlib
import inspect
import textwrap

import transformers

from recipe.training.trainer import VitsTrainer


def _source_sha256(function) -> str:
    """The sha256 of `function`'s source, dedented (the hash does not depend on the method's indentation)."""
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode("utf-8")).hexdigest()


def test_save_checkpoint_follows_the_installed_transformers():
    installed = _source_sha256(transformers.Trainer._save_checkpoint)
    assert installed == VitsTrainer.SAVE_CHECKPOINT_FOLLOWS_SHA256, (
        f"transformers {transformers.__version__}'s Trainer._save_checkpoint is not the one "
        f"recipe/training/trainer.py's VitsTrainer._save_checkpoint follows (transformers "
        f"{VitsTrainer.SAVE_CHECKPOINT_FOLLOWS_TRANSFORMERS}). Compare VitsTrainer._save_checkpoint with the new "
        "Trainer._save_checkpoint, port the changes (keeping the staged write and the rename), then record the new "
        f"version and hash next to the copy: SAVE_CHECKPOINT_FOLLOWS_TRANSFORMERS = {transformers.__version__!r}, "
        f"SAVE_CHECKPOINT_FOLLOWS_SHA256 = {installed!r}."
    )
