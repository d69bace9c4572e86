"""Who reads what in `python -m recipe.compare`: the speakers compared and the sentences each one synthesizes.

    readers = compared_speakers(args, models)          # every speaker of a multi-speaker model, or --speaker_id's
    for reader in readers_of(sentence, readers): ...   # a recording's own speaker, else every compared speaker

A single-speaker fine-tuned model has one reader, `SINGLE_SPEAKER`. A multi-speaker one (its speakers named by
`speakers.json`, `recipe.voices.speaker_map`; by their ids "0", "1", ... without one) has a reader per speaker, or
the one `--speaker_id` picks. A sentence whose recording is by a compared speaker is read by that speaker alone, so
that its MCD and its speaker similarity compare a voice with its own recording; every other sentence (from
`--texts`, from references without speakers, or recorded by a speaker not compared) is read by every compared
speaker. The original model reads as the same speaker when it has them (by name in its map, else by id); a
single-speaker original reads every sentence in its one voice, the baseline of a model made multi-speaker.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from recipe.errors import ArgumentsError
from recipe.voices.speaker_map import read_speaker_map, speaker_names

logger = logging.getLogger(__name__)

# The name of a single-speaker model's one reader, and of the column of its recordings: the name the data pipeline
# gives the one speaker of a source without a speaker column
SINGLE_SPEAKER = "speaker"


@dataclass(frozen=True)
class Reader:
    """One compared speaker: `name` (its id in the data, or `SINGLE_SPEAKER`) and the `speaker_id` each model reads it
    with (`None`: a single-speaker model's one voice); a model absent from `ids` has no such speaker."""

    name: str
    ids: dict[str, int | None] = field(default_factory=dict)


def model_speaker_names(model, folder: str | None) -> list[str] | None:
    """A multi-speaker model's speaker names in id order (its map, else "0", "1", ...); `None` for one speaker."""
    num_speakers = int(getattr(model.config, "num_speakers", 1))
    if num_speakers <= 1:
        return None
    mapping = read_speaker_map(folder if folder and os.path.isdir(folder) else None)
    names = speaker_names(mapping) if mapping else []
    return names if len(names) == num_speakers else [str(index) for index in range(num_speakers)]


def short_name(name: str) -> str:
    """A speaker id short enough for a table (Common Voice client ids are 128 hex digits)."""
    return name if len(name) <= 16 else f"{name[:12]}..."


def _has_map(folder: str | None) -> bool:
    return read_speaker_map(folder if folder and os.path.isdir(folder) else None) is not None


def _original_id(original_names: list[str] | None, has_map: bool, name: str, finetuned_id: int) -> int | None:
    """The `speaker_id` the original model reads `name` with; raises `LookupError` when it has no such speaker."""
    if original_names is None:
        return None  # a single-speaker original: its one voice
    if name in original_names:
        return original_names.index(name)
    if not has_map and finetuned_id < len(original_names):
        return finetuned_id  # no map to match names with: the same id
    raise LookupError(name)


def compared_speakers(args, models: dict, folders: dict[str, str]) -> list[Reader]:
    """The readers of the comparison (module docstring).

    Args:
        args (`CompareArguments`): gives `--speaker_id`.
        models (`dict[str, VitsModel]`): "original" (optional) and "finetuned".
        folders (`dict[str, str]`): the folder or Hub id of each model, where its `speakers.json` is read.

    Raises:
        `ArgumentsError`: `--speaker_id` outside the fine-tuned model's speakers (naming them).
    """
    names = model_speaker_names(models["finetuned"], folders["finetuned"])
    if names is None:
        ids = {label: None for label in models}
        if "original" in models and model_speaker_names(models["original"], folders.get("original")) is not None:
            # a multi-speaker original for a single-speaker fine-tune: its speaker 0, as before this existed
            ids["original"] = 0
        return [Reader(SINGLE_SPEAKER, ids)]
    if args.speaker_id is not None and not 0 <= args.speaker_id < len(names):
        listed = ", ".join(f"{index} ({short_name(name)})" for index, name in enumerate(names[:5]))
        raise ArgumentsError(
            f"--speaker_id {args.speaker_id}: --finetuned {folders['finetuned']} has speakers 0..{len(names) - 1} "
            f"({listed}{', ...' if len(names) > 5 else ''})"
        )
    chosen = range(len(names)) if args.speaker_id is None else [args.speaker_id]
    original_names = None
    if "original" in models:
        original_names = model_speaker_names(models["original"], folders.get("original"))
    readers = []
    for index in chosen:
        ids = {"finetuned": index}
        if "original" in models:
            try:
                has_map = _has_map(folders.get("original"))
                ids["original"] = _original_id(original_names, has_map, names[index], index)
            except LookupError:
                logger.warning("--original has no speaker %s: only the fine-tuned model reads as it", names[index])
        readers.append(Reader(names[index], ids))
    if args.speaker_id is None:
        logger.info("Comparing the %d speakers of --finetuned (--speaker_id compares one)", len(readers))
    return readers


def readers_of(speaker: str | None, readers: list[Reader]) -> list[Reader]:
    """Who reads a sentence recorded by `speaker` (`None`: no recording, or no speaker known): that speaker when it
    is compared, else every compared speaker."""
    own = [reader for reader in readers if speaker is not None and reader.name == speaker]
    return own or readers
