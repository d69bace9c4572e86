"""Which clips train and which evaluate: the speaker choice, the eval split and the splits a caller asks for.

    splits = requested_splits(("eval",))
    train, eval_split, selected, overlap_removed = choose_splits(source, data_args, settings, num_proc)
    names = speaker_names(source, [train, eval_split], selected)
    split, selected = whole_split(source, "all", data_args, settings, num_proc)   # one split (or every clip) whole

Runs in the main process, before any clip is featurized. `--speaker_id ID` keeps one speaker, `--speaker_id top`
the one with the most audio (measured from the file headers, without decoding). `--speaker_id best` and
`--speakers best:N` select no speaker here (`None`: every candidate is featurized) and are chosen after screening
(`recipe.data.speaker_best`); their eval hold-out is made per speaker. The eval split is the source's dev
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
from recipe.data.speaker_best import best_count, check_candidates
from recipe.data.speaker_choice import choose_speakers, parse_speakers

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


def _seconds_per_speaker(
    split: datasets.Dataset, settings: FeatureSettings, num_proc: int | None, flag: str
) -> Counter:
    """Readable seconds of audio per speaker id of `split`, from the file headers; unreadable clips weigh 0 s."""
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
            "%s: %d of %d clips could not be measured (missing, undecodable or outside the dataset; the data report "
            "counts them by reason) and weigh 0 s",
            flag,
            unreadable,
            len(probed),
        )
    if not seconds or max(seconds.values()) == 0:
        raise DataError(f"{flag}: no readable clip in the training split to measure speakers by")
    return seconds


def _speaker_with_most_audio(split: datasets.Dataset, settings: FeatureSettings, num_proc: int | None) -> str:
    seconds = _seconds_per_speaker(split, settings, num_proc, "--speaker_id top")
    # Ties go to the smallest id, so that the choice never depends on row order.
    return min(seconds, key=lambda speaker: (-seconds[speaker], speaker))


def _several_speakers(
    train: datasets.Dataset, speaker_column: str, data_args, settings: FeatureSettings, num_proc: int | None
) -> tuple[str, ...]:
    rule = parse_speakers(data_args.speakers)
    clips = Counter(str(s) for s in train[speaker_column])
    seconds = _seconds_per_speaker(train, settings, num_proc, "--speakers") if rule.needs_durations else Counter()
    chosen, left_out = choose_speakers(rule, seconds, clips)
    logger.info(
        "--speakers %s: %d of %d speakers%s", data_args.speakers, len(chosen), len(clips),
        f"; left out: {'; '.join(left_out[:10])}{' ...' if len(left_out) > 10 else ''}" if left_out else "",
    )  # fmt: skip
    return chosen


def _select_speakers(
    source: Source, train: datasets.Dataset, data_args, settings: FeatureSettings, num_proc: int | None
) -> tuple[str, ...] | None:
    flag = "--speakers" if data_args.speakers is not None else "--speaker_id"
    if data_args.speaker_id is None and data_args.speakers is None:
        return None
    if source.speaker_column is None:
        # an LJSpeech folder has no other column; a Hub / audiofolder dataset may have one that names speakers
        others = [name for name in train.column_names if name not in (source.audio_column, source.text_column)]
        hint = (
            f"; if one of its columns {others} holds speaker ids, name it with --speaker_id_column_name"
            if others
            else ""
        )
        value = data_args.speakers if data_args.speakers is not None else data_args.speaker_id
        raise DataError(
            f"{flag} {value!r}: {data_args.dataset_name} has no speaker column, so all of it is one speaker's: leave "
            f"{flag} out to use every clip{hint}"
        )
    best = best_count(data_args)
    if best:
        # chosen after screening (`recipe.data.speaker_best`): every speaker is featurized
        check_candidates(best, Counter(str(s) for s in train[source.speaker_column]))
        return None
    if data_args.speakers is not None:
        return _several_speakers(train, source.speaker_column, data_args, settings, num_proc)
    if data_args.speaker_id == "top":
        chosen = _speaker_with_most_audio(train, settings, num_proc)
        logger.info("--speaker_id top: keeping speaker %s", chosen)
        return (chosen,)
    counts = Counter(str(s) for s in train[source.speaker_column])
    if data_args.speaker_id not in counts:
        most = ", ".join(f"{speaker!r} ({n} clips)" for speaker, n in counts.most_common(5))
        raise DataError(f"--speaker_id {data_args.speaker_id!r} has no clip in the training split; most clips: {most}")
    return (data_args.speaker_id,)


def _held_positions(count: int, fraction: float) -> list[int]:
    """Positions (of `count` candidates) of a fixed-seed `fraction` hold-out: at least one, never all."""
    held = min(count - 1, max(1, round(fraction * count)))
    return sorted(int(i) for i in np.random.default_rng(EVAL_HOLDOUT_SEED).permutation(count)[:held])


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise DataError(f"--eval_fraction must be between 0 and 1, not {fraction}")


def _hold_out(train: datasets.Dataset, fraction: float, candidates: list[int]) -> tuple[list[int], list[int]]:
    """Indices of the eval hold-out (a fixed-seed sample of `candidates`) and of the rest of `train`."""
    _check_fraction(fraction)
    if len(candidates) < 2:
        raise DataError(f"Cannot hold out an eval split from {len(candidates)} clip(s); add clips or an eval split")
    held = [candidates[i] for i in _held_positions(len(candidates), fraction)]
    held_set = set(held)
    return held, [i for i in range(len(train)) if i not in held_set]


def _hold_out_per_speaker(
    train: datasets.Dataset, fraction: float, candidates: list[int], speakers: list[str]
) -> tuple[list[int], list[int]]:
    """The eval hold-out of a multi-speaker run: `fraction` of each speaker's clips (at least one, when it has two),
    so that every trained speaker is evaluated; a speaker with one clip trains on it, and is named."""
    _check_fraction(fraction)
    by_speaker: dict[str, list[int]] = {}
    for index in candidates:
        by_speaker.setdefault(speakers[index], []).append(index)
    held = []
    for speaker, indices in sorted(by_speaker.items()):
        if len(indices) < 2:
            logger.warning("Speaker %s has one clip: it trains on it and has no eval clip", speaker)
            continue
        held.extend(indices[i] for i in _held_positions(len(indices), fraction))
    if not held:
        raise DataError("No speaker has two clips to hold one out for evaluation; add clips or an eval split")
    held_set = set(held)
    return sorted(held), [i for i in range(len(train)) if i not in held_set]


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
    # per speaker for several speakers, and for `best`, chosen later: the chosen speaker's eval clips are then the
    # ones `--speaker_id <its id>` holds out
    per_speaker = data_args.speakers is not None or best_count(data_args) > 0
    if selected is not None or per_speaker:
        speakers = [str(s) for s in train[source.speaker_column]]
    if selected is None:
        candidates = list(range(len(train)))
    else:
        candidates = [i for i, speaker in enumerate(speakers) if speaker in selected]
    if per_speaker:
        held, rest = _hold_out_per_speaker(train, data_args.eval_fraction, candidates, speakers)
    else:
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


def ordered_speakers(chosen, speaker_order: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """`chosen` speaker ids in `ClassLabel` order: sorted; with `speaker_order` (a multi-speaker model's speakers),
    that order first, whole (a speaker of the model without clips keeps its id), then the chosen others, sorted."""
    if speaker_order is None:
        return tuple(sorted(chosen))
    return (*speaker_order, *sorted(set(chosen) - set(speaker_order)))


def speaker_names(
    source: Source,
    splits: list[datasets.Dataset],
    selected: tuple[str, ...] | None,
    speaker_order: tuple[str, ...] | None = None,
) -> tuple[str, ...]:
    """The speaker ids in the order of their `ClassLabel` indices: the selected ones, else every id of `splits`;
    sorted, or with `speaker_order` (a multi-speaker model's speakers) first in its order, so that a speaker the model
    has keeps its id and the others follow it, sorted."""
    if selected is not None:
        return ordered_speakers(selected, speaker_order)
    if source.speaker_column is None:
        return ("speaker",)
    return tuple(sorted({str(s) for split in splits for s in split[source.speaker_column]}))
