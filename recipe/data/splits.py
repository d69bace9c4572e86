"""Which clips train and which evaluate: the speaker choice, the eval split and the splits a caller asks for.

    splits = requested_splits(("eval",))
    train, eval_split, selected, overlap_removed = choose_splits(source, data_args, settings, num_proc)
    names = speaker_names(source, [train, eval_split], selected)
    split, selected = whole_split(source, "all", data_args, settings, num_proc)   # one split (or every clip) whole

Runs in the main process, before any clip is featurized. `--speaker_id ID` keeps one speaker, `--speaker_id top`
the one with the most audio (measured from the file headers, without decoding). The eval split is the source's dev
split (`--eval_split_name`, else the source's own), with the training clips it also holds removed, else a fixed-seed
`--eval_fraction` of the selected training clips: the same data always gives the same split. `whole_split` gives
a split with nothing held out, for recordings that are all meant for evaluation (`python -m recipe.compare
--references_split`).
"""

from __future__ import annotations

import logging
from collections import Counter

import datasets
import numpy as np

from recipe.audio import AudioDecodeError, audio_duration
from recipe.data.features import FeatureSettings, audio_path
from recipe.data.source import DataError, Source

logger = logging.getLogger(__name__)

# The splits `prepare_datasets` returns, in this order; a caller may ask for a subset (`splits=`).
SPLITS = ("train", "eval")
# Seed of the permutation that picks the --eval_fraction hold-out: the same data always gives the same split.
EVAL_HOLDOUT_SEED = 1234
# The name `whole_split` takes for every clip of every split of a source.
ALL_CLIPS = "all"


