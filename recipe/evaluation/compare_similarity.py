"""Speaker similarity in `python -m recipe.compare`: each compared speaker's synthesis against the recordings of
every trained speaker, for the original and the fine-tuned model.

    embed = similarity_embedder(args.speaker_similarity)   # None: off, or the extra missing (one line said)
    scoring = SimilarityScoring(embed, recording_columns(references, model_speakers), reference_rate)
    record["finetuned"]["similarity"] = scoring.add("finetuned", reader.name, waveform, rate)
    comparison["similarity"] = scoring.result()

The columns are the recordings of `--references`: one per trained speaker that has clips there (a multi-speaker
model), or one, `SINGLE_SPEAKER`, of every clip (a single-speaker model: the references are its speaker's). The
rows are the clips each model synthesized as each compared speaker (`recipe.evaluation.speaker_plan`). Each cell is
the mean per-clip cosine to the column's centroid (`recipe.evaluation.speaker_similarity`); a clip's own figure,
`similarity` in its metrics, is its cosine to its reader's own recordings.
"""

from __future__ import annotations

import logging

import numpy as np

from recipe.errors import MissingExtraError
from recipe.evaluation.speaker_plan import SINGLE_SPEAKER, short_name
from recipe.evaluation.speaker_similarity import (
    ENCODER_NAME,
    centroid,
    cosines_to,
    embed_waveforms,
    missing_message,
    similarity_available,
    similarity_matrix,
    voice_encoder,
)

logger = logging.getLogger(__name__)

# `--speaker_similarity`
AUTO, ON, OFF = "auto", "on", "off"
SIMILARITY_MODES = (AUTO, ON, OFF)
FIGURE = (
    "mean over the clips synthesized as the row's speaker of the cosine between each clip's embedding and the "
    "centroid of the column speaker's recordings"
)


def similarity_embedder(mode: str):
    """The embedding function `--speaker_similarity` asks for, with the encoder loaded (so that a broken install
    stops, or is said, before the synthesis): `embed_waveforms`, or `None` for `off`, and for `auto` without the
    `similarity` extra, which is said in one line.

    Raises:
        `MissingExtraError`: `on` without the extra. `ValueError`: a mode other than auto / on / off.
    """
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"--speaker_similarity must be one of {', '.join(SIMILARITY_MODES)}, not {mode!r}")
    if mode == OFF:
        return None
    try:
        if not similarity_available():
            raise MissingExtraError(missing_message())
        voice_encoder()
    except MissingExtraError as error:
        if mode == ON:
            raise MissingExtraError(f"--speaker_similarity on: {error}") from error
        logger.warning("%s; comparing without it (--speaker_similarity off: no such line)", error)
        return None
    return embed_waveforms


def recording_columns(references: list, model_speakers: list[str] | None) -> dict[str, list[np.ndarray]]:
    """The recordings of each column: per trained speaker of a multi-speaker model (`model_speakers`, in id order;
    a speaker without a clip has no column), else every clip as `SINGLE_SPEAKER`'s."""
    if model_speakers is None:
        clips = [sentence.reference for sentence in references if sentence.reference is not None]
        return {SINGLE_SPEAKER: clips} if clips else {}
    columns = {name: [] for name in model_speakers}
    for sentence in references:
        if sentence.reference is not None and sentence.speaker in columns:
            columns[sentence.speaker].append(sentence.reference)
    return {name: clips for name, clips in columns.items() if clips}


class SimilarityScoring:
    """Embeds the recordings once, then each synthesized clip as it is made (only its embedding is kept), and
    gives the matrices of `comparison.json`."""

    def __init__(self, embed, columns: dict[str, list[np.ndarray]], sampling_rate: int):
        self.embed = embed
        self.counts = {name: len(clips) for name, clips in columns.items()}
        self.references = {name: embed(clips, sampling_rate) for name, clips in columns.items()}
        self.centroids = {name: centroid(embeddings) for name, embeddings in self.references.items()}
        self.synthesized: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(self, label: str, reader: str, waveform: np.ndarray, sampling_rate: int) -> float | None:
        """Embed one clip `label` ("original" / "finetuned") synthesized as `reader`; its cosine to the reader's own
        recordings (`None` when it has none)."""
        embedding = self.embed([waveform], sampling_rate)[0]
        self.synthesized.setdefault(label, {}).setdefault(reader, []).append(embedding)
        if reader not in self.centroids:
            return None
        return float(cosines_to(embedding, self.centroids[reader])[0])

    def result(self) -> dict:
        """`encoder`, `figure` (what a cell is), `recordings` (clips per column) and `matrix`: model -> row (the
        speaker read as) -> column (whose recordings) -> figure."""
        matrix = {
            label: similarity_matrix({row: np.asarray(rows) for row, rows in by_reader.items()}, self.references)
            for label, by_reader in self.synthesized.items()
        }
        return {"encoder": ENCODER_NAME, "figure": FIGURE, "recordings": self.counts, "matrix": matrix}


def format_similarity(similarity: dict | None) -> list[str]:
    """The printed lines: per model, each row's figures against every column."""
    if not similarity or not similarity.get("matrix"):
        return []
    columns = list(similarity["recordings"])
    lines = [f"Speaker similarity ({similarity['encoder']}; columns: the recordings of " + ", ".join(
        f"{short_name(name)} ({count} clips)" for name, count in similarity["recordings"].items()
    ) + ")"]  # fmt: skip
    for label, rows in similarity["matrix"].items():
        for row, cells in rows.items():
            shown = ", ".join(f"{short_name(column)} {cells[column]:.3f}" for column in columns)
            lines.append(f"{label:>10} as {short_name(row)}: {shown}")
    return lines
