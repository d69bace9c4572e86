"""Fine-tuning in rounds: what a new round takes over from a folder an earlier round of this recipe wrote.

- The discriminator: `--discriminator auto` (the default) uses the starting folder's `discriminator.safetensors` when
  it has one, so that the adversarial game goes on where it stopped instead of restarting against a random critic;
  otherwise a fresh one.
- The lineage: `lineage.json` in the output folder lists every round (what it started from, its data, its replay,
  its steps); a round reads the starting folder's list, appends itself, and the model card shows it.
"""

from __future__ import annotations

import json
import os

from recipe.model.discriminator import DISCRIMINATOR_WEIGHTS_NAME

LINEAGE_FILE = "lineage.json"


def resolve_discriminator(
    spec: str, model_name_or_path: str | None, discriminator_config_name: str | None = None
) -> str:
    """The `load_discriminator` spec that `--discriminator` means: `"auto"` becomes the starting folder or `"random"`.

    Args:
        spec (`str`): `--discriminator`: `"auto"`, `"random"`, `"none"` or a folder (returned unchanged but `"auto"`).
        model_name_or_path (`str`, *optional*): `--model_name_or_path`.
        discriminator_config_name (`str`, *optional*): `--discriminator_config_name`; when given, `"auto"` means a
            fresh discriminator of that architecture.
    """
    if spec != "auto":
        return spec
    if (
        discriminator_config_name is None
        and model_name_or_path
        and os.path.isfile(os.path.join(model_name_or_path, DISCRIMINATOR_WEIGHTS_NAME))
    ):
        return model_name_or_path
    return "random"


def read_lineage(model_name_or_path: str | None) -> list[dict]:
    """The rounds recorded in the starting folder's `lineage.json`; `[]` for a Hub model or a folder without one.

    Raises:
        `ValueError` naming the file when it is not a JSON list of objects.
    """
    if not model_name_or_path:
        return []
    path = os.path.join(model_name_or_path, LINEAGE_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        try:
            lineage = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(lineage, list) or not all(isinstance(entry, dict) for entry in lineage):
        raise ValueError(f"{path}: expected a JSON list of rounds (objects), got {type(lineage).__name__}")
    return lineage


def round_entry(model_args, data_args, steps: int, hours_of_audio: float, added_characters: list[str]) -> dict:
    """This round as a lineage entry (the columns of the model card's lineage table)."""
    entry = {
        "round": None,  # numbered by `append_round`
        "started_from": model_args.model_name_or_path or model_args.config_name,
        "dataset": data_args.dataset_name,
        "hours": round(hours_of_audio, 4),
        "steps": steps,
    }
    if data_args.replay_dataset_name:
        entry["replay"] = f"{data_args.replay_dataset_name} ({data_args.replay_fraction:.0%})"
    if added_characters:
        entry["new_characters"] = "".join(added_characters)
    return entry


def append_round(lineage: list[dict], entry: dict) -> list[dict]:
    """`lineage` plus `entry`, numbered after the last round."""
    return [*lineage, {**entry, "round": len(lineage) + 1}]


def write_lineage(folder: str, lineage: list[dict]) -> str:
    """Write `<folder>/lineage.json`; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LINEAGE_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(lineage, handle, ensure_ascii=False, indent=2)
    return path
