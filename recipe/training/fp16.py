"""The fp16 path: run on a CPU as on a GPU, and a step that overflowed told apart from a step taken.

- accelerate turns fp16 on only for an accelerator: on a CPU it sets neither autocast nor a gradient scaler, and a
  run asked for fp16 would train in fp32 without a word. torch runs fp16 autocast and `torch.amp.GradScaler("cpu")`
  on a CPU, so `enable_fp16_on_cpu` gives the CPU what accelerate gives a GPU: fp16 autocast around the prepared
  model's forward and the trainer's loss, and the generator's scaler (the discriminator has its own,
  `DiscriminatorUpdate`). On a CPU this serves to run that path (the tests, a check before a GPU run); its speed there
  is not measured.
- accelerate decides that a step was skipped when the scaler did not call the optimizer's `step`. A fused AdamW (the
  default `adamw_torch_fused`) is always called: it skips an overflowing update inside its kernel. The schedule then
  advanced on steps that changed no weight. `SkippedStepsFromScale` reads the skip from the loss scale instead, which
  the scaler lowers after an overflow and only then.
"""

from __future__ import annotations

import functools
import logging

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def enable_fp16_on_cpu(accelerator) -> bool:
    """Give `accelerator` (created by `Trainer`, before any model or optimizer is prepared) fp16 autocast and a
    gradient scaler when the run is fp16 on a CPU and accelerate left them out; returns whether it did."""
    if accelerator.mixed_precision != "fp16" or accelerator.device.type != "cpu" or accelerator.scaler is not None:
        return False
    if not torch.amp.is_autocast_available("cpu"):
        raise RuntimeError(f"--precision fp16: torch {torch.__version__} has no fp16 autocast on CPU")
    # what accelerate's Accelerator sets up for fp16 on a GPU: `prepare` then wraps the model's forward in fp16
    # autocast and hands the scaler to the prepared optimizer
    accelerator.native_amp = True
    accelerator.scaler = torch.amp.GradScaler("cpu")
    logger.info("--precision fp16 on CPU: fp16 autocast and gradient scaling, as on a GPU")
    return True


def scaled_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> bool:
    """`scaler.step(optimizer)` and `scaler.update()`; returns whether the step was skipped (an overflow lowered the
    scale). Reads the scale on the host: one synchronisation per optimizer step."""
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() < scale


class SkippedStepsFromScale(TrainerCallback):
    """Makes the generator's prepared optimizer (an accelerate `AcceleratedOptimizer` with a scaler) report a skipped
    step from the loss scale (`scaled_step`), so that `Trainer` does not advance the schedule on it."""

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        scaler = getattr(optimizer, "scaler", None)
        if scaler is None or getattr(optimizer, "_recipe_skips_from_scale", False):
            return
        inner_step = optimizer.step

        # functools.wraps keeps the marks the learning-rate scheduler put on the step it wrapped (it warns without)
        @functools.wraps(inner_step)
        def step(closure=None):
            scale = scaler.get_scale()
            inner_step(closure)
            if optimizer.gradient_state.sync_gradients:
                # the flag `step_was_skipped` (and so `accelerator.optimizer_step_was_skipped`) returns
                optimizer._is_overflow = scaler.get_scale() < scale

        optimizer.step = step
        optimizer._recipe_skips_from_scale = True
