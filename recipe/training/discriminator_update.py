"""The discriminator's own update, beside the generator's: its optimizer, schedule, gradient scaler and step.

The trainer's optimizer and schedule are the generator's. The discriminator has an AdamW of its own (the
discriminator prepared by the trainer's accelerator for DDP and mixed precision, its optimizer kept apart), on the
schedule the generator follows (re-planned with it under
`--target_hours`), and under fp16 a gradient scaler of its own. One forward of the discriminator per step serves both
objectives (`discriminate`): its loss's backward reaches only its own parameters, the generator's only the
generator's, and it steps after both, accumulating gradients like the generator. Its optimizer, schedule and scaler state are saved in each
checkpoint's `training_state/` (`recipe.training.checkpoint_layout` names the files) and restored on resume.
"""

from __future__ import annotations

import contextlib
import os

import torch

from recipe.model.losses import DiscriminatorPass, discriminate, discriminator_objective
from recipe.training.checkpoint_layout import (
    DISCRIMINATOR_OPTIMIZER,
    DISCRIMINATOR_SCALER,
    DISCRIMINATOR_SCHEDULER,
    TRAINING_STATE_DIR,
    torch_load,
)
from recipe.training.fp16 import scaled_step
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
        # set by `prepare`: the accelerator's wrapper (DDP), the optimizer, its schedule and (fp16) its scaler
        self.wrapped = None
        self.optimizer = None
        self.lr_scheduler = None
        self.scaler = None

    def prepare(self, accelerator, num_training_steps: int) -> None:
        """Create the optimizer and its schedule for `num_training_steps` steps; `accelerator` prepares the
        discriminator (DDP, autocast), not its optimizer.

        The optimizer stays out of the accelerator's: `Trainer` asks the accelerator whether the generator's step was
        skipped, which would then also answer for the discriminator's, and the generator's gradient clipping would
        unscale it with the generator's scaler. Under fp16 it has a scaler of its own: with the generator's, the
        discriminator's step would update the loss scale between the generator's backward and its unscaling.
        """
        args = self.args
        self.wrapped = accelerator.prepare_model(self.discriminator)
        self.optimizer = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=args.discriminator_learning_rate or args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
            # the same implementation as the generator's (`optim`): fused is 1.3-7x faster on the optimizer phase
            # (benchmarks/README.md)
            fused=True if args.optim == "adamw_torch_fused" else None,
        )
        self.scaler = torch.amp.GradScaler(args.device.type) if accelerator.scaler is not None else None
        self.lr_scheduler = schedule_at(args, self.optimizer, num_training_steps, 0)

    def replan(self, num_training_steps: int, current_step: int) -> None:
        """Re-plan the schedule for `num_training_steps` steps in all, positioned at `current_step`."""
        self.lr_scheduler = schedule_at(self.args, self.optimizer, num_training_steps, current_step)

    def discriminate(self, accelerator, outputs, training: bool) -> DiscriminatorPass:
        """The discriminator's one pass over a step's real and generated audio, which both objectives use.

        In training, the prepared discriminator (DDP) in train mode; its gradients are reduced on the last
        micro-batch of an accumulation window only, so on the others the forward runs under `no_sync` (DDP decides
        at the forward whether the backward reduces). In evaluation, the unwrapped one in eval mode.
        """
        if not training:
            self.discriminator.eval()
            with accelerator.autocast():
                return discriminate(self.discriminator, outputs)
        self.wrapped.train()
        sync = accelerator.sync_gradients
        with contextlib.nullcontext() if sync else accelerator.no_sync(self.wrapped), accelerator.autocast():
            return discriminate(self.wrapped, outputs)

    def backward(self, discriminated: DiscriminatorPass, accumulation_steps: int) -> dict[str, torch.Tensor]:
        """Backward of the discriminator's loss on `discriminated`, into the discriminator's parameters only.

        The generated audio in `discriminated` is not detached: limiting the backward to the discriminator's
        parameters keeps its gradient out of the generator, and the pass's graph is retained for the generator's
        backward, which follows (its objective uses the same pass). Returns the loss components, for logging.
        """
        loss, components = discriminator_objective(discriminated)
        loss = loss / accumulation_steps
        parameters = [parameter for parameter in self.discriminator.parameters() if parameter.requires_grad]
        (loss if self.scaler is None else self.scaler.scale(loss)).backward(inputs=parameters, retain_graph=True)
        return components

    def step(self, accelerator) -> None:
        """On the last micro-batch of an accumulation window, the optimizer step (skipped under fp16 when the
        gradients overflowed) and, unless skipped, the schedule's."""
        if not accelerator.sync_gradients:
            return
        if self.scaler is None:
            self.optimizer.step()
            skipped = False
        else:
            skipped = scaled_step(self.optimizer, self.scaler)
        if not skipped:
            self.lr_scheduler.step()
        # set_to_none: the next window starts from no gradient
        self.optimizer.zero_grad(set_to_none=True)

    def evaluate(self, discriminated: DiscriminatorPass) -> dict[str, torch.Tensor]:
        """The loss components on an eval batch's pass (`discriminate(..., training=False)`), for the eval metrics;
        no update (call it under `torch.no_grad()`)."""
        _, components = discriminator_objective(discriminated)
        return components

    def save(self, checkpoint: str) -> None:
        """The optimizer's, the schedule's and (fp16) the scaler's state into `checkpoint`'s `training_state/`."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        torch.save(self.optimizer.state_dict(), os.path.join(folder, DISCRIMINATOR_OPTIMIZER))
        torch.save(self.lr_scheduler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCHEDULER))
        if self.scaler is not None:
            torch.save(self.scaler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCALER))

    def load(self, checkpoint: str) -> None:
        """The state `save` wrote into `checkpoint`; a missing file is named, with what it would have restored."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        for name in (DISCRIMINATOR_OPTIMIZER, DISCRIMINATOR_SCHEDULER):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"{os.path.join(folder, name)} is missing: cannot resume the discriminator")
        self.optimizer.load_state_dict(torch_load(os.path.join(folder, DISCRIMINATOR_OPTIMIZER)))
        self.lr_scheduler.load_state_dict(torch_load(os.path.join(folder, DISCRIMINATOR_SCHEDULER)))
        if self.scaler is not None:
            scaler_path = os.path.join(folder, DISCRIMINATOR_SCALER)
            if not os.path.isfile(scaler_path):
                raise FileNotFoundError(
                    f"{scaler_path} is missing: cannot resume the discriminator's fp16 gradient scaler (was "
                    f"{checkpoint} saved by a run without fp16?)"
                )
            self.scaler.load_state_dict(torch_load(scaler_path))
