"""One clip's training features, as the `datasets.map` workers compute them: decode, screen, featurize.

    settings = FeatureSettings.for_source(source, data_args, spectrogram, single_thread=False)
    clip = featurize(row, settings)      # the clip's features, or empty ones and its one drop reason
    table = featurize_batch(batch, indices, settings, feature_types(names, 80), texts)

A clip is decoded with `recipe.audio` (soundfile + soxr, at the model's sampling rate; DC offset removed), screened
(`recipe.data.audio_screening`: cut files, NaN / inf samples, silence, clipping; `recipe.data.speech_activity`:
silence trimmed, no speech, noise, telephone band; with --min_quality, `recipe.data.quality`: a DNSMOS score),
checked against its text (read from the text pass,
`recipe.data.text_pass`) and given its log-mel target. A clip that cannot be used gets exactly one drop
reason, the first of `DROP_REASONS` that applies, and empty arrays. `featurize_batch` runs in the worker processes:
`FeatureSettings` is picklable and holds all a worker needs besides the row; `workers_for` and `one_torch_thread` set
up the main process's side of the map.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import torch

from recipe.audio import AudioDecodeError, SpectrogramConfig, decode_audio, log_mel_spectrogram, resample, to_mono
from recipe.data.audio_screening import (
    AudioLevels,
    AudioScreening,
    activity_reason,
    broken_reason,
    level_reason,
    measure_levels,
    quality_reason,
)
from recipe.data.feature_table import rows_to_table
from recipe.data.quality import quality_scores
from recipe.data.source import Source, resolve_audio_path
from recipe.data.speech_activity import measure_activity, remove_dc_offset, trim_bounds
from recipe.data.text_screening import lost_characters

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
    # no run of frames above the speech detector's threshold (recipe.data.speech_activity)
    "no_speech",
    # speech less than --min_snr_db above the pauses and the room tone
    "low_snr",
    # a spectrum that stops below --min_bandwidth_hz (telephone audio resampled upwards)
    "narrow_band",
    # a DNSMOS overall score below --min_quality (recipe.data.quality; off unless given): noise, reverberation or
    # distortion that the detector's SNR and bandwidth do not see
    "low_quality",
    # the tokenizer deletes a letter or digit of the text (unless --keep_clips_with_dropped_characters)
    "text_not_in_vocabulary",
    "empty_text",
    # more tokens than --max_tokens_length, or more tokens than audio (spectrogram) frames
    "too_many_tokens",
    # with --screen_asr_model: the speech recognizer's transcript is more than --max_transcript_cer (character error
    # rate) away from the clip's text (a misread or another sentence). Given by the report on the clips every check
    # above kept (`recipe.data.transcript_screening`)
    "transcript_mismatch",
    # characters per second of speech more than --max_rate_deviation away from the speaker's median: a transcript
    # that does not match its reading. Given by the report (`recipe.data.report`), which sees every clip of a speaker.
    "rate_outlier",
)
# Reasons that mean broken input (as opposed to a filter doing its job); their share is bounded by --max_bad_fraction.
# Each of them is checked before the filters, so that a broken file is never counted as, say, `too_short`.
BAD_REASONS = ("path_outside_dataset", "missing_file", "decode_error", "truncated", "non_finite_audio")
# A split with fewer clips per requested worker is featurized in the main process: `datasets`' pool (forks, a manager
# process and its queue polls, the shard merge) costs 150-190 ms per split (benchmarks/README.md), what a second
# worker saves on 45-120 clips when it has a core to itself, and more than it saves when it has not.
MIN_CLIPS_PER_WORKER = 128
# Clips per `datasets.map` batch: each batch is one Arrow table (`featurize_batch`). Small, so that a batch of 30 s
# clips holds about 40 MB of features.
FEATURE_BATCH_SIZE = 16
# Columns of `feature_types` that only the report reads: the loaded features go without them.
# What the speech detector measured on each decoded clip (NaN for a clip that did not decode whole) and its DNSMOS
# overall score (`quality`: with --min_quality only, on the clips within the duration bounds, else NaN): the report's
# distributions and its per-clip table (`data_clips.tsv`).
SCREENING_COLUMNS = (
    "trimmed_start_seconds",
    "trimmed_end_seconds",
    "speech_seconds",
    "snr_db",
    "bandwidth_hz",
    "quality",
)
INTERNAL_COLUMNS = (
    "drop_reason",
    "dropped_characters",
    "num_characters",
    "clipped_fraction",
    "speaker",
    *SCREENING_COLUMNS,
)


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
    # Set torch to one thread in worker processes (the main process does it around the map, see `one_torch_thread`).
    single_thread: bool
    screening: AudioScreening = AudioScreening()
    # --keep_clips_with_dropped_characters: a text that loses letters or digits is trained on as the tokenizer left it
    keep_dropped_characters: bool = False
    # --allow_audio_outside_dataset (a saved / parquet dataset only, see `recipe.data.source`)
    allow_outside: bool = False
    # --max_rate_deviation, which the report applies (`recipe.data.report.split_report`); 0: off
    max_rate_deviation: float = 0.0
    # --max_transcript_cer, which the report applies with --screen_asr_model (`recipe.data.transcript_screening`;
    # the recognizer itself is loaded once, in the main process, and is not part of the settings the workers get).
    # None outside a run: without a recognizer it is never read, and the flag holds its one default.
    max_transcript_cer: float | None = None
    # speakers chosen after screening (--speaker_id best: 1, --speakers best:N: N; 0: none), by the cache build
    # (`recipe.data.speaker_best`); `selected_speakers` is then None: every candidate is featurized
    best_speakers: int = 0
    # a multi-speaker model's speakers (its speakers.json), whose ids the data's speakers take: `speaker_names` starts
    # with them (`recipe.data.splits.ordered_speakers`); None: the chosen speakers, sorted
    speaker_order: tuple[str, ...] | None = None

    @classmethod
    def for_source(
        cls, source: Source, data_args, spectrogram: SpectrogramConfig, *, single_thread: bool
    ) -> FeatureSettings:
        """The settings for `source`'s clips under `data_args` (a `DataArguments`), keeping every speaker: the
        speaker choice is made on them, then set with `dataclasses.replace`."""
        return cls(
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
            selected_speakers=None,
            speaker_names=(),
            single_thread=single_thread,
            screening=AudioScreening.from_args(data_args),
            keep_dropped_characters=data_args.keep_clips_with_dropped_characters,
            allow_outside=source.allow_outside,
            max_rate_deviation=data_args.max_rate_deviation,
            max_transcript_cer=data_args.max_transcript_cer,
        )


def workers_for(num_clips: int, num_proc: int | None) -> int | None:
    """`num_proc` for a split of `num_clips` clips: None (the main process) when the pool would not pay for itself."""
    if num_proc is None or num_clips < MIN_CLIPS_PER_WORKER * num_proc:
        return None
    return num_proc


@contextlib.contextmanager
def one_torch_thread():
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


def audio_path(audio, settings: FeatureSettings) -> tuple[str | None, str]:
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

    `audio` is the row's audio entry and `path` the file it resolves to (`audio_path`; `None` for bytes, `""` for an
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
    # an offset would shift the loudness and the detector's levels (clipping is read from the file's own samples)
    mono = remove_dc_offset(to_mono(decoded.samples))
    levels = measure_levels(decoded.samples, mono, decoded.sampling_rate)
    return resample(mono, decoded.sampling_rate, settings.spectrogram.sampling_rate), shown, "", levels


def featurize(row: dict, settings: FeatureSettings) -> dict:
    """One clip's features and its drop reason ("" when kept); dropped clips get empty arrays.

    `row` holds the raw columns and the text pass's `TEXT_FEATURES` (`recipe.data.text_pass.encode_texts`).
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

    reason, waveform, levels, screening = "", None, None, dict.fromkeys(SCREENING_COLUMNS, float("nan"))
    # Refuse an escaping metadata path before anything else, without touching the file.
    path, _ = audio_path(audio, settings)
    if path is None and not (isinstance(audio, dict) and audio.get("bytes") is not None):
        reason = "path_outside_dataset"
    if not reason and settings.selected_speakers is not None and speaker not in settings.selected_speakers:
        reason = "speaker_filtered"
    if not reason:
        waveform, display_path, reason, levels = _decode(audio, path, settings)
    if not reason:
        waveform, activity, screening = _screen_speech(waveform, settings)
        seconds = len(waveform) / settings.spectrogram.sampling_rate
        if seconds < settings.min_seconds or len(waveform) < settings.spectrogram.n_fft:
            reason = "too_short"
        elif seconds > settings.max_seconds:
            reason = "too_long"
        else:
            if settings.screening.min_quality:
                # scored on what would be trained on (the trimmed clip), whatever the other checks find
                screening["quality"] = quality_scores(waveform, settings.spectrogram.sampling_rate).overall
            reason = (
                level_reason(levels, settings.screening)
                or activity_reason(activity, settings.screening)
                or quality_reason(screening["quality"], settings.screening)
                or _text_reason(row, len(waveform), settings)
            )

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
        "speaker": speaker,
        **screening,
        "source_text": text,
    }


