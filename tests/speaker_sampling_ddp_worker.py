"""Run by `tests/test_speaker_sampling.py` under `accelerate launch --multi_gpu --num_processes 2` (gloo DDP on CPU).

Trains the tiny two-speaker model for two epochs with `--speaker_sampling balanced` and writes, to
`<output_dir>/rank-<i>.json`, the clips of each batch this process trained on and the sampler's draw of each epoch
(as clip paths), for the test to check that the processes shared each epoch's draw without overlap.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_tiny_config  # noqa: E402
from trainer_helpers import RecordingCollator, speaker_features, tiny_trainer  # noqa: E402

from recipe.audio import SpectrogramConfig  # noqa: E402


def main(output_dir: str) -> None:
    config = make_tiny_config(num_speakers=2, speaker_embedding_size=4)
    features = speaker_features(config, {0: 18, 1: 6})
    collator = RecordingCollator(SpectrogramConfig.from_model_config(config))
    trainer = tiny_trainer(
        config, output_dir, discriminator=False, features=features, data_collator=collator, max_steps=-1,
        num_train_epochs=2, per_device_train_batch_size=3, speaker_sampling="balanced",
    )  # fmt: skip
    trainer.train()
    paths = features["path"]
    seen = {
        "batches": collator.batches,
        "draws": [[paths[i] for i in trainer.speaker_sampler.draw(epoch)] for epoch in range(2)],
        "global_step": trainer.state.global_step,
    }
    with open(os.path.join(output_dir, f"rank-{trainer.args.process_index}.json"), "w", encoding="utf-8") as handle:
        json.dump(seen, handle)


if __name__ == "__main__":
    main(sys.argv[1])
