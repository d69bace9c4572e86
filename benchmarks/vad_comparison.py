"""The recipe's energy speech detector (`recipe.data.speech_activity`) against Silero VAD for trimming a clip's leading
and trailing non-speech: where each puts the first and last speech sample, against a known truth, and what it costs.

    pip install --no-deps --target /tmp/silero_target silero-vad==6.2.3       # the ONNX model ships in the wheel
    python benchmarks/vad_comparison.py --cv_dir outputs/screening/cv --demo_dir demo/kmr_ljspeech/wavs \\
        --silero_model /tmp/silero_target/silero_vad/data/silero_vad.onnx --output_json outputs/vad_comparison.json

Silero runs here through onnxruntime and numpy only (the package itself imports torch, and its audio helpers want
torchaudio): `silero_probabilities` feeds the streaming model `silero_vad.onnx` 512-sample chunks at 16 kHz, each
behind the last 64 samples of the chunk before (zeros for the first), with the recurrent state carried from one
call to the next; `silero_bounds` turns the per-chunk speech probabilities into the first and last speech sample
with the thresholds and durations of Silero's `get_speech_timestamps` defaults (`SILERO_*`). When the package's
batched model `silero_vad_16k_sequence.onnx` sits beside the streaming one, its cost is timed too (and its
probabilities checked against the streaming model's).

Data, everything resampled (soxr HQ) to 16 kHz and its DC offset removed, as the recipe measures a clip:
- `--cv_dir`: the Common Voice folder of `benchmarks/screening.py` (`clips/`, `defects.json`, `--seed` its seed). The
  truth of a clip is `screening.speech_span` (10 ms frames within 40 dB of the loudest) of its clean render, where
  that render is recoverable: `padded_silence` / `room_tone` clips hold it whole between the added padding
  (`before_seconds`, `after_seconds`); a `noisy` clip is its render plus seeded noise that `recover_noisy_render`
  regenerates and subtracts; `clean` and `dc_offset` clips are their render. Other classes get no truth.
- `--demo_dir`: real recordings with their own edges (no truth): what each detector trims, and where they disagree.

Errors are the detected (unpadded) bounds minus the truth, in seconds (`union`: the earlier start and the later end
of the two detectors'): a start error above `CUT_TOLERANCE_SECONDS` or an end error below minus it cuts speech. The
trims are the detectors' bounds widened by the recipe's `trim_bounds` (`TRIM_PAD_SECONDS` each side). Cost: each
detector over every clip, alternated for `--rounds` rounds in one invocation, per `COST_SECONDS` of audio; the energy detector's figure is the whole `measure_activity` (it
also measures SNR and bandwidth), Silero's only the probabilities and bounds.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipe.data.speech_activity import (  # noqa: E402
    TRIM_PAD_SECONDS,
    SpeechActivity,
    measure_activity,
    remove_dc_offset,
    trim_bounds,
)

RATE = 16_000
# The streaming model's geometry at 16 kHz: a chunk, and the samples of the chunk before that precede it.
SILERO_CHUNK = 512
SILERO_CONTEXT = 64
SILERO_STATE_SHAPE = (2, 1, 128)
SEQUENCE_STATE_SHAPE = (1, 1, 128)
SEQUENCE_MAX_FRAMES = 512
# get_speech_timestamps' defaults: speech starts at a chunk at or above THRESHOLD, and ends where the probability
# falls below THRESHOLD - NEG_OFFSET and stays out of speech for MIN_SILENCE; a run shorter than MIN_SPEECH is dropped
SILERO_THRESHOLD = 0.5
SILERO_NEG_OFFSET = 0.15
SILERO_MIN_SPEECH_SECONDS = 0.25
SILERO_MIN_SILENCE_SECONDS = 0.1
CUT_TOLERANCE_SECONDS = 0.02
DISAGREE_SECONDS = 0.1
COST_SECONDS = 5.0
TRUTH_CLASSES = ("padded_silence", "room_tone", "noisy", "clean", "dc_offset")
ERROR_CLASSES = ("padded_silence", "room_tone", "noisy")
TRIM_CLASSES = ("clean",)
# union: the earlier start and the later end of the two
DETECTORS = ("energy", "silero", "union")
LISTED_DISAGREEMENTS = 6


# -- Silero through onnxruntime -----------------------------------------------------------------------------------


def find_silero_model(path: str | None, name: str = "silero_vad.onnx") -> str | None:
    """`path`, else `name` in the data folder of an importable `silero_vad` (located, not imported: the package
    imports torch)."""
    if path:
        return path
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, "data", name)
        if os.path.isfile(candidate):
            return candidate
    return None


def onnx_session(path: str):
    """A CPU session on one thread (the recipe measures clips in `datasets.map` workers, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def silero_frames(waveform: np.ndarray) -> np.ndarray:
    """`(chunks, SILERO_CONTEXT + SILERO_CHUNK)`: each 512-sample chunk (the last zero-padded) behind the last 64
    samples of the chunk before it (zeros before the first)."""
    count = max(1, math.ceil(len(waveform) / SILERO_CHUNK))
    padded = np.zeros(SILERO_CONTEXT + count * SILERO_CHUNK, dtype=np.float32)
    padded[SILERO_CONTEXT : SILERO_CONTEXT + len(waveform)] = waveform
    starts = np.arange(count) * SILERO_CHUNK
    return padded[starts[:, None] + np.arange(SILERO_CONTEXT + SILERO_CHUNK)]


def silero_probabilities(session, waveform: np.ndarray) -> np.ndarray:
    """The streaming model's speech probability of each chunk of `waveform` (16 kHz), one call per chunk."""
    frames = silero_frames(waveform)
    state = np.zeros(SILERO_STATE_SHAPE, dtype=np.float32)
    rate = np.array(RATE, dtype=np.int64)
    probabilities = np.empty(len(frames), dtype=np.float32)
    for index, frame in enumerate(frames):
        output, state = session.run(None, {"input": frame[None], "state": state, "sr": rate})
        probabilities[index] = output[0, 0]
    return probabilities


def silero_sequence_probabilities(session, waveform: np.ndarray) -> np.ndarray:
    """The same probabilities from the batched model: up to `SEQUENCE_MAX_FRAMES` chunks per call."""
    frames = silero_frames(waveform)
    hidden = np.zeros(SEQUENCE_STATE_SHAPE, dtype=np.float32)
    cell = np.zeros(SEQUENCE_STATE_SHAPE, dtype=np.float32)
    parts = []
    for first in range(0, len(frames), SEQUENCE_MAX_FRAMES):
        block = frames[first : first + SEQUENCE_MAX_FRAMES]
        probabilities, hidden, cell = session.run(None, {"input": block, "h": hidden, "c": cell})
        parts.append(np.asarray(probabilities, dtype=np.float32).reshape(-1))
    return np.concatenate(parts)


def silero_bounds(
    probabilities: np.ndarray,
    num_samples: int,
    threshold: float = SILERO_THRESHOLD,
    neg_threshold: float | None = None,
    min_speech_seconds: float = SILERO_MIN_SPEECH_SECONDS,
    min_silence_seconds: float = SILERO_MIN_SILENCE_SECONDS,
    chunk: int = SILERO_CHUNK,
    rate: int = RATE,
) -> tuple[int, int]:
    """First and one-past-last speech sample from per-chunk probabilities; `(0, 0)` without speech.

    A run starts at a chunk at or above `threshold`; a chunk below `neg_threshold` (default `threshold - 0.15`)
    starts a candidate end, cancelled by a chunk back at or above `threshold`, and final once `min_silence_seconds`
    have passed since it; a run still open at the end of the clip runs to the clip's end. Runs of at most
    `min_speech_seconds` are dropped."""
    if neg_threshold is None:
        neg_threshold = max(threshold - SILERO_NEG_OFFSET, 0.01)
    min_speech, min_silence = min_speech_seconds * rate, min_silence_seconds * rate
    runs, start, quiet_since = [], None, None
    for index, probability in enumerate(probabilities):
        sample = index * chunk
        if start is None:
            if probability >= threshold:
                start, quiet_since = sample, None
            continue
        if probability >= threshold:
            quiet_since = None
        elif probability < neg_threshold:
            if quiet_since is None:
                quiet_since = sample
            if sample - quiet_since >= min_silence:
                runs.append((start, quiet_since))
                start, quiet_since = None, None
    if start is not None:
        runs.append((start, num_samples))
    runs = [(begin, end) for begin, end in runs if end - begin > min_speech]
    if not runs:
        return 0, 0
    return runs[0][0], min(num_samples, runs[-1][1])


# -- data and truth -------------------------------------------------------------------------------------------------


def to_detector_input(waveform: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at `RATE` (soxr HQ, as `recipe.audio.resample`), DC offset removed."""
    if waveform.ndim > 1:
        waveform = waveform.mean(axis=1)
    waveform = waveform.astype(np.float32)
    if rate != RATE:
        waveform = soxr.resample(waveform, rate, RATE, quality="HQ").astype(np.float32)
    return remove_dc_offset(waveform)


def clip_number(file_name: str) -> int:
    """The clip's index in the generation order (`common_voice_en_screening_00042.wav` -> 42): its noise seed."""
    return int(os.path.splitext(file_name)[0].rsplit("_", 1)[-1])


def recover_noisy_render(clip: np.ndarray, entry: dict, rng: np.random.Generator) -> np.ndarray:
    """The clean render under a `noisy` clip: the unit noise regenerated from `rng` (what `screening.mix_noise`
    drew), at the scale `a` for which `clip - a * noise` stands `entry["snr_db"]` above `a * noise`, subtracted.

    With P, C, X the mean of noise², clip², clip·noise and k = 10^(-snr/10), `a²P = k(C - 2aX + a²P)`: the positive
    root of `(1 - k)P a² + 2kX a - kC = 0`."""
    from screening import pink_noise, white_noise

    noise = (pink_noise if entry.get("color") == "pink" else white_noise)(len(clip), rng).astype(np.float64)
    signal = clip.astype(np.float64)
    k = 10 ** (-entry["snr_db"] / 10)
    p, c, x = np.mean(noise * noise), np.mean(signal * signal), np.mean(signal * noise)
    a2, a1, a0 = (1 - k) * p, 2 * k * x, -k * c
    scale = (-a1 + math.sqrt(a1 * a1 - 4 * a2 * a0)) / (2 * a2)
    return (signal - scale * noise).astype(np.float32)


def truth_span(
    clip: np.ndarray, rate: int, entry: dict, rng: np.random.Generator | None = None
) -> tuple[float, float] | None:
    """Where the reading is in `clip` (seconds): `screening.speech_span` of the clean render within it, or None when
    the render cannot be recovered for the clip's class."""
    from screening import speech_span

    kind = entry["defect"]
    if kind in ("padded_silence", "room_tone"):
        before, after = round(entry["before_seconds"] * rate), round(entry["after_seconds"] * rate)
        start, end = speech_span(clip[before : len(clip) - after], rate)
        return (before + start) / rate, (before + end) / rate
    if kind == "noisy":
        if rng is None:
            return None
        start, end = speech_span(recover_noisy_render(clip, entry, rng), rate)
        return start / rate, end / rate
    if kind in ("clean", "dc_offset"):
        start, end = speech_span(clip - clip.mean(dtype=np.float64), rate)
        return start / rate, end / rate
    return None


def bound_errors(detected: tuple[float, float], truth: tuple[float, float], tolerance: float) -> dict:
    """Detected minus true start and end (seconds); `cut` when the start is late or the end early by more than
    `tolerance`."""
    start_error, end_error = detected[0] - truth[0], detected[1] - truth[1]
    return {
        "start_error": start_error,
        "end_error": end_error,
        "cut": start_error > tolerance or end_error < -tolerance,
    }


def summarize_errors(rows: list[dict]) -> dict:
    """Mean and max absolute start and end errors (seconds), the clips that cut speech."""
    if not rows:
        return {"clips": 0}
    starts = [abs(row["start_error"]) for row in rows]
    ends = [abs(row["end_error"]) for row in rows]
    return {
        "clips": len(rows),
        "start_mean_abs": round(statistics.fmean(starts), 4),
        "start_max_abs": round(max(starts), 4),
        "end_mean_abs": round(statistics.fmean(ends), 4),
        "end_max_abs": round(max(ends), 4),
        "speech_cut": sum(row["cut"] for row in rows),
        "speech_cut_after_pad": sum(row["cut_after_pad"] for row in rows),
        "cut_after_pad_clips": [row["clip"] for row in rows if row["cut_after_pad"]][:LISTED_DISAGREEMENTS],
        "start_error_range": [
            round(min(r["start_error"] for r in rows), 4),
            round(max(r["start_error"] for r in rows), 4),
        ],
        "end_error_range": [round(min(r["end_error"] for r in rows), 4), round(max(r["end_error"] for r in rows), 4)],
    }


# -- measuring ------------------------------------------------------------------------------------------------------


def load_clips(cv_dir: str | None, demo_dir: str | None, seed: int) -> list[dict]:
    """Every clip: its source, name, class, 16 kHz detector input and truth (seconds, or None)."""
    clips = []
    if cv_dir:
        with open(os.path.join(cv_dir, "defects.json"), encoding="utf-8") as handle:
            defects = json.load(handle)
        for name, entry in sorted(defects.items()):
            samples, rate = sf.read(os.path.join(cv_dir, "clips", name), dtype="float32")
            rng = np.random.default_rng(seed * 100_003 + clip_number(name))
            truth = truth_span(samples, rate, entry, rng) if entry["defect"] in TRUTH_CLASSES else None
            clips.append(
                {"source": "cv", "name": name, "class": entry["defect"], "audio": to_detector_input(samples, rate),
                 "truth": truth}
            )  # fmt: skip
    if demo_dir:
        for path in sorted(glob.glob(os.path.join(demo_dir, "*.wav"))):
            samples, rate = sf.read(path, dtype="float32")
            clips.append(
                {"source": "demo", "name": os.path.basename(path), "class": "demo",
                 "audio": to_detector_input(samples, rate), "truth": None}
            )  # fmt: skip
    return clips


def detect(clip: dict, session) -> dict:
    """Both detectors' unpadded bounds and trims (samples at `RATE`) of one clip."""
    audio = clip["audio"]
    activity = measure_activity(audio, RATE)
    probabilities = silero_probabilities(session, audio)
    first, end = silero_bounds(probabilities, len(audio))
    silero_activity = SpeechActivity(first, end, 0.0, math.nan, math.nan)
    if activity.has_speech and silero_activity.has_speech:
        union = SpeechActivity(
            min(activity.first_sample, first), max(activity.end_sample, end), 0.0, math.nan, math.nan
        )
    else:
        union = activity if activity.has_speech else silero_activity
    result = {"probabilities": probabilities}
    for name, found in (("energy", activity), ("silero", silero_activity), ("union", union)):
        result[name] = {
            "has_speech": found.has_speech,
            "bounds": (found.first_sample, found.end_sample),
            "trim": trim_bounds(found, len(audio), RATE),
        }
    return result


def seconds(samples: tuple[int, int]) -> tuple[float, float]:
    return samples[0] / RATE, samples[1] / RATE


def compare(clips: list[dict], session) -> dict:
    """Errors against the truth per class, and the trims of the clean and demo clips, per detector."""
    errors = {kind: {name: [] for name in DETECTORS} for kind in TRUTH_CLASSES}
    trims = {}
    no_speech = {name: [] for name in DETECTORS}
    for clip in clips:
        found = detect(clip, session)
        clip["probabilities"] = found.pop("probabilities")
        clip["found"] = found
        for name in DETECTORS:
            if not found[name]["has_speech"]:
                no_speech[name].append(clip["name"])
        if clip["truth"] is not None:
            for name in DETECTORS:
                if not found[name]["has_speech"]:
                    continue
                row = bound_errors(seconds(found[name]["bounds"]), clip["truth"], CUT_TOLERANCE_SECONDS)
                kept = bound_errors(seconds(found[name]["trim"]), clip["truth"], CUT_TOLERANCE_SECONDS)
                row["cut_after_pad"] = kept["cut"]
                errors[clip["class"]][name].append({"clip": clip["name"], **row})
        group = "demo" if clip["source"] == "demo" else clip["class"]
        if group in (*TRIM_CLASSES, "demo"):
            trims.setdefault(group, []).append(clip)
    results = {
        "errors": {
            kind: {name: summarize_errors(rows) for name, rows in per.items()}
            for kind, per in errors.items()
            if any(per.values())
        },
        "trims": {group: summarize_trims(group_clips) for group, group_clips in trims.items()},
        "no_speech": no_speech,
    }
    cut_examples = {
        name: [
            {"clip": row["clip"], "class": kind, "start_error": round(row["start_error"], 3),
             "end_error": round(row["end_error"], 3)}
            for kind in ERROR_CLASSES
            for row in errors[kind][name]
            if row["cut"]
        ][:LISTED_DISAGREEMENTS]
        for name in DETECTORS
    }  # fmt: skip
    results["cut_examples"] = cut_examples
    return results


def summarize_trims(clips: list[dict]) -> dict:
    """Seconds each detector trims at each end (mean, max), and the clips where the energy detector and Silero
    differ by more than `DISAGREE_SECONDS` at either end."""
    summary = {"clips": len(clips)}
    for name in DETECTORS:
        starts = [clip["found"][name]["trim"][0] / RATE for clip in clips]
        ends = [(len(clip["audio"]) - clip["found"][name]["trim"][1]) / RATE for clip in clips]
        summary[name] = {
            "start_mean": round(statistics.fmean(starts), 4),
            "start_max": round(max(starts), 4),
            "end_mean": round(statistics.fmean(ends), 4),
            "end_max": round(max(ends), 4),
        }
    disagreements = []
    for clip in clips:
        (energy_start, energy_end), (silero_start, silero_end) = (
            clip["found"][n]["trim"] for n in ("energy", "silero")
        )
        start_gap, end_gap = (silero_start - energy_start) / RATE, (energy_end - silero_end) / RATE
        if abs(start_gap) > DISAGREE_SECONDS or abs(end_gap) > DISAGREE_SECONDS:
            disagreements.append(
                {"clip": clip["name"], "seconds": round(len(clip["audio"]) / RATE, 3),
                 "energy_trim": [round(energy_start / RATE, 3), round((len(clip["audio"]) - energy_end) / RATE, 3)],
                 "silero_trim": [round(silero_start / RATE, 3), round((len(clip["audio"]) - silero_end) / RATE, 3)]}
            )  # fmt: skip
    summary["disagree_over_100ms"] = len(disagreements)
    summary["disagreements"] = disagreements[:LISTED_DISAGREEMENTS]
    return summary


def time_costs(clips: list[dict], session, sequence_session, rounds: int) -> dict:
    """Seconds per `COST_SECONDS` of audio of each detector over every clip, the detectors alternated in each
    round, and Silero's over the energy detector's per round."""
    total_seconds = sum(len(clip["audio"]) for clip in clips) / RATE
    runners = {
        "energy": lambda audio: measure_activity(audio, RATE),
        "silero": lambda audio: silero_bounds(silero_probabilities(session, audio), len(audio)),
    }
    if sequence_session is not None:
        runners["silero_sequence"] = lambda audio: silero_bounds(
            silero_sequence_probabilities(sequence_session, audio), len(audio)
        )
    per_round = []
    for _ in range(rounds):
        figures = {}
        for name, run in runners.items():
            started = time.perf_counter()
            for clip in clips:
                run(clip["audio"])
            figures[name] = (time.perf_counter() - started) * COST_SECONDS / total_seconds
        per_round.append(figures)
    result = {
        "audio_seconds": round(total_seconds, 1),
        "rounds": rounds,
        "order": list(runners),
        "ms_per_5s": {name: [round(1000 * figures[name], 3) for figures in per_round] for name in runners},
    }
    for name in runners:
        if name == "energy":
            continue
        ratios = [figures[name] / figures["energy"] for figures in per_round]
        result[f"{name}_over_energy"] = {"median": round(statistics.median(ratios), 2),
                                         "range": [round(min(ratios), 2), round(max(ratios), 2)]}  # fmt: skip
    return result


def sequence_agreement(clips: list[dict], sequence_session) -> dict:
    """The batched model's probabilities against the streaming model's, and the bounds they give."""
    worst, same_bounds = 0.0, 0
    for clip in clips:
        batched = silero_sequence_probabilities(sequence_session, clip["audio"])
        worst = max(worst, float(np.max(np.abs(batched - clip["probabilities"]))))
        same_bounds += silero_bounds(batched, len(clip["audio"])) == clip["found"]["silero"]["bounds"]
    return {"max_abs_probability_difference": worst, "clips_same_bounds": same_bounds, "clips": len(clips)}


# -- output ---------------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    """The summary tables."""
    lines = [
        "| class | detector | clips | start err mean / max (s) | end err mean / max (s) | speech cut (>20 ms) "
        "| cut after 0.1 s pad |",
        "| --- | --- | ---: | --- | --- | ---: | ---: |",
    ]
    for kind, per in results["errors"].items():
        for name, entry in per.items():
            if not entry["clips"]:
                lines.append(f"| {kind} | {name} | 0 | - | - | - | - |")
                continue
            lines.append(
                f"| {kind} | {name} | {entry['clips']} | {entry['start_mean_abs']:.3f} / {entry['start_max_abs']:.3f} "
                f"| {entry['end_mean_abs']:.3f} / {entry['end_max_abs']:.3f} | {entry['speech_cut']} "
                f"| {entry['speech_cut_after_pad']} |"
            )
    lines += [
        "",
        "| clips | detector | trimmed start mean / max (s) | trimmed end mean / max (s) | energy vs silero > 100 ms |",
        "| --- | --- | --- | --- | ---: |",
    ]
    for group, entry in results["trims"].items():
        for name in DETECTORS:
            figures = entry[name]
            lines.append(
                f"| {group} ({entry['clips']}) | {name} | {figures['start_mean']:.3f} / {figures['start_max']:.3f} "
                f"| {figures['end_mean']:.3f} / {figures['end_max']:.3f} | {entry['disagree_over_100ms']} |"
            )
    cost = results.get("cost")
    if cost:
        lines += ["", f"Cost over {cost['audio_seconds']} s of audio, {cost['rounds']} alternated rounds:"]
        for name in cost["order"]:
            if name != "energy":
                ratio = cost[f"{name}_over_energy"]
                lines.append(f"- {name} / energy: {ratio['median']}x (range {ratio['range'][0]}-{ratio['range'][1]})")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv_dir", default=None, help="benchmarks/screening.py's cv/ folder")
    parser.add_argument("--demo_dir", default=None, help="a folder of .wav clips (no truth)")
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--silero_model", default=None, help="silero_vad.onnx (default: the installed package's)")
    parser.add_argument("--seed", type=int, default=0, help="the seed the cv folder was generated with")
    parser.add_argument("--rounds", type=int, default=3, help="alternated timing rounds (0: no timing)")
    args = parser.parse_args(argv)
    if not args.cv_dir and not args.demo_dir:
        parser.error("give --cv_dir, --demo_dir or both")
    model = find_silero_model(args.silero_model)
    if model is None or not os.path.isfile(model):
        raise SystemExit(
            "No Silero model: pass --silero_model PATH to silero_vad.onnx, e.g. after "
            "`pip install --no-deps --target /tmp/silero_target silero-vad==6.2.3`, "
            "/tmp/silero_target/silero_vad/data/silero_vad.onnx"
        )
    sequence_model = os.path.join(os.path.dirname(model), "silero_vad_16k_sequence.onnx")
    session = onnx_session(model)
    sequence_session = onnx_session(sequence_model) if os.path.isfile(sequence_model) else None
    clips = load_clips(args.cv_dir, args.demo_dir, args.seed)
    results = {
        "silero_model": model,
        "settings": {
            "rate": RATE,
            "threshold": SILERO_THRESHOLD,
            "neg_threshold": round(SILERO_THRESHOLD - SILERO_NEG_OFFSET, 3),
            "min_speech_seconds": SILERO_MIN_SPEECH_SECONDS,
            "min_silence_seconds": SILERO_MIN_SILENCE_SECONDS,
            "trim_pad_seconds": TRIM_PAD_SECONDS,
            "cut_tolerance_seconds": CUT_TOLERANCE_SECONDS,
        },  # fmt: skip
        **compare(clips, session),
    }
    if sequence_session is not None:
        results["sequence_model"] = {"path": sequence_model, **sequence_agreement(clips, sequence_session)}
    if args.rounds:
        results["cost"] = time_costs(clips, session, sequence_session, args.rounds)
        results["cost"]["note"] = "wall clock on a shared machine; compare the ratios, not the times"
    print(json.dumps(results, indent=1))
    print(markdown(results))
    if args.output_json:
        folder = os.path.dirname(os.path.abspath(args.output_json))
        os.makedirs(folder, exist_ok=True)
        with open(args.output_json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
