"""The feature cache: a folder of Arrow files per set of features, named by a hash of everything they depend on.

    cache_path = feature_cache_path(data_args, feature_cache_key(source, data_args, tokenizer, spectrogram, splits))
    report = write_feature_cache(splits, texts, settings, cache_path, num_proc=2, is_uroman=False, report_entries={})
    features, report = load_feature_cache(cache_path)

A folder `<cache_dir>/vits_features/<key>/` holds, per split, the Arrow file(s) `datasets.map` wrote while
featurizing (one Arrow table per batch of clips, one file per worker; dropped clips are empty rows), the report of
the build (`build_report.json`) and, written last, the manifest (`features.json`: per split its files and the rows
to read, `null` when every row is a kept clip). A folder with a manifest is complete; it is built under a temporary
name and renamed into place (`recipe.folders.publish_folder`), so that a reader never sees half a cache. Loading
memory-maps the files: nothing is copied.

The key (`feature_cache_key`) hashes the source's content (`Source.fingerprint`), its layout's name, the featurized
splits, the tokenizer, the spectrogram geometry, `FEATURE_VERSION` and every argument the features depend on: the
same inputs always give the same key, across versions of this code that keep `FEATURE_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
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
from recipe.data.splits import SPLITS
from recipe.folders import publish_folder

logger = logging.getLogger(__name__)

# Bump when the feature computation or the cache layout changes, so that old caches are not reused.
FEATURE_VERSION = 5
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
    "keep_clips_with_dropped_characters",
    "allow_audio_outside_dataset",
)


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
    """Hash of the source's content, of the featurized `splits` and of every argument the cached features depend on
    (`KEY_ARGUMENTS`)."""
    identity = {
        "version": FEATURE_VERSION,
        "format": source.format,
        "source": source.fingerprint,
        "arguments": {name: getattr(data_args, name) for name in KEY_ARGUMENTS},
        "tokenizer": _tokenizer_identity(tokenizer),
        "spectrogram": asdict(spectrogram),
        "splits": list(splits),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def feature_cache_path(data_args, key: str) -> str:
    """The cache folder of the features with `key`, under `--cache_dir` (else the `datasets` cache)."""
    return os.path.join(data_args.cache_dir or datasets.config.HF_DATASETS_CACHE, CACHE_FOLDER, key)


def write_feature_cache(
    splits: dict[str, datasets.Dataset],
    texts: dict[str, datasets.Dataset],
    settings: FeatureSettings,
    cache_path: str,
    *,
    num_proc: int | None,
    is_uroman: bool,
    report_entries: dict[str, dict],
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

    Returns:
        `dict`: split name -> report (`recipe.data.report.split_report`). When a split keeps no clip, nothing is
        saved (no folder at `cache_path`): the caller reports and stops.
    """
    features = feature_types(settings.speaker_names, settings.spectrogram.num_mel_bins)
    building = f"{cache_path}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    report, manifest = {}, {}
    try:
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
                report[name], kept = split_report(featurized, settings.spectrogram.sampling_rate, is_uroman)
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
        if not all(entry["kept"] for entry in report.values()):
            # An empty split stops the run (`recipe.data.report.check_report`): nothing worth caching.
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
    finally:
        shutil.rmtree(building, ignore_errors=True)
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
        if entry["kept_rows"] is not None:
            split = split.select(entry["kept_rows"])
        splits[name] = split.remove_columns(list(INTERNAL_COLUMNS))
    with open(os.path.join(cache_path, BUILD_REPORT), encoding="utf-8") as handle:
        report = json.load(handle)
    return datasets.DatasetDict(splits), report
