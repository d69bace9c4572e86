"""Where the clips come from: the registry of dataset layouts, and `load_source`, which opens a dataset in one of them.

    source = load_source("demo/kmr_ljspeech")   # the layout is detected: `ljspeech`
    source.split("train")                       # a `datasets.Dataset` with an audio, a text and a speaker column

`LAYOUTS` lists every layout `--dataset_format` names, each as one `DatasetLayout`: its name, a one-line description,
how `--dataset_format auto` recognizes it, and its loader. The dispatch (`load_source`), the detection
(`detect_format`), the check of `--dataset_format` / `--replay_dataset_format` (`check_dataset_format`) and their
`--help` text (`DATASET_FORMAT_HELP`) all derive from it: a new layout is one more entry, with a loader that returns a
`recipe.data.source.Source`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from recipe.data.folder_layouts import (
    COMMON_VOICE,
    LJSPEECH,
    is_common_voice_folder,
    is_ljspeech_folder,
    load_common_voice,
    load_ljspeech,
)
from recipe.data.hub_layout import HUB, load_hub
from recipe.data.source import DataError, LoadOptions, Source
from recipe.errors import MissingInputError
from recipe.hub_access import looks_like_path as hub_looks_like_path
from recipe.hub_access import plainly_a_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetLayout:
    """One way a dataset can be laid out, and how to read it.

    Args:
        name (`str`): the `--dataset_format` value; also the `Source.format` of what `load` returns, and part of the
            feature cache key.
        description (`str`): what a dataset of this layout is, one line of `--help`.
        detects (`Callable[[str], bool]`, *optional*): whether `--dataset_format auto` reads a `--dataset_name` as
            this layout. `None` for the one layout that takes whatever no other layout recognizes.
        load (`Callable[[str, LoadOptions], Source]`): opens a `--dataset_name` of this layout.
    """

    name: str
    description: str
    detects: Callable[[str], bool] | None
    load: Callable[[str, LoadOptions], Source]


# `--dataset_format auto` takes the first layout whose `detects` recognizes the path, else the one without `detects`
# (`detect_format`); `--help` lists them in this order.
LAYOUTS = (
    DatasetLayout(
        HUB,
        "what the datasets library opens (a Hub dataset id, a saved dataset, a parquet file / folder, an audiofolder "
        "with a metadata.csv / metadata.jsonl that has a file_name column)",
        None,
        load_hub,
    ),
    DatasetLayout(
        COMMON_VOICE,
        "a Common Voice language folder as downloaded (train.tsv, dev.tsv, test.tsv, validated.tsv, clips/)",
        is_common_voice_folder,
        load_common_voice,
    ),
    DatasetLayout(
        LJSPEECH,
        "an LJSpeech-style folder (metadata.csv with id|text or id|text|normalized_text, no header; wavs/<id>.wav)",
        is_ljspeech_folder,
        load_ljspeech,
    ),
)
LAYOUTS_BY_NAME = {layout.name: layout for layout in LAYOUTS}
# The `--dataset_format` value that detects the layout from what `--dataset_name` holds.
AUTO = "auto"
# Every value `--dataset_format` takes.
DATASET_FORMATS = (AUTO, *LAYOUTS_BY_NAME)
DATASET_FORMAT_HELP = f"{AUTO} (detected from what the path holds); " + "; ".join(
    f"{layout.name}: {layout.description}" for layout in LAYOUTS
)
# Exactly one layout takes what no other recognizes (this unpacking fails otherwise).
(FALLBACK_LAYOUT,) = (layout for layout in LAYOUTS if layout.detects is None)


def check_dataset_format(flag: str, value: str) -> None:
    """Raises `DataError` when `value`, given to `flag` (`--dataset_format`, `--replay_dataset_format`), is not one
    of `DATASET_FORMATS`."""
    if value not in DATASET_FORMATS:
        raise DataError(f"{flag} must be one of {', '.join(DATASET_FORMATS)}, not {value!r}")


def detect_format(dataset_name: str) -> str:
    """The name of the first layout of `LAYOUTS` that recognizes `dataset_name`, else the one that takes the rest."""
    detected = next((layout for layout in LAYOUTS if layout.detects and layout.detects(dataset_name)), None)
    return (detected or FALLBACK_LAYOUT).name


def looks_like_path(dataset_name: str, dataset_format: str = AUTO) -> bool:
    """Whether `dataset_name` is meant as a local path, not a Hub dataset id (`recipe.hub_access.looks_like_path`);
    with `--dataset_format hub` only when it is plainly one (it starts with `.`, `/` or `~`, or ends with a
    separator)."""
    return plainly_a_path(dataset_name) if dataset_format == HUB else hub_looks_like_path(dataset_name)


def check_local_path(dataset_name: str, dataset_format: str = AUTO) -> None:
    """Raises `MissingInputError` when `dataset_name` looks like a path (`looks_like_path`) that does not exist, where
    the Hub would only answer that it has no such dataset."""
    if not looks_like_path(dataset_name, dataset_format) or os.path.exists(os.path.expanduser(dataset_name)):
        return
    absolute = os.path.abspath(os.path.expanduser(dataset_name))
    existing = os.path.dirname(absolute)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    hub = "" if plainly_a_path(dataset_name) else "; for the Hub dataset of that id, add --dataset_format hub"
    raise MissingInputError(
        f"{dataset_name}: no such folder ({absolute} does not exist; the nearest folder that does is {existing}). "
        f"Check the path given as --dataset_name (or --replay_dataset_name){hub}."
    )


def load_source(
    dataset_name: str,
    dataset_format: str = AUTO,
    dataset_config_name: str | None = None,
    audio_column_name: str = "audio",
    text_column_name: str = "text",
    speaker_id_column_name: str | None = None,
    cache_dir: str | None = None,
    *,
    token: str | None = None,
    allow_audio_outside_dataset: bool = False,
) -> Source:
    """Open `dataset_name` in the given (or detected) layout. Raises `MissingInputError` for a path that does not
    exist (`check_local_path`), `DataError` for a wrong layout, split or column.

    `token` (a Hub token, `--token`) is passed to `datasets.load_dataset` for private Hub datasets. A
    `dataset_config_name` is refused (`DataError`) for a layout that has no configurations: a Common Voice or
    LJSpeech folder, an audiofolder, a saved dataset or a parquet file. `allow_audio_outside_dataset` lets audio
    paths of a saved dataset or a parquet file lead out of its folder; it is refused (`DataError`) for the folder
    layouts (Common Voice, LJSpeech, audiofolder), whose metadata names clips inside the folder.
    """
    if not dataset_name:
        raise DataError("--dataset_name is required")
    check_dataset_format("--dataset_format", dataset_format)
    check_local_path(dataset_name, dataset_format)
    if dataset_format == AUTO:
        dataset_format = detect_format(dataset_name)
        logger.info("Detected dataset format %r for %s", dataset_format, dataset_name)
    options = LoadOptions(
        config_name=dataset_config_name,
        audio_column=audio_column_name,
        text_column=text_column_name,
        speaker_column=speaker_id_column_name,
        cache_dir=cache_dir,
        token=token,
        allow_outside=allow_audio_outside_dataset,
    )
    return LAYOUTS_BY_NAME[dataset_format].load(dataset_name, options)


def load_source_from_args(data_args, *, token: str | None = None) -> Source:
    """`load_source` with the dataset and column arguments of a `DataArguments` (and the Hub `token`, which is a
    model argument)."""
    return load_source(
        data_args.dataset_name,
        data_args.dataset_format,
        data_args.dataset_config_name,
        data_args.audio_column_name,
        data_args.text_column_name,
        data_args.speaker_id_column_name,
        data_args.cache_dir,
        token=token,
        allow_audio_outside_dataset=data_args.allow_audio_outside_dataset,
    )
