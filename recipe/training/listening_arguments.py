"""The listening-metric flags of `run_finetune.py` (a base of `VitsTrainingArguments`), and which way each metric
is better for `--metric_for_best_model`.

The metrics themselves are `recipe.training.listening`: at each evaluation, the amplitude monitor's sentences scored
for intelligibility (`eval_cer`), likeness to the eval recordings (`eval_similarity`), predicted quality
(`eval_quality`) and their combination `eval_listener`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from recipe.hub_access import looks_like_path

# `--metric_for_best_model` values of the listening metrics, and whether a larger value is better
LISTENING_DIRECTIONS = {"eval_cer": False, "eval_similarity": True, "eval_quality": True, "eval_listener": True}
# the metrics that need a speech recognizer
NEEDS_ASR = ("eval_cer", "eval_listener")


def metric_key(name: str | None) -> str | None:
    """`--metric_for_best_model` as the Trainer reads it: with the `eval_` prefix."""
    if name is None:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"


@dataclass
class ListeningArguments:
    eval_listening: bool = field(
        default=True,
        metadata={
            "help": "Score the amplitude monitor's sentences at each evaluation: eval_cer (with --eval_asr_model), "
            "eval_similarity (the similarity extra), eval_quality (DNSMOS, the quality extra); each is off, said "
            "in one line, when what it needs is missing. false: none."
        },
    )
    eval_asr_model: str | None = field(
        default=None,
        metadata={
            "help": "The speech recognizer of eval_cer, as recipe.compare's --asr_model takes it: a transformers "
            "ASR folder or Hub id (Whisper, wav2vec2 / MMS) or a CTranslate2 Whisper folder (faster-whisper)."
        },
    )
    eval_listen_texts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Sentences as written for the monitor to synthesize and the recognizer to be scored against "
            "(default: the first eval clips' texts). Instead of --amplitude_monitor_texts."
        },
    )
    listener_cer_margin: float = field(
        default=0.05,
        metadata={
            "help": "--metric_for_best_model listener: the best eval_similarity among the evaluations whose eval_cer "
            "is at most the starting model's plus this margin."
        },
    )

    def resolve_direction(self) -> None:
        """Sets `greater_is_better` for a listening `--metric_for_best_model` (CER: lower; the others: higher)
        unless given, and refuses a contradiction; for any other metric (the VITS losses), lower unless given.
        Called before `TrainingArguments.__post_init__`, whose own default would call every name not ending in
        "loss" (`eval_mel` too) better when larger."""
        key = metric_key(self.metric_for_best_model)
        if key not in LISTENING_DIRECTIONS:
            if self.greater_is_better is None:
                self.greater_is_better = False
            return
        expected = LISTENING_DIRECTIONS[key]
        if self.greater_is_better is not None and self.greater_is_better != expected:
            raise ValueError(
                f"--metric_for_best_model {self.metric_for_best_model} is better when "
                f"{'higher' if expected else 'lower'}: leave --greater_is_better out (or give {expected})"
            )
        self.greater_is_better = expected

    def check_listening_arguments(self) -> None:
        """What a listening metric needs, said at parsing, before any data is prepared."""
        key = metric_key(self.metric_for_best_model)
        if self.listener_cer_margin < 0:
            raise ValueError(f"--listener_cer_margin must be >= 0, not {self.listener_cer_margin}")
        if self.eval_listen_texts is not None:
            if self.amplitude_monitor_texts is not None:
                raise ValueError(
                    "--eval_listen_texts and --amplitude_monitor_texts both give the monitor's sentences: give one"
                )
            if isinstance(self.eval_listen_texts, str) or not all(t.strip() for t in self.eval_listen_texts):
                raise ValueError(f"--eval_listen_texts must be non-empty sentences, not {self.eval_listen_texts!r}")
        if key in LISTENING_DIRECTIONS and not self.eval_listening:
            raise ValueError(f"--metric_for_best_model {self.metric_for_best_model} needs --eval_listening true")
        if key in NEEDS_ASR and not self.eval_asr_model:
            raise ValueError(
                f"--metric_for_best_model {self.metric_for_best_model} needs a speech recognizer: give "
                "--eval_asr_model"
            )
        name = self.eval_asr_model
        if name and looks_like_path(name) and not os.path.exists(os.path.expanduser(name)):
            raise ValueError(f"--eval_asr_model {name!r}: no such folder")
