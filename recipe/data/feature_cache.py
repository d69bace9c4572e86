"""The feature cache: a folder of Arrow files per set of features, named by a hash of everything they depend on.

    cache_path = feature_cache_path(data_args, feature_cache_key(source, data_args, tokenizer, spectrogram, splits))
    report = write_feature_cache(splits, texts, settings, cache_path, num_proc=2, is_uroman=False, report_entries={})
    features, report = load_feature_cache(cache_path)

A folder `<cache_dir>/vits_features/<key>/` holds, per split, the Arrow file(s) `datasets.map` wrote while
featurizing (one Arrow table per batch of clips, one file per worker; dropped clips are empty rows), the report of
the build (`build_report.json`) and, written last, the manifest (`features.json`: per split its files, the rows
to read, `null` when every row is a kept clip, and after a `best` speaker choice the chosen `speaker_names`). A
folder with a manifest is complete; it is built under a temporary name and renamed into place
(`recipe.folders.publish_folder`), so that a reader never sees half a cache. Loading memory-maps the files: nothing
is copied.

The key (`feature_cache_key`) hashes the source's content (`Source.fingerprint`), its layout's name, the featurized
splits, the tokenizer, the spectrogram geometry, `FEATURE_VERSION` and every argument the features depend on: the
same inputs always give the same key, across versions of this code that keep `FEATURE_VERSION`.

Disk: before featurizing, `check_cache_room` estimates what the cache will take (`estimate_cache_bytes`: the audio
of the clips to featurize, from the headers of a sample of them, times `cache_bytes_per_second`) and stops with an
`UnavailableError` when the cache folder's disk has less free; a disk that fills up anyway stops the same way, naming
the cache folder, with the partial build removed. A build runs in `<key>.building-<host>-<pid>`; a later run removes
those whose process is gone (`remove_stale_builds`). Loading logs one line: where the features are, whether this run
built them, and their size.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
from dataclasses import asdict

import datasets

from recipe.audio import SpectrogramConfig
from recipe.data.features import (
    FEATURE_BATCH_SIZE,
    INTERNAL_COLUMNS,
    FeatureSettings,
    feature_types,
    featurize_batch,
    one_torch_thread,
    workers_for,
)
from recipe.data.report import split_report
from recipe.data.source import DataError, Source
from recipe.data.speaker_best import BestChoice, relabel_speakers
from recipe.data.splits import SPLITS, ordered_speakers, probe_seconds
from recipe.errors import UnavailableError
from recipe.folders import format_bytes, publish_folder

logger = logging.getLogger(__name__)

# Bump when the feature computation or the cache layout changes, so that old caches are not reused.
FEATURE_VERSION = 7
# The folder of the feature caches, in --cache_dir (else the datasets cache).
CACHE_FOLDER = "vits_features"
# The cache folder: one Arrow file (or one per worker) per split as `datasets.map` wrote it, and this manifest.
CACHE_MANIFEST = "features.json"
# The report of the build, kept with the features: a later run that loads them reports the same clips.
BUILD_REPORT = "build_report.json"
# The arguments the cached features depend on. `--max_train_samples`, `--max_eval_samples`, `--max_bad_fraction`,
# `--max_text_not_in_vocabulary_fraction` and the number of workers are left out: they are applied to, or checked
# on, the cached result.
KEY_ARGUMENTS = (
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
    "trim_silence",
    "min_snr_db",
    "min_bandwidth_hz",
    "min_quality",
    "max_rate_deviation",
    "keep_clips_with_dropped_characters",
    "allow_audio_outside_dataset",
)
OPTIONAL_KEY_ARGUMENTS = ("speakers", "screen_asr_model")
# Arguments in the key only with another one given (they change nothing without it): name -> the one they need.
DEPENDENT_KEY_ARGUMENTS = {"max_transcript_cer": "screen_asr_model"}
# Clips per split whose headers `estimate_cache_bytes` reads, spread over the split (a smaller split is read whole):
# a few milliseconds, whatever the size of the dataset.
ROOM_SAMPLE_CLIPS = 64
# The estimate is raised by this factor before it is compared with the free space. A cache takes 0.7-0.8% more than
# `cache_bytes_per_second` counts (ids, texts, offsets: measured on the demo data); the rest covers the error of a
# mean duration measured on a sample of the clips.
ROOM_MARGIN = 1.1
# The cached arrays are float32 (`feature_types`).
FLOAT32_BYTES = 4
# A build folder: `<key>.building-<host>-<pid>` (`<key>.building-<pid>` from versions that did not record the host).
_BUILDING_NAME = re.compile(r"^(?P<key>[0-9a-f]+)\.building-(?:(?P<host>.+)-)?(?P<pid>\d+)$")
# The caches this process has built, so that loading one can say whether it was built now or found.
_BUILT_HERE: set[str] = set()


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
    source: Source,
    data_args,
    tokenizer,
    spectrogram: SpectrogramConfig,
    splits: tuple[str, ...] = SPLITS,
    speaker_order: tuple[str, ...] | None = None,
    only_speakers: tuple[str, ...] | None = None,
) -> str:
    """Hash of the source's content, of the featurized `splits` and of every argument the cached features depend on
    (`KEY_ARGUMENTS`, and `OPTIONAL_KEY_ARGUMENTS` / `DEPENDENT_KEY_ARGUMENTS` when they apply; --screen_asr_model
    as given: a path or Hub id, not the model's content); `speaker_order` and `only_speakers` only when given."""
    arguments = {name: getattr(data_args, name) for name in KEY_ARGUMENTS}
    # arguments added since, in the key only when given: the caches of runs without them stay valid
    for name in OPTIONAL_KEY_ARGUMENTS:
        if getattr(data_args, name, None) is not None:
            arguments[name] = getattr(data_args, name)
    for name, needed in DEPENDENT_KEY_ARGUMENTS.items():
        if getattr(data_args, needed, None) is not None:
            arguments[name] = getattr(data_args, name)
    identity = {
        "version": FEATURE_VERSION,
        "format": source.format,
        "source": source.fingerprint,
        "arguments": arguments,
        "tokenizer": _tokenizer_identity(tokenizer),
        "spectrogram": asdict(spectrogram),
        "splits": list(splits),
    }
    if speaker_order is not None:
        identity["speaker_order"] = list(speaker_order)
    if only_speakers is not None:
        identity["only_speakers"] = sorted(only_speakers)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def feature_cache_path(data_args, key: str) -> str:
    """The cache folder of the features with `key`, under `--cache_dir` (else the `datasets` cache)."""
    return os.path.join(data_args.cache_dir or datasets.config.HF_DATASETS_CACHE, CACHE_FOLDER, key)


def folder_bytes(folder: str) -> int:
    """Bytes of the files under `folder`."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


# -- room -------------------------------------------------------------------------------------------------------------


def cache_bytes_per_second(spectrogram: SpectrogramConfig) -> float:
    """Bytes the cache stores per second of kept audio: the float32 waveform at the model's rate and the float32
    log-mel, `num_mel_bins` per hop (84 kB a second, 302 MB an hour, for MMS's 16 kHz, hop 256 and 80 bins). The
    ids, texts, Arrow offsets and the two JSON files add under 1%: measured, the demo folders' caches take 1.007x
    (`demo/kmr_ljspeech`, 32 clips, 55 s: 304 MB an hour) and 1.008x (`demo/kmr_common_voice`, 29 clips, 50 s: 305
    MB an hour) this figure."""
    frames_per_second = spectrogram.sampling_rate / spectrogram.hop_length
    return FLOAT32_BYTES * (spectrogram.sampling_rate + spectrogram.num_mel_bins * frames_per_second)


def _cached_seconds(audio, speaker, settings: FeatureSettings) -> float:
    """Seconds of audio the cache will hold for one clip: its header's duration, 0 for a clip `featurize` will drop
    for its speaker, its duration or a file that cannot be read."""
    if settings.selected_speakers is not None and str(speaker) not in settings.selected_speakers:
        return 0.0
    seconds = probe_seconds(audio, settings)
    if seconds is None or not settings.min_seconds <= seconds <= settings.max_seconds:
        return 0.0
    return seconds


def estimate_audio_seconds(split: datasets.Dataset, settings: FeatureSettings) -> tuple[float, int]:
    """Seconds of audio the cache will hold for `split`, extrapolated from the headers of up to `ROOM_SAMPLE_CLIPS`
    clips spread over it; and the number of clips read."""
    if len(split) == 0:
        return 0.0, 0
    count = min(len(split), ROOM_SAMPLE_CLIPS)
    indices = sorted({position * len(split) // count for position in range(count)})
    columns = [settings.audio_column] + ([settings.speaker_column] if settings.speaker_column else [])
    # indexing with a list reads the rows without writing an indices file, as `select` would
    rows = split.select_columns(columns)[indices]
    speakers = rows[settings.speaker_column] if settings.speaker_column else [None] * len(indices)
    seconds = sum(
        _cached_seconds(audio, speaker, settings) for audio, speaker in zip(rows[settings.audio_column], speakers)
    )
    return seconds * len(split) / len(indices), len(indices)


def estimate_cache_bytes(splits: dict[str, datasets.Dataset], settings: FeatureSettings) -> dict:
    """What the cache of `splits` will take: `bytes` (with `ROOM_MARGIN`), `seconds` of audio, `clips` and
    `measured` (the clips whose headers were read)."""
    seconds, measured = 0.0, 0
    for split in splits.values():
        split_seconds, split_measured = estimate_audio_seconds(split, settings)
        seconds += split_seconds
        measured += split_measured
    return {
        "bytes": int(seconds * cache_bytes_per_second(settings.spectrogram) * ROOM_MARGIN),
        "seconds": seconds,
        "clips": sum(len(split) for split in splits.values()),
        "measured": measured,
    }


def _existing_folder(path: str) -> str:
    """`path`, or its nearest parent that exists: the folder whose disk a new file under `path` lands on."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_cache_room(splits: dict[str, datasets.Dataset], settings: FeatureSettings, cache_path: str) -> dict:
    """Refuse to featurize `splits` when the disk of `cache_path` has less free space than their cache will take.

    Returns:
        `dict`: the estimate (`estimate_cache_bytes`) and the `free` bytes.

    Raises:
        `UnavailableError` naming the cache folder, the free and the needed space, and the ways out.
    """
    estimate = estimate_cache_bytes(splits, settings)
    folder = os.path.dirname(os.path.abspath(cache_path))
    free = shutil.disk_usage(_existing_folder(folder)).free
    logger.debug(
        "Feature cache: about %s for %.2f h of audio (%d clips, %d headers read); %s free in %s",
        format_bytes(estimate["bytes"]),
        estimate["seconds"] / 3600,
        estimate["clips"],
        estimate["measured"],
        format_bytes(free),
        folder,
    )
    if free < estimate["bytes"]:
        raise UnavailableError(
            f"Not enough free space for the feature cache in {folder}: {estimate['clips']} clips (about "
            f"{estimate['seconds'] / 3600:.2f} h of audio, from the headers of {estimate['measured']}) need about "
            f"{format_bytes(estimate['bytes'])} ({format_bytes(cache_bytes_per_second(settings.spectrogram) * 3600)} "
            f"per hour), and {format_bytes(free)} is free. Free some space there, or put the cache on another disk "
            "with --cache_dir DIR (or the HF_DATASETS_CACHE environment variable)."
        )
    return {**estimate, "free": free}


def _disk_full_error(error: BaseException) -> OSError | None:
    """The `OSError` of a full disk or quota in `error`'s chain (`datasets` re-raises a worker's error, pyarrow's
    carries the errno but no file name), else `None`."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# -- build folders ----------------------------------------------------------------------------------------------------


def _host_name() -> str:
    """This machine's name as a build folder records it (a shared --cache_dir may be seen by several machines)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def building_folder(cache_path: str) -> str:
    """The folder this process builds the cache `cache_path` in, renamed to `cache_path` when complete."""
    return f"{cache_path}.building-{_host_name()}-{os.getpid()}"


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_builds(cache_folder: str) -> list[str]:
    """Remove the build folders in `cache_folder` (`<key>.building-<host>-<pid>`) of processes of this machine that
    are gone: what a killed build leaves. A live process's folder (another run building now) is left alone, and so is
    one of another machine, whose processes cannot be seen from here. A folder named without a host (by an earlier
    version) counts as this machine's.

    Returns:
        `list[str]`: the folders removed.
    """
    if not os.path.isdir(cache_folder):
        return []
    removed, host = [], _host_name()
    for name in sorted(os.listdir(cache_folder)):
        match = _BUILDING_NAME.match(name)
        path = os.path.join(cache_folder, name)
        if match is None or not os.path.isdir(path):
            continue
        pid = int(match["pid"])
        if match["host"] not in (None, host):
            logger.info("Leaving %s: a build of machine %s, which may still be running there", path, match["host"])
            continue
        # a folder of this process's own pid is an earlier build's whose cleanup did not run (a reused pid)
        if pid != os.getpid() and _process_is_alive(pid):
            continue
        try:
            shutil.rmtree(path)
        except FileNotFoundError:  # another run removed it first
            continue
        except OSError as error:
            logger.warning("Cannot remove the stale feature cache build %s: %s", path, error)
            continue
        logger.info("Removed %s: a feature cache build left by process %d, which is gone", path, pid)
        removed.append(path)
    return removed


def write_feature_cache(
    splits: dict[str, datasets.Dataset],
    texts: dict[str, datasets.Dataset],
    settings: FeatureSettings,
    cache_path: str,
    *,
    num_proc: int | None,
    is_uroman: bool,
    report_entries: dict[str, dict],
    asr=None,
) -> dict:
    """Featurize `splits` into the cache folder `cache_path` and return their report.

    Args:
        splits (`dict[str, datasets.Dataset]`): the raw splits to featurize, by name.
        texts (`dict[str, datasets.Dataset]`): each split's text pass (`recipe.data.text_pass.encode_split`).
        settings (`FeatureSettings`): with the selected speakers and the speaker names.
        cache_path (`str`): the folder to create (`feature_cache_path`).
        num_proc (`int`, *optional*): worker processes; a small split runs in the main process (`workers_for`).
        is_uroman (`bool`): the tokenizer romanizes; the report then shows examples.
        report_entries (`dict[str, dict]`): entries added to a split's report, by split name (the speaker choice, the
            eval clips removed from train).
        asr (*optional*): --screen_asr_model's recognizer (`recipe.data.transcript_screening.load_screening_asr`),
            run by the report on the kept clips; None: no transcript screening.

    Returns:
        `dict`: split name -> report (`recipe.data.report.split_report`). When a split keeps no clip, nothing is
        saved (no folder at `cache_path`): the caller reports and stops.
    """
    features = feature_types(settings.speaker_names, settings.spectrogram.num_mel_bins)
    remove_stale_builds(os.path.dirname(os.path.abspath(cache_path)))
    room = check_cache_room(splits, settings, cache_path)
    building = building_folder(cache_path)
    os.makedirs(building)
    try:
        return _build(
            splits, texts, settings, cache_path, building, features, num_proc, is_uroman, report_entries, asr
        )
    except Exception as error:
        full = _disk_full_error(error)
        if full is None:
            raise
        raise UnavailableError(
            f"The disk of the feature cache {os.path.dirname(os.path.abspath(cache_path))} filled up while "
            f"featurizing ({os.strerror(full.errno)}); the partial build is removed. The cache "
            f"needs about {format_bytes(room['bytes'])}: free some space there, or put the cache on another disk with "
            "--cache_dir DIR (or the HF_DATASETS_CACHE environment variable)."
        ) from error
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _build(
    splits: dict[str, datasets.Dataset],
    texts: dict[str, datasets.Dataset],
    settings: FeatureSettings,
    cache_path: str,
    building: str,
    features: datasets.Features,
    num_proc: int | None,
    is_uroman: bool,
    report_entries: dict[str, dict],
    asr=None,
) -> dict:
    """`write_feature_cache`'s work, in the folder `building`, published as `cache_path` when complete."""
    report, manifest = {}, {}
    # --speaker_id best / --speakers best:N: chosen on the first split, applied to each (`recipe.data.speaker_best`)
    best = BestChoice(settings.best_speakers, settings.spectrogram.sampling_rate) if settings.best_speakers else None
    with one_torch_thread():
        for name, split in splits.items():
            featurized = split.map(
                featurize_batch,
                fn_kwargs={"settings": settings, "features": features, "texts": texts[name]},
                with_indices=True,
                batched=True,
                batch_size=FEATURE_BATCH_SIZE,
                remove_columns=split.column_names,
                features=features,
                num_proc=workers_for(len(split), num_proc),
                cache_file_name=os.path.join(building, f"{name}.arrow"),
                load_from_cache_file=False,
                # the cache key already names this content: without it, datasets hashes the function and its
                # arguments (the tokenizer) with dill for every split
                new_fingerprint=hashlib.sha256(f"{cache_path}:{name}".encode()).hexdigest()[:32],
                desc=f"Preprocessing {name}",
            )
            report[name], kept = split_report(
                featurized,
                settings.spectrogram.sampling_rate,
                is_uroman,
                settings.max_rate_deviation,
                best,
                asr=asr,
                max_transcript_cer=settings.max_transcript_cer,
            )
            report[name].update(report_entries.get(name, {}))
            files = [entry["filename"] for entry in featurized.cache_files]
            # datasets reports absolute paths; a relative --cache_dir must compare equal to them
            if not files or any(os.path.dirname(file) != os.path.abspath(building) for file in files):
                raise RuntimeError(f"datasets.map wrote {files}, expected files in {building}")
            manifest[name] = {
                "files": [os.path.basename(file) for file in files],
                # None when every row is a kept clip (the usual case): then no selection is made when loading
                "kept_rows": None if len(kept) == len(featurized) else kept,
            }
            if best is not None and best.chosen is not None:
                # the speaker_id the loaded rows get (`relabel_speakers`): an index of the chosen speakers
                manifest[name]["speaker_names"] = list(ordered_speakers(best.chosen, settings.speaker_order))
    if not all(entry["kept"] for entry in report.values()) or (best is not None and best.error):
        # An empty split or a failed speaker choice stops the run (`recipe.data.report.check_report`,
        # `recipe.data.speaker_best.raise_choice_error`): nothing worth caching.
        return report
    del featurized
    with open(os.path.join(building, BUILD_REPORT), "w", encoding="utf-8") as handle:
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
    else:
        _BUILT_HERE.add(os.path.abspath(cache_path))
    return report


def load_feature_cache(cache_path: str) -> tuple[datasets.DatasetDict, dict]:
    """The kept clips of the cached splits, memory-mapped from the Arrow files of the cache folder, without the columns
    that only the report needed; and the report of the build."""
    manifest_path = os.path.join(cache_path, CACHE_MANIFEST)
    if not os.path.isfile(manifest_path):
        raise DataError(f"The feature cache {cache_path} has no {CACHE_MANIFEST}; rerun with --overwrite_cache")
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    splits = {}
    for name, entry in manifest.items():
        parts = [datasets.Dataset.from_file(os.path.join(cache_path, file)) for file in entry["files"]]
        split = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        if entry.get("speaker_names") is not None:  # before the selection, which would make it copy the rows
            split = relabel_speakers(split, entry["speaker_names"])
        if entry["kept_rows"] is not None:
            split = split.select(entry["kept_rows"])
        splits[name] = split.remove_columns(list(INTERNAL_COLUMNS))
    with open(os.path.join(cache_path, BUILD_REPORT), encoding="utf-8") as handle:
        report = json.load(handle)
    _log_location(cache_path)
    return datasets.DatasetDict(splits), report


def _log_location(cache_path: str) -> None:
    """One line per loaded cache: where its features are, whether this run built them, what they and every feature
    cache beside them take on disk, so that a user knows where the disk went and how to move it."""
    folder = os.path.dirname(os.path.abspath(cache_path))
    how = "built by this run" if os.path.abspath(cache_path) in _BUILT_HERE else "reused from an earlier run"
    logger.info(
        "Features: %s (%s, %s; all feature caches in %s: %s; --cache_dir or HF_DATASETS_CACHE moves them)",
        cache_path,
        how,
        format_bytes(folder_bytes(cache_path)),
        folder,
        format_bytes(folder_bytes(folder)),
    )
