"""The figures `benchmarks/real_voice.py` takes from a `recipe.compare` run: the verdicts, speaker similarity (SECS)
and speaking rate, and, for a second voice, how like Joe its recordings are (that it is another speaker).

    figures.update(comparison_figures(comparison, heldout_folder))
    figures["recordings_similarity"] = recordings_similarity(joe_heldout_folder, heldout_folder)
    print(summary_line(name, figures))
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from recipe.evaluation.metrics import speaking_rate
from recipe.evaluation.speaker_plan import SINGLE_SPEAKER

# A synthesized rate within this factor of the recording's counts as on target (issue 22: within 10%)
RATE_TOLERANCE = 0.10


def _heldout_clips(folder: str) -> list[tuple[str, np.ndarray, int]]:
    """`(text, waveform, rate)` of each clip of an LJSpeech folder the benchmark wrote, in its order."""
    with open(os.path.join(folder, "metadata.csv"), encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("|", 1) for line in handle if line.strip()]
    clips = []
    for name, text in rows:
        waveform, rate = sf.read(os.path.join(folder, "wavs", f"{name}.wav"), dtype="float32")
        clips.append((text, waveform, rate))
    return clips


def verdict_figures(comparison: dict) -> dict:
    """`verdicts` (name -> PASS / FAIL / SKIP), their messages and `passed`: compare's exit status 1 is a result."""
    return {
        "verdicts": {v["name"]: v["status"] for v in comparison["verdicts"]},
        "verdict_messages": {v["name"]: v["message"] for v in comparison["verdicts"]},
        "passed": comparison["passed"],
    }


def similarity_figures(comparison: dict) -> dict:
    """SECS of each model to the recordings of `--references` (`{label: figure}`), when compare measured it."""
    matrix = comparison.get("similarity", {}).get("matrix", {})
    return {
        label: rows[SINGLE_SPEAKER][SINGLE_SPEAKER]
        for label, rows in matrix.items()
        if SINGLE_SPEAKER in rows.get(SINGLE_SPEAKER, {})
    }


def rate_figures(comparison: dict, heldout_folder: str) -> dict:
    """Speaking rates (letters and digits per second of speech, `recipe.evaluation.metrics.speaking_rate`) of each
    model and of the held-out recordings, and per model the ratio to the recordings: of the means, and per sentence
    (the synthesis of sentence i against the recording of sentence i): its median, its spread and the share of
    sentences within `RATE_TOLERANCE`."""
    recordings = [speaking_rate(text, waveform, rate) for text, waveform, rate in _heldout_clips(heldout_folder)]
    recorded = [r.get("speaking_rate") for r in recordings]
    figures = {"recordings_rate": float(np.mean([r for r in recorded if r]))}
    for label in comparison["models"]:
        synthesized = [sentence[label].get("speaking_rate") for sentence in comparison["sentences"]]
        ratios = np.array([s / r for s, r in zip(synthesized, recorded) if s and r])
        mean_rate = float(np.mean([s for s in synthesized if s]))
        figures[label] = {
            "rate": mean_rate,
            "rate_ratio": mean_rate / figures["recordings_rate"],
            "per_sentence_ratio_median": float(np.median(ratios)),
            "per_sentence_ratio_iqr": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
            "share_within_tolerance": float(np.mean(np.abs(ratios - 1) <= RATE_TOLERANCE)),
            "speech_s": float(np.mean([sentence[label]["speech_s"] for sentence in comparison["sentences"]])),
        }
    return figures


def recordings_similarity(joe_folder: str, target_folder: str) -> dict:
    """How like each other Joe's and the target's held-out recordings are, by compare's encoder and figure (the mean
    per-clip cosine to a centroid): Joe's clips to the target's centroid, and for scale the target's own clips to
    the centroid of its other clips (leave one out)."""
    from recipe.evaluation.speaker_similarity import centroid, cosines_to, embed_waveforms, similarity_to

    def embeddings(folder):
        clips = _heldout_clips(folder)
        return embed_waveforms([waveform for _, waveform, _ in clips], clips[0][2])

    joe, target = embeddings(joe_folder), embeddings(target_folder)
    own = [
        float(cosines_to(target[index : index + 1], centroid(np.delete(target, index, axis=0)))[0])
        for index in range(len(target))
    ]
    return {
        "joe_recordings_to_target": similarity_to(joe, centroid(target)),
        "target_recordings_to_target_leave_one_out": float(np.mean(own)),
        "clips": {"joe": len(joe), "target": len(target)},
    }


def comparison_figures(comparison: dict, heldout_folder: str) -> dict:
    """Verdicts, SECS and speaking rates of one comparison (the functions above)."""
    figures = verdict_figures(comparison)
    if secs := similarity_figures(comparison):
        figures["secs_to_heldout_recordings"] = secs
    figures["speaking_rate"] = rate_figures(comparison, heldout_folder)
    return figures


def summary_line(name: str, figures: dict) -> str:
    """One printed line per model of a compare stage: CER, level, MCD, SECS, rate ratio; then the verdicts."""
    lines = []
    for label, means in figures["means"].items():
        if label == "reference":
            continue
        parts = [f"CER {means['cer']:.2%}" if "cer" in means else None, f"RMS {means['rms']:.4f}"]
        if "mcd_to_heldout_recordings" in means:
            parts.append(f"MCD {means['mcd_to_heldout_recordings']:.2f}")
        if label in figures.get("secs_to_heldout_recordings", {}):
            parts.append(f"SECS {figures['secs_to_heldout_recordings'][label]:.3f}")
        if label in figures.get("speaking_rate", {}):
            parts.append(f"rate x{figures['speaking_rate'][label]['rate_ratio']:.3f} of the recordings'")
        lines.append(f"{name} {label}: " + ", ".join(p for p in parts if p))
    if "recordings_similarity" in figures:
        lines.append(
            f"{name}: Joe's recordings to the target's {figures['recordings_similarity']['joe_recordings_to_target']:.3f}"
            f" (the target's own, leave one out, "
            f"{figures['recordings_similarity']['target_recordings_to_target_leave_one_out']:.3f})"
        )
    lines.append(f"{name} verdicts: " + ", ".join(f"{k} {v}" for k, v in figures["verdicts"].items()))
    return "\n".join(lines)
