"""From a dataset on disk or on the Hub to filtered, Arrow-cached training features, with every lost clip accounted for.

    from recipe.data.pipeline import prepare_datasets
    features, report = prepare_datasets(data_args, tokenizer, model.config, output_dir)

Steps, for the training split and the eval split (or the one of them a caller asks for with `splits=`):

1. open the source (`recipe.data.sources`, the registry of dataset layouts): a Hub / saved / parquet / audiofolder
   dataset, a Common Voice folder or an LJSpeech folder;
2. pick the speaker(s) (`--speaker_id ID` or `top`, `--speakers`; `best` is chosen after step 4, on what the
   screening kept: `recipe.data.speaker_best`) and the eval split (the source's dev split, else a fixed
   `--eval_fraction` of the selected training clips; `recipe.data.splits`), or, for a caller that asks for one
   split whole (`whole_split=`, `python -m recipe.compare --references_split`), that split with nothing held out;
3. normalize and tokenize every text (`recipe.data.text_pass`, in a first `datasets.map`) and stop before any audio is
   decoded when more than `--max_text_not_in_vocabulary_fraction` of a split loses letters or digits to the vocabulary
   (`recipe.data.text_screening`);
4. in `datasets.map` (`--preprocessing_num_workers` processes for a split of at least `MIN_CLIPS_PER_WORKER` clips per
   worker; a smaller split runs in the main process, where a pool costs more than it saves): decode, screen the audio
   (cut files, NaN / inf samples, silence, clipping), compute the log-mel target, and give every clip that cannot be
   used exactly one drop reason (`recipe.data.features`; `too_many_tokens` covers a text over `--max_tokens_length`
   and one with more tokens than the clip has spectrogram frames, which no monotonic alignment can fit);
5. the map writes its Arrow files straight into `<cache_dir>/vits_features/<key>/` (`recipe.data.feature_cache`),
   where the key hashes the source's content and every argument that changes the features: a second run with the
   same arguments loads it memory-mapped and skips steps 2-4. A second worker pays only with an idle core for it
   (`benchmarks/README.md`);
6. with `--screen_asr_model`, transcribe the kept clips in the main process and drop those whose transcript is more
   than `--max_transcript_cer` away from their text (`recipe.data.transcript_screening`; the model is loaded before
   step 2, so that one that cannot be loaded stops the run before any audio is decoded); with `best`, rank the
   speakers on what the screening kept and mark the clips of the others `speaker_filtered` (when the cache is
   built; loading gives `speaker_id` the chosen speakers' indices: `recipe.data.speaker_best`);
   apply `--max_train_samples` / `--max_eval_samples`, write `<output_dir>/data_report.json`, print its summary and
   stop with a `DataError` when too many clips are bad or a split is left empty (`recipe.data.report`).

Cached columns, one row per clip: `input_ids`, `waveform` (float32 at the model rate), `log_mel` (`(frames, 80)`,
frames = samples // hop), `waveform_length`, `mel_length`, `tokens_length`, `speaker_id` (a `ClassLabel`: its
`names` are the speaker ids of the source), `text` (normalized, what the model reads), `source_text` (as written in
the source: what speech recognition is scored against) and `path`. The linear spectrogram the posterior
encoder reads is not cached: it is computed from `waveform` on the device in the training step (`recipe.audio`).
Caching it (513 float32 per frame) would multiply the disk the cache takes to save one STFT per step:
`scripts/measure_feature_cache.py` measures both per hour of audio, and `docs/results.md` gives its figures.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
from collections.abc import Callable

import datasets

from recipe.audio import SpectrogramConfig
from recipe.data.feature_cache import feature_cache_key, feature_cache_path, load_feature_cache, write_feature_cache
from recipe.data.features import DROP_REASONS, FeatureSettings
from recipe.data.report import (
    REPORT_NAME,
    check_report,
    format_report,
    kept_per_speaker,
    text_loss_bound,
    write_report,
)
from recipe.data.source import DataError, Source
from recipe.data.sources import load_source_from_args
from recipe.data.speaker_best import best_count, raise_choice_error
from recipe.data.splits import SPLITS, choose_splits, requested_splits, speaker_names, whole_split
from recipe.data.text_pass import check_text_loss, encode_split
from recipe.data.transcript_screening import load_screening_asr

__all__ = ["DROP_REASONS", "DataError", "format_report", "prepare_datasets"]

logger = logging.getLogger(__name__)


def _is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (`torchrun` / `accelerate launch` set `RANK`)."""
    return os.environ.get("RANK") in (None, "", "0")


