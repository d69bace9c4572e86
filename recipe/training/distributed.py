"""What every process of a distributed run must agree on: the main process's values, broadcast to all ranks.

Decisions that change the training loop (stop now, how many steps to plan, whether the voice has collapsed) must be
the same on every rank: a rank that stops alone leaves the others waiting forever on its gradients.
"""

from __future__ import annotations

import torch


def broadcast_from_main(values: list[float], device) -> list[float]:
    """The main process's `values` on every process.

    Args:
        values (`list[float]`): this process's values; only the main process's are kept. Every rank passes as many
            (placeholders on the other ranks).
        device (`torch.device`): where the collective runs (the process group's device: CPU for gloo, the rank's GPU
            for NCCL).

    Returns:
        `list[float]`: the main process's values (as float64), or `values` themselves when no process group is
        initialized.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [float(value) for value in values]
    packed = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.broadcast(packed, src=0)
    return packed.tolist()
