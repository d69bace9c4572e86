"""A multi-speaker voice's speaker map, `speakers.json` in its folder: which `speaker_id` is whom.

    {"speakers": [{"id": 0, "name": "<the id in the data, e.g. a Common Voice client_id>", "train_minutes": 4.2}, ...],
     "dataset": "<--dataset_name>"}

`pipeline("text-to-speech")` users pick a voice with `forward_params={"speaker_id": k}`; the map says which `k`.
"""

from __future__ import annotations

import json
import os

from recipe.errors import ArgumentsError

SPEAKER_MAP_NAME = "speakers.json"


def speaker_map(
    names: list[str], train_seconds: dict[int, float] | None, dataset: str | None, earlier: dict | None = None
) -> dict:
    """The map of speakers `names` (in `speaker_id` order) with the training minutes of each (left out when not
    known, e.g. for an imported voice); with `earlier` (the starting model's map), each speaker's minutes there are
    added to this round's, so that the map says what each voice was trained on in all."""
    speakers = [{"id": index, "name": name} for index, name in enumerate(names)]
    before = {entry["name"]: entry.get("train_minutes", 0.0) for entry in (earlier or {}).get("speakers", [])}
    if train_seconds is not None:
        for entry in speakers:
            minutes = train_seconds.get(entry["id"], 0.0) / 60 + before.get(entry["name"], 0.0)
            entry["train_minutes"] = round(minutes, 2)
    return {"speakers": speakers, "dataset": dataset}


def write_speaker_map(folder: str, mapping: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, SPEAKER_MAP_NAME), "w", encoding="utf-8") as handle:
        json.dump(mapping, handle, ensure_ascii=False, indent=2)


def read_speaker_map(folder: str | None) -> dict | None:
    """The map in `folder` (a local model folder), `None` when there is none."""
    if not folder or not os.path.isfile(os.path.join(folder, SPEAKER_MAP_NAME)):
        return None
    with open(os.path.join(folder, SPEAKER_MAP_NAME), encoding="utf-8") as handle:
        return json.load(handle)


def speaker_names(mapping: dict) -> list[str]:
    return [entry["name"] for entry in sorted(mapping["speakers"], key=lambda entry: entry["id"])]


def model_speaker_order(model_folder: str | None, num_speakers: int) -> tuple[str, ...] | None:
    """A multi-speaker model's speaker names in `speaker_id` order, from its map: the ids the data's speakers take
    when `--speakers` trains it (the model's speakers keep theirs, new ones are added after them); `None` for a
    single-speaker model.

    Raises:
        `ArgumentsError` when the model has several speakers and no map (or a map of another size): its ids cannot
        be matched with the data's speakers.
    """
    if num_speakers <= 1:
        return None
    mapping = read_speaker_map(model_folder)
    if mapping is None:
        raise ArgumentsError(
            f"--model_name_or_path {model_folder} has {num_speakers} speakers but no {SPEAKER_MAP_NAME}, so its "
            "speaker ids cannot be matched with the data's speakers: write one (speaker id -> the speaker's id in "
            "the data, recipe/voices/speaker_map.py) or train without --speakers"
        )
    names = speaker_names(mapping)
    if len(names) != num_speakers:
        raise ArgumentsError(
            f"{model_folder}'s {SPEAKER_MAP_NAME} names {len(names)} speakers {_brief(names)}, but the model has "
            f"{num_speakers}: the map belongs to another model"
        )
    return tuple(names)


def _brief(names: list[str]) -> str:
    shown = [name if len(name) <= 16 else f"{name[:12]}..." for name in names[:5]]
    return f"[{', '.join(shown)}{', ...' if len(names) > 5 else ''}]"
