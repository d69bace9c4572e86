"""The gate of `python -m recipe.compare`: each verdict PASS, FAIL or SKIP (nothing to judge by), with a message.

- `amplitude`: the fine-tuned mean RMS within `--amplitude_tolerance` of the level `--level_reference` names: the
  original's (`original`, the default; the recordings' without an original) or the recordings' (`recordings`: a
  voice adapted to a new speaker should sound as loud as that speaker's recordings, not as the voice it came from).
- `silence`: no fine-tuned clip with more than `--max_silence_ratio` silent frames.
- `intelligibility`: the fine-tuned mean CER at most `--cer_margin` above the original's (with `--asr_model`).
- `speaker similarity` (`recipe.evaluation.compare_similarity`): for a multi-speaker model, one verdict per compared
  speaker, `speaker similarity: NAME`: its synthesis is closer to its own recordings than to any other trained
  speaker's (the figures of its row of the fine-tuned matrix); for a single-speaker model, the fine-tuned
  synthesis is no further from the recordings than the original's, by `--similarity_margin`.
"""

from __future__ import annotations

from recipe.evaluation.metrics import amplitude_status
from recipe.evaluation.speaker_plan import SINGLE_SPEAKER, short_name


def verdict(name: str, passed: bool | None, message: str) -> dict:
    return {"name": name, "status": "SKIP" if passed is None else "PASS" if passed else "FAIL", "message": message}


# `--level_reference`: what the fine-tuned level is judged against
ORIGINAL_LEVEL, RECORDINGS_LEVEL = "original", "recordings"
LEVEL_REFERENCES = (ORIGINAL_LEVEL, RECORDINGS_LEVEL)


def _amplitude(means: dict, args) -> dict:
    if getattr(args, "level_reference", ORIGINAL_LEVEL) == RECORDINGS_LEVEL:
        baseline = "reference" if "reference" in means else None
        if baseline is None:
            return verdict("amplitude", None, "--level_reference recordings: no recordings to compare the RMS with")
    else:
        baseline = "original" if "original" in means else "reference" if "reference" in means else None
    if baseline is None:
        return verdict("amplitude", None, "no original model and no recordings to compare the RMS with")
    rms, reference_rms = means["finetuned"]["rms"], means[baseline]["rms"]
    baseline = "recordings" if baseline == "reference" else baseline
    if reference_rms <= 0:
        return verdict("amplitude", False, f"the {baseline} mean RMS is 0: nothing to compare with")
    status = amplitude_status(rms, reference_rms, args.amplitude_tolerance, args.amplitude_tolerance)
    change = rms / reference_rms - 1
    return verdict(
        "amplitude",
        status == "OK",
        f"fine-tuned mean RMS {rms:.4f} vs {baseline} {reference_rms:.4f} ({change:+.0%}; allowed "
        f"±{args.amplitude_tolerance:.0%})",
    )


def _intelligibility(means: dict, args) -> dict:
    if "cer" not in means["finetuned"]:
        return verdict("intelligibility", None, "no --asr_model: CER not measured")
    if "original" not in means:
        return verdict("intelligibility", None, f"fine-tuned mean CER {means['finetuned']['cer']:.3f}; no original")
    cer, original_cer = means["finetuned"]["cer"], means["original"]["cer"]
    return verdict(
        "intelligibility",
        cer <= original_cer + args.cer_margin,
        f"fine-tuned mean CER {cer:.3f} vs original {original_cer:.3f} (allowed +{args.cer_margin:.3f})",
    )


def speaker_verdicts(similarity: dict, margin: float) -> list[dict]:
    """The speaker-similarity verdicts of a `SimilarityScoring.result()` (module docstring)."""
    matrix = similarity["matrix"]
    finetuned, original = matrix.get("finetuned", {}), matrix.get("original", {})
    if list(finetuned) == [SINGLE_SPEAKER] and list(similarity["recordings"]) == [SINGLE_SPEAKER]:
        figure = finetuned[SINGLE_SPEAKER][SINGLE_SPEAKER]
        if SINGLE_SPEAKER not in original:
            return [verdict("speaker similarity", None, f"fine-tuned {figure:.3f} to the recordings; no original")]
        before = original[SINGLE_SPEAKER][SINGLE_SPEAKER]
        return [
            verdict(
                "speaker similarity",
                figure >= before - margin,
                f"fine-tuned {figure:.3f} vs original {before:.3f} to the recordings (allowed -{margin:.3f})",
            )
        ]
    results = []
    for speaker, cells in finetuned.items():
        name = f"speaker similarity: {short_name(speaker)}"
        own = cells.get(speaker)
        others = {column: value for column, value in cells.items() if column != speaker}
        if own is None:
            results.append(verdict(name, None, "no recordings of its own in --references"))
            continue
        if not others:
            results.append(verdict(name, None, f"{own:.3f} to its own recordings; no other trained speaker's"))
            continue
        closest = max(others, key=others.get)
        message = (
            f"{own:.3f} to its own recordings, {others[closest]:.3f} to {short_name(closest)}'s (the closest other)"
        )
        if speaker in original:
            before = original[speaker]
            message += f"; original {before[speaker]:.3f} / {before[closest]:.3f}"
        results.append(verdict(name, own > others[closest], message))
    return results


def verdicts(sentences: list[dict], summary: dict, args, similarity: dict | None, similarity_note: str) -> list[dict]:
    """Every verdict of the comparison; `similarity_note` says why there is no `similarity` when there is none."""
    means = summary["means"]
    silent = [s["index"] for s in sentences if s["finetuned"]["silence_ratio"] > args.max_silence_ratio]
    results = [
        _amplitude(means, args),
        verdict(
            "silence",
            not silent,
            f"fine-tuned clips with more than {args.max_silence_ratio:.0%} silent frames: "
            + (", ".join(map(str, silent)) if silent else "none"),
        ),
        _intelligibility(means, args),
    ]
    if similarity is None:
        results.append(verdict("speaker similarity", None, similarity_note))
    else:
        results += speaker_verdicts(similarity, args.similarity_margin)
    return results
