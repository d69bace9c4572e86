"""A broken connection between the processes of a run, said as such.

When a peer process dies, hangs or becomes unreachable, torch.distributed raises a bare `RuntimeError` (or a
`DistError`) in the survivors with a backend message (gloo, NCCL, a closed connection, a timeout) that does not say
what happened to the run. `peer_failure_error` turns it into an error that does, and says where to resume from: a
`PeerFailureError`, which the command reports as one line with exit status 4.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from recipe.errors import PeerFailureError

# messages of the errors torch.distributed raises when a peer process died, hangs or is unreachable
_PEER_FAILURE = re.compile(r"gloo|nccl|connection closed|connection reset|broken pipe|timed out|timeout", re.I)


def peer_failure_error(
    error: RuntimeError, args, step: int, where_to_resume: Callable[[], str]
) -> PeerFailureError | None:
    """The error to raise instead of `error` when it is a broken connection to another process; else `None`.

    Args:
        error (`RuntimeError`): what training raised.
        args (`TrainingArguments`): the run's arguments (`world_size`, `process_index`, `ddp_timeout`).
        step (`int`): the optimizer steps done.
        where_to_resume (`Callable[[], str]`): the sentence naming the checkpoint to resume from.
    """
    # the recipe's own errors (RuntimeError subclasses) say what they mean already
    peer_error = type(error) is RuntimeError or isinstance(error, torch.distributed.DistError)
    if not (args.world_size > 1 and peer_error and _PEER_FAILURE.search(str(error))):
        return None
    return PeerFailureError(
        f"Process {args.process_index} of {args.world_size}: the connection to another process of the run broke or "
        f"timed out at step {step} ({str(error).splitlines()[0][:300]}). A process that crashed logs its own error "
        f"(on its machine); one that hangs is given up after --ddp_timeout ({args.ddp_timeout} s). "
        f"{where_to_resume()}."
    )
