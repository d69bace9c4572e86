"""From a dataset on disk or on the Hub to filtered, Arrow-cached training features, with every lost clip accounted for.

    from recipe.data.pipeline import prepare_datasets
    features, report = prepare_datasets(data_args, tokenizer, model.config, output_dir)

Steps, for the training split and the eval split (or the one of them a caller asks for with `splits=`):

1. open the source (`recipe.data.sources`): a Hub / saved / parquet / audiofolder dataset, a Common Voice folder or an
   LJSpeech folder;
2. pick the speaker(s) (`--speaker_id ID` or `top`) and the eval split (the source's dev split, else a fixed
   `--eval_fraction` of the selected training clips);
3. normalize and tokenize every text (`recipe.text`, in a first `datasets.map`) and stop before any audio is decoded
   when more than `--max_text_not_in_vocabulary_fraction` of a split loses letters or digits to the vocabulary
   (`recipe.data.text_screening`);
4. in `datasets.map` (`--preprocessing_num_workers` processes for a split of at least `MIN_CLIPS_PER_WORKER` clips per
   worker; a smaller split runs in the main process, where a pool costs more than it saves): decode with
   `recipe.audio` (soundfile + soxr, at the model's sampling rate), screen the audio (`recipe.data.audio_screening`: cut files,
   NaN / inf samples, silence, clipping), compute the log-mel target, and give every clip that cannot be used exactly
   one drop reason (`too_many_tokens` covers a text over `--max_tokens_length` and one with more tokens than the clip
   has spectrogram frames, which no monotonic alignment can fit);
5. the map writes its Arrow files straight into `<cache_dir>/vits_features/<key>/` (one Arrow table per batch of
   clips; dropped clips are empty rows that `features.json` tells the loader to skip), where the key hashes the
   source's content and every argument that changes the features: a second run with the same arguments loads it
   memory-mapped and skips steps 2-4. A second worker pays only with an idle core for it (`benchmarks/README.md`);
6. apply `--max_train_samples` / `--max_eval_samples`, write `<output_dir>/data_report.json`, print its summary and
   stop with a `DataError` when too many clips are bad or a split is left empty.

Cached columns, one row per clip: `input_ids`, `waveform` (float32 at the model rate), `log_mel` (`(frames, 80)`,
frames = samples // hop), `waveform_length`, `mel_length`, `tokens_length`, `speaker_id` (a `ClassLabel`: its
`names` are the speaker ids of the source), `text` (normalized, what the model reads), `source_text` (as written in
the source: what speech recognition is scored against) and `path`. The linear spectrogram the posterior
encoder reads is not cached: it is computed from `waveform` on the device in the training step (`recipe.audio`).
Measured with `scripts/measure_feature_cache.py`: the cache as built takes about 305 MB per hour of audio; with the
linear spectrogram (513 float32 per frame) it would take about 765 MB, 2.5 times as much, to save one STFT per step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass

import datasets
import numpy as np
import pyarrow as pa
import torch

from recipe.audio import (
    AudioDecodeError,
    SpectrogramConfig,
    audio_duration,
    decode_audio,
    log_mel_spectrogram,
    resample,
    to_mono,
)
from recipe.data.audio_screening import AudioLevels, AudioScreening, broken_reason, level_reason, measure_levels
from recipe.data.feature_table import rows_to_table
from recipe.data.sources import DataError, Source, load_source_from_args, resolve_audio_path
from recipe.data.text_screening import lost_characters, text_loss_error
from recipe.folders import publish_folder
from recipe.text import encode_text_with_dropped, summarize_dropped_characters

__all__ = ["DROP_REASONS", "DataError", "format_report", "prepare_datasets"]

logger = logging.getLogger(__name__)

# Every reason a clip can be left out, in the order they are checked: each clip gets the first that applies.
DROP_REASONS = (
    "path_outside_dataset",
    "speaker_filtered",
    "missing_file",
    "decode_error",
    # the decoder stopped more than --truncation_tolerance short of the length the header declares (a cut file)
    "truncated",
    "non_finite_audio",
    "too_short",
    "too_long",
    # no 50 ms frame above --silence_threshold_db
    "silent",
    # more than --max_clipped_fraction of the samples at full scale
    "clipped",
    # the tokenizer deletes a letter or digit of the text (unless --keep_clips_with_dropped_characters)
    "text_not_in_vocabulary",
    "empty_text",
    # more tokens than --max_tokens_length, or more tokens than audio (spectrogram) frames
    "too_many_tokens",
)
# Reasons that mean broken input (as opposed to a filter doing its job); their share is bounded by --max_bad_fraction.
# Each of them is checked before the filters, so that a broken file is never counted as, say, `too_short`.
BAD_REASONS = ("path_outside_dataset", "missing_file", "decode_error", "truncated", "non_finite_audio")
MAX_EXAMPLES = 10
# Bump when the feature computation or the cache layout changes, so that old caches are not reused.
FEATURE_VERSION = 5
# A split with fewer clips per requested worker is featurized in the main process: `datasets`' pool (forks, a manager
# process and its queue polls, the shard merge) costs 150-190 ms per split (benchmarks/README.md), what a second
# worker saves on 45-120 clips when it has a core to itself, and more than it saves when it has not.
MIN_CLIPS_PER_WORKER = 128
# Clips per `datasets.map` batch: each batch is one Arrow table (`featurize_batch`). Small, so that a batch of 30 s
# clips holds about 40 MB of features.
FEATURE_BATCH_SIZE = 16
# The cache folder: one Arrow file (or one per worker) per split as `datasets.map` wrote it, and this manifest.
CACHE_MANIFEST = "features.json"
# The splits `prepare_datasets` returns, in this order; a caller may ask for a subset (`splits=`).
SPLITS = ("train", "eval")
# Seed of the permutation that picks the --eval_fraction hold-out: the same data always gives the same split.
EVAL_HOLDOUT_SEED = 1234
INTERNAL_COLUMNS = ("drop_reason", "dropped_characters", "num_characters", "clipped_fraction")
# What the text pass (`encode_texts`) computes for each clip of a split, and `featurize` reads: each text is encoded once,
# before any audio is decoded, so that a vocabulary that misses letters stops the run in seconds.
TEXT_FEATURES = {
    "__model_text": datasets.Value("string"),
    "__input_ids": datasets.List(datasets.Value("int32")),
    "__dropped_characters": datasets.Value("string"),
    "__num_characters": datasets.Value("int64"),
}
# Texts per batch of the text pass.
TEXT_BATCH_SIZE = 256
# Clips whose text uroman changed, shown before and after in the report (a reader checks the romanization by eye).
MAX_UROMAN_EXAMPLES = 5


@dataclass(frozen=True)
class FeatureSettings:
    """What `featurize` needs besides the row; picklable, so that `datasets.map` can ship it to worker processes."""

    audio_column: str
    text_column: str
    speaker_column: str | None
    source_root: str | None
    audio_dir: str | None
    audio_suffix: str
    spectrogram: SpectrogramConfig
    min_seconds: float
    max_seconds: float
    max_tokens: int
    # None: every speaker is kept; else the kept speaker ids (with their ClassLabel indices in `speaker_names`).
    selected_speakers: tuple[str, ...] | None
    speaker_names: tuple[str, ...]
    # Set torch to one thread in worker processes (the main process does it around the map, see `_one_torch_thread`).
    single_thread: bool
    screening: AudioScreening = AudioScreening()
    # --keep_clips_with_dropped_characters: a text that loses letters or digits is trained on as the tokenizer left it
    keep_dropped_characters: bool = False
    # --allow_audio_outside_dataset (a saved / parquet dataset only, see `recipe.data.sources`)
    allow_outside: bool = False


@contextlib.contextmanager
def _one_torch_thread():
    """Run torch on one thread, then restore the caller's setting.

    A clip's spectrogram is a few small tensors: on a busy machine torch's intra-op threads spend 1000 times
    longer waiting for each other than computing (17 ms instead of 15 us for one `pow` on 2 cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _audio_path(audio, settings: FeatureSettings) -> tuple[str | None, str]:
    """The file a row's audio entry names (`None` when it leads outside the dataset), and the entry as written.

    An entry that holds the clip's bytes names no file: `(None, entry)`, with the caller decoding the bytes.
    """
    if isinstance(audio, dict):  # Audio(decode=False): {"bytes": ..., "path": ...}
        entry = audio.get("path") or ""
        if audio.get("bytes") is not None:
            return None, entry
    else:
        entry = str(audio or "")
    if not entry:
        return "", entry
    path = resolve_audio_path(
        entry, settings.source_root, settings.audio_dir, settings.audio_suffix, allow_outside=settings.allow_outside
    )
    return path, entry


def _decode(
    audio, path: str | None, settings: FeatureSettings
) -> tuple[np.ndarray | None, str, str, AudioLevels | None]:
    """Decoded samples at the model rate, the clip's display path, a drop reason ("" when decoded and whole) and the
    clip's levels (`None` unless decoded and whole).

    `audio` is the row's audio entry and `path` the file it resolves to (`_audio_path`; `None` for bytes, `""` for an
    empty entry). A broken file (`missing_file`, `decode_error`, `truncated`, `non_finite_audio`) gets its reason here,
    before any filter can count it as something else.
    """
    if isinstance(audio, dict) and audio.get("bytes") is not None:
        entry = audio.get("path") or ""
        source, name, shown = audio["bytes"], entry or None, entry
    elif not path:
        return None, path or "", "missing_file", None
    else:
        source, name, shown = path, None, path
    try:
        decoded = decode_audio(source, name)
    except FileNotFoundError:
        return None, shown, "missing_file", None
    except AudioDecodeError as error:
        logger.debug("decode error: %s", error)
        return None, shown, "decode_error", None
    reason = broken_reason(decoded, settings.screening)
    if reason:
        logger.debug(
            "%s: %s (%d frames decoded, %s declared)", reason, shown, decoded.num_frames, decoded.declared_frames
        )
        return None, shown, reason, None
    mono = to_mono(decoded.samples)
    levels = measure_levels(decoded.samples, mono, decoded.sampling_rate)
    return resample(mono, decoded.sampling_rate, settings.spectrogram.sampling_rate), shown, "", levels


def encode_texts(texts: list, speakers: list | None = None, *, settings: FeatureSettings, tokenizer) -> dict:
    """The text pass, a `datasets.map(batched=True)` over the text (and speaker) column: each row's `TEXT_FEATURES`
    (`encode_text_with_dropped`).

    Rows of a speaker that is not kept are left empty: they are dropped as `speaker_filtered`, and uroman (2.7 ms a
    sentence) need not run on them.
    """
    speakers = speakers if speakers is not None else [""] * len(texts)
    columns = {name: [] for name in TEXT_FEATURES}
    for text, speaker in zip(texts, speakers):
        if settings.selected_speakers is not None and str(speaker) not in settings.selected_speakers:
            normalized, input_ids, dropped, num_characters = "", [], "", 0
        else:
            normalized, input_ids, counted, num_characters = encode_text_with_dropped(
                "" if text is None else str(text), tokenizer
            )
            dropped = "".join(counted.elements())
        columns["__model_text"].append(normalized)
        columns["__input_ids"].append(input_ids)
        columns["__dropped_characters"].append(dropped)
        columns["__num_characters"].append(num_characters)
    return columns


def featurize(row: dict, settings: FeatureSettings) -> dict:
    """One clip's features and its drop reason ("" when kept); dropped clips get empty arrays.

    `row` holds the raw columns and the text pass's `TEXT_FEATURES` (`encode_texts`).
    """
    if settings.single_thread and torch.get_num_threads() != 1:
        # A worker process of datasets.map: one worker per core already, torch's own threads would only fight them.
        torch.set_num_threads(1)
    text = row[settings.text_column]
    text = "" if text is None else str(text)
    normalized, input_ids = row["__model_text"], row["__input_ids"]
    speaker = str(row[settings.speaker_column]) if settings.speaker_column else ""
    audio = row[settings.audio_column]
    display_path = audio.get("path") if isinstance(audio, dict) else str(audio)

    reason, waveform, levels = "", None, None
    # Refuse an escaping metadata path before anything else, without touching the file.
    path, _ = _audio_path(audio, settings)
    if path is None and not (isinstance(audio, dict) and audio.get("bytes") is not None):
        reason = "path_outside_dataset"
    if not reason and settings.selected_speakers is not None and speaker not in settings.selected_speakers:
        reason = "speaker_filtered"
    if not reason:
        waveform, display_path, reason, levels = _decode(audio, path, settings)
    if not reason:
        seconds = len(waveform) / settings.spectrogram.sampling_rate
        if seconds < settings.min_seconds or len(waveform) < settings.spectrogram.n_fft:
            reason = "too_short"
        elif seconds > settings.max_seconds:
            reason = "too_long"
        else:
            reason = level_reason(levels, settings.screening) or _text_reason(row, len(waveform), settings)

    num_mels = settings.spectrogram.num_mel_bins
    if reason:
        waveform, log_mel, input_ids = np.zeros(0, np.float32), np.zeros((0, num_mels), np.float32), []
    else:
        log_mel = log_mel_spectrogram(torch.from_numpy(waveform), settings.spectrogram).T.contiguous().numpy()
    speaker_index = settings.speaker_names.index(speaker) if speaker in settings.speaker_names else 0
    return {
        "input_ids": input_ids,
        "waveform": waveform,
        "log_mel": log_mel,
        "waveform_length": len(waveform),
        "mel_length": log_mel.shape[0],
        "tokens_length": len(input_ids),
        "speaker_id": speaker_index,
        "text": normalized,
        "path": display_path or "",
        "drop_reason": reason,
        "dropped_characters": row["__dropped_characters"],
        # the characters `dropped` was counted in (after NFC, uroman and lowercasing), not the raw text's
        "num_characters": row["__num_characters"],
        # measured on every clip that decoded whole, kept or not: the report lists the most clipped
        "clipped_fraction": levels.clipped_fraction if levels is not None else 0.0,
        "source_text": text,
    }


def _text_reason(row: dict, num_samples: int, settings: FeatureSettings) -> str:
    """The text's drop reason for a clip of `num_samples` samples whose audio is fine ("" when the pair is kept)."""
    input_ids = row["__input_ids"]
    if lost_characters(row["__dropped_characters"]) and not settings.keep_dropped_characters:
        # the recording says what the text lost: a model trained on the pair learns to say unwritten sounds
        return "text_not_in_vocabulary"
    if not row["__model_text"].strip():
        return "empty_text"
    if len(input_ids) > settings.max_tokens or len(input_ids) > settings.spectrogram.num_frames(num_samples):
        # More tokens than spectrogram frames: no monotonic alignment gives every token a frame
        # (`recipe.model.alignment`). With add_blank, 2 * characters + 1 tokens against 62.5 frames a second.
        return "too_many_tokens"
    return ""


def featurize_batch(
    batch, indices: list[int], settings: FeatureSettings, features: datasets.Features, texts: datasets.Dataset
) -> pa.Table:
    """`featurize` for each row of a `datasets.map(batched=True, with_indices=True)` batch, as one Arrow table of
    `features`; `texts` holds the split's `TEXT_FEATURES` (`encode_texts`), row for row.

    The table is built from the NumPy arrays in one copy per column (`recipe.data.feature_table`), which `datasets` then
    writes as it is, instead of converting every array of every row dict on its own.
    """
    needed = [name for name in (settings.audio_column, settings.text_column, settings.speaker_column) if name]
    columns = {name: batch[name] for name in dict.fromkeys(needed)}  # only these columns are formatted
    encoded = texts[list(indices)]  # the batch's rows of the text pass (0.5 ms for 16 rows)
    rows = []
    for position in range(len(indices)):
        row = {name: values[position] for name, values in columns.items()}
        row.update((name, values[position]) for name, values in encoded.items())
        rows.append(featurize(row, settings=settings))
    return rows_to_table(rows, features)


def _feature_types(speaker_names: tuple[str, ...], num_mels: int) -> datasets.Features:
    return datasets.Features(
        {
            "input_ids": datasets.List(datasets.Value("int32")),
            "waveform": datasets.List(datasets.Value("float32")),
            # Array2D allows a variable first dimension only: frames first, mel bins second.
            "log_mel": datasets.Array2D(shape=(None, num_mels), dtype="float32"),
            "waveform_length": datasets.Value("int64"),
            "mel_length": datasets.Value("int64"),
            "tokens_length": datasets.Value("int64"),
            "speaker_id": datasets.ClassLabel(names=list(speaker_names)),
            "text": datasets.Value("string"),
            "path": datasets.Value("string"),
            "drop_reason": datasets.Value("string"),
            "dropped_characters": datasets.Value("string"),
            "num_characters": datasets.Value("int64"),
            "clipped_fraction": datasets.Value("float32"),
            "source_text": datasets.Value("string"),
        }
    )


def _probe_seconds(audio, settings: FeatureSettings) -> float | None:
    """Duration from the file header (no decoding); None for a clip that is missing, undecodable or outside the
    dataset (`featurize` gives it its drop reason later)."""
    if isinstance(audio, dict) and audio.get("bytes") is not None:
        source, name = audio["bytes"], audio.get("path") or None
    else:
        source, _ = _audio_path(audio, settings)
        if not source:
            return None
        name = None
    try:
        return audio_duration(source, name)
    except (FileNotFoundError, AudioDecodeError) as error:
        logger.debug("cannot measure %s", error)
        return None


def _speaker_with_most_audio(split: datasets.Dataset, settings: FeatureSettings, num_proc: int | None) -> str:
    probed = split.map(
        lambda audio, speaker: {"seconds": _probe_seconds(audio, settings), "speaker_key": str(speaker)},
        input_columns=[settings.audio_column, settings.speaker_column],
        remove_columns=split.column_names,
        features=datasets.Features({"seconds": datasets.Value("float64"), "speaker_key": datasets.Value("string")}),
        num_proc=num_proc,
        desc="Measuring audio per speaker",
    )
    seconds = Counter()
    unreadable = 0
    for speaker, duration in zip(probed["speaker_key"], probed["seconds"]):
        if duration is None:
            unreadable += 1
        else:
            seconds[speaker] += duration
    if unreadable:
        logger.warning(
            "--speaker_id top: %d of %d clips could not be measured (missing, undecodable or outside the dataset; "
            "the data report counts them by reason) and weigh 0 s",
            unreadable,
            len(probed),
        )
    if not seconds or max(seconds.values()) == 0:
        raise DataError("--speaker_id top: no readable clip in the training split to measure speakers by")
    # Ties go to the smallest id, so that the choice never depends on row order.
    return min(seconds, key=lambda speaker: (-seconds[speaker], speaker))


def _select_speakers(source: Source, train: datasets.Dataset, data_args, settings, num_proc) -> tuple[str, ...] | None:
    if data_args.speaker_id is None:
        return None
    if source.speaker_column is None:
        raise DataError(
            f"--speaker_id {data_args.speaker_id!r} needs speaker ids: set --speaker_id_column_name to one of "
            f"{train.column_names}"
        )
    if data_args.speaker_id == "top":
        chosen = _speaker_with_most_audio(train, settings, num_proc)
        logger.info("--speaker_id top: keeping speaker %s", chosen)
        return (chosen,)
    counts = Counter(str(s) for s in train[source.speaker_column])
    if data_args.speaker_id not in counts:
        most = ", ".join(f"{speaker!r} ({n} clips)" for speaker, n in counts.most_common(5))
        raise DataError(f"--speaker_id {data_args.speaker_id!r} has no clip in the training split; most clips: {most}")
    return (data_args.speaker_id,)


def _hold_out(train: datasets.Dataset, fraction: float, candidates: list[int]) -> tuple[list[int], list[int]]:
    """Indices of the eval hold-out (a fixed-seed sample of `candidates`) and of the rest of `train`."""
    if not 0 < fraction < 1:
        raise DataError(f"--eval_fraction must be between 0 and 1, not {fraction}")
    if len(candidates) < 2:
        raise DataError(f"Cannot hold out an eval split from {len(candidates)} clip(s); add clips or an eval split")
    count = min(len(candidates) - 1, max(1, round(fraction * len(candidates))))
    permutation = np.random.default_rng(EVAL_HOLDOUT_SEED).permutation(len(candidates))
    held = sorted(candidates[i] for i in permutation[:count])
    held_set = set(held)
    return held, [i for i in range(len(train)) if i not in held_set]


def _choose_splits(source: Source, data_args, settings_without_speakers, num_proc):
    """The raw training and eval splits, the selected speakers and the number of eval clips removed from train."""
    train = source.split(data_args.train_split_name)
    eval_name = data_args.eval_split_name or source.default_eval_split
    if eval_name == data_args.train_split_name:
        if data_args.eval_split_name:
            raise DataError(f"--eval_split_name {eval_name!r} is also the training split")
        eval_name = None
    selected = _select_speakers(source, train, data_args, settings_without_speakers, num_proc)
    overlap_removed = 0
    if eval_name:
        eval_split = source.split(eval_name)
        if isinstance(train.features[source.audio_column], datasets.Value):
            # Common Voice's validated.tsv contains dev.tsv: training on it must not see the eval clips.
            eval_paths = set(eval_split[source.audio_column])
            keep = [i for i, entry in enumerate(train[source.audio_column]) if entry not in eval_paths]
            overlap_removed = len(train) - len(keep)
            if overlap_removed:
                logger.info("Removed %d clips of %r that are in the eval split %r", overlap_removed, train, eval_name)
                train = train.select(keep)
        return train, eval_split, selected, overlap_removed
    if selected is None:
        candidates = list(range(len(train)))
    else:
        speakers = [str(s) for s in train[source.speaker_column]]
        candidates = [i for i, speaker in enumerate(speakers) if speaker in selected]
    held, rest = _hold_out(train, data_args.eval_fraction, candidates)
    return train.select(rest), train.select(held), selected, overlap_removed


def _speaker_names(source: Source, splits: list[datasets.Dataset], selected) -> tuple[str, ...]:
    if selected is not None:
        return tuple(sorted(selected))
    if source.speaker_column is None:
        return ("speaker",)
    return tuple(sorted({str(s) for split in splits for s in split[source.speaker_column]}))


def _tokenizer_identity(tokenizer) -> dict:
    return {
        "class": type(tokenizer).__name__,
        "vocab": sorted(tokenizer.get_vocab().items()),
        **{
            name: getattr(tokenizer, name, None)
            for name in ("normalize", "add_blank", "phonemize", "is_uroman", "language")
        },
    }


def feature_cache_key(
    source: Source, data_args, tokenizer, spectrogram: SpectrogramConfig, splits: tuple[str, ...] = SPLITS
) -> str:
    """Hash of the source's content, of the featurized `splits` and of every argument the cached features depend on.

    `--max_train_samples`, `--max_eval_samples`, `--max_bad_fraction`, `--max_text_not_in_vocabulary_fraction` and
    the number of workers are left out: they are applied to, or checked on, the cached result.
    """
    arguments = {
        name: getattr(data_args, name)
        for name in (
            "dataset_config_name",
            "train_split_name",
            "eval_split_name",
            "eval_fraction",
            "audio_column_name",
            "text_column_name",
            "speaker_id_column_name",
            "speaker_id",
            "min_duration_in_seconds",
            "max_duration_in_seconds",
            "max_tokens_length",
            "truncation_tolerance",
            "silence_threshold_db",
            "max_clipped_fraction",
            "keep_clips_with_dropped_characters",
            "allow_audio_outside_dataset",
        )
    }
    identity = {
        "version": FEATURE_VERSION,
        "format": source.format,
        "source": source.fingerprint,
        "arguments": arguments,
        "tokenizer": _tokenizer_identity(tokenizer),
        "spectrogram": asdict(spectrogram),
        "splits": list(splits),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _uroman_examples(columns: datasets.Dataset, kept: list[int]) -> list[dict]:
    """Up to `MAX_UROMAN_EXAMPLES` kept clips whose text is not plain ASCII: the raw text and what the model reads."""
    examples = []
    raw_texts, model_texts = columns["source_text"], columns["text"]
    for index in kept:
        if not raw_texts[index].isascii():
            examples.append({"text": raw_texts[index], "model_text": model_texts[index]})
            if len(examples) == MAX_UROMAN_EXAMPLES:
                break
    return examples


def _clipping_report(columns: dict) -> dict:
    """The clipping entry of a split's report: how many decoded clips have samples at full scale, and the most
    clipped of them (kept or not) with their share of such samples."""
    fractions = columns["clipped_fraction"]
    clipped = sorted((i for i, fraction in enumerate(fractions) if fraction > 0), key=lambda i: -fractions[i])
    return {
        "clips_with_full_scale_samples": len(clipped),
        "most_clipped": [
            {"path": columns["path"][i], "fraction": fractions[i], "drop_reason": columns["drop_reason"][i]}
            for i in clipped[:MAX_EXAMPLES]
        ],
    }


def _split_report(featurized: datasets.Dataset, sampling_rate: int, is_uroman: bool = False) -> tuple[dict, list[int]]:
    # Read once as Python lists: indexing a `datasets` column row by row costs 0.3 ms a row (200 rows: 60 ms).
    columns = featurized.select_columns(
        [
            "drop_reason",
            "path",
            "waveform_length",
            "dropped_characters",
            "num_characters",
            "clipped_fraction",
            "source_text",
            "text",
        ]
    ).to_dict()
    reasons, paths = columns["drop_reason"], columns["path"]
    lengths = columns["waveform_length"]
    dropped = {reason: {"count": 0, "examples": []} for reason in DROP_REASONS}
    # text_not_in_vocabulary also names what each example lost, and every lost character with its count
    text_loss = dropped["text_not_in_vocabulary"]
    text_loss.update(lost_characters=[], characters=Counter())
    kept = []
    for index, (reason, path) in enumerate(zip(reasons, paths)):
        if not reason:
            kept.append(index)
            continue
        dropped[reason]["count"] += 1
        lost = lost_characters(columns["dropped_characters"][index]) if reason == "text_not_in_vocabulary" else ""
        text_loss["characters"].update(lost)
        if len(dropped[reason]["examples"]) < MAX_EXAMPLES:
            dropped[reason]["examples"].append(path)
            if lost:
                text_loss["lost_characters"].append("".join(dict.fromkeys(lost)))
    text_loss["characters"] = dict(text_loss["characters"].most_common())
    characters = Counter()
    for chars in columns["dropped_characters"]:
        characters.update(chars)
    report = {
        "seen": len(reasons),
        "kept": len(kept),
        "hours": sum(lengths[i] for i in kept) / sampling_rate / 3600,
        "dropped": dropped,
        "dropped_characters": summarize_dropped_characters(characters, sum(columns["num_characters"])),
        "clipping": _clipping_report(columns),
    }
    if is_uroman:
        report["uroman_examples"] = _uroman_examples(columns, kept)
    return report, kept


def _workers_for(num_clips: int, num_proc: int | None) -> int | None:
    """`num_proc` for a split of `num_clips` clips: None (the main process) when the pool would not pay for itself."""
    if num_proc is None or num_clips < MIN_CLIPS_PER_WORKER * num_proc:
        return None
    return num_proc


def _encode_split(
    split: datasets.Dataset, name: str, settings, tokenizer, num_proc, cache_path: str
) -> datasets.Dataset:
    """The `TEXT_FEATURES` of `split`'s rows (`encode_texts`), row for row: an in-memory Arrow table of a few ids and
    strings per clip (compact to hand to worker processes), apart from the split, so that its audio is never copied."""
    columns = [settings.text_column] + ([settings.speaker_column] if settings.speaker_column else [])
    encoded = split.map(
        encode_texts,
        fn_kwargs={"settings": settings, "tokenizer": tokenizer},
        input_columns=columns,
        batched=True,
        batch_size=TEXT_BATCH_SIZE,
        remove_columns=split.column_names,
        features=datasets.Features(TEXT_FEATURES),
        num_proc=_workers_for(len(split), num_proc),
        keep_in_memory=True,
        # as for the features: the cache key names the content, so datasets need not hash the tokenizer with dill
        new_fingerprint=hashlib.sha256(f"{cache_path}:{name}:text".encode()).hexdigest()[:32],
        desc=f"Encoding the {name} texts",
    )
    return encoded


def _check_text_loss(
    name: str, split: datasets.Dataset, texts: datasets.Dataset, settings: FeatureSettings, limit: float
) -> None:
    """Stop before featurizing `split` (whose `TEXT_FEATURES` are `texts`) when more than `limit` of its clips of the
    kept speakers would be dropped as `text_not_in_vocabulary` (`recipe.data.text_screening.text_loss_error`)."""
    if settings.keep_dropped_characters:
        return
    # read as lists: iterating a `datasets` column goes row by row (4.5 s for 100 000 rows)
    dropped_characters = texts.select_columns(["__dropped_characters"]).to_dict()["__dropped_characters"]
    if settings.speaker_column:
        speakers = split.select_columns([settings.speaker_column]).to_dict()[settings.speaker_column]
    else:
        speakers = [""] * len(split)
    considered, clips, characters = 0, 0, Counter()
    for dropped, speaker in zip(dropped_characters, speakers):
        if settings.selected_speakers is not None and str(speaker) not in settings.selected_speakers:
            continue
        considered += 1
        lost = lost_characters(dropped)
        if lost:
            clips += 1
            characters.update(lost)
    if considered and clips / considered > limit:
        raise text_loss_error(name, clips, considered, dict(characters), limit)


def _build_features(
    source: Source, data_args, tokenizer, spectrogram, cache_path: str, splits: tuple[str, ...] = SPLITS
) -> dict:
    """Featurize `splits` and save them (with their report) at `cache_path`. Returns the report.

    The training split is read (for the speaker choice and the eval hold-out) even when only `"eval"` is asked for,
    so that the eval clips are the ones a training run on the same arguments holds out.

    The Arrow files `datasets.map` writes are the cache itself (written once, a table per batch): dropped clips stay
    in them as empty rows, and the manifest lists the rows to read, so that nothing is copied after the map.

    Every requested split's texts are encoded and checked (`_check_text_loss`) before any audio is decoded.
    """
    num_proc = data_args.preprocessing_num_workers if (data_args.preprocessing_num_workers or 0) > 1 else None
    base = dict(
        audio_column=source.audio_column,
        text_column=source.text_column,
        speaker_column=source.speaker_column,
        source_root=source.root,
        audio_dir=source.audio_dir,
        audio_suffix=source.audio_suffix,
        spectrogram=spectrogram,
        min_seconds=data_args.min_duration_in_seconds,
        max_seconds=data_args.max_duration_in_seconds,
        max_tokens=data_args.max_tokens_length,
        single_thread=num_proc is not None,
        screening=AudioScreening.from_args(data_args),
        keep_dropped_characters=data_args.keep_clips_with_dropped_characters,
        allow_outside=source.allow_outside,
    )
    train, eval_split, selected, overlap_removed = _choose_splits(
        source, data_args, FeatureSettings(**base, selected_speakers=None, speaker_names=()), num_proc
    )
    names = _speaker_names(source, [train, eval_split], selected)
    settings = FeatureSettings(**base, selected_speakers=selected, speaker_names=names)
    features = _feature_types(names, spectrogram.num_mel_bins)
    requested = {name: split for name, split in (("train", train), ("eval", eval_split)) if name in splits}
    texts = {}
    for name, split in requested.items():
        texts[name] = _encode_split(split, name, settings, tokenizer, num_proc, cache_path)
        _check_text_loss(name, split, texts[name], settings, data_args.max_text_not_in_vocabulary_fraction)

    building = f"{cache_path}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    report, manifest = {}, {}
    try:
        with _one_torch_thread():
            for name, split in requested.items():
                featurized = split.map(
                    featurize_batch,
                    fn_kwargs={"settings": settings, "features": features, "texts": texts[name]},
                    with_indices=True,
                    batched=True,
                    batch_size=FEATURE_BATCH_SIZE,
                    remove_columns=split.column_names,
                    features=features,
                    num_proc=_workers_for(len(split), num_proc),
                    cache_file_name=os.path.join(building, f"{name}.arrow"),
                    load_from_cache_file=False,
                    # the cache key already names this content: without it, datasets hashes the function and its
                    # arguments (the tokenizer) with dill for every split
                    new_fingerprint=hashlib.sha256(f"{cache_path}:{name}".encode()).hexdigest()[:32],
                    desc=f"Preprocessing {name}",
                )
                report[name], kept = _split_report(
                    featurized, spectrogram.sampling_rate, is_uroman=bool(getattr(tokenizer, "is_uroman", False))
                )
                if selected is not None:
                    report[name]["speaker_id"] = selected[0] if len(selected) == 1 else list(selected)
                files = [entry["filename"] for entry in featurized.cache_files]
                # datasets reports absolute paths; a relative --cache_dir must compare equal to them
                if not files or any(os.path.dirname(file) != os.path.abspath(building) for file in files):
                    raise RuntimeError(f"datasets.map wrote {files}, expected files in {building}")
                manifest[name] = {
                    "files": [os.path.basename(file) for file in files],
                    # None when every row is a kept clip (the usual case): then no selection is made when loading
                    "kept_rows": None if len(kept) == len(featurized) else kept,
                }
        if overlap_removed and "train" in report:
            report["train"]["overlap_with_eval_removed"] = overlap_removed
        if not all(split_report["kept"] for split_report in report.values()):
            # An empty split stops the run (`_check`): nothing worth caching.
            return report
        del featurized
        with open(os.path.join(building, "build_report.json"), "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
        # written last: a folder with a manifest is complete
        with open(os.path.join(building, CACHE_MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle)
        try:
            publish_folder(building, cache_path)
        except OSError:
            if not os.path.isfile(os.path.join(cache_path, CACHE_MANIFEST)):
                raise
            logger.info("Another process saved %s first; using its copy", cache_path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return report


def _load_features(cache_path: str) -> datasets.DatasetDict:
    """The kept clips of the cached splits, memory-mapped from the Arrow files of the cache folder, without the columns
    that only the report needed."""
    manifest_path = os.path.join(cache_path, CACHE_MANIFEST)
    if not os.path.isfile(manifest_path):
        raise DataError(f"The feature cache {cache_path} has no {CACHE_MANIFEST}; rerun with --overwrite_cache")
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    splits = {}
    for name, entry in manifest.items():
        parts = [datasets.Dataset.from_file(os.path.join(cache_path, file)) for file in entry["files"]]
        split = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        if entry["kept_rows"] is not None:
            split = split.select(entry["kept_rows"])
        splits[name] = split.remove_columns(list(INTERNAL_COLUMNS))
    return datasets.DatasetDict(splits)


def _apply_cap(split: datasets.Dataset, limit: int | None, split_report: dict, sampling_rate: int):
    if limit is None:
        return split
    if limit < 1:
        raise DataError(f"A max-samples cap must be positive, not {limit}")
    if limit < len(split):
        split = split.select(range(limit))
    seconds = sum(split["waveform_length"]) / sampling_rate
    split_report["max_samples"] = {"limit": limit, "kept": len(split), "hours": seconds / 3600}
    return split


# What a reader can do about each broken-file reason, said when --max_bad_fraction stops a run.
BAD_REASON_ADVICE = {
    "path_outside_dataset": "a saved dataset or parquet file whose audio column names files elsewhere needs "
    "--allow_audio_outside_dataset; a Common Voice / LJSpeech / audiofolder layout must hold its clips",
    "truncated": "the files are shorter than their headers declare (an interrupted download or copy): fetch them again",
}


def _check(report: dict, max_bad_fraction: float, max_text_loss_fraction: float = 1.0) -> None:
    for name, split in report.items():
        considered = split["seen"] - split["dropped"]["speaker_filtered"]["count"]
        bad = {reason: split["dropped"][reason] for reason in BAD_REASONS if split["dropped"][reason]["count"]}
        bad_count = sum(entry["count"] for entry in bad.values())
        if considered and bad_count / considered > max_bad_fraction:
            examples = "; ".join(f"{reason}: {', '.join(entry['examples'])}" for reason, entry in bad.items())
            advice = "".join(f" ({BAD_REASON_ADVICE[reason]})" for reason in bad if reason in BAD_REASON_ADVICE)
            raise DataError(
                f"{name}: {bad_count} of {considered} clips are broken (missing, undecodable, truncated, non-finite "
                f"or outside the dataset: {bad_count / considered:.1%} > --max_bad_fraction {max_bad_fraction}). "
                f"Examples: {examples}{advice}"
            )
        # the same bound as before featurizing (`_check_text_loss`), for a report read from the cache
        text_loss = split["dropped"]["text_not_in_vocabulary"]
        if considered and text_loss["count"] / considered > max_text_loss_fraction:
            raise text_loss_error(
                name, text_loss["count"], considered, text_loss["characters"], max_text_loss_fraction
            )
    for name, split in report.items():
        if split["kept"] == 0:
            counts = {reason: entry["count"] for reason, entry in split["dropped"].items() if entry["count"]}
            raise DataError(
                f"{name}: no clip left out of {split['seen']} after filtering; dropped per reason: {counts}"
            )


def _write_report(report: dict, output_dir: str) -> None:
    """`<output_dir>/data_report.json`, and the same summary on stdout."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "data_report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, ensure_ascii=False, indent=2)
    print(format_report(report))


def format_report(report: dict) -> str:
    """The printed summary of a data report: per split, clips kept and why the others were dropped."""
    lines = ["Data report:"]
    for name, split in report.items():
        line = f"  {name}: {split['seen']} clips seen, {split['kept']} kept ({split['hours']:.3f} h)"
        if "max_samples" in split:
            cap = split["max_samples"]
            line += f", {cap['kept']} after the cap of {cap['limit']} ({cap['hours']:.3f} h)"
        lines.append(line)
        for reason, entry in split["dropped"].items():
            if entry["count"]:
                examples = entry["examples"][:3]
                if reason == "text_not_in_vocabulary":  # each with the characters its text lost
                    examples = [f"{path} ({lost!r})" for path, lost in zip(examples, entry["lost_characters"])]
                lines.append(f"    dropped {entry['count']:>6} {reason:<22} e.g. {', '.join(examples)}")
        clipping = split.get("clipping")
        if clipping and clipping["clips_with_full_scale_samples"]:
            worst = clipping["most_clipped"][0]
            lines.append(
                f"    clips with samples at full scale: {clipping['clips_with_full_scale_samples']}, the most "
                f"{worst['fraction']:.2%} of its samples ({worst['path']})"
            )
        chars = split["dropped_characters"]
        if chars["total"]:
            lines.append(
                f"    characters the tokenizer drops: {chars['total']} ({chars['fraction']:.2%} of all, letters "
                f"{chars['letters_fraction']:.2%})"
            )
            for kind, meaning in (
                ("not_in_vocabulary", "letters / digits not in the vocabulary (--extend_vocabulary adds letters)"),
                ("normalized_away", "punctuation / symbols the tokenizer strips by design"),
            ):
                if chars.get(kind):
                    listed = ", ".join(f"{char!r} x{count}" for char, count in list(chars[kind].items())[:20])
                    lines.append(f"      {meaning}: {listed}")
        for example in split.get("uroman_examples", [])[:3]:
            lines.append(f"    uroman: {example['text']!r} -> {example['model_text']!r}")
    return "\n".join(lines)


def _is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (`torchrun` / `accelerate launch` set `RANK`)."""
    return os.environ.get("RANK") in (None, "", "0")


def _requested_splits(splits) -> tuple[str, ...]:
    if isinstance(splits, str):
        splits = (splits,)
    unknown = [name for name in splits if name not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty selection of {SPLITS}, not {splits!r}")
    return tuple(name for name in SPLITS if name in splits)


def prepare_datasets(
    data_args,
    tokenizer,
    model_config,
    output_dir: str,
    *,
    splits: tuple[str, ...] = SPLITS,
    token: str | None = None,
    is_main_process: bool | None = None,
) -> tuple[datasets.DatasetDict, dict]:
    """Training and eval features for `model_config`, from the Arrow cache when a previous run built them.

    Args:
        data_args (`DataArguments`): the data flags (`recipe.training.arguments.DataArguments`).
        tokenizer (`VitsTokenizer`): the model's tokenizer; its normalization and vocabulary make the `input_ids`.
        model_config (`VitsConfig`): gives the sampling rate and the STFT geometry of the log-mel target.
        output_dir (`str`): where `data_report.json` is written.
        splits (`tuple[str, ...]`, *optional*, defaults to `("train", "eval")`): the splits to featurize and return;
            `("eval",)` featurizes the eval split alone (the training split is still read, not featurized, for the
            speaker choice and the hold-out). Part of the cache key.
        token (`str`, *optional*): Hub token for a private dataset (`--token`), passed to `datasets.load_dataset`.
        is_main_process (`bool`, *optional*): whether this process may delete and rebuild the cache for
            `--overwrite_cache`; defaults to "not a non-zero `RANK`". The other ranks of a distributed run, which
            run after the main one (`main_process_first`), reuse the cache it has just rebuilt.

    Returns:
        `tuple(datasets.DatasetDict, dict)`: the requested splits (`"train"`, `"eval"`) with the cached columns (see
        the module docstring), and the report: per split `seen`, `kept`, `hours`, `dropped` (reason -> count and up
        to 10 example paths; for `text_not_in_vocabulary` also each example's `lost_characters` and every lost
        character's count, `characters`), `dropped_characters`, `clipping` (clips with samples at full scale, the most
        clipped with their share) and `max_samples` when a cap applies.

    Raises:
        `DataError`: a missing dataset, split or column; a metadata file that is not UTF-8; more than
        `--max_text_not_in_vocabulary_fraction` of a split's clips whose text loses letters or digits (raised before
        any audio is decoded, with no report); more than `--max_bad_fraction` broken clips in a split; or a split
        that filtering leaves empty. Except where said, the report is written before the error is raised.
        `ValueError`: `splits` names something other than `"train"` / `"eval"`.
    """
    splits = _requested_splits(splits)
    if is_main_process is None:
        is_main_process = _is_main_process()
    spectrogram = SpectrogramConfig.from_model_config(model_config)
    source = load_source_from_args(data_args, token=token)
    cache_root = os.path.join(data_args.cache_dir or datasets.config.HF_DATASETS_CACHE, "vits_features")
    cache_path = os.path.join(cache_root, feature_cache_key(source, data_args, tokenizer, spectrogram, splits))
    if data_args.overwrite_cache and os.path.isdir(cache_path):
        if is_main_process:
            shutil.rmtree(cache_path)
        else:
            logger.info("--overwrite_cache: reusing %s, which the main process has rebuilt", cache_path)
    if os.path.isdir(cache_path):
        logger.info("Loading cached features from %s", cache_path)
    else:
        logger.info("Preprocessing %s into %s", data_args.dataset_name, cache_path)
        os.makedirs(cache_root, exist_ok=True)
        report = _build_features(source, data_args, tokenizer, spectrogram, cache_path, splits)
        if not os.path.isdir(cache_path):  # a split came out empty: report it and stop
            _write_report(report, output_dir)
            _check(report, data_args.max_bad_fraction, _text_loss_bound(data_args))
            raise DataError(f"No features were saved for {data_args.dataset_name}; see {output_dir}/data_report.json")
    features = _load_features(cache_path)
    with open(os.path.join(cache_path, "build_report.json"), encoding="utf-8") as handle:
        report = json.load(handle)

    limits = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    features = datasets.DatasetDict(
        {name: _apply_cap(features[name], limits[name], report[name], spectrogram.sampling_rate) for name in splits}
    )
    _write_report(report, output_dir)
    _check(report, data_args.max_bad_fraction, _text_loss_bound(data_args))
    return features, report


def _text_loss_bound(data_args) -> float:
    """The share of a split that may be dropped as `text_not_in_vocabulary` (no bound when such clips are kept)."""
    return 1.0 if data_args.keep_clips_with_dropped_characters else data_args.max_text_not_in_vocabulary_fraction
