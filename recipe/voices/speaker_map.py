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


def speaker_map(names: list[str], train_seconds: dict[int, float] | None, dataset: str | None) -> dict:
    """The map of speakers `names` (in `speaker_id` order) with the training minutes of each (left out when not
    known, e.g. for an imported voice)."""
    speakers = [{"id": index, "name": name} for index, name in enumerate(names)]
    if train_seconds is not None:
        for entry in speakers:
            entry["train_minutes"] = round(train_seconds.get(entry["id"], 0.0) / 60, 2)
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


def check_same_speakers(model_folder: str, num_speakers: int, chosen: list[str]) -> None:
    """A multi-speaker model trained with `--speakers`: its map must name the chosen speakers, in the same order.

    Raises:
        `ArgumentsError` naming both lists (shortened) when the model has no map or another one.
    """
    mapping = read_speaker_map(model_folder)
    if mapping is None:
        raise ArgumentsError(
            f"--model_name_or_path {model_folder} has {num_speakers} speakers but no {SPEAKER_MAP_NAME}, so its "
            f"speaker ids cannot be matched with the data's; --speakers chose {len(chosen)}"
        )
    existing = speaker_names(mapping)
    if existing != list(chosen):
        raise ArgumentsError(
            f"--speakers chose {len(chosen)} speakers {_brief(chosen)}, but {model_folder}'s {SPEAKER_MAP_NAME} "
            f"has {len(existing)} {_brief(existing)}: train it with --speakers naming its speakers "
            f"({','.join(existing) if len(','.join(existing)) < 300 else 'the ids in that file'})"
        )


def _brief(names: list[str]) -> str:
    shown = [name if len(name) <= 16 else f"{name[:12]}..." for name in names[:5]]
    return f"[{', '.join(shown)}{', ...' if len(names) > 5 else ''}]"