def _screen_speech(waveform: np.ndarray, settings: FeatureSettings):
    """The clip with its silence trimmed (with --trim_silence), the detector's `SpeechActivity` and the clip's
    `SCREENING_COLUMNS`. Trimming comes before the duration checks: a clip trimmed below --min_duration_in_seconds
    is `too_short`."""
    rate = settings.spectrogram.sampling_rate
    activity = measure_activity(waveform, rate)
    start, end = 0, len(waveform)
    if settings.screening.trim_silence:
        start, end = trim_bounds(activity, len(waveform), rate)
    columns = {
        "trimmed_start_seconds": start / rate,
        "trimmed_end_seconds": (len(waveform) - end) / rate,
        "speech_seconds": activity.speech_seconds,
        "snr_db": activity.snr_db,
        "bandwidth_hz": activity.bandwidth_hz,
        "quality": float("nan"),  # set by `featurize` with --min_quality
    }
    return waveform[start:end], activity, columns


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
    `features`; `texts` holds the split's `TEXT_FEATURES` (`recipe.data.text_pass.encode_split`), row for row.

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


def feature_types(speaker_names: tuple[str, ...], num_mels: int) -> datasets.Features:
    """The columns `featurize` gives, with their types: what the cache stores, one row per clip."""
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
            "speaker": datasets.Value("string"),
            **{name: datasets.Value("float32") for name in SCREENING_COLUMNS},
            "source_text": datasets.Value("string"),
        }
    )
