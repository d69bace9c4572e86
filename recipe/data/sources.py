"""Where the clips come from: one `datasets.Dataset` per split with an audio, a text and a speaker column.

Three layouts, picked by `--dataset_format` or detected from what `--dataset_name` holds:

- `hub`: anything `datasets.load_dataset` or `load_from_disk` takes (a Hub id, a saved dataset, parquet files, an
  audiofolder). The audio column is cast to `Audio(decode=False)`: clips are decoded by `recipe.audio` (soundfile),
  never by the `datasets` Audio decoder, which needs torchcodec.
- `common_voice`: a Common Voice language folder as downloaded (`train.tsv`, `dev.tsv`, `test.tsv`,
  `validated.tsv`, `clips/*.mp3`); `sentence` is the text and `client_id` the speaker.
- `ljspeech`: `metadata.csv` (`id|text` or `id|text|normalized_text`, no header) and `wavs/<id>.wav`.

Nothing is decoded here; the rows only name their audio. Rows of the two folder layouts carry the path written in
the metadata, resolved against the folder by `resolve_audio_path`, which refuses paths that leave it (a saved dataset
or parquet file may name audio elsewhere with `--allow_audio_outside_dataset`). Metadata files are read as UTF-8
(a byte-order mark is dropped); another encoding stops with the file and line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import os
from dataclasses import dataclass

import datasets
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

FORMATS = ("auto", "hub", "common_voice", "ljspeech")
COMMON_VOICE_SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")
# Split names that count as a held-out evaluation split when `--eval_split_name` is not given, in order of preference.
EVAL_SPLIT_CANDIDATES = ("validation", "dev", "valid", "eval")


class DataError(ValueError):
    """Input data that cannot be used: the message says which file, column or value, and what was expected."""


@dataclass
class Source:
    """The raw clips of a dataset, split by split, and how to read them.

    Args:
        splits (`dict[str, datasets.Dataset]`): every split the source has, by name.
        audio_column (`str`): an `Audio(decode=False)` struct (`{"bytes", "path"}`) or a path string.
        text_column (`str`): the transcription.
        speaker_column (`str`, *optional*): the speaker id, if the source has one.
        root (`str`, *optional*): the dataset folder; a path-string audio entry must resolve inside it.
            `None` for Hub datasets, whose files live in the `datasets` cache.
        audio_dir (`str`, *optional*): folder that relative audio paths are resolved against (defaults to `root`).
        audio_suffix (`str`, *optional*): appended to each audio entry (LJSpeech names clips by id, without `.wav`).
        default_eval_split (`str`, *optional*): the source's own dev / validation split, if it has one.
        fingerprint (`str`): changes whenever the source's content changes; part of the feature cache key.
        format (`str`, *optional*, defaults to `"hub"`): the layout it was read as (`hub`, `common_voice`, `ljspeech`).
        allow_outside (`bool`, *optional*, defaults to `False`): audio paths may lead outside `root`
            (`--allow_audio_outside_dataset`; only ever set for a saved dataset or a parquet file).
    """

    splits: dict[str, datasets.Dataset]
    audio_column: str
    text_column: str
    speaker_column: str | None
    root: str | None
    fingerprint: str
    audio_dir: str | None = None
    audio_suffix: str = ""
    default_eval_split: str | None = None
    format: str = "hub"
    allow_outside: bool = False

    def split(self, name: str) -> datasets.Dataset:
        if name not in self.splits:
            raise DataError(f"Split {name!r} not found; the dataset has splits {sorted(self.splits)}")
        return self.splits[name]


def detect_format(dataset_name: str) -> str:
    """`common_voice`, `ljspeech` or `hub`, from the files a local folder holds (`hub` for anything else)."""
    if not os.path.isdir(dataset_name):
        return "hub"
    names = set(os.listdir(dataset_name))
    if names & {"train.tsv", "validated.tsv"} and "clips" in names:
        return "common_voice"
    if "metadata.csv" in names and "wavs" in names:
        # An audiofolder also has a metadata.csv, but comma-separated with a file_name header, and no wavs/ folder.
        # Bytes: the encoding is checked, with the line it fails on, when the file is read (`read_metadata_text`).
        with open(os.path.join(dataset_name, "metadata.csv"), "rb") as handle:
            if b"|" in handle.readline():
                return "ljspeech"
    return "hub"


def read_metadata_text(path: str) -> str:
    """The text of a metadata file (`metadata.csv`, a Common Voice TSV): UTF-8, without a leading byte-order mark.

    Raises:
        `DataError` naming the file and the line of the first byte that is not UTF-8.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    # a leading BOM, which an editor may save, would otherwise stick to the first clip id or the first column name
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line_end = data.find(b"\n", error.start)
        line = data[line_start : line_end if line_end >= 0 else len(data)].decode("utf-8", errors="replace")
        utf16 = data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        encoding, iconv = ("UTF-16", "UTF-16") if utf16 else ("e.g. Latin-1 or Windows-1252", "LATIN1")
        raise DataError(
            f"{path}:{line_number}: byte {data[error.start]:#04x} is not UTF-8 ({line.strip()!r}); the file seems to "
            f"be in another encoding ({encoding}): save it as UTF-8, e.g. `iconv -f {iconv} -t UTF-8`"
        ) from error


