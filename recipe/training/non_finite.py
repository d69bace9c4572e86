"""Naming the clips of a non-finite loss without a host sync per step.

Batches carry their clips' paths (`VitsDataCollator`'s `paths`). For each micro-batch the tracker keeps the paths on
the host and the loss's finiteness on the device; they are read together at the next training log, or when a step
fails on weights an earlier non-finite loss broke, and the batches whose loss was not finite are named in the warning
or the error.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

# micro-batches whose clips and loss finiteness are kept for naming the clips of a non-finite loss
TRACKED_BATCHES = 1024


class NonFiniteTracker:
    """The micro-batches since the last training log, and the non-finite ones found so far.

    Args:
        size (`int`, *optional*, defaults to `TRACKED_BATCHES`): micro-batches kept (the newest ones).
    """

    def __init__(self, size: int = TRACKED_BATCHES):
        # per micro-batch: (step, clip paths) on the host and the loss's finiteness on the device
        self._batch_clips: collections.deque = collections.deque(maxlen=size)
        self._batch_finite: collections.deque = collections.deque(maxlen=size)
        self.non_finite_batches: list[tuple[int, list[str] | None]] = []

    def track(self, step: int, paths: list[str] | None, loss: torch.Tensor) -> None:
        """Keep a micro-batch of optimizer step `step`: its clips and whether `loss` is finite (on the device)."""
        self._batch_clips.append((step, paths))
        self._batch_finite.append(torch.isfinite(loss.detach()))

    def find(self) -> list[tuple[int, list[str] | None]]:
        """The tracked micro-batches whose loss was not finite, added to `non_finite_batches`; returns the new ones.

        One host sync for all of them; the tracked batches are then forgotten.
        """
        if not self._batch_finite:
            return []
        finite = torch.stack(list(self._batch_finite)).tolist()
        new = [batch for batch, ok in zip(self._batch_clips, finite) if not ok]
        self._forget()
        self.non_finite_batches.extend(new)
        return new

    def describe(self, batches: list | None = None, limit: int = 3) -> str:
        """`" (step 1: clips a.wav, b.wav; ...)"` for the first non-finite batches, or `""` when none is known.

        Args:
            batches (`list`, *optional*): the `(step, paths)` batches to name; defaults to all found so far.
            limit (`int`, *optional*, defaults to 3): batches named; the others are counted.
        """
        batches = self.non_finite_batches if batches is None else batches
        if not batches:
            return ""
        parts = []
        for step, paths in batches[:limit]:
            clips = ", ".join(paths) if paths else "clip paths unknown (the batches carry no 'paths')"
            parts.append(f"step {step}: {clips}")
        more = f"; {len(batches) - limit} more batch(es)" if len(batches) > limit else ""
        return f" (the non-finite loss came from the batch of {'; '.join(parts)}{more})"

    def check_log(self, logs: dict[str, float], step: int) -> None:
        """Warn about the non-finite values of a training log that ends at `step`, naming the batches they came from;
        the tracked batches are then forgotten, as the next window starts.

        Checked here, once per logging window, where the values are on the host anyway.
        """
        broken = sorted(name for name, value in logs.items() if isinstance(value, float) and not math.isfinite(value))
        if broken:
            new = self.find()
            logger.warning(
                "Non-finite training values in the logging window that ends at step %d: %s%s. With fp16 a few "
                "overflowing steps are expected (the grad scaler skips them); if it persists, lower the learning "
                "rate or train in bf16 / fp32 from the last checkpoint.",
                step,
                ", ".join(f"{name}={logs[name]}" for name in broken),
                self.describe(new),
            )
        self._forget()

    @contextlib.contextmanager
    def naming_broken_weights(self, model: torch.nn.Module, step: int, where_to_resume: Callable[[], str]):
        """Around a training step's forward: a `RuntimeError` raised while `model`'s weights are no longer finite is
        re-raised as a `FloatingPointError` that says so and names the batches of the non-finite losses.

        Weights made non-finite by an earlier step (a NaN loss in fp32 / bf16, where no grad scaler skips it) break
        VITS's spline flow with an unrelated-looking error. The weights are checked only on failure.

        Args:
            model (`torch.nn.Module`): the model being trained.
            step (`int`): the optimizer steps done.
            where_to_resume (`Callable[[], str]`): the sentence naming the checkpoint to resume from.
        """
        try:
            yield
        except RuntimeError as error:
            broken = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
            if broken:
                self.find()
                raise FloatingPointError(
                    f"The model's weights are no longer finite at step {step} ({len(broken)} tensors, e.g. "
                    f"{', '.join(broken[:3])}): an earlier step's loss was NaN or infinite{self.describe()}. "
                    f"{where_to_resume()} with a lower learning rate, or train in fp32, after checking those clips."
                ) from error
            raise

    def _forget(self) -> None:
        self._batch_clips.clear()
        self._batch_finite.clear()
