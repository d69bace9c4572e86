"""The two folder layouts of speech corpora as they are downloaded: how each is recognized and read.

- `common_voice`: a Common Voice language folder (`train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv`,
  `clips/*.mp3`); `sentence` is the text and `client_id` (or `--speaker_id_column_name`) the speaker.
- `ljspeech`: `metadata.csv` (`id|text` or `id|text|normalized_text`, no header) and `wavs/<id>.wav`; one speaker.

Their rows carry the audio path as the metadata writes it (`recipe.data.source.resolve_audio_path` resolves it in
the folder), and their fingerprint hashes the metadata files' bytes and the name, size and mtime of every audio file.
Neither has configurations or clips outside the folder: `--dataset_config_name` and `--allow_audio_outside_dataset`
are refused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os

import datasets

from recipe.data.source import (
    DataError,
    LoadOptions,
    Source,
    read_metadata_text,
    refuse_config_name,
    refuse_outside_audio,
)

# The layouts' names: `--dataset_format` values (`recipe.data.sources.LAYOUTS`) and `Source.format`
COMMON_VOICE = "common_voice"
LJSPEECH = "ljspeech"
COMMON_VOICE_SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")


def is_common_voice_folder(dataset_name: str) -> bool:
    """A folder with a `train.tsv` or `validated.tsv` and a `clips/` folder."""
    if not os.path.isdir(dataset_name):
        return False
    names = set(os.listdir(dataset_name))
    return bool(names & {"train.tsv", "validated.tsv"}) and "clips" in names


def is_ljspeech_folder(dataset_name: str) -> bool:
    """A folder with a `wavs/` folder and a `metadata.csv` whose first line is `|`-separated or, at least, not an
    audiofolder's header (which names a `file_name` column)."""
    if not os.path.isdir(dataset_name):
        return False
    names = set(os.listdir(dataset_name))
    if "metadata.csv" not in names or "wavs" not in names:
        return False
    # An audiofolder also has a metadata.csv, but comma-separated with a file_name header. A first line that is
    # neither is a broken LJSpeech line: `load_ljspeech` names it, where the audiofolder reader would only say that
    # the file_name column is missing. Bytes: the encoding is checked, with the line it fails on, when the file is
    # read (`read_metadata_text`).
    with open(os.path.join(dataset_name, "metadata.csv"), "rb") as handle:
        first_line = handle.readline()
    return b"|" in first_line or b"file_name" not in first_line


def _refuse_folder_options(folder: str, options: LoadOptions, layout: str) -> None:
    refuse_config_name(options.config_name, folder, f"a {layout} folder")
    refuse_outside_audio(options.allow_outside, folder, f"a {layout} folder")


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


def load_common_voice(folder: str, options: LoadOptions) -> Source:
    """A Common Voice language folder: one split per TSV present, `clips/` for the audio."""
    _refuse_folder_options(folder, options, COMMON_VOICE)
    speaker_column = options.speaker_column or "client_id"
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
        format=COMMON_VOICE,
    )


# How much of a metadata line an error message quotes.
QUOTED_LINE_CHARACTERS = 80


def _quoted(line: str) -> str:
    """`line` as an error message quotes it: shortened to `QUOTED_LINE_CHARACTERS`, in quotes."""
    if len(line) > QUOTED_LINE_CHARACTERS:
        line = line[: QUOTED_LINE_CHARACTERS - 3] + "..."
    return repr(line)


def _ljspeech_line_error(metadata: str, line_number: int, line: str) -> DataError:
    """The error for a `metadata.csv` line that is not `id|text` or `id|text|normalized_text`."""
    fields = line.split("|")
    if len(fields) == 1:
        problem = "no '|' between the clip id and its text"
    elif not fields[0]:
        problem = "no clip id before the first '|'"
    else:
        problem = f"{len(fields)} '|'-separated fields"
    hint = ""
    if line_number == 1 and len(fields) == 1:
        hint = " (an audiofolder's metadata.csv starts with a comma-separated header naming a file_name column)"
    return DataError(
        f"{metadata}:{line_number}: {problem} in {_quoted(line)}; each line of an LJSpeech metadata.csv is "
        f"'id|text' or 'id|text|normalized_text', the id naming wavs/<id>.wav{hint}"
    )


def load_ljspeech(folder: str, options: LoadOptions) -> Source:
    """An LJSpeech-style folder: `metadata.csv` (`id|text[|normalized_text]`) and `wavs/<id>.wav`; one speaker.

    The normalized text (third column) is used when present: it is what LJSpeech recipes train on (numbers and
    abbreviations written out).
    """
    _refuse_folder_options(folder, options, LJSPEECH)
    _require_folder(folder, "LJSpeech-style", ["metadata.csv", "wavs"])
    metadata = os.path.join(folder, "metadata.csv")
    ids, texts = [], []
    for line_number, line in enumerate(io.StringIO(read_metadata_text(metadata), newline=""), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0]:
            raise _ljspeech_line_error(metadata, line_number, line)
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
        format=LJSPEECH,
    )