def load_source(
    dataset_name: str,
    dataset_format: str = "auto",
    dataset_config_name: str | None = None,
    audio_column_name: str = "audio",
    text_column_name: str = "text",
    speaker_id_column_name: str | None = None,
    cache_dir: str | None = None,
    *,
    token: str | None = None,
    allow_audio_outside_dataset: bool = False,
) -> Source:
    """Open `dataset_name` in the given (or detected) layout. Raises `DataError` for a wrong path or column.

    `token` (a Hub token, `--token`) is passed to `datasets.load_dataset` for private Hub datasets. A
    `dataset_config_name` is refused (`DataError`) for a layout that has no configurations: a Common Voice or
    LJSpeech folder, an audiofolder, a saved dataset or a parquet file. `allow_audio_outside_dataset` lets audio
    paths of a saved dataset or a parquet file lead out of its folder; it is refused (`DataError`) for the folder
    layouts (Common Voice, LJSpeech, audiofolder), whose metadata names clips inside the folder.
    """
    if not dataset_name:
        raise DataError("--dataset_name is required")
    if dataset_format not in FORMATS:
        raise DataError(f"--dataset_format must be one of {FORMATS}, not {dataset_format!r}")
    if dataset_format == "auto":
        dataset_format = detect_format(dataset_name)
        logger.info("Detected dataset format %r for %s", dataset_format, dataset_name)
    if dataset_format in ("common_voice", "ljspeech"):
        _refuse_config_name(dataset_config_name, dataset_name, f"a {dataset_format} folder")
        _refuse_outside_audio(allow_audio_outside_dataset, dataset_name, f"a {dataset_format} folder")
    if dataset_format == "common_voice":
        return load_common_voice(dataset_name, speaker_id_column_name or "client_id")
    if dataset_format == "ljspeech":
        return load_ljspeech(dataset_name)
    return load_hub(
        dataset_name,
        dataset_config_name,
        audio_column_name,
        text_column_name,
        speaker_id_column_name,
        cache_dir,
        token=token,
        allow_outside=allow_audio_outside_dataset,
    )


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


def _refuse_config_name(config_name: str | None, dataset_name: str, layout: str) -> None:
    """A configuration name would be silently ignored by a layout that has none: stop instead."""
    if config_name:
        raise DataError(
            f"--dataset_config_name {config_name!r} has no meaning for {dataset_name}, {layout} (only a Hub dataset "
            "or a dataset script has configurations): leave it out"
        )


def _refuse_outside_audio(allow: bool, dataset_name: str, layout: str) -> None:
    """`--allow_audio_outside_dataset` has no use where the metadata names clips in the folder: stop instead."""
    if allow:
        raise DataError(
            f"--allow_audio_outside_dataset is for a saved dataset or a parquet file whose audio column holds paths "
            f"elsewhere; {dataset_name} is {layout}, whose clips must be inside it: leave the flag out (and move or "
            "link the clips into the folder)"
        )


def _require_folder(folder: str, layout: str, required: list[str]) -> None:
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is not a folder (expected a {layout} folder)")
    missing = [name for name in required if not os.path.exists(os.path.join(folder, name))]
    if missing:
        raise DataError(f"{folder} is not a {layout} folder: missing {missing}; it holds {sorted(os.listdir(folder))}")


