"""What a dataset layout's loader gives and the rules every layout follows.

A loader (one per entry of `recipe.data.sources.LAYOUTS`) turns a `--dataset_name` and its `LoadOptions` into a
`Source`: one `datasets.Dataset` per split with an audio, a text and a speaker column. Nothing is decoded; the rows
only name their audio. An audio path written in the metadata is resolved against the dataset folder by
`resolve_audio_path`, which refuses a path that leaves it (a saved dataset or parquet file may name audio elsewhere
with `--allow_audio_outside_dataset`). Metadata files are read as UTF-8 (`read_metadata_text`: a byte-order mark is
dropped, another encoding stops with the file and line). A flag a layout has no use for is refused, never ignored
(`refuse_config_name`, `refuse_outside_audio`).
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass

import datasets

from recipe.errors import InputError


class DataError(InputError, ValueError):
    """Input data that cannot be used: the message says which file, column or value, and what was expected."""


@dataclass(frozen=True)
class LoadOptions:
    """What a layout's loader may need besides the dataset's name; each layout reads the options it has a use for
    and refuses the ones it would otherwise ignore.

    Args:
        config_name (`str`, *optional*): `--dataset_config_name`.
        audio_column (`str`): `--audio_column_name`.
        text_column (`str`): `--text_column_name`.
        speaker_column (`str`, *optional*): `--speaker_id_column_name`.
        cache_dir (`str`, *optional*): `--cache_dir`, where `datasets` keeps what it downloads and converts.
        token (`str`, *optional*): the Hub token (`--token`) for a private Hub dataset.
        allow_outside (`bool`): `--allow_audio_outside_dataset`.
    """

    config_name: str | None
    audio_column: str
    text_column: str
    speaker_column: str | None
    cache_dir: str | None
    token: str | None
    allow_outside: bool


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
        format (`str`): the name of the layout it was read as (an entry of `recipe.data.sources.LAYOUTS`); part of
            the feature cache key.
        allow_outside (`bool`, *optional*, defaults to `False`): audio paths may lead outside `root`
            (`--allow_audio_outside_dataset`; only ever set for a saved dataset or a parquet file).
    """

    splits: dict[str, datasets.Dataset]
    audio_column: str
    text_column: str
    speaker_column: str | None
    root: str | None
    fingerprint: str
    format: str
    audio_dir: str | None = None
    audio_suffix: str = ""
    default_eval_split: str | None = None
    allow_outside: bool = False

    def split(self, name: str) -> datasets.Dataset:
        if name not in self.splits:
            raise DataError(f"Split {name!r} not found; the dataset has splits {sorted(self.splits)}")
        return self.splits[name]


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


def refuse_config_name(config_name: str | None, dataset_name: str, layout: str) -> None:
    """A configuration name would be silently ignored by a layout that has none: stop instead."""
    if config_name:
        raise DataError(
            f"--dataset_config_name {config_name!r} has no meaning for {dataset_name}, {layout} (only a Hub dataset "
            "or a dataset script has configurations): leave it out"
        )


def refuse_outside_audio(allow: bool, dataset_name: str, layout: str) -> None:
    """`--allow_audio_outside_dataset` has no use where the metadata names clips in the folder: stop instead."""
    if allow:
        raise DataError(
            f"--allow_audio_outside_dataset is for a saved dataset or a parquet file whose audio column holds paths "
            f"elsewhere; {dataset_name} is {layout}, whose clips must be inside it: leave the flag out (and move or "
            "link the clips into the folder)"
        )
