"""The screening part of the data report: speaking rates and their outliers, what trimming removed, the quality
measures per speaker, the speakers ranked by what they would give a voice, and the table of every clip.

    rates = speaking_rates(columns)                      # per clip: its rate and its speaker's median
    mark_rate_outliers(columns["drop_reason"], rates, max_rate_deviation)
    ranking = rank_speakers(columns, sampling_rate)      # --speaker_id best / --speakers best:N
    mark_speaker_filtered(columns["drop_reason"], columns["speaker"], chosen)
    report["screening"] = screening_report(columns, rates, sampling_rate)
    report["clips"] = clip_rows(columns, rates)          # written as <output_dir>/data_clips.tsv by write_clips_table

`columns` are a featurized split's report columns as lists (`recipe.data.report.split_report`).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import Counter, defaultdict
from fractions import Fraction

from recipe.data.features import SCREENING_COLUMNS

# The table of every clip seen, beside data_report.json in --output_dir.
CLIPS_TABLE_NAME = "data_clips.tsv"
# `transcript_cer`: with --screen_asr_model, the CER of the recognizer's transcript (`recipe.data.transcript_screening`)
CLIPS_TABLE_COLUMNS = (
    "split",
    "path",
    "speaker",
    "drop_reason",
    *SCREENING_COLUMNS,
    "rate",
    "speaker_rate",
    "transcript_cer",
)
# A speaker's median rate is a reference once it is taken over this many clips; a speaker with fewer is not checked.
MIN_RATE_CLIPS = 5
# Clips listed among the most trimmed, and speakers shown in the printed summary (all are in the JSON).
MAX_LISTED = 10


def _number(value) -> float | None:
    """A measure as JSON takes it: None for NaN (a clip that did not decode whole)."""
    return None if value is None or math.isnan(value) else round(float(value), 3)


def speaking_rates(columns: dict) -> dict[str, list]:
    """Characters per second of speech of each clip that featurizing kept (`rate`, else None) and its speaker's
    median over those clips (`speaker_rate`, None for a speaker with fewer than `MIN_RATE_CLIPS`).

    Characters are the text as the tokenizer counted them (after normalization), seconds are the speech the
    detector found (pauses between words left out, so that a slow reader with short pauses is not an outlier)."""
    rates = [
        count / seconds if not reason and seconds and seconds > 0 else None
        for reason, count, seconds in zip(columns["drop_reason"], columns["num_characters"], columns["speech_seconds"])
    ]
    per_speaker = defaultdict(list)
    for speaker, rate in zip(columns["speaker"], rates):
        if rate is not None:
            per_speaker[speaker].append(rate)
    medians = {
        speaker: statistics.median(values) for speaker, values in per_speaker.items() if len(values) >= MIN_RATE_CLIPS
    }
    return {"rate": rates, "speaker_rate": [medians.get(speaker) for speaker in columns["speaker"]]}


def mark_rate_outliers(reasons: list[str], rates: dict[str, list], max_rate_deviation: float) -> None:
    """Set `reasons[i]` to `rate_outlier` for each kept clip whose rate is more than a factor `1 + max_rate_deviation`
    away from its speaker's median, either way (0: off)."""
    if not max_rate_deviation:
        return
    for index, (rate, median) in enumerate(zip(rates["rate"], rates["speaker_rate"])):
        if rate is not None and median and max(rate / median, median / rate) > 1 + max_rate_deviation:
            reasons[index] = "rate_outlier"


def rank_speakers(columns: dict, sampling_rate: int) -> list[dict]:
    """Every speaker of a featurized split, best first, by what its clips would give a voice: `score` = minutes kept
    after screening x `clean_share` (the share of its clips the screening kept), so that a speaker with much audio
    but mostly noisy clips ranks below a cleaner one with less. Each entry has `rank`, `speaker`, `score`,
    `minutes_kept`, `clean_share`, `clips`, `kept` and `dropped` (reason -> clips, most first).

    Ranked on the exact score (kept samples x kept clips / clips, a fraction of integers), ties to the smaller id:
    the same clips always give the same order, whatever their row order or the float rounding."""
    clips, kept, samples, dropped = Counter(), Counter(), Counter(), defaultdict(Counter)
    for speaker, reason, length in zip(columns["speaker"], columns["drop_reason"], columns["waveform_length"]):
        clips[speaker] += 1
        if reason:
            dropped[speaker][reason] += 1
        else:
            kept[speaker] += 1
            samples[speaker] += length
    exact = {speaker: Fraction(samples[speaker] * kept[speaker], clips[speaker]) for speaker in clips}
    ranked = sorted(clips, key=lambda speaker: (-exact[speaker], speaker))
    minutes = sampling_rate * 60
    return [
        {
            "rank": rank,
            "speaker": speaker,
            "score": round(float(exact[speaker] / minutes), 4),
            "minutes_kept": round(samples[speaker] / minutes, 3),
            "clean_share": round(kept[speaker] / clips[speaker], 4),
            "clips": clips[speaker],
            "kept": kept[speaker],
            "dropped": dict(dropped[speaker].most_common()),
        }
        for rank, speaker in enumerate(ranked, start=1)
    ]