def _folder_fingerprint(files: list[str], audio_dir: str) -> str:
    """Hash of the metadata files' bytes and of the name, size and mtime of every file in `audio_dir`."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.abspath(path).encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    digest.update(os.path.abspath(audio_dir).encode())
    with os.scandir(audio_dir) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            stat = entry.stat()
            digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_common_voice(folder: str, speaker_column: str = "client_id") -> Source:
    """A Common Voice language folder: one split per TSV present, `clips/` for the audio."""
    _require_folder(folder, "Common Voice", ["clips"])
    tsv_files = {split: os.path.join(folder, f"{split}.tsv") for split in COMMON_VOICE_SPLITS}
    tsv_files = {split: path for split, path in tsv_files.items() if os.path.isfile(path)}
    if not tsv_files:
        raise DataError(f"{folder} holds no Common Voice TSV ({', '.join(s + '.tsv' for s in COMMON_VOICE_SPLITS)})")
    splits = {}
    for split, path in tsv_files.items():
        # Common Voice TSVs are not quoted: a sentence may hold a lone double quote.
        reader = csv.DictReader(
            io.StringIO(read_metadata_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE
        )
        columns = reader.fieldnames or []
        missing = [name for name in ("path", "sentence", speaker_column) if name not in columns]
        if missing:
            raise DataError(f"{path}: no column {missing}; its columns are {columns}")
        rows = list(reader)
        splits[split] = datasets.Dataset.from_dict(
            {
                "path": [row["path"] or "" for row in rows],
                "sentence": [row["sentence"] or "" for row in rows],
                "speaker": [row[speaker_column] or "" for row in rows],
            },
            features=datasets.Features(
                {
                    "path": datasets.Value("string"),
                    "sentence": datasets.Value("string"),
                    "speaker": datasets.Value("string"),
                }
            ),
        )
    clips = os.path.join(folder, "clips")
    return Source(
        splits=splits,
        audio_column="path",
        text_column="sentence",
        speaker_column="speaker",
        root=os.path.realpath(folder),
        audio_dir=os.path.realpath(clips),
        fingerprint=_folder_fingerprint(list(tsv_files.values()), clips),
        default_eval_split="dev" if "dev" in splits else None,
        format="common_voice",
    )


def load_ljspeech(folder: str) -> Source:
    """An LJSpeech-style folder: `metadata.csv` (`id|text[|normalized_text]`) and `wavs/<id>.wav`; one speaker.

    The normalized text (third column) is used when present: it is what LJSpeech recipes train on (numbers and
    abbreviations written out).
    """
    _require_folder(folder, "LJSpeech-style", ["metadata.csv", "wavs"])
    metadata = os.path.join(folder, "metadata.csv")
    ids, texts = [], []
    for line_number, line in enumerate(io.StringIO(read_metadata_text(metadata), newline=""), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0]:
            raise DataError(f"{metadata}:{line_number}: expected 'id|text' or 'id|text|normalized_text', got {line!r}")
        ids.append(fields[0])
        texts.append(fields[2] if len(fields) == 3 and fields[2] else fields[1])
    if not ids:
        raise DataError(f"{metadata} lists no clips")
    wavs = os.path.join(folder, "wavs")
    split = datasets.Dataset.from_dict(
        {"id": ids, "text": texts},
        features=datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string")}),
    )
    return Source(
        splits={"train": split},
        audio_column="id",
        text_column="text",
        speaker_column=None,
        root=os.path.realpath(folder),
        audio_dir=os.path.realpath(wavs),
        audio_suffix=".wav",
        fingerprint=_folder_fingerprint([metadata], wavs),
        format="ljspeech",
    )


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
        _refuse_config_name(config_name, dataset_name, "a saved dataset (save_to_disk)")
        loaded = datasets.load_from_disk(dataset_name)
    elif os.path.isfile(dataset_name) and dataset_name.endswith(".parquet"):
        _refuse_config_name(config_name, dataset_name, "a parquet file")
        loaded = datasets.load_dataset("parquet", data_files=dataset_name, cache_dir=cache_dir)
    else:
        loaded = datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir, token=token)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")


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


def load_hub(
    dataset_name: str,
    config_name: str | None,
    audio_column: str,
    text_column: str,
    speaker_column: str | None,
    cache_dir: str | None,
    *,
    token: str | None = None,
    allow_outside: bool = False,
) -> Source:
    """A dataset `datasets` can open, with its audio column cast to `Audio(decode=False)` when it is an Audio one.

    `allow_outside` (`--allow_audio_outside_dataset`) lets audio paths lead out of a local dataset's folder; it is
    refused for an audiofolder.
    """
    metadata_files = _audiofolder_metadata(dataset_name)
    try:
        if metadata_files:
            _refuse_config_name(config_name, dataset_name, "an audiofolder")
            _refuse_outside_audio(allow_outside, dataset_name, "an audiofolder")
            loaded = _load_audiofolder(metadata_files, dataset_name, cache_dir)
        else:
            loaded = _open_hub_dataset(dataset_name, config_name, cache_dir, token)
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
    if allow_outside and root is None:
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
            fingerprint = _files_fingerprint([], splits, audio_column, root, allow_outside, base=fingerprint)
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
        format="hub",
        allow_outside=allow_outside and root is not None,
    )


def resolve_audio_path(
    entry: str, source_root: str | None, audio_dir: str | None, suffix: str = "", *, allow_outside: bool = False
) -> str | None:
    """The real path of a metadata audio entry, or `None` when it points outside the dataset folder.

    Relative entries are resolved against `audio_dir`; symlinks are followed before the check, so a link that
    leads out of the folder is refused as well. Without a `source_root` (Hub datasets) the entry is used as is.
    With `allow_outside` (`--allow_audio_outside_dataset`) a path anywhere is returned.
    """
    path = entry + suffix
    if source_root is None:
        return path
    resolved = os.path.realpath(os.path.join(audio_dir or source_root, path))
    if not allow_outside and os.path.commonpath([resolved, source_root]) != source_root:
        return None
    return resolved
