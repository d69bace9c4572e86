"""The `hub` layout: anything `datasets` opens, a Hub id, a saved dataset, parquet files or an audiofolder.

The audio column is cast to `Audio(decode=False)`: clips are decoded by `recipe.audio` (soundfile), never by the
`datasets` Audio decoder, which needs torchcodec. An audiofolder is read from its metadata alone (`file_name` becomes
the path-string `audio` column). The source's fingerprint is the `datasets` fingerprint of its splits, and for a local
dataset also the size and mtime of every audio file its rows name (`_files_fingerprint`), so that an edited, replaced
or deleted clip means new features.

A Hub id is checked before `datasets` is asked for it (`recipe.hub_access.check_hub_name`): with no network it fails
at once with one line naming `--dataset_name`, and with `HF_HUB_OFFLINE` set a dataset that is not in the cache is
named as such (`_offline_miss`), instead of `datasets`' retries and raw `ConnectionError`.
"""

from __future__ import annotations

import hashlib
import logging
import os

import datasets
import pyarrow.compute as pc
from datasets.naming import camelcase_to_snakecase

from recipe.data.source import (
    DataError,
    LoadOptions,
    Source,
    refuse_config_name,
    refuse_outside_audio,
    resolve_audio_path,
)
from recipe.errors import InputError, UnavailableError
from recipe.hub_access import check_hub_name, in_hub_cache, offline_miss

logger = logging.getLogger(__name__)

# The layout's name: a `--dataset_format` value (`recipe.data.sources.LAYOUTS`) and `Source.format`
HUB = "hub"
# Split names that count as a held-out evaluation split when `--eval_split_name` is not given, in order of preference.
EVAL_SPLIT_CANDIDATES = ("validation", "dev", "valid", "eval")
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
# the flag a dataset's name comes from, for the messages
DATASET_FLAG = "--dataset_name"


def _local_root(dataset_name: str) -> str | None:
    if os.path.isdir(dataset_name):
        return os.path.realpath(dataset_name)
    if os.path.isfile(dataset_name):
        return os.path.realpath(os.path.dirname(dataset_name) or ".")
    return None


def _open_hub_dataset(
    dataset_name: str, config_name: str | None, cache_dir: str | None, token: str | None = None
) -> datasets.DatasetDict:
    is_saved = os.path.isdir(dataset_name) and (
        os.path.isfile(os.path.join(dataset_name, "dataset_dict.json"))
        or os.path.isfile(os.path.join(dataset_name, "state.json"))
    )
    if is_saved:
        refuse_config_name(config_name, dataset_name, "a saved dataset (save_to_disk)")
        loaded = datasets.load_from_disk(dataset_name)
    elif os.path.isfile(dataset_name) and dataset_name.endswith(".parquet"):
        refuse_config_name(config_name, dataset_name, "a parquet file")
        loaded = datasets.load_dataset("parquet", data_files=dataset_name, cache_dir=cache_dir)
    else:
        check_hub_name(dataset_name, DATASET_FLAG, "dataset", cache=_datasets_cache(cache_dir))
        try:
            loaded = datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir, token=token)
        except OSError as error:  # offline: ConnectionError (OfflineModeIsEnabled), or a DatasetNotFoundError
            offline = _offline_miss(dataset_name, cache_dir)
            if offline is not None:
                raise offline from error
            raise
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _datasets_cache(cache_dir: str | None) -> str:
    return os.path.expanduser(str(cache_dir or datasets.config.HF_DATASETS_CACHE))


def _offline_miss(dataset_name: str, cache_dir: str | None) -> UnavailableError | None:
    """The `UnavailableError` of a Hub dataset that is not cached while offline, else `None` (`offline_miss`): in
    `datasets`' cache (`<cache>/<owner>___<name>`, as `datasets` names a loaded Hub dataset) or the Hub's."""
    cache = _datasets_cache(cache_dir)
    owner_and_name = dataset_name.split("/")
    owner_and_name[-1] = camelcase_to_snakecase(owner_and_name[-1])
    cached = os.path.isdir(os.path.join(cache, "___".join(owner_and_name))) or in_hub_cache(dataset_name, "dataset")
    return offline_miss(dataset_name, DATASET_FLAG, "dataset", cached=cached, cache=cache)


def _audiofolder_metadata(folder: str) -> dict[str, str]:
    """Split name -> metadata file of an audiofolder (`metadata.csv` / `.jsonl` with a `file_name` column), at the
    top of `folder` (one split, `train`) or in one sub-folder per split. Empty for anything else."""
    if not os.path.isdir(folder):
        return {}
    for name in AUDIOFOLDER_METADATA:
        if os.path.isfile(os.path.join(folder, name)):
            return {"train": os.path.join(folder, name)}
    found = {}
    for split in sorted(os.listdir(folder)):
        for name in AUDIOFOLDER_METADATA:
            if os.path.isfile(os.path.join(folder, split, name)):
                found[split] = os.path.join(folder, split, name)
                break
    return found


def _load_audiofolder(metadata_files: dict[str, str], folder: str, cache_dir: str | None) -> datasets.DatasetDict:
    """An audiofolder read from its metadata alone, with `file_name` as the (path string) `audio` column.

    `datasets`' own audiofolder builder encodes every clip with torchcodec, which this recipe does not need; the
    metadata files are plain CSV / JSON lines that its `csv` and `json` builders read (and cache) as they are.
    """
    splits = {}
    for split, path in metadata_files.items():
        builder = "csv" if path.endswith(".csv") else "json"
        loaded = datasets.load_dataset(builder, data_files={split: path}, cache_dir=cache_dir)[split]
        if "file_name" not in loaded.column_names:
            raise DataError(
                f"{path}: an audiofolder metadata file needs a 'file_name' column; it has {loaded.column_names}"
            )
        prefix = os.path.relpath(os.path.dirname(path), folder)
        if prefix != ".":
            loaded = loaded.map(
                lambda name, prefix: {"file_name": os.path.join(prefix, name)},
                input_columns="file_name",
                fn_kwargs={"prefix": prefix},
            )
        splits[split] = loaded.rename_column("file_name", "audio") if "audio" not in loaded.column_names else loaded
    return datasets.DatasetDict(splits)


