"""Setting up the listening metrics of a run (`recipe.training.listening`): the monitor's sentences, the recognizer,
the speaker encoder with the eval recordings' centroids, the quality model; and the one line saying what is off.

    texts, scoring_texts = monitor_sentences(training_args, tokenizer, eval_dataset)
    scorer = build_listening(training_args, eval_dataset, scoring_texts, sampling_rate)

Loaded before training, so that an `--eval_asr_model` that cannot be loaded stops the run then, in one line naming
it (`recipe.evaluation.asr.load_asr`, as `--screen_asr_model`). Models load on the main process only, which alone
scores; the others know which metrics there are, to receive them.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from recipe.errors import MissingExtraError
from recipe.training.listening import MAX_REFERENCE_CLIPS, ListeningScorer
from recipe.training.listening_arguments import metric_key

logger = logging.getLogger(__name__)

# Sentences the amplitude monitor, the TensorBoard samples and the listening metrics use when none are given
NUM_MONITOR_TEXTS = 3
FLAG = "--eval_asr_model"


def monitor_sentences(training_args, tokenizer, eval_dataset) -> tuple[list[str], list[str]]:
    """The sentences the monitor synthesizes (what the model reads) and the same as written (what a transcript is
    scored against): `--eval_listen_texts` (normalized for the model as training texts are), else
    `--amplitude_monitor_texts` (given as the model reads them), else the first eval clips'."""
    if training_args.eval_listen_texts:
        from recipe.text import normalize_text

        written = list(training_args.eval_listen_texts)
        return [normalize_text(text, tokenizer) for text in written], written
    if training_args.amplitude_monitor_texts:
        return list(training_args.amplitude_monitor_texts), list(training_args.amplitude_monitor_texts)
    rows = eval_dataset.select(range(min(NUM_MONITOR_TEXTS, len(eval_dataset))))
    return list(rows["text"]), list(rows["source_text"])


def _main_process_only(*args, **kwargs):
    raise RuntimeError("the listening metrics are scored on the main process only")


def _recognizer(training_args, is_main: bool):
    from recipe.evaluation.asr import load_asr, transcribe

    if not is_main:
        return _main_process_only
    logger.info("Loading the eval speech recognizer %s on %s", training_args.eval_asr_model, training_args.device)
    asr = load_asr(training_args.eval_asr_model, training_args.device, flag=FLAG)
    return functools.partial(transcribe, asr)


def _encoder(is_main: bool) -> tuple[object, str | None]:
    """The embedding function, or `None` and why."""
    from recipe.evaluation.speaker_similarity import embed_waveforms, missing_message, voice_encoder

    try:
        if is_main:
            voice_encoder()
        else:
            from recipe.evaluation.speaker_similarity import similarity_available

            if not similarity_available():
                raise MissingExtraError(missing_message("eval_similarity"))
    except MissingExtraError as error:
        return None, str(error)
    return embed_waveforms, None


def reference_centroids(embed, eval_dataset, sampling_rate: int) -> dict:
    """The centroid of the eval recordings of each speaker index (its first `MAX_REFERENCE_CLIPS` clips), and
    under `None` of all of them."""
    from recipe.evaluation.speaker_similarity import centroid

    speakers = eval_dataset["speaker_id"] if "speaker_id" in eval_dataset.column_names else [0] * len(eval_dataset)
    chosen: dict[int, list[int]] = {}
    for index, speaker in enumerate(speakers):
        if len(chosen.setdefault(int(speaker), [])) < MAX_REFERENCE_CLIPS:
            chosen[int(speaker)].append(index)
    rows = eval_dataset.select_columns(["waveform"]).with_format("numpy")
    embeddings = {
        speaker: embed([np.asarray(rows[index]["waveform"], dtype=np.float32) for index in indices], sampling_rate)
        for speaker, indices in chosen.items()
    }
    centroids = {speaker: centroid(rows_) for speaker, rows_ in embeddings.items()}
    centroids[None] = centroid(np.vstack(list(embeddings.values())))
    return centroids


def _speaker_keys(eval_dataset) -> dict:
    speakers = eval_dataset["speaker_id"] if "speaker_id" in eval_dataset.column_names else []
    return {None: None, **{int(speaker): None for speaker in set(speakers)}}


def _quality() -> tuple[object, str | None]:
    from recipe.data.quality import missing_message, quality_available, quality_scores

    if not quality_available():
        return None, missing_message("eval_quality")
    return (lambda waveform, rate: quality_scores(waveform, rate).overall), None


def build_listening(training_args, eval_dataset, scoring_texts: list[str], sampling_rate: int):
    """The run's `ListeningScorer`, or `None` with `--eval_listening false`.

    Raises:
        `AsrUnavailableError`: `--eval_asr_model` cannot be loaded (one line naming it). `MissingExtraError`:
            `--metric_for_best_model` is a metric whose extra is missing.
    """
    if not training_args.eval_listening:
        return None
    is_main = training_args.process_index == 0
    off = []
    transcribe = _recognizer(training_args, is_main) if training_args.eval_asr_model else None
    if transcribe is None:
        off.append(f"eval_cer needs {FLAG}")
    embed, why = _encoder(is_main)
    if embed is None:
        off.append(why)
    quality, why = _quality()
    if quality is None:
        off.append(why)
    key = metric_key(training_args.metric_for_best_model)
    needed = {"eval_similarity": embed, "eval_listener": embed, "eval_quality": quality}
    if key in needed and needed[key] is None:
        raise MissingExtraError(f"--metric_for_best_model {training_args.metric_for_best_model}: " + "; ".join(off))
    references = {}
    if embed is not None:
        references = reference_centroids(embed, eval_dataset, sampling_rate) if is_main else _speaker_keys(eval_dataset)
    parts = (("eval_cer", transcribe), ("eval_similarity", embed), ("eval_quality", quality))
    on = [name for name, part in parts if part is not None]
    if is_main:
        logger.info(
            "Listening metrics at each evaluation: %s%s", ", ".join(on) or "none",
            f"; off: {'; '.join(off)}" if off else "",
        )  # fmt: skip
    if not on:
        return None
    return ListeningScorer(
        scoring_texts, transcribe, embed, references, quality, cer_margin=training_args.listener_cer_margin
    )