def mark_speaker_filtered(reasons: list[str], speakers: list[str], chosen) -> None:
    """Set `reasons[i]` to `speaker_filtered` for every clip of a speaker not in `chosen`, as `featurize` does for
    `--speaker_id ID` (only `path_outside_dataset`, checked before it, stays): the split's accounting is then the
    one the chosen ids would give."""
    chosen = set(chosen)
    for index, speaker in enumerate(speakers):
        if speaker not in chosen and reasons[index] != "path_outside_dataset":
            reasons[index] = "speaker_filtered"


def _spread(values: list) -> dict | None:
    """Minimum, median and maximum of the measured `values` (NaN left out), or None when none was measured."""
    measured = [value for value in values if value is not None and not math.isnan(value)]
    if not measured:
        return None
    return {
        "min": _number(min(measured)),
        "median": _number(statistics.median(measured)),
        "max": _number(max(measured)),
    }


def _transcript_cers(columns: dict) -> list:
    """Each clip's transcript CER (`recipe.data.transcript_screening`; None for every clip of columns without it)."""
    return columns.get("transcript_cer") or [None] * len(columns["drop_reason"])


def screening_report(columns: dict, rates: dict[str, list], sampling_rate: int) -> dict:
    """What trimming removed from the kept clips (seconds, share of their audio, the most trimmed) and, per speaker,
    the clips kept and dropped by reason, minutes kept, seconds trimmed and the spread of SNR, bandwidth, rate,
    (with --min_quality) DNSMOS quality and (with --screen_asr_model) the transcript's CER."""
    reasons, speakers = columns["drop_reason"], columns["speaker"]
    trimmed = [
        (start or 0.0) + (end or 0.0) if not math.isnan(start) else 0.0
        for start, end in zip(columns["trimmed_start_seconds"], columns["trimmed_end_seconds"])
    ]
    kept = [index for index, reason in enumerate(reasons) if not reason]
    kept_seconds = sum(columns["waveform_length"][index] for index in kept) / sampling_rate
    trimmed_seconds = sum(trimmed[index] for index in kept)
    most = sorted((index for index in kept if trimmed[index] > 0), key=lambda index: -trimmed[index])
    cers = _transcript_cers(columns)
    by_speaker = defaultdict(list)
    for index, speaker in enumerate(speakers):
        by_speaker[speaker].append(index)
    per_speaker = []
    for speaker, indices in by_speaker.items():
        kept_here = [index for index in indices if not reasons[index]]
        per_speaker.append(
            {
                "speaker": speaker,
                "clips": len(indices),
                "kept": len(kept_here),
                "minutes_kept": round(sum(columns["waveform_length"][i] for i in kept_here) / sampling_rate / 60, 3),
                "trimmed_seconds": round(sum(trimmed[i] for i in kept_here), 3),
                "dropped": dict(Counter(reasons[i] for i in indices if reasons[i]).most_common()),
                "snr_db": _spread([columns["snr_db"][i] for i in indices]),
                "bandwidth_hz": _spread([columns["bandwidth_hz"][i] for i in indices]),
                "rate": _spread([rates["rate"][i] for i in indices]),
                # DNSMOS overall, with --min_quality only (None otherwise)
                "quality": _spread([columns["quality"][i] for i in indices]),
                # the transcript's CER, with --screen_asr_model only (None otherwise)
                "transcript_cer": _spread([cers[i] for i in indices]),
            }
        )
    per_speaker.sort(key=lambda entry: -entry["minutes_kept"])
    return {
        "trimmed_clips": len(most),
        "trimmed_seconds": round(trimmed_seconds, 3),
        "trimmed_share": round(trimmed_seconds / (kept_seconds + trimmed_seconds), 4) if kept_seconds else 0.0,
        "most_trimmed": [
            {
                "path": columns["path"][index],
                "start_seconds": _number(columns["trimmed_start_seconds"][index]),
                "end_seconds": _number(columns["trimmed_end_seconds"][index]),
            }
            for index in most[:MAX_LISTED]
        ],
        "speakers": per_speaker,
    }


