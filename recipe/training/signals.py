"""Stops that keep the work: Ctrl-C or SIGTERM (a scheduler's pre-emption) during training.

The first signal is noted, not acted on at once: the current optimizer step finishes, every process stops after that
same step, a checkpoint is saved, and `VitsTrainer.train` raises `TrainingInterrupted` naming it (`run_finetune.py`
prints the command that resumes from it and exits with 128 + the signal's number). A second signal quits at once,
without saving (`ForcedStop`).

Under `accelerate launch` (torch elastic) the launcher, not the terminal, forwards Ctrl-C / SIGTERM to the training
processes (they run in sessions of their own), and kills them after `TORCH_ELASTIC_SHUTDOWN_TIMEOUT` seconds (30 by
default): the last step and the save must fit in that time.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint.

    Args:
        signum (`int`): the signal's number (`signal.SIGINT`, `signal.SIGTERM`).
        step (`int`): the last optimizer step done.
        checkpoint (`str`, *optional*): the checkpoint saved at the stop; None when none could be saved.
    """

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"saved {checkpoint}" if checkpoint else "no checkpoint could be saved"
        super().__init__(f"{signal.Signals(signum).name} received: training stopped after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


class ForcedStop(KeyboardInterrupt):
    """A second Ctrl-C / SIGTERM: quit at once, without saving."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"second {signal.Signals(signum).name}: quitting without saving")


class StopRequest:
    """Notes the first SIGINT / SIGTERM while `listening()`; raises `ForcedStop` on the second."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            logger.warning(f"Second {signal.Signals(signum).name}: quitting now, without saving")
            raise ForcedStop(signum)
        self.signum = signum
        logger.warning(
            f"{signal.Signals(signum).name} received: finishing the current step, then saving a checkpoint and "
            "stopping. Press Ctrl-C again to quit at once without saving."
        )

    @contextlib.contextmanager
    def listening(self):
        """Handle SIGINT and SIGTERM inside the block (the previous handlers come back on exit).

        Signal handlers can only be set from the main thread: elsewhere the block runs with the handlers unchanged,
        and says so.
        """
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Training runs outside the main thread: Ctrl-C / SIGTERM will not save a checkpoint")
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class StopOnSignalCallback(TrainerCallback):
    """Stops and saves after the step during which a signal arrived, on every process at the same step.

    Under torch.distributed the processes agree at each step end (one all-reduce of a scalar): a signal may reach
    one process only (a node's launcher), and a process that stopped alone would leave the others waiting for its
    gradients.

    Args:
        request (`StopRequest`): what the signal handler noted.
    """

    def __init__(self, request: StopRequest):
        self.request = request
        self.stopped_at_step: int | None = None

    def _shared_signum(self, device) -> int:
        signum = self.request.signum or 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            packed = torch.tensor([signum], dtype=torch.int64, device=device)
            torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.MAX)
            signum = int(packed.item())
        return signum

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._shared_signum(args.device)
        if signum:
            if self.request.signum is None:
                # another process got the signal: this one stops with it
                self.request.signum = signum
            self.stopped_at_step = state.global_step
            control.should_training_stop = True
            control.should_save = True  # even with --save_strategy no: the point is to keep the work
        return control
