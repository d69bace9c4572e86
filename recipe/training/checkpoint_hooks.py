"""`CheckpointAwareCallback`: the two hooks `VitsTrainer` calls on callbacks that keep state in checkpoints.

`transformers.TrainerCallback` has no event for "a checkpoint is being written" nor for "training resumes from this
folder"; a callback whose history must survive a resume (the amplitude monitor's CRITICAL streak and healthy
checkpoints) needs both. `VitsTrainer` calls them on every callback that subclasses this one.
"""

from __future__ import annotations

from transformers import TrainerCallback


class CheckpointAwareCallback(TrainerCallback):
    """A `TrainerCallback` that writes files into each checkpoint and reads them back on resume."""

    def save_to_checkpoint(self, folder: str, checkpoint: str, args, state) -> None:
        """Write this callback's files into `folder` while checkpoint `checkpoint` is being saved.

        Args:
            folder (`str`): the staging folder being written (`partial-checkpoint-N`), renamed to `checkpoint` once
                every file is in it.
            checkpoint (`str`): the checkpoint's final path, as it is named once complete.
            args (`TrainingArguments`): the run's arguments.
            state (`TrainerState`): the state at the step being saved.
        """

    def resuming_from(self, checkpoint: str) -> None:
        """Called before `on_train_begin` when training resumes from `checkpoint` (any folder, possibly outside
        `output_dir`), so that the callback reads its files from there."""
