"""The recordings `python -m recipe.compare` compares against: the clips of `--references` it uses, prepared as
training prepares them, and an account of every clip it leaves out.

    sentences, account = load_references(args, tokenizer, model_config)
    print(format_account(account))

Which clips (`--references_split`):

- `eval`: the eval split as training holds it out of the same source: its dev / validation split, else the fixed
  `--eval_fraction` (5 %) hold-out of its training split, which is one clip of a six-clip folder;
- `all`: every clip of the source (of every split, each clip once);
- a split name of the source: that split whole.

For a multi-speaker model (`model_speakers`, the names of its `speakers.json`), the clips are those of its speakers
(the others are counted in the account as `other_speakers`), and each `Sentence` carries its recording's speaker;
`eval` then holds out per speaker, as a `--speakers` training run does, so that the clips are the ones each speaker
was evaluated on. A source without any of the model's speakers is used whole, with a warning.

The default is the source's own eval split when it declares one (dev / validation: recordings training never saw),
else `all`. A folder without a declared eval split that is given as references is a folder of held-out recordings,
meant to be used whole: taking the 5 % training would hold out of it compared one sentence of six. To compare on
the clips a training run held out of its own training folder, pass `--references_split eval`.

Every clip is decoded and screened as in training (`recipe.data.pipeline.prepare_datasets`). A clip that cannot be
used, damaged (missing, undecodable, truncated, NaN / inf samples) or filtered (too short or long, silent,
clipped, text with letters the vocabulary lacks), is skipped and named with its reason in the account, which
`comparison.json` (`references`), the HTML report and the printed summary show. Training stops when more than
`--max_bad_fraction` (5 %) of a split is damaged; a handful of references is no training set, so compare only warns
above that share, and stops (`DataError`) only when no clip is left.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

from recipe.data.features import BAD_REASONS
from recipe.data.report import REPORT_NAME
from recipe.data.source import DataError, Source
from recipe.data.splits import ALL_CLIPS, every_clip
from recipe.errors import ArgumentsError

logger = logging.getLogger(__name__)

# `--references_split` values besides the source's split names
EVAL = "eval"
ALL = ALL_CLIPS
# Skipped clips named in the printed summary (comparison.json and the report list every one the data report keeps)
PRINTED_SKIPPED = 5


@dataclass
class Sentence:
    """One sentence to synthesize; `reference` is its recording at the fine-tuned model's rate, when there is one.

    `text` is what the model reads (normalized; romanized for an `is_uroman` tokenizer), `raw_text` the sentence as
    written, in its own script: the CER / WER reference, since a speech recognizer answers in that script.
    `speaker` is the speaker id (in the data) of the recording, when the source has a speaker column.
    """

    text: str
    reference: np.ndarray | None = None
    raw_text: str | None = None
    speaker: str | None = None

    @property
    def scoring_text(self) -> str:
        """The text a transcription is scored against: `raw_text` when known, else the model's `text`."""
        return self.text if self.raw_text is None else self.raw_text


def resolve_split(requested: str | None, source: Source, data_args) -> tuple[str, str]:
    """The `--references_split` to use (`EVAL`, `ALL` or a split name of `source`) and how to describe it.

    Raises:
        `ArgumentsError`: a split the source does not have; the message names the ones it has.
    """
    declared = source.default_eval_split
    if requested is None:
        if declared is not None:
            return declared, f"split {declared!r}, the source's eval split"
        return ALL, f"{ALL}: every clip, since the source declares no eval split"
    if requested == EVAL:
        if declared is not None:
            return EVAL, f"{EVAL}: the source's eval split {declared!r}, as training uses it"
        train = data_args.train_split_name
        clips = f", {len(source.splits[train])} clips" if train in source.splits else ""
        return EVAL, f"{EVAL}: the {data_args.eval_fraction:.0%} training holds out of split {train!r}{clips}"
    if requested == ALL:
        return ALL, f"{ALL}: every clip"
    if requested not in source.splits:
        raise ArgumentsError(
            f"--references_split {requested!r}: {data_args.dataset_name} has no such split; its splits are "
            f"{sorted(source.splits)}, or give {EVAL!r} (the eval split training holds out) or {ALL!r} (every clip)"
        )
    return requested, f"split {requested!r}, whole"


def _data_arguments(args):
    from recipe.training.arguments import DataArguments

    return DataArguments(
        dataset_name=args.references,
        dataset_format=args.references_format,
        dataset_config_name=args.references_config_name,
        max_eval_samples=args.max_samples,
        cache_dir=args.cache_dir,
        # a reference whose text the vocabulary lacks is skipped and listed like a damaged one, not a reason to stop
        max_text_not_in_vocabulary_fraction=1.0,
    )