def _build_features(
    source: Source,
    data_args,
    tokenizer,
    spectrogram: SpectrogramConfig,
    cache_path: str,
    splits: tuple[str, ...],
    whole: str | None = None,
    speaker_order: tuple[str, ...] | None = None,
    only_speakers: tuple[str, ...] | None = None,
) -> dict:
    """Featurize `splits` and save them (with their report) at `cache_path`. Returns the report.

    The training split is read (for the speaker choice and the eval hold-out) even when only `"eval"` is asked for,
    so that the eval clips are the ones a training run on the same arguments holds out (with `--speaker_id best` /
    `--speakers best:N` it is featurized too: the speakers are chosen on its screening); with `whole` (a split name or
    `ALL_CLIPS`) the eval split is that split whole instead (`best` chooses on it), and no training split is read.
    Every requested split's texts are encoded and checked (`check_text_loss`) before any audio is decoded.
    """
    # --screen_asr_model: loaded once, here, so that a model that cannot be loaded stops the run before any audio
    # is decoded (not after the featurizing); the report runs it in this process (`recipe.data.transcript_screening`)
    asr = load_screening_asr(data_args)
    num_proc = data_args.preprocessing_num_workers if (data_args.preprocessing_num_workers or 0) > 1 else None
    settings = FeatureSettings.for_source(source, data_args, spectrogram, single_thread=num_proc is not None)
    if whole is None:
        train, eval_split, selected, overlap_removed = choose_splits(source, data_args, settings, num_proc)
    else:
        eval_split, selected = whole_split(source, whole, data_args, settings, num_proc)
        train, overlap_removed = eval_split, 0
    if only_speakers is not None:
        selected = _only(selected, source, train, only_speakers, data_args.dataset_name)
    best = best_count(data_args)
    settings = dataclasses.replace(
        settings,
        selected_speakers=selected,
        speaker_names=speaker_names(source, [train, eval_split], selected, speaker_order),
        best_speakers=best,
        speaker_order=speaker_order,
    )
    if best and whole is None:
        splits = SPLITS  # `best` is chosen on the training split's screening: it is featurized (and reported) too
    requested = {name: split for name, split in (("train", train), ("eval", eval_split)) if name in splits}
    texts = {}
    for name, split in requested.items():
        texts[name] = encode_split(split, name, settings, tokenizer, num_proc, cache_path)
        check_text_loss(name, split, texts[name], settings, data_args.max_text_not_in_vocabulary_fraction)

    report_entries = {name: {} for name in requested}
    if selected is not None:
        for entries in report_entries.values():
            entries["speaker_id"] = selected[0] if len(selected) == 1 else list(selected)
    if overlap_removed and "train" in report_entries:
        report_entries["train"]["overlap_with_eval_removed"] = overlap_removed
    return write_feature_cache(
        requested,
        texts,
        settings,
        cache_path,
        num_proc=num_proc,
        is_uroman=bool(getattr(tokenizer, "is_uroman", False)),
        report_entries=report_entries,
        asr=asr,
    )


def _only(
    selected: tuple[str, ...] | None, source: Source, train, only_speakers: tuple[str, ...], dataset: str
) -> tuple[str, ...]:
    """The selected speakers (`None`: every speaker of `train`) that `only_speakers` names; a `DataError` when none
    is (replay data that holds none of a multi-speaker model's speakers)."""
    candidates = selected if selected is not None else {str(s) for s in train[source.speaker_column]}
    kept = tuple(sorted(set(candidates) & set(only_speakers)))
    if not kept:
        shown = ", ".join(sorted(candidates)[:5])
        raise DataError(
            f"{dataset} has no clip of the model's {len(only_speakers)} speakers (its speakers.json); its speakers: "
            f"{shown}{', ...' if len(candidates) > 5 else ''}. Replay data must hold clips of the speakers to keep"
        )
    return kept


def _apply_cap(split: datasets.Dataset, limit: int | None, split_report: dict, sampling_rate: int) -> datasets.Dataset:
    """The first `limit` clips of `split` (`--max_train_samples` / `--max_eval_samples`), noted in its report."""
    if limit is None:
        return split
    if limit < 1:
        raise DataError(f"A max-samples cap must be positive, not {limit}")
    if limit < len(split):
        split = split.select(range(limit))
    seconds = sum(split["waveform_length"]) / sampling_rate
    split_report["max_samples"] = {"limit": limit, "kept": len(split), "hours": seconds / 3600}
    return split


