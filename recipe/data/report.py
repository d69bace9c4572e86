"""The data report: every clip seen, kept or dropped with its reason, and the checks that stop a run on bad data.

    report[name], kept = split_report(featurized, sampling_rate, is_uroman=False)
    write_report(report, output_dir)                     # <output_dir>/data_report.json and its summary on stdout
    check_report(report, max_bad_fraction, text_loss_bound(data_args))

A split's report holds `seen`, `kept`, `hours`, `dropped` (reason -> count and up to `MAX_EXAMPLES` example paths;
for `text_not_in_vocabulary` also each example's `lost_characters` and every lost character's count, `characters`),
`dropped_characters`, `clipping` (clips with samples at full scale, the most clipped with their share), with a
uroman tokenizer `uroman_examples`, with `--speaker_id best` / `--speakers best:N` the speakers' ranking
(`speaker_ranking`, in the split it was made on: `recipe.data.speaker_best`), and the entries `prepare_datasets`
adds (`speaker_id`, `overlap_with_eval_removed`, `max_samples`). `check_report` raises a `DataError` when more than
`--max_bad_fraction` of a split is broken, more than `--max_text_not_in_vocabulary_fraction` loses letters or
digits, or a split is empty.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter

import datasets

from recipe.data.features import BAD_REASONS, DROP_REASONS, SCREENING_COLUMNS
from recipe.data.screening_report import (
    CLIPS_TABLE_NAME,
    clip_rows,
    format_ranking,
    format_screening,
    mark_rate_outliers,
    screening_report,
    speaking_rates,
    write_clips_table,
)
from recipe.data.source import DataError
from recipe.data.speaker_best import BestChoice
from recipe.data.text_screening import lost_characters, text_loss_error
from recipe.data.transcript_screening import mark_transcript_mismatches
from recipe.text import summarize_dropped_characters

# The report's file in `--output_dir`.
REPORT_NAME = "data_report.json"
# Example paths kept per drop reason, and clips listed among the most clipped.
MAX_EXAMPLES = 10
# Clips whose text uroman changed, shown before and after in the report (a reader checks the romanization by eye).
MAX_UROMAN_EXAMPLES = 5
# What a reader can do about each broken-file reason, said when --max_bad_fraction stops a run.
BAD_REASON_ADVICE = {
    "path_outside_dataset": "a saved dataset or parquet file whose audio column names files elsewhere needs "
    "--allow_audio_outside_dataset; a Common Voice / LJSpeech / audiofolder layout must hold its clips",
    "truncated": "the files are shorter than their headers declare, or (an MP3 without a frame count) end inside an "
    "MPEG frame: an interrupted download or copy; fetch them again",
}

logger = logging.getLogger(__name__)


def _uroman_examples(columns: dict, kept: list[int]) -> list[dict]:
    """Up to `MAX_UROMAN_EXAMPLES` kept clips whose text is not plain ASCII: the raw text and what the model reads."""
    examples = []
    raw_texts, model_texts = columns["source_text"], columns["text"]
    for index in kept:
        if not raw_texts[index].isascii():
            examples.append({"text": raw_texts[index], "model_text": model_texts[index]})
            if len(examples) == MAX_UROMAN_EXAMPLES:
                break
    return examples


def _clipping_report(columns: dict) -> dict:
    """The clipping entry of a split's report: how many decoded clips have samples at full scale, and the most
    clipped of them (kept or not) with their share of such samples."""
    fractions = columns["clipped_fraction"]
    clipped = sorted((i for i, fraction in enumerate(fractions) if fraction > 0), key=lambda i: -fractions[i])
    return {
        "clips_with_full_scale_samples": len(clipped),
        "most_clipped": [
            {"path": columns["path"][i], "fraction": fractions[i], "drop_reason": columns["drop_reason"][i]}
            for i in clipped[:MAX_EXAMPLES]
        ],
    }


def split_report(
    featurized: datasets.Dataset,
    sampling_rate: int,
    is_uroman: bool = False,
    max_rate_deviation: float = 0.0,
    best: BestChoice | None = None,
    asr=None,
    max_transcript_cer: float | None = None,
) -> tuple[dict, list[int]]:
    """The report of a featurized split (every clip, dropped ones as empty rows) and the indices of its kept clips.

    With `asr` (--screen_asr_model's recognizer, `recipe.data.transcript_screening`), the kept clips whose transcript
    is more than `max_transcript_cer` (CER; needed with `asr`) away from their text are dropped first, as
    `transcript_mismatch`. Clips
    whose speaking rate is more than `max_rate_deviation` away from their speaker's median are dropped here, as
    `rate_outlier` (0: none is); then, with `best` (`--speaker_id best` / `--speakers best:N`), the clips of the
    speakers it does not choose, as `speaker_filtered` (the first split it sees is ranked and chosen on: its report
    gets the ranking, `speaker_ranking`)."""
    # Read once as Python lists: indexing a `datasets` column row by row costs 0.3 ms a row (200 rows: 60 ms).
    columns = featurized.select_columns(
        [
            "drop_reason",
            "path",
            "waveform_length",
            "dropped_characters",
            "num_characters",
            "clipped_fraction",
            "speaker",
            *SCREENING_COLUMNS,
            "source_text",
            "text",
        ]
    ).to_dict()
    # Here, in the main process, on the cached (trimmed) waveforms of the kept clips, and not in the map workers: a
    # recognizer loaded in each worker would multiply its memory by the number of workers. Before the rates, so that a
    # mismatched transcript does not count in its speaker's median rate.
    waveforms = featurized.select_columns(["waveform"]).with_format("numpy") if asr is not None else None
    columns["transcript_cer"] = mark_transcript_mismatches(
        columns["drop_reason"],
        lambda index: waveforms[index]["waveform"],
        columns["source_text"],
        asr,
        sampling_rate,
        max_transcript_cer,
    )
    rates = speaking_rates(columns)
    mark_rate_outliers(columns["drop_reason"], rates, max_rate_deviation)
    ranking = best.apply(columns) if best is not None else None
    reasons, paths = columns["drop_reason"], columns["path"]
    lengths = columns["waveform_length"]
    dropped = {reason: {"count": 0, "examples": []} for reason in DROP_REASONS}
    # text_not_in_vocabulary also names what each example lost, and every lost character with its count
    text_loss = dropped["text_not_in_vocabulary"]
    text_loss.update(lost_characters=[], characters=Counter())
    kept = []
    for index, (reason, path) in enumerate(zip(reasons, paths)):
        if not reason:
            kept.append(index)
            continue
        dropped[reason]["count"] += 1
        lost = lost_characters(columns["dropped_characters"][index]) if reason == "text_not_in_vocabulary" else ""
        text_loss["characters"].update(lost)
        if len(dropped[reason]["examples"]) < MAX_EXAMPLES:
            dropped[reason]["examples"].append(path)
            if lost:
                text_loss["lost_characters"].append("".join(dict.fromkeys(lost)))
    text_loss["characters"] = dict(text_loss["characters"].most_common())
    characters = Counter()
    for chars in columns["dropped_characters"]:
        characters.update(chars)
    report = {
        "seen": len(reasons),
        "kept": len(kept),
        "hours": sum(lengths[i] for i in kept) / sampling_rate / 3600,
        "dropped": dropped,
        "dropped_characters": summarize_dropped_characters(characters, sum(columns["num_characters"])),
        "clipping": _clipping_report(columns),
        "screening": screening_report(columns, rates, sampling_rate),
        "clips": clip_rows(columns, rates),
    }
    if is_uroman:
        report["uroman_examples"] = _uroman_examples(columns, kept)
    if ranking is not None:
        report["speaker_ranking"] = ranking
    if best is not None and best.chosen is not None:
        report["speaker_id"] = best.speaker_id_entry()
    return report, kept


def text_loss_bound(data_args) -> float:
    """The share of a split that may be dropped as `text_not_in_vocabulary` (no bound when such clips are kept)."""
    return 1.0 if data_args.keep_clips_with_dropped_characters else data_args.max_text_not_in_vocabulary_fraction


def check_report(report: dict, max_bad_fraction: float, max_text_loss_fraction: float = 1.0) -> None:
    """Raises `DataError` for the first split with more than `max_bad_fraction` broken clips or more than
    `max_text_loss_fraction` dropped as `text_not_in_vocabulary` (of the clips of the kept speakers), then for the
    first split that filtering left empty."""
    for name, split in report.items():
        considered = split["seen"] - split["dropped"]["speaker_filtered"]["count"]
        bad = {reason: split["dropped"][reason] for reason in BAD_REASONS if split["dropped"][reason]["count"]}
        bad_count = sum(entry["count"] for entry in bad.values())
        if considered and bad_count / considered > max_bad_fraction:
            examples = "; ".join(f"{reason}: {', '.join(entry['examples'])}" for reason, entry in bad.items())
            advice = "".join(f" ({BAD_REASON_ADVICE[reason]})" for reason in bad if reason in BAD_REASON_ADVICE)
            raise DataError(
                f"{name}: {bad_count} of {considered} clips are broken (missing, undecodable, truncated, non-finite "
                f"or outside the dataset: {bad_count / considered:.1%} > --max_bad_fraction {max_bad_fraction}). "
                f"Examples: {examples}{advice}"
            )
        # the same bound as before featurizing (`recipe.data.text_pass.check_text_loss`), for a report read from the
        # cache
        text_loss = split["dropped"]["text_not_in_vocabulary"]
        if considered and text_loss["count"] / considered > max_text_loss_fraction:
            raise text_loss_error(
                name, text_loss["count"], considered, text_loss["characters"], max_text_loss_fraction
            )
    for name, split in report.items():
        if split["kept"] == 0:
            counts = {reason: entry["count"] for reason, entry in split["dropped"].items() if entry["count"]}
            raise DataError(
                f"{name}: no clip left out of {split['seen']} after filtering; dropped per reason: {counts}"
            )


def write_report(report: dict, output_dir: str) -> None:
    """`<output_dir>/data_report.json`, its table of every clip (`<output_dir>/data_clips.tsv`: path, speaker, drop
    reason and the screening measures; the splits' `clips` rows move there), and the summary as an INFO line (shown
    by the main process only: under several processes each one prepares, and one copy of the report is enough)."""
    os.makedirs(output_dir, exist_ok=True)
    write_clips_table(report, os.path.join(output_dir, CLIPS_TABLE_NAME))
    # the rows are in the table: the report a caller keeps is the JSON's
    for split in report.values():
        split.pop("clips", None)
    with open(os.path.join(output_dir, REPORT_NAME), "w", encoding="utf-8") as handle:
        json.dump(report, handle, ensure_ascii=False, indent=2)
    logger.info(format_report(report))


def format_report(report: dict) -> str:
    """The printed summary of a data report: per split, clips kept and why the others were dropped."""
    lines = ["Data report:"]
    for name, split in report.items():
        line = f"  {name}: {split['seen']} clips seen, {split['kept']} kept ({split['hours']:.3f} h)"
        if "max_samples" in split:
            cap = split["max_samples"]
            line += f", {cap['kept']} after the cap of {cap['limit']} ({cap['hours']:.3f} h)"
        lines.append(line)
        for reason, entry in split["dropped"].items():
            if entry["count"]:
                examples = entry["examples"][:3]
                if reason == "text_not_in_vocabulary":  # each with the characters its text lost
                    examples = [f"{path} ({lost!r})" for path, lost in zip(examples, entry["lost_characters"])]
                lines.append(f"    dropped {entry['count']:>6} {reason:<22} e.g. {', '.join(examples)}")
        clipping = split.get("clipping")
        if clipping and clipping["clips_with_full_scale_samples"]:
            worst = clipping["most_clipped"][0]
            lines.append(
                f"    clips with samples at full scale: {clipping['clips_with_full_scale_samples']}, the most "
                f"{worst['fraction']:.2%} of its samples ({worst['path']})"
            )
        chars = split["dropped_characters"]
        if chars["total"]:
            lines.append(
                f"    characters the tokenizer drops: {chars['total']} ({chars['fraction']:.2%} of all, letters "
                f"{chars['letters_fraction']:.2%})"
            )
            for kind, meaning in (
                ("not_in_vocabulary", "letters / digits not in the vocabulary (--extend_vocabulary adds letters)"),
                ("normalized_away", "punctuation / symbols the tokenizer strips by design"),
            ):
                if chars.get(kind):
                    listed = ", ".join(f"{char!r} x{count}" for char, count in list(chars[kind].items())[:20])
                    lines.append(f"      {meaning}: {listed}")
        lines.extend(format_screening(split.get("screening")))
        lines.extend(format_ranking(split.get("speaker_ranking")))
        for example in split.get("uroman_examples", [])[:3]:
            lines.append(f"    uroman: {example['text']!r} -> {example['model_text']!r}")
        for entry in split.get("speakers", []):
            lines.append(
                f"    speaker {entry['speaker_id']} ({entry['name']}): {entry['clips']} clips, {entry['minutes']:.2f} min"
            )
    return "\n".join(lines)


def kept_per_speaker(split: datasets.Dataset, sampling_rate: int) -> list[dict]:
    """Clips and minutes each speaker keeps in a featurized split (a `--speakers` run's report), by speaker id."""
    names = split.features["speaker_id"].names
    clips, seconds = Counter(), Counter()
    for speaker, length in zip(split["speaker_id"], split["waveform_length"]):
        clips[speaker] += 1
        seconds[speaker] += length / sampling_rate
    return [
        {"speaker_id": index, "name": name, "clips": clips[index], "minutes": round(seconds[index] / 60, 3)}
        for index, name in enumerate(names)
    ]
