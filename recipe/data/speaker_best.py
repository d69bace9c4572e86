"""`--speaker_id best` and `--speakers best:N`: the speaker(s) whose clips, once screened, give the most to a voice.

    count = best_count(data_args)                 # 1 for --speaker_id best, N for --speakers best:N, else 0
    check_candidates(count, clips_per_speaker)    # before featurizing: at least N speakers to choose from
    choice = BestChoice(count, sampling_rate)     # in the cache build (`recipe.data.feature_cache`)
    ranking = choice.apply(columns)               # first split: rank and choose; every split: mark the others
    split = relabel_speakers(split, names)        # when loading the cache: speaker_id indexes the chosen speakers
    raise_choice_error(report, report_path)       # after the report is written, when no choice could be made

The score is minutes kept after screening x the share of the speaker's clips the screening kept
(`recipe.data.screening_report.rank_speakers`; ties go to the smaller id). It needs the screening's results, so it
cannot be read from the file headers as `top` is (`recipe.data.splits`): every candidate speaker is featurized
(`FeatureSettings.selected_speakers` is None), the speakers are ranked on the first featurized split (the training
split; the split itself for a caller that asks for one split whole), and the clips of the others, in every split,
are marked `speaker_filtered` in the report, as `mark_rate_outliers` marks rate outliers: they are then left out of
the cache's kept rows like every dropped clip (never trained or evaluated on), and each split still has
`seen == kept + sum(dropped)`. The eval hold-out (without an eval split) is made per speaker (`recipe.data.splits`),
so that the chosen speaker's eval clips are the ones `--speaker_id <its id>` would hold out.

Speaker ids: the featurized rows' `speaker_id` indexes every speaker of the data, whose names had to be fixed before
the choice could be made. Featurizing the chosen speakers a second time would decode and screen their clips twice;
instead the cache's manifest records the chosen names and loading rebuilds `speaker_id` from the cached `speaker`
column (`relabel_speakers`): one small integer column set beside the memory-mapped features, which are not copied.
Speaker k of a `best:N` model is then the k-th chosen id in sorted order, as `--speakers ID,ID,...` would give.
The choice is a function of the data and of flags that are all part of the cache key
(`recipe.data.feature_cache.KEY_ARGUMENTS`): a cached choice is the one a new build would make.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import datasets

from recipe.data.screening_report import mark_speaker_filtered, rank_speakers
from recipe.data.source import DataError
from recipe.data.speaker_choice import BEST, parse_speakers

# What the ranking's score is, as the report says it.
SCORE = "minutes_kept x clean_share (kept / clips), after screening"


def best_count(data_args) -> int:
    """How many speakers `best` chooses: 1 for `--speaker_id best`, N for `--speakers best:N`, 0 without `best`."""
    if data_args.speaker_id == BEST:
        return 1
    if data_args.speakers is not None:
        rule = parse_speakers(data_args.speakers)
        if rule.kind == BEST:
            return int(rule.value)
    return 0


def best_flag(count: int) -> str:
    return "--speaker_id best" if count == 1 else f"--speakers best:{count}"


def check_candidates(count: int, clips: Counter) -> None:
    """Refuse, before anything is decoded, a `best:N` with more speakers than the split has (`clips`: clips per
    speaker id)."""
    if count <= len(clips):
        return
    if not clips:
        raise DataError(f"{best_flag(count)}: the training split has no clip to choose speakers from")
    advice = (
        "use --speaker_id best for one, or leave --speakers out"
        if len(clips) == 1
        else f"ask for at most best:{len(clips)} (which is --speakers all), or fewer"
    )
    raise DataError(f"{best_flag(count)}: the training split has {len(clips)} speaker(s), not {count}: {advice}")


def choose_best(ranking: list[dict], count: int) -> tuple[str, ...]:
    """The `count` best speakers of `ranking` (`rank_speakers`), sorted by id.

    Raises:
        `DataError`: no speaker keeps a clip after screening, or fewer than `count` do.
    """
    flag = best_flag(count)
    keeping = [entry for entry in ranking if entry["kept"]]
    if not keeping:
        dropped = Counter()
        for entry in ranking:
            dropped.update(entry["dropped"])
        reasons = ", ".join(f"{reason} {n}" for reason, n in dropped.most_common(5))
        raise DataError(
            f"{flag}: no speaker keeps a clip after screening ({sum(e['clips'] for e in ranking)} clips of "
            f"{len(ranking)} speakers; dropped: {reasons}), so there is none to choose. Fix the clips, or loosen the "
            "check that drops the most (--min_snr_db, --min_bandwidth_hz, --min_duration_in_seconds, ...; 0 turns a "
            "screening check off)"
        )
    if len(keeping) < count:
        advice = "use --speaker_id best" if len(keeping) == 1 else f"ask for best:{len(keeping)} at most"
        raise DataError(
            f"{flag}: only {len(keeping)} of the {len(ranking)} speakers keep a clip after screening: {advice}"
        )
    return tuple(sorted(entry["speaker"] for entry in ranking[:count]))


@dataclass
class BestChoice:
    """The choice of a cache build, made on the first split given to `apply` and applied to every split."""

    count: int
    sampling_rate: int
    chosen: tuple[str, ...] | None = None
    error: str | None = None

    def apply(self, columns: dict) -> dict | None:
        """Mark the clips of the speakers not chosen `speaker_filtered` in `columns["drop_reason"]` (a split's report
        columns, after the rate outliers are marked). The first call ranks and chooses, and returns the ranking for
        that split's report (`speaker_ranking`: `rule`, `score`, `chosen`, `speakers` with each one's `chosen`, and
        `error` when no choice could be made: then nothing is marked); later calls return None."""
        entry = None
        if self.chosen is None and self.error is None:
            ranking = rank_speakers(columns, self.sampling_rate)
            try:
                self.chosen = choose_best(ranking, self.count)
            except DataError as error:
                self.error = str(error)
            chosen = set(self.chosen or ())
            entry = {
                "rule": best_flag(self.count),
                "score": SCORE,
                "chosen": list(self.chosen or ()),
                "speakers": [{**speaker, "chosen": speaker["speaker"] in chosen} for speaker in ranking],
            }
            if self.error:
                entry["error"] = self.error
        if self.chosen is not None:
            mark_speaker_filtered(columns["drop_reason"], columns["speaker"], self.chosen)
        return entry

    def speaker_id_entry(self):
        """The report's `speaker_id` entry, as `--speaker_id ID` / `--speakers ID,ID` give it."""
        return self.chosen[0] if self.count == 1 else list(self.chosen)


def relabel_speakers(split: datasets.Dataset, names: list[str]) -> datasets.Dataset:
    """`split` (cached rows with their `speaker` column, no indices mapping: before the kept rows are selected) with
    `speaker_id` a `ClassLabel` of `names`, rebuilt from the `speaker` column. Rows of other speakers (never loaded:
    they are not kept rows) get 0."""
    index = {name: position for position, name in enumerate(names)}
    ids = [index.get(speaker, 0) for speaker in split["speaker"]]
    label = datasets.ClassLabel(names=list(names))
    return split.remove_columns("speaker_id").add_column("speaker_id", ids, feature=label)


def raise_choice_error(report: dict, report_path: str) -> None:
    """The `DataError` of a `best` choice that could not be made, once its report is written at `report_path`."""
    for split in report.values():
        error = (split.get("speaker_ranking") or {}).get("error")
        if error:
            raise DataError(f"{error}. The speakers' ranking and screening: {report_path}")
