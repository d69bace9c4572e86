"""Mixing earlier training data into a new round of fine-tuning, so that the model keeps what it learned.

    replay_features, _ = prepare_datasets(replay_args(data_args), tokenizer, config, f"{output_dir}/replay")
    train = mix_replay(features["train"], replay_features["train"], data_args.replay_fraction, seed)

Both datasets go through `prepare_datasets` with the same tokenizer and model configuration, so their features have
the same meaning; the mix is a concatenation with a fixed-seed sample of the replay data, sized so that the replay
share of the training set is `--replay_fraction` exactly (up to rounding to whole clips), then shuffled once. The
evaluation split stays the new data's: it measures the new round's goal, and the replay keeps the old one.
"""

from __future__ import annotations

import collections
import dataclasses
import logging

import datasets
import numpy as np

from recipe.data.source import DataError

logger = logging.getLogger(__name__)


def replay_args(data_args, model_speakers: tuple[str, ...] | None = None):
    """The data arguments that read `--replay_dataset_name`: the same columns and filters, no sample caps. With
    `model_speakers` (a multi-speaker model's, `recipe.voices.speaker_map.model_speaker_order`), every speaker of the
    replay data is a candidate (`--speakers all`): the caller keeps the model's own (`prepare_datasets(only_speakers=
    model_speakers)`), whichever this round's `--speakers` chose from the new data."""
    if data_args.replay_dataset_name is None:
        raise ValueError("replay_args needs --replay_dataset_name")
    speakers = {"speakers": "all", "speaker_id": None} if model_speakers is not None else {}
    return dataclasses.replace(
        data_args,
        **speakers,
        dataset_name=data_args.replay_dataset_name,
        dataset_format=data_args.replay_dataset_format,
        max_train_samples=None,
        max_eval_samples=None,
        replay_dataset_name=None,
        replay_fraction=None,
        preprocessing_only=False,
    )


def replay_count(num_new: int, fraction: float) -> int:
    """Replay clips to add to `num_new` new clips so that they make up `fraction` of the mix."""
    if not 0 < fraction < 1:
        raise ValueError(f"--replay_fraction must be between 0 and 1 (exclusive), not {fraction}")
    return max(1, round(num_new * fraction / (1 - fraction)))


def _align_speaker_labels(new: datasets.Dataset, replay: datasets.Dataset, num_speakers: int) -> datasets.Dataset:
    """`replay` with the speaker column typed as `new`'s, or a `DataError` when the speaker indices mean other voices."""
    new_label, replay_label = new.features["speaker_id"], replay.features["speaker_id"]
    if new_label == replay_label:
        return replay
    if num_speakers <= 1:
        # a single-speaker model ignores speaker_id: only the column types must agree for the concatenation
        return replay.map(lambda _: {"speaker_id": 0}, input_columns=["speaker_id"]).cast_column(
            "speaker_id", new_label
        )
    raise DataError(
        f"The replay data's speakers {getattr(replay_label, 'names', replay_label)} are not this data's "
        f"{getattr(new_label, 'names', new_label)}: a multi-speaker model would give their clips the wrong speaker "
        "embedding (use the same --speaker_id_column_name and --speaker_id for both)"
    )


def mix_replay(
    new: datasets.Dataset, replay: datasets.Dataset, fraction: float, seed: int = 0, num_speakers: int = 1
) -> tuple[datasets.Dataset, dict]:
    """New training clips plus a sample of `replay` making up `fraction` of the result, shuffled.

    Args:
        new (`datasets.Dataset`): this round's training features.
        replay (`datasets.Dataset`): earlier training features (from `prepare_datasets` with the same tokenizer).
        fraction (`float`): share of replay clips in the result, in (0, 1).
        seed (`int`, *optional*, defaults to 0): seed of the sample and of the shuffle.
        num_speakers (`int`, *optional*, defaults to 1): the model's `config.num_speakers`.

    Returns:
        `tuple(datasets.Dataset, dict)`: the mix, with a boolean `is_replay` column, and a report entry
        (`new_clips`, `replay_clips`, `replay_available`, `fraction`, `repeated`: whether replay clips had to be
        repeated because fewer were available than the share asks for).
    """
    if len(replay) == 0:
        raise DataError("The replay dataset has no training clip")
    count = replay_count(len(new), fraction)
    rng = np.random.default_rng(seed)
    repeated = count > len(replay)
    if repeated:
        logger.warning(
            "--replay_fraction %s asks for %d replay clips but %d are available: repeating them",
            fraction,
            count,
            len(replay),
        )
        indices = np.concatenate([rng.permutation(len(replay)) for _ in range(-(-count // len(replay)))])[:count]
    else:
        indices = rng.choice(len(replay), size=count, replace=False)
    replay = _align_speaker_labels(new, replay, num_speakers)
    sample = replay.select(indices.tolist()).add_column("is_replay", [True] * count)
    mixed = datasets.concatenate_datasets([new.add_column("is_replay", [False] * len(new)), sample])
    names = sample.features["speaker_id"].names if hasattr(sample.features["speaker_id"], "names") else None
    per_speaker = collections.Counter(names[i] if names else str(i) for i in sample["speaker_id"])
    report = {
        "new_clips": len(new),
        "replay_clips": count,
        "replay_clips_per_speaker": dict(sorted(per_speaker.items())),
        "replay_available": len(replay),
        "fraction": count / len(mixed),
        "repeated": repeated,
    }
    return mixed.shuffle(seed=seed), report
