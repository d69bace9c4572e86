"""The log line that says which checkpoint a run resumes from, and at which step: with `--resume_from_checkpoint
True` the folder is chosen by the recipe (the newest intact `checkpoint-N`), and the log is where a user reads it."""

from __future__ import annotations

import json
import logging
import os

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipe.training import checkpoint_layout
from recipe.training.checkpoint_layout import TRAINER_STATE_FILE

logger = logging.getLogger(__name__)


def resolve_resume(resume: str | bool | None, run_dir: str, required: list[str]) -> str | None:
    """`checkpoint_layout.resolve_resume` (the checkpoint folder to resume from, checked intact), then the line that
    names it (`log_resume`)."""
    checkpoint = checkpoint_layout.resolve_resume(resume, run_dir, required)
    log_resume(checkpoint, resume)
    return checkpoint


def log_resume(checkpoint: str | None, requested: str | bool | None) -> None:
    """Log at INFO which checkpoint the run resumes from and its step; nothing when it starts afresh.

    Args:
        checkpoint (`str`, *optional*): the folder resumed from (`checkpoint_layout.resolve_resume`), `None` when
            training starts afresh.
        requested (`str` or `bool`, *optional*): `--resume_from_checkpoint` as given (`True`: the newest intact one).
    """
    if checkpoint is None:
        return
    how = "the newest intact checkpoint, " if requested is True else ""
    logger.info(f"Resuming from {checkpoint} ({how}step {checkpoint_step(checkpoint)})")


def checkpoint_step(checkpoint: str) -> int | str:
    """The step a checkpoint was saved at: its `trainer_state.json`'s `global_step`, else the N of its
    `checkpoint-N` name; `"unknown"` when neither says."""
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE_FILE), encoding="utf-8") as handle:
            return int(json.load(handle)["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        # the folder was verified whole before this (its JSON parses): a line of the log must not stop the resume
        name = os.path.basename(os.path.normpath(checkpoint))
        number = name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        return int(number) if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and number.isdigit() else "unknown"