def trained_speakers_present(source: Source, model_speakers: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The speakers of a multi-speaker model (`model_speakers`, in id order) that have clips in `source`; `None`
    when there is no model speaker to look for, no speaker column, or none of them in the source (said)."""
    if not model_speakers or source.speaker_column is None:
        return None
    in_source = {str(speaker) for split in source.splits.values() for speaker in split[source.speaker_column]}
    present = tuple(name for name in model_speakers if name in in_source)
    if not present:
        logger.warning(
            "None of the model's %d speakers (its speakers.json) has a clip in the references: every clip is used, "
            "and no speaker has recordings of its own to be compared with",
            len(model_speakers),
        )
        return None
    return present


def _skipped(split_report: dict) -> tuple[list[dict], dict[str, int]]:
    """The skipped clips the data report names (up to 10 per reason), and the count of every reason."""
    counts = {
        reason: entry["count"]
        for reason, entry in split_report["dropped"].items()
        if entry["count"] and reason != "speaker_filtered"
    }
    listed = [
        {"file": path, "reason": reason} for reason in counts for path in split_report["dropped"][reason]["examples"]
    ]
    return listed, counts


def _check(report: dict, references: str, description: str, max_bad_fraction: float, report_path: str) -> None:
    """Warn when more of the references than training tolerates are damaged; stop only when none is left."""
    split_report = report["eval"]
    considered = split_report["seen"] - split_report["dropped"]["speaker_filtered"]["count"]
    listed, counts = _skipped(split_report)
    if split_report["kept"] == 0:
        reasons = "; ".join(
            f"{reason} {count}: " + ", ".join(entry["file"] for entry in listed if entry["reason"] == reason)
            for reason, count in counts.items()
        )
        raise DataError(
            f"--references {references}: none of its {considered} clips ({description}) can be used: {reasons}. "
            f"Fix or replace them, or point --references elsewhere (details: {report_path})"
        )
    broken = sum(count for reason, count in counts.items() if reason in BAD_REASONS)
    if broken / considered > max_bad_fraction:
        logger.warning(
            "%d of %d reference clips are damaged (%.0f%%, more than the %.0f%% at which training on them stops): "
            "they are skipped (comparison.json lists them)",
            broken,
            considered,
            100 * broken / considered,
            100 * max_bad_fraction,
        )


def load_references(
    args, tokenizer, model_config, model_speakers: tuple[str, ...] | None = None
) -> tuple[list[Sentence], dict]:
    """The clips of `--references_split` of `--references` (module docstring), prepared as in training: normalized
    text and audio at the model's rate, at most `--max_samples`; and the account of them. With `model_speakers`
    (a multi-speaker model's speaker names in id order), the clips of those speakers alone.

    Returns:
        `tuple(list[Sentence], dict)`: the sentences, and the account that `comparison.json` holds as `references`:
        `source`, `split` (`eval`, `all` or a split name), `description`, `clips` (in that split), `used`,
        `not_reached` (clips after the first `--max_samples`), `skipped` (each named clip's `file` and `reason`),
        `skipped_count` (per reason), `data_report` (the full report of the screening) and, with `model_speakers`,
        `speakers` (the model's speakers that have clips) and `other_speakers` (clips of other speakers, left out).

    Raises:
        `ArgumentsError`: a split the source does not have. `DataError`: the source cannot be read, or no clip of it
        can be used.
    """
    from recipe.data.pipeline import prepare_datasets
    from recipe.data.sources import load_source_from_args

    data_args = _data_arguments(args)
    source = load_source_from_args(data_args)
    split, description = resolve_split(args.references_split, source, data_args)
    speakers = trained_speakers_present(source, model_speakers)
    if speakers is not None and split == EVAL and source.default_eval_split is None:
        # the hold-out of a multi-speaker run is made per speaker (`recipe.data.splits`): the same clips here
        data_args.speakers = "all"
    output_dir = os.path.join(args.output_dir, "references_data")
    check = functools.partial(
        _check,
        references=args.references,
        description=description,
        max_bad_fraction=data_args.max_bad_fraction,
        report_path=os.path.join(output_dir, REPORT_NAME),
    )
    # only the eval split is featurized: for `eval` the training split is read for the hold-out, never decoded
    datasets, report = prepare_datasets(
        data_args,
        tokenizer,
        model_config,
        output_dir,
        splits=("eval",),
        whole_split=None if split == EVAL else split,
        source=source,
        check=check,
        only_speakers=speakers,
    )
    features = datasets["eval"]
    split_report = report["eval"]
    listed, counts = _skipped(split_report)
    other_speakers = split_report["dropped"]["speaker_filtered"]["count"]
    if split == EVAL:
        clips, other_speakers = split_report["seen"] - other_speakers, 0
    else:
        clips = len(every_clip(source) if split == ALL else source.splits[split])
    account = {
        "source": args.references,
        "split": split,
        "description": description,
        "clips": clips,
        "used": len(features),
        "not_reached": clips - other_speakers - sum(counts.values()) - len(features),
        "skipped": listed,
        "skipped_count": counts,
        "data_report": os.path.join("references_data", REPORT_NAME),
    }
    if speakers is not None:
        account.update(speakers=list(speakers), other_speakers=other_speakers)
    # ASR is scored against the sentence as written (`source_text`), not the model's text, which uroman may have
    # romanized
    names = features.features["speaker_id"].names if source.speaker_column is not None else None
    sentences = [
        Sentence(
            text=row["text"],
            raw_text=row["source_text"],
            reference=np.asarray(row["waveform"], dtype=np.float32),
            speaker=names[row["speaker_id"]] if names is not None else None,
        )
        for row in features.select_columns(["text", "source_text", "waveform", "speaker_id"])
    ]
    return sentences, account


def format_account(account: dict) -> str:
    """The printed lines: "N of M references used", why the others were not, and the first skipped clips."""
    line = f"References: {account['used']} of {account['clips']} used ({account['description']})"
    extra = []
    if account["not_reached"]:
        extra.append(f"{account['not_reached']} after the first --max_samples")
    if account.get("other_speakers"):
        extra.append(f"{account['other_speakers']} by speakers the model does not have")
    if account["skipped_count"]:
        counts = ", ".join(f"{count} {reason}" for reason, count in account["skipped_count"].items())
        extra.append(f"skipped: {counts}")
    if extra:
        line += "; " + "; ".join(extra)
    lines = [line]
    for entry in account["skipped"][:PRINTED_SKIPPED]:
        lines.append(f"  skipped {entry['reason']}: {entry['file']}")
    unnamed = sum(account["skipped_count"].values()) - min(len(account["skipped"]), PRINTED_SKIPPED)
    if unnamed > 0:
        lines.append(f"  ... and {unnamed} more (comparison.json, {account['data_report']})")
    return "\n".join(lines)
