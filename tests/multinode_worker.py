"""Run by `tests/test_multinode.py` under `accelerate launch --num_machines 2 ...`: `run_finetune.py` as it is, plus
what the test needs to see from outside.

Writes `<pid_dir>/rank-<RANK>.pid` at start (for the test to signal one process), and after a run that ends with
status 0 the trained weights to `<pid_dir>/rank-<RANK>.safetensors` (to compare the ranks). Exits with
`run_finetune.cli`'s status.

    python tests/multinode_worker.py <pid_dir> <run_finetune.py arguments...>
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from safetensors.torch import save_file  # noqa: E402

import run_finetune  # noqa: E402
from recipe.training.trainer import VitsTrainer  # noqa: E402


class RecordingTrainer(VitsTrainer):
    """`VitsTrainer` that keeps a reference to itself, for the weights after `run_finetune.main` returns."""

    instance = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingTrainer.instance = self


def main(pid_dir: str, argv: list[str]) -> int:
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(pid_dir, f"rank-{rank}.pid"), "w") as handle:
        handle.write(str(os.getpid()))
    run_finetune.VitsTrainer = RecordingTrainer
    status = run_finetune.cli(argv)
    if status == 0:
        trainer = RecordingTrainer.instance
        weights = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
        weights.update({f"discriminator.{k}": v for k, v in trainer.discriminator.state_dict().items()})
        weights = {k: v.detach().contiguous().clone().cpu() for k, v in weights.items()}
        save_file(weights, os.path.join(pid_dir, f"rank-{rank}.safetensors"))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
