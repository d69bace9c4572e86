"""The loss components of a logging window (training) or an eval split, averaged without a host sync per step.

Each step's components (`mel`, `kl`, `discriminator`, ...) are added to sums kept on the device; the window's means
are read once, at the log (or the end of the evaluation), reduced over the processes in one collective.
"""

from __future__ import annotations

import torch


class LossWindow:
    """On-device sums and counts of named loss components since the window was last reduced."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def record(self, components: dict[str, torch.Tensor]) -> None:
        """Add detached components to the window's on-device sums (no host sync)."""
        for name, value in components.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def reset(self) -> None:
        """Start an empty window."""
        self.sums, self.counts = {}, {}

    def reduce(self, accelerator) -> dict[str, float]:
        """Means of the recorded components over the window and all processes; resets the window.

        Every process must call it at the same point (it is a collective under DDP); they record the same names.

        Args:
            accelerator (`accelerate.Accelerator`): the trainer's accelerator, for the reduction over processes.
        """
        names = sorted(self.sums)
        if not names:
            return {}
        packed = torch.stack(
            [
                torch.stack([self.sums[name], torch.tensor(float(self.counts[name]), device=self.sums[name].device)])
                for name in names
            ]
        )
        if accelerator.num_processes > 1:
            packed = accelerator.reduce(packed, reduction="sum")
        self.reset()
        return {name: total / count for name, (total, count) in zip(names, packed.tolist())}