def requested_splits(splits) -> tuple[str, ...]:
    """`splits` (a name or a selection of `SPLITS`) as a tuple in the order of `SPLITS`; `ValueError` for anything
    else."""
    if isinstance(splits, str):
        splits = (splits,)
    unknown = [name for name in splits if name not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty selection of {SPLITS}, not {splits!r}")
    return tuple(name for name in SPLITS if name in splits)


def probe_seconds(audio, settings: FeatureSettings) -> float | None:
    """Duration from the file header (no decoding); None for a clip that is missing, undecodable or outside the
    dataset (`featurize` gives it its drop reason later)."""
    if isinstance(audio, dict) and audio.get("bytes") is not None:
        source, name = audio["bytes"], audio.get("path") or None
    else:
        source, _ = audio_path(audio, settings)
        if not source:
            return None
        name = None
    try:
        return audio_duration(source, name)
    except (FileNotFoundError, AudioDecodeError) as error:
        logger.debug("cannot measure %s", error)
        return None


def _speaker_with_most_audio(split: datasets.Dataset, settings: FeatureSettings, num_proc: int | None) -> str:
    probed = split.map(
        lambda audio, speaker: {"seconds": probe_seconds(audio, settings), "speaker_key": str(speaker)},
        input_columns=[settings.audio_column, settings.speaker_column],
        remove_columns=split.column_names,
        features=datasets.Features({"seconds": datasets.Value("float64"), "speaker_key": datasets.Value("string")}),
        num_proc=num_proc,
        desc="Measuring audio per speaker",
    )
    seconds = Counter()
    unreadable = 0
    for speaker, duration in zip(probed["speaker_key"], probed["seconds"]):
        if duration is None:
            unreadable += 1
        else:
            seconds[speaker] += duration
    if unreadable:
        logger.warning(
            "--speaker_id top: %d of %d clips could not be measured (missing, undecodable or outside the dataset; "
            "the data report counts them by reason) and weigh 0 s",
            unreadable,
            len(probed),
        )
    if not seconds or max(seconds.values()) == 0:
        raise DataError("--speaker_id top: no readable clip in the training split to measure speakers by")
    # Ties go to the smallest id, so that the choice never depends on row order.
    return min(seconds, key=lambda speaker: (-seconds[speaker], speaker))


def _select_speakers(
    source: Source, train: datasets.Dataset, data_args, settings: FeatureSettings, num_proc: int | None
) -> tuple[str, ...] | None:
    if data_args.speaker_id is None:
        return None
    if source.speaker_column is None:
        # an LJSpeech folder has no other column; a Hub / audiofolder dataset may have one that names speakers
        others = [name for name in train.column_names if name not in (source.audio_column, source.text_column)]
        hint = (
            f"; if one of its columns {others} holds speaker ids, name it with --speaker_id_column_name"
            if others
            else ""
        )
        raise DataError(
            f"--speaker_id {data_args.speaker_id!r}: {data_args.dataset_name} has no speaker column, so all of it is "
            f"one speaker's: leave --speaker_id out to use every clip{hint}"
        )
    if data_args.speaker_id == "top":
        chosen = _speaker_with_most_audio(train, settings, num_proc)
        logger.info("--speaker_id top: keeping speaker %s", chosen)
        return (chosen,)
    counts = Counter(str(s) for s in train[source.speaker_column])
    if data_args.speaker_id not in counts:
        most = ", ".join(f"{speaker!r} ({n} clips)" for speaker, n in counts.most_common(5))
        raise DataError(f"--speaker_id {data_args.speaker_id!r} has no clip in the training split; most clips: {most}")
    return (data_args.speaker_id,)


def _hold_out(train: datasets.Dataset, fraction: float, candidates: list[int]) -> tuple[list[int], list[int]]:
    """Indices of the eval hold-out (a fixed-seed sample of `candidates`) and of the rest of `train`."""
    if not 0 < fraction < 1:
        raise DataError(f"--eval_fraction must be between 0 and 1, not {fraction}")
    if len(candidates) < 2:
        raise DataError(f"Cannot hold out an eval split from {len(candidates)} clip(s); add clips or an eval split")
    count = min(len(candidates) - 1, max(1, round(fraction * len(candidates))))
    permutation = np.random.default_rng(EVAL_HOLDOUT_SEED).permutation(len(candidates))
    held = sorted(candidates[i] for i in permutation[:count])
    held_set = set(held)
    return held, [i for i in range(len(train)) if i not in held_set]


def choose_splits(
    source: Source, data_args, settings_without_speakers: FeatureSettings, num_proc: int | None
) -> tuple[datasets.Dataset, datasets.Dataset, tuple[str, ...] | None, int]:
    """The raw training and eval splits, the selected speakers (`None`: all) and the number of eval clips removed from
    train."""
    train = source.split(data_args.train_split_name)
    eval_name = data_args.eval_split_name or source.default_eval_split
    if eval_name == data_args.train_split_name:
        if data_args.eval_split_name:
            raise DataError(f"--eval_split_name {eval_name!r} is also the training split")
        eval_name = None
    selected = _select_speakers(source, train, data_args, settings_without_speakers, num_proc)
    overlap_removed = 0
    if eval_name:
        eval_split = source.split(eval_name)
        if isinstance(train.features[source.audio_column], datasets.Value):
            # Common Voice's validated.tsv contains dev.tsv: training on it must not see the eval clips.
            eval_paths = set(eval_split[source.audio_column])
            keep = [i for i, entry in enumerate(train[source.audio_column]) if entry not in eval_paths]
            overlap_removed = len(train) - len(keep)
            if overlap_removed:
                logger.info("Removed %d clips of %r that are in the eval split %r", overlap_removed, train, eval_name)
                train = train.select(keep)
        return train, eval_split, selected, overlap_removed
    if selected is None:
        candidates = list(range(len(train)))
    else:
        speakers = [str(s) for s in train[source.speaker_column]]
        candidates = [i for i, speaker in enumerate(speakers) if speaker in selected]
    held, rest = _hold_out(train, data_args.eval_fraction, candidates)
    return train.select(rest), train.select(held), selected, overlap_removed


def whole_split(
    source: Source, name: str, data_args, settings_without_speakers: FeatureSettings, num_proc: int | None
) -> tuple[datasets.Dataset, tuple[str, ...] | None]:
    """Split `name` of `source` whole, nothing held out (with `ALL_CLIPS`, every clip of every split), capped to its
    first `--max_eval_samples` clips before anything is decoded, and the selected speakers (`None`: all).

    Raises:
        `DataError`: no such split (the message names the real ones), or splits that `ALL_CLIPS` cannot join.
    """
    if name == ALL_CLIPS:
        split = every_clip(source)
    elif name in source.splits:
        split = source.splits[name]
    else:
        raise DataError(
            f"{data_args.dataset_name} has no split {name!r}; its splits are {sorted(source.splits)} (or "
            f"{ALL_CLIPS!r} for every clip)"
        )
    selected = _select_speakers(source, split, data_args, settings_without_speakers, num_proc)
    limit = data_args.max_eval_samples
    if limit is not None and limit < len(split):
        split = split.select(range(limit))
    return split, selected


def every_clip(source: Source) -> datasets.Dataset:
    """Every split of `source` in one, each clip once: Common Voice's validated.tsv also lists the clips of
    train.tsv, dev.tsv and test.tsv."""
    columns = [c for c in (source.audio_column, source.text_column, source.speaker_column) if c is not None]
    parts = [split.select_columns(columns) for split in source.splits.values()]
    try:
        joined = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    except ValueError as error:  # the splits' columns have different types
        raise DataError(
            f"Cannot join the splits {sorted(source.splits)} into one ({error}): name one of them instead of "
            f"{ALL_CLIPS!r}"
        ) from error
    if not isinstance(joined.features[source.audio_column], datasets.Value):
        return joined  # encoded audio (Hub datasets): splits do not share clips
    seen, keep = set(), []
    for index, entry in enumerate(joined[source.audio_column]):
        if entry not in seen:
            seen.add(entry)
            keep.append(index)
    return joined if len(keep) == len(joined) else joined.select(keep)


def speaker_names(source: Source, splits: list[datasets.Dataset], selected: tuple[str, ...] | None) -> tuple[str, ...]:
    """The speaker ids in the order of their `ClassLabel` indices: the selected ones, else every id of `splits`."""
    if selected is not None:
        return tuple(sorted(selected))
    if source.speaker_column is None:
        return ("speaker",)
    return tuple(sorted({str(s) for split in splits for s in split[source.speaker_column]}))
