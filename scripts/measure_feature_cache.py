"""Measures the feature cache: preprocessing time of a first and a second (cached) run, and disk per hour of audio
of the cache as built (waveform + log-mel) against a cache that would also hold the linear spectrogram.

    python scripts/measure_feature_cache.py --dataset_name demo/kmr_common_voice --tokenizer demo/tiny_model

The model geometry is MMS's (16 kHz, n_fft 1024, hop 256, 80 mel bins), from `recipe.model.tiny.make_tiny_config`.
The figures it gave are in `docs/results.md`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import datasets
import torch

from recipe.audio import SpectrogramConfig, linear_spectrogram
from recipe.data.feature_cache import CACHE_FOLDER
from recipe.data.pipeline import prepare_datasets
from recipe.model.tiny import make_tiny_config
from recipe.training.arguments import DataArguments

REPO = Path(__file__).resolve().parent.parent


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", required=True)
    parser.add_argument("--tokenizer", default=str(REPO / "demo" / "tiny_model"))
    parser.add_argument("--preprocessing_num_workers", type=int, default=None)
    args = parser.parse_args()

    from transformers import VitsTokenizer

    tokenizer = VitsTokenizer.from_pretrained(args.tokenizer)
    config = make_tiny_config(vocab_size=len(tokenizer))
    spectrogram = SpectrogramConfig.from_model_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        data_args = DataArguments(
            dataset_name=args.dataset_name,
            cache_dir=os.path.join(tmp, "cache"),
            preprocessing_num_workers=args.preprocessing_num_workers,
        )
        start = time.perf_counter()
        features, report = prepare_datasets(data_args, tokenizer, config, os.path.join(tmp, "out"))
        first = time.perf_counter() - start
        start = time.perf_counter()
        features, report = prepare_datasets(data_args, tokenizer, config, os.path.join(tmp, "out"))
        second = time.perf_counter() - start

        hours = sum(split["hours"] for split in report.values())
        cache = folder_bytes(os.path.join(tmp, "cache", CACHE_FOLDER))

        # The same clips with the linear spectrogram added as a cached column, (frames, 513) float32.
        def with_linear(row):
            wave = torch.tensor(row["waveform"], dtype=torch.float32)
            return {"linear": linear_spectrogram(wave, spectrogram).T.contiguous().numpy()}

        linear_features = datasets.Features(
            {
                **features["train"].features,
                "linear": datasets.Array2D((None, spectrogram.num_frequency_bins), "float32"),
            }
        )
        torch.set_num_threads(1)
        with_spec = datasets.DatasetDict(
            {name: split.map(with_linear, features=linear_features) for name, split in features.items()}
        )
        with_spec.save_to_disk(os.path.join(tmp, "with_linear"))
        cache_with_linear = folder_bytes(os.path.join(tmp, "with_linear"))

    mb_per_hour = 1e6 * hours
    print(f"audio kept: {hours * 3600:.1f} s in {sum(s['kept'] for s in report.values())} clips")
    print(f"first run {first:.2f} s, second run {second:.3f} s ({second / first:.1%} of the first)")
    print(f"cache as built (waveform + log-mel): {cache / mb_per_hour:.0f} MB per hour of audio")
    print(f"with a cached linear spectrogram as well: {cache_with_linear / mb_per_hour:.0f} MB per hour of audio")
    print(f"the linear spectrogram alone: {(cache_with_linear - cache) / mb_per_hour:.0f} MB per hour of audio")


if __name__ == "__main__":
    main()