def prepare_datasets(
    data_args,
    tokenizer,
    model_config,
    output_dir: str,
    *,
    splits: tuple[str, ...] = SPLITS,
    token: str | None = None,
    is_main_process: bool | None = None,
    whole_split: str | None = None,
    source: Source | None = None,
    check: Callable[[dict], None] | None = None,
    speaker_order: tuple[str, ...] | None = None,
    only_speakers: tuple[str, ...] | None = None,
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
        whole_split (`str`, *optional*): with `splits=("eval",)`, the eval split is this split of the source whole
            (`"all"`: every clip of every split, each once), capped to its first `--max_eval_samples` clips before
            any is decoded, instead of the eval split training holds out; no training split is read. For
            recordings that are all meant for evaluation (`python -m recipe.compare --references_split`). Part of
            the cache key.
        source (`Source`, *optional*): the source of `data_args`, when the caller has already opened it
            (`recipe.data.sources.load_source_from_args`).
        check (`Callable[[dict], None]`, *optional*): checks the report instead of `check_report` (a caller that
            skips broken clips rather than stopping on them); it is called before the features are returned, and
            also when a split came out empty, which still raises a `DataError` if `check` does not.
        speaker_order (`tuple[str, ...]`, *optional*): with `--speakers`, a multi-speaker model's speakers in id order
            (`recipe.voices.speaker_map.model_speaker_order`): the data's speakers the model has take its ids, the
            others follow (`recipe.data.splits.ordered_speakers`). Part of the cache key.
        only_speakers (`tuple[str, ...]`, *optional*): keep only the clips of these speakers (of those the speaker
            flags select): the replay data of a multi-speaker model's speakers. Part of the cache key.

    Returns:
        `tuple(datasets.DatasetDict, dict)`: the requested splits (`"train"`, `"eval"`) with the cached columns (see
        the module docstring), and the report (`recipe.data.report`): per split `seen`, `kept`, `hours`, `dropped`
        (reason -> count and up to 10 example paths; for `text_not_in_vocabulary` also each example's
        `lost_characters` and every lost character's count, `characters`), `dropped_characters`, `clipping` (clips
        with samples at full scale, the most clipped with their share) and `max_samples` when a cap applies.

    Raises:
        `DataError`: a missing dataset, split or column; a metadata file that is not UTF-8; more than
        `--max_text_not_in_vocabulary_fraction` of a split's clips whose text loses letters or digits (raised before
        any audio is decoded, with no report); more than `--max_bad_fraction` broken clips in a split; or a split
        that filtering leaves empty; `--speaker_id best` / `--speakers best:N` with more speakers than the data has
        (raised before any audio is decoded), or with fewer speakers keeping a clip after screening than it
        chooses. Except where said, the report is written before the error is raised.
        `AsrUnavailableError` (an `InputError`): `--screen_asr_model` cannot be loaded (raised before any audio is
            decoded, with no report).
        `ValueError`: `splits` names something other than `"train"` / `"eval"`, or `whole_split` comes with a
        training split.
    """
    splits = requested_splits(splits)
    if whole_split is not None and splits != ("eval",):
        raise ValueError(f"whole_split gives the eval split alone: pass splits=('eval',), not {splits}")
    if is_main_process is None:
        is_main_process = _is_main_process()
    if check is None:
        check = functools.partial(
            check_report,
            max_bad_fraction=data_args.max_bad_fraction,
            max_text_loss_fraction=text_loss_bound(data_args),
        )
    spectrogram = SpectrogramConfig.from_model_config(model_config)
    if source is None:
        source = load_source_from_args(data_args, token=token)
    # a whole split and its cap make other features than the hold-out of the same arguments
    key_splits = splits if whole_split is None else (*splits, f"whole:{whole_split}:{data_args.max_eval_samples}")
    key = feature_cache_key(source, data_args, tokenizer, spectrogram, key_splits, speaker_order, only_speakers)
    cache_path = feature_cache_path(data_args, key)
    if data_args.overwrite_cache and os.path.isdir(cache_path):
        if is_main_process:
            shutil.rmtree(cache_path)
        else:
            logger.info("--overwrite_cache: reusing %s, which the main process has rebuilt", cache_path)
    if os.path.isdir(cache_path):
        logger.info("Loading cached features from %s", cache_path)
    else:
        logger.info("Preprocessing %s into %s", data_args.dataset_name, cache_path)
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        report = _build_features(
            source, data_args, tokenizer, spectrogram, cache_path, splits, whole_split, speaker_order,
            only_speakers,
        )  # fmt: skip
        if not os.path.isdir(cache_path):  # a split came out empty: report it and stop
            write_report(report, output_dir)
            raise_choice_error(report, os.path.join(output_dir, REPORT_NAME))
            check(report)
            raise DataError(f"No features were saved for {data_args.dataset_name}; see {output_dir}/{REPORT_NAME}")
    features, report = load_feature_cache(cache_path)

    limits = {"train": data_args.max_train_samples, "eval": data_args.max_eval_samples}
    features = datasets.DatasetDict(
        {name: _apply_cap(features[name], limits[name], report[name], spectrogram.sampling_rate) for name in splits}
    )
    if data_args.speakers is not None:
        for name in splits:
            report[name]["speakers"] = kept_per_speaker(features[name], spectrogram.sampling_rate)
    write_report(report, output_dir)
    check(report)
    return features, report
