"""The discriminator's own update, beside the generator's: its optimizer, schedule, gradient scaler and step.

The trainer's optimizer and schedule are the generator's. The discriminator has an AdamW of its own, prepared by
the trainer's accelerator (DDP, mixed precision), on the schedule the generator follows (re-planned with it under
`--target_hours`), and under fp16 a gradient scaler of its own. It steps on the detached generated audio of each
training step, accumulating gradients like the generator. Its optimizer, schedule and scaler state are saved in each
checkpoint's `training_state/` (`recipe.training.checkpoint_layout` names the files) and restored on resume.
"""

from __future__ import annotations

import contextlib
import os

import torch

from recipe.model.losses import discriminator_objective
from recipe.training.checkpoint_layout import (
    DISCRIMINATOR_OPTIMIZER,
    DISCRIMINATOR_SCALER,
    DISCRIMINATOR_SCHEDULER,
    TRAINING_STATE_DIR,
    torch_load,
)
from recipe.training.step_plan import schedule_at


class DiscriminatorUpdate:
    """The optimizer step of a discriminator trained alongside the generator.

    Args:
        discriminator (`VitsDiscriminator`): the discriminator (unwrapped).
        args (`VitsTrainingArguments`): the run's arguments (learning rates, AdamW settings, `optim`, schedule).
    """

    def __init__(self, discriminator: torch.nn.Module, args):
        self.discriminator = discriminator
        self.args = args
        # set by `prepare`: the accelerator's wrapper (DDP) and optimizer, and the schedule
        self.wrapped = None
        self.optimizer = None
        self.lr_scheduler = None

    def prepare(self, accelerator, num_training_steps: int) -> None:
        """Create the optimizer and its schedule for `num_training_steps` steps, prepared by `accelerator`."""
        args = self.args
        optimizer = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=args.discriminator_learning_rate or args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
            # the same implementation as the generator's (`optim`): fused is 1.3-7x faster on the optimizer phase
            # (benchmarks/README.md)
            fused=True if args.optim == "adamw_torch_fused" else None,
        )
        self.wrapped, self.optimizer = accelerator.prepare(self.discriminator, optimizer)
        if self.optimizer.scaler is not None:
            # fp16: a scaler of its own. With the generator's, the discriminator's step would update the loss
            # scale between the generator's backward and its unscaling.
            self.optimizer.scaler = torch.amp.GradScaler(args.device.type)
        self.lr_scheduler = schedule_at(args, self.optimizer, num_training_steps, 0)

    def replan(self, num_training_steps: int, current_step: int) -> None:
        """Re-plan the schedule for `num_training_steps` steps in all, positioned at `current_step`."""
        self.lr_scheduler = schedule_at(self.args, self.optimizer, num_training_steps, current_step)

    def step(self, accelerator, outputs, accumulation_steps: int) -> dict[str, torch.Tensor]:
        """Backward of the discriminator's loss on `outputs` (the generator's, audio detached); on the last
        micro-batch of an accumulation window, the optimizer and schedule step.

        Args:
            accelerator (`accelerate.Accelerator`): the trainer's accelerator.
            outputs: the training module's outputs of this micro-batch.
            accumulation_steps (`int`): micro-batches in this accumulation window (the loss is divided by it).

        Returns:
            `dict[str, torch.Tensor]`: the loss components (`discriminator`, `discriminator_real`, ...), for logging.
        """
        discriminator = self.wrapped
        discriminator.train()
        sync = accelerator.sync_gradients
        # accumulate like the generator: reduce and step only on the last micro-batch of an accumulation window
        with contextlib.nullcontext() if sync else accelerator.no_sync(discriminator):
            loss, components = discriminator_objective(discriminator, outputs)
            loss = loss / accumulation_steps
            scaler = self.optimizer.scaler
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                accelerator.backward(loss)
        if sync:
            self.optimizer.step()
            if not self.optimizer.step_was_skipped:
                self.lr_scheduler.step()
            # set_to_none: the next window starts from no gradient, and unscaling by the generator's clipping
            # (accelerate unscales every prepared optimizer) finds nothing to touch
            self.optimizer.optimizer.zero_grad(set_to_none=True)
        return components

    def evaluate(self, accelerator, outputs) -> dict[str, torch.Tensor]:
        """The loss components on an eval batch's `outputs`, for the eval metrics; no update (call it under
        `torch.no_grad()`). The unwrapped discriminator scores them, in eval mode."""
        self.discriminator.eval()
        with accelerator.autocast():
            _, components = discriminator_objective(self.discriminator, outputs)
        return components

    def save(self, checkpoint: str) -> None:
        """The optimizer's, the schedule's and (fp16) the scaler's state into `checkpoint`'s `training_state/`."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        torch.save(self.optimizer.state_dict(), os.path.join(folder, DISCRIMINATOR_OPTIMIZER))
        torch.save(self.lr_scheduler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCHEDULER))
        if self.optimizer.scaler is not None:
            torch.save(self.optimizer.scaler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCALER))

    def load(self, checkpoint: str) -> None:
        """The state `save` wrote into `checkpoint`; a missing file is named, with what it would have restored."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        for name in (DISCRIMINATOR_OPTIMIZER, DISCRIMINATOR_SCHEDULER):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"{os.path.join(folder, name)} is missing: cannot resume the discriminator")
        self.optimizer.load_state_dict(torch_load(os.path.join(folder, DISCRIMINATOR_OPTIMIZER)))
        self.lr_scheduler.load_state_dict(torch_load(os.path.join(folder, DISCRIMINATOR_SCHEDULER)))
        if self.optimizer.scaler is not None:
            scaler_path = os.path.join(folder, DISCRIMINATOR_SCALER)
            if not os.path.isfile(scaler_path):
                raise FileNotFoundError(
                    f"{scaler_path} is missing: cannot resume the discriminator's fp16 gradient scaler (was "
                    f"{checkpoint} saved by a run without fp16?)"
                )
            self.optimizer.scaler.load_state_dict(torch_load(scaler_path))
