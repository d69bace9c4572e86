"""Run by `tests/test_ddp.py` under `accelerate launch --multi_gpu --num_processes 2` (gloo DDP on CPU).

Trains the tiny model with its discriminator for a few steps, evaluating and saving a checkpoint, with the amplitude
monitor (patience 0) and `--target_hours` on, so that their broadcasts (the monitor's verdict, the step plan and the
deadline guard's decision) run under DDP. Writes each rank's final weights to `<output_dir>/rank-<i>.safetensors`
and what each rank's monitor and budget saw to `<output_dir>/rank-<i>.json`, for the test to compare.
"""

from __future__ import annotations

import json
import os
import string
import sys

from safetensors.torch import save_file
from transformers import VitsTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_tiny_config  # noqa: E402
from trainer_helpers import tiny_trainer  # noqa: E402

from recipe.training.amplitude_monitor import AmplitudeMonitorCallback  # noqa: E402


def monitor_tokenizer(folder: str) -> VitsTokenizer:
    characters = ["<pad>", "<unk>", " "] + list(string.ascii_lowercase)
    vocab_file = os.path.join(folder, "vocab.json")
    with open(vocab_file, "w", encoding="utf-8") as handle:
        json.dump({c: i for i, c in enumerate(characters)}, handle)
    return VitsTokenizer(vocab_file, phonemize=False)


def main(output_dir: str) -> None:
    # each rank its own tokenizer folder: the main process's checkpoints go to output_dir
    rank = int(os.environ.get("RANK", "0"))
    tokenizer_dir = os.path.join(output_dir, f"tokenizer-{rank}")
    os.makedirs(tokenizer_dir, exist_ok=True)
    monitor = AmplitudeMonitorCallback(monitor_tokenizer(tokenizer_dir), ["roj bas"], reference_rms=0.1, patience=0)
    trainer = tiny_trainer(
        make_tiny_config(),
        output_dir,
        callbacks=[monitor],
        max_steps=3,  # the cap of the --target_hours plan, which a one-hour budget reaches
        target_hours=1.0,
        target_hours_timing_steps=2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=3,
    )
    trainer.train()
    process_index = trainer.args.process_index
    weights = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    weights.update({f"discriminator.{k}": v for k, v in trainer.discriminator.state_dict().items()})
    weights = {k: v.detach().contiguous().clone().cpu() for k, v in weights.items()}
    save_file(weights, os.path.join(output_dir, f"rank-{process_index}.safetensors"))
    seen = {
        "planned_max_steps": trainer.budget.planned_max_steps,
        "stopped_by_budget": trainer.budget.stopped_by_budget,
        "global_step": trainer.state.global_step,
        "amplitude_history": monitor.history,
    }
    with open(os.path.join(output_dir, f"rank-{process_index}.json"), "w", encoding="utf-8") as handle:
        json.dump(seen, handle)
    eval_logs = [entry for entry in trainer.state.log_history if "eval_mel" in entry]
    if not eval_logs:
        raise SystemExit(f"rank {process_index}: no eval_mel in the log history")


if __name__ == "__main__":
    main(sys.argv[1])