def audio_path_entries(split: datasets.Dataset, audio_column: str) -> list[str]:
    """The entries of `split`'s audio column that name a file: every entry of a path-string column, and the `path` of
    each `{"bytes", "path"}` entry without bytes (as `Dataset.to_parquet` writes an Audio column of local files)."""
    feature = split.features[audio_column]
    if isinstance(feature, datasets.Value):
        return [str(entry or "") for entry in split[audio_column]]
    if isinstance(feature, datasets.Audio):
        # read through Arrow: a Python list of the column would copy every clip's bytes
        column = split.with_format("arrow")[audio_column]
        without_bytes = pc.is_null(pc.struct_field(column, "bytes"))
        return [str(path or "") for path in pc.filter(pc.struct_field(column, "path"), without_bytes).to_pylist()]
    return []


def _files_fingerprint(
    metadata_files: list[str],
    splits: dict[str, datasets.Dataset],
    audio_column: str,
    root: str,
    allow_outside: bool = False,
    base: str = "",
) -> str:
    """Hash of `base`, of the metadata files' bytes and of the size and mtime of every audio file the splits name (in
    any sub-folder, or anywhere with `allow_outside`), so that an edited, replaced or deleted clip means new
    features."""
    digest = hashlib.sha256(base.encode())
    for path in metadata_files:
        digest.update(os.path.abspath(path).encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    for name, split in sorted(splits.items()):
        entries = audio_path_entries(split, audio_column)
        if not entries:
            continue  # clips held as bytes: they are part of the dataset's own fingerprint
        digest.update(f"split {name}\n".encode())
        for entry in entries:
            path = resolve_audio_path(entry, root, root, allow_outside=allow_outside)
            if path is None:
                state = "outside the dataset"
            else:
                try:
                    stat = os.stat(path)
                    state = f"{stat.st_size}\0{stat.st_mtime_ns}"
                except (FileNotFoundError, NotADirectoryError):
                    state = "missing"  # counted as `missing_file` when the clips are featurized
            digest.update(f"{entry}\0{state}\n".encode())
    return digest.hexdigest()


def load_hub(dataset_name: str, options: LoadOptions) -> Source:
    """A dataset `datasets` can open, with its audio column cast to `Audio(decode=False)` when it is an Audio one.

    `options.allow_outside` (`--allow_audio_outside_dataset`) lets audio paths lead out of a local dataset's folder;
    it is refused for an audiofolder, and so is a configuration name for anything but a Hub dataset.
    """
    audio_column, text_column, speaker_column = options.audio_column, options.text_column, options.speaker_column
    metadata_files = _audiofolder_metadata(dataset_name)
    try:
        if metadata_files:
            refuse_config_name(options.config_name, dataset_name, "an audiofolder")
            refuse_outside_audio(options.allow_outside, dataset_name, "an audiofolder")
            loaded = _load_audiofolder(metadata_files, dataset_name, options.cache_dir)
        else:
            loaded = _open_hub_dataset(dataset_name, options.config_name, options.cache_dir, options.token)
    except InputError:
        raise  # its own message names the dataset and the flag (a path that is not there, the Hub unavailable)
    except FileNotFoundError as error:
        raise DataError(f"Cannot open dataset {dataset_name!r}: {error}") from error
    splits = {}
    for name, split in loaded.items():
        columns = split.column_names
        wanted = {"--audio_column_name": audio_column, "--text_column_name": text_column}
        if speaker_column:
            wanted["--speaker_id_column_name"] = speaker_column
        for flag, column in wanted.items():
            if column not in columns:
                raise DataError(
                    f"{flag} {column!r} is not a column of {dataset_name} ({name}); its columns are {columns}"
                )
        if isinstance(split.features[audio_column], datasets.Audio):
            split = split.cast_column(audio_column, datasets.Audio(decode=False))
        splits[name] = split
    default_eval = next((name for name in EVAL_SPLIT_CANDIDATES if name in splits), None)
    root = _local_root(dataset_name)
    if options.allow_outside and root is None:
        logger.warning(
            "--allow_audio_outside_dataset has no effect for %s: it is not a local folder or file, so its audio paths "
            "are read as they are, with or without the flag",
            dataset_name,
        )
    if metadata_files:  # the clips are the files the metadata lists: their sizes and mtimes are part of the content
        fingerprint = _files_fingerprint(sorted(metadata_files.values()), splits, audio_column, root)
    else:
        fingerprint = "\n".join(f"{name}:{split._fingerprint}" for name, split in sorted(splits.items()))
        if root is not None:
            # a local dataset may name its clips by path: then the files are part of its content as well
            fingerprint = _files_fingerprint([], splits, audio_column, root, options.allow_outside, base=fingerprint)
        else:
            fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()
    return Source(
        splits=splits,
        audio_column=audio_column,
        text_column=text_column,
        speaker_column=speaker_column,
        root=root,
        audio_dir=root,
        fingerprint=fingerprint,
        default_eval_split=default_eval,
        format=HUB,
        allow_outside=options.allow_outside and root is not None,
    )