def clip_rows(columns: dict, rates: dict[str, list]) -> list[dict]:
    """One row per clip seen: its path, speaker, drop reason ("" when kept) and measures (None when not measured)."""
    rows, cers = [], _transcript_cers(columns)
    for index, path in enumerate(columns["path"]):
        row = {"path": path, "speaker": columns["speaker"][index], "drop_reason": columns["drop_reason"][index]}
        row.update((name, _number(columns[name][index])) for name in SCREENING_COLUMNS)
        row.update((name, _number(values[index])) for name, values in rates.items())
        row["transcript_cer"] = _number(cers[index])
        rows.append(row)
    return rows


def write_clips_table(report: dict, path: str) -> None:
    """The `clips` rows of every split of `report` as one tab-separated table with a header (`CLIPS_TABLE_COLUMNS`);
    an unmeasured value is an empty cell."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(CLIPS_TABLE_COLUMNS)
        for name, split in report.items():
            for row in split.get("clips", []):
                cells = {"split": name, **row}
                # .get: the rows of a cache built before a column was added lack it (an empty cell)
                writer.writerow(["" if cells.get(column) is None else cells[column] for column in CLIPS_TABLE_COLUMNS])


def _format_spread(name: str, spread: dict | None, unit: str, digits: int) -> str:
    if spread is None:
        return f"{name} -"
    return f"{name} {spread['min']:.{digits}f}/{spread['median']:.{digits}f}/{spread['max']:.{digits}f}{unit}"


def format_screening(screening: dict | None) -> list[str]:
    """The printed lines of a split's screening report: trimming, then the speakers with the most kept audio."""
    if not screening:
        return []
    lines = []
    if screening["trimmed_clips"]:
        worst = screening["most_trimmed"][0]
        lines.append(
            f"    silence trimmed: {screening['trimmed_clips']} clips, {screening['trimmed_seconds']:.1f} s "
            f"({screening['trimmed_share']:.1%} of the kept audio); the most {worst['start_seconds']:.2f} s + "
            f"{worst['end_seconds']:.2f} s ({worst['path']})"
        )
    speakers = screening["speakers"]
    if speakers:
        lines.append(f"    per speaker (min/median/max; {CLIPS_TABLE_NAME} lists every clip):")
    for entry in speakers[:MAX_LISTED]:
        dropped = ", ".join(f"{reason} {count}" for reason, count in entry["dropped"].items()) or "none dropped"
        # shown only when measured (--min_quality): most runs do not score it
        quality = f", {_format_spread('DNSMOS', entry['quality'], '', 2)}" if entry.get("quality") else ""
        if entry.get("transcript_cer"):  # --screen_asr_model
            quality += f", {_format_spread('transcript CER', entry['transcript_cer'], '', 2)}"
        lines.append(
            f"      {entry['speaker'] or '(one speaker)'}: {entry['kept']}/{entry['clips']} kept, "
            f"{entry['minutes_kept']:.2f} min; {_format_spread('SNR', entry['snr_db'], ' dB', 1)}, "
            f"{_format_spread('bandwidth', entry['bandwidth_hz'], ' Hz', 0)}, "
            f"{_format_spread('chars/s', entry['rate'], '', 1)}{quality}; {dropped}"
        )
    if len(speakers) > MAX_LISTED:
        lines.append(f"      ... {len(speakers) - MAX_LISTED} more speakers in the JSON report")
    return lines


def format_ranking(ranking: dict | None) -> list[str]:
    """The printed lines of a speaker ranking (`recipe.data.speaker_best`): each speaker's rank, score, minutes kept,
    clean share and drops by reason, the chosen ones marked `*`."""
    if not ranking:
        return []
    lines = [f"    speakers ranked for {ranking['rule']} (score = minutes kept x clean share; * chosen):"]
    shown = max(MAX_LISTED, len(ranking["chosen"]))
    for entry in ranking["speakers"][:shown]:
        dropped = ", ".join(f"{reason} {count}" for reason, count in entry["dropped"].items()) or "none dropped"
        lines.append(
            f"      {'*' if entry['chosen'] else ' '} {entry['rank']}. {entry['speaker']}: score "
            f"{entry['score']:.3f}, {entry['minutes_kept']:.2f} min kept, {entry['kept']}/{entry['clips']} clean "
            f"({entry['clean_share']:.0%}); {dropped}"
        )
    if len(ranking["speakers"]) > shown:
        lines.append(f"      ... {len(ranking['speakers']) - shown} more speakers in the JSON report")
    if ranking.get("error"):
        lines.append(f"    no speaker chosen: {ranking['error']}")
    return lines
