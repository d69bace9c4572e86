"""Run by `tests/test_ddp.py` under `accelerate launch --multi_gpu --num_processes 2` (gloo DDP on CPU).

Trains the tiny model with its discriminator for a few steps, evaluating and saving a checkpoint, then writes each
rank's final weights to `<output_dir>/rank-<i>.safetensors` for the test to compare.
"""

from __future__ import annotations

import os
import sys

from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_tiny_config  # noqa: E402
from trainer_helpers import tiny_trainer  # noqa: E402


def main(output_dir: str) -> None:
    trainer = tiny_trainer(
        make_tiny_config(),
        output_dir,
        max_steps=3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=3,
    )
    trainer.train()
    weights = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    weights.update({f"discriminator.{k}": v for k, v in trainer.discriminator.state_dict().items()})
    weights = {k: v.detach().contiguous().clone().cpu() for k, v in weights.items()}
    save_file(weights, os.path.join(output_dir, f"rank-{trainer.args.process_index}.safetensors"))
    eval_logs = [entry for entry in trainer.state.log_history if "eval_mel" in entry]
    if not eval_logs:
        raise SystemExit(f"rank {trainer.args.process_index}: no eval_mel in the log history")


if __name__ == "__main__":
    main(sys.argv[1])
