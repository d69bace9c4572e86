"""Listening metrics at each evaluation: the amplitude monitor's sentences, as it synthesized them, scored the way
`recipe.compare` scores a voice.

    scorer = build_listening(training_args, eval_dataset, scoring_texts, sampling_rate)   # None: all off
    figures = scorer.figures(waveforms, sampling_rate, num_speakers)                    # on the main process
    metrics = scorer.with_listener(figures)

- `eval_cer`: the mean character error rate of a speech recognizer's transcript (`--eval_asr_model`, loaded as
  `recipe.compare`'s `--asr_model`: `recipe.evaluation.asr`) against each sentence as written.
- `eval_similarity`: the mean per-clip cosine of the sentences' speaker embeddings to the centroid of the eval
  recordings (`recipe.evaluation.speaker_similarity`, the `similarity` extra, compare's encoder); for a multi-speaker
  model each sentence against its reader's own recordings (sentence i is read by speaker i mod N, as the monitor
  reads them), and `eval_similarity_speaker_K` per speaker heard.
- `eval_quality`: the mean DNSMOS P.835 overall score (`recipe.data.quality`, the `quality` extra).
- `eval_listener` (with both a recognizer and the encoder): the likeness, among evaluations that speak as clearly
  as the starting model did (`listener_score`).
- `eval_listening_seconds`: what the scoring cost at this evaluation (the synthesis is the monitor's, not counted).

Each is on when what it needs is there, and one line at the start says which are off and why. The starting
model's figures are measured once, before the first step, from the same sentences; a resumed run reads them from
its checkpoint (`listening_start.json`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable

import numpy as np

from recipe.training.distributed import broadcast_from_main

logger = logging.getLogger(__name__)

START_FILE = "listening_start.json"
LISTENER = "eval_listener"
# What the TensorBoard writer and the logs carry besides the Trainer's own metrics
LISTENING_PREFIXES = ("eval_cer", "eval_similarity", "eval_quality", "eval_listener", "eval_listening_seconds")
# Eval recordings embedded per speaker for its centroid: enough for a stable centroid, few enough to start quickly
MAX_REFERENCE_CLIPS = 20
# `listener` of an evaluation whose CER is over the bound: below -1, so below every one within it (similarities
# lie in [0, 1]); ordered among themselves by how far over the bound they are
DISQUALIFIED = -1.0


def listener_score(similarity: float, cer: float, start_cer: float, margin: float) -> float:
    """The `listener` figure: `similarity` when `cer` is at most `start_cer + margin`, else `DISQUALIFIED` minus the
    excess CER.

    Why: a fine-tune is meant to sound like the recordings without speaking worse than the model it started from.
    Likeness alone would crown a checkpoint that mumbles in the right voice, and the CER alone one that speaks
    clearly in any voice; this picks the most alike among those as intelligible as the start (by a margin, since
    the CER of a few sentences moves by a few points from one evaluation to the next). When none is, the least
    unintelligible one wins.
    """
    bound = start_cer + margin
    return float(similarity) if cer <= bound else DISQUALIFIED - float(cer - bound)


class ListeningScorer:
    """Scores synthesized sentences; every part is optional (a callable, or `None` when off).

    Args:
        scoring_texts (`list[str]`): each sentence as written, what a transcript is scored against.
        transcribe (`Callable[[np.ndarray, int], str]`, *optional*): a recognizer (waveform, rate -> text).
        embed (`Callable[[list[np.ndarray], int], np.ndarray]`, *optional*): a speaker encoder (unit rows).
        references (`dict`, *optional*): with `embed`, the centroids of the eval recordings: per speaker index of
            the eval split, and under `None` all of them (a single-speaker model's).
        quality (`Callable[[np.ndarray, int], float]`, *optional*): a predicted quality score of one clip.
        cer_margin (`float`, *optional*, defaults to 0.05): `listener_score`'s margin.
    """

    def __init__(
        self,
        scoring_texts: list[str],
        transcribe: Callable | None = None,
        embed: Callable | None = None,
        references: dict | None = None,
        quality: Callable | None = None,
        cer_margin: float = 0.05,
    ):
        self.scoring_texts = list(scoring_texts)
        self.transcribe, self.embed, self.quality = transcribe, embed, quality
        self.references = references or {}
        self.cer_margin = cer_margin
        self.start: dict | None = None

    def names(self, num_speakers: int) -> list[str]:
        """The metrics `figures` gives for a model of `num_speakers`, in order (the same on every process)."""
        names = []
        if self.transcribe is not None:
            names.append("eval_cer")
        if self.embed is not None:
            names.append("eval_similarity")
            names += [f"eval_similarity_speaker_{speaker}" for speaker in self._speakers_heard(num_speakers)]
        if self.quality is not None:
            names.append("eval_quality")
        return [*names, "eval_listening_seconds"]

    def _speakers_heard(self, num_speakers: int) -> list[int]:
        if num_speakers <= 1:
            return []
        heard = {index % num_speakers for index in range(len(self.scoring_texts))}
        return sorted(speaker for speaker in heard if speaker in self.references)

    def figures(self, waveforms: list[np.ndarray], sampling_rate: int, num_speakers: int) -> dict[str, float]:
        """Every metric of `names(num_speakers)` for the sentences' `waveforms` (in `scoring_texts` order)."""
        from recipe.evaluation.asr import error_rates
        from recipe.evaluation.speaker_similarity import cosines_to

        started = time.perf_counter()
        figures = {}
        if self.transcribe is not None:
            rates = [
                error_rates(text, self.transcribe(waveform, sampling_rate))["cer"]
                for text, waveform in zip(self.scoring_texts, waveforms)
            ]
            figures["eval_cer"] = float(np.mean(rates))
        if self.embed is not None:
            embeddings = self.embed(waveforms, sampling_rate)
            readers = [index % num_speakers if num_speakers > 1 else None for index in range(len(waveforms))]
            cosines = {}
            for embedding, reader in zip(embeddings, readers):
                reference = self.references.get(reader)
                if reference is not None:  # a speaker without eval recordings has nothing to be alike to
                    cosines.setdefault(reader, []).append(float(cosines_to(embedding, reference)[0]))
            every = [value for values in cosines.values() for value in values]
            figures["eval_similarity"] = float(np.mean(every)) if every else float("nan")
            for speaker in self._speakers_heard(num_speakers):
                figures[f"eval_similarity_speaker_{speaker}"] = float(np.mean(cosines[speaker]))
        if self.quality is not None:
            figures["eval_quality"] = float(np.mean([self.quality(w, sampling_rate) for w in waveforms]))
        figures["eval_listening_seconds"] = time.perf_counter() - started
        return figures

    def with_listener(self, figures: dict[str, float]) -> dict[str, float]:
        """`figures` and, when the recognizer, the encoder and the starting figures are there, `eval_listener`."""
        if self.start is None or "eval_cer" not in figures or "eval_similarity" not in figures:
            return figures
        score = listener_score(figures["eval_similarity"], figures["eval_cer"], self.start["eval_cer"], self.cer_margin)
        return {**figures, LISTENER: score}

    def can_rank_by_listener(self) -> bool:
        return self.transcribe is not None and self.embed is not None

    # -- the starting model's figures, shared by every process and kept in checkpoints ---------------------------

    def set_start(self, figures: dict[str, float], step: int) -> None:
        self.start = {key: value for key, value in figures.items() if key in ("eval_cer", "eval_similarity")}
        self.start["step"] = step
        logger.info("Listening metrics of the starting model: %s", format_figures(self.start))

    def save_start(self, folder: str) -> None:
        if self.start is not None:
            with open(os.path.join(folder, START_FILE), "w", encoding="utf-8") as handle:
                json.dump(self.start, handle, indent=2)

    def load_start(self, checkpoint: str) -> bool:
        path = os.path.join(checkpoint, START_FILE)
        if not os.path.isfile(path):
            return False
        with open(path, encoding="utf-8") as handle:
            self.start = json.load(handle)
        return True


def shared_figures(args, figures: dict[str, float] | None, names: list[str]) -> dict[str, float]:
    """The main process's `figures` on every process (the others pass `None`), so that every rank's Trainer picks
    the same best checkpoint."""
    mine = [0.0] * len(names) if figures is None else [figures[name] for name in names]
    return dict(zip(names, broadcast_from_main(mine, args.device)))


def format_figures(figures: dict[str, float]) -> str:
    shown = []
    for key, value in figures.items():
        if key == "step" or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        name = key.removeprefix("eval_")
        shown.append(f"{name} {value:.1f} s" if key.endswith("seconds") else f"{name} {value:.4g}")
    return ", ".join(shown)
