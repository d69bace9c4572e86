"""The command line of `run_finetune.py`: `--help` in groups, one-line errors with the closest flag names.

`--help` lists the recipe's own arguments first, in groups (data, model, training, objectives, amplitude monitor,
listening metrics, time budget, Hub), then all the other `TrainingArguments` of `transformers`. Every field of
`DataArguments` and `ModelArguments` lands in its group without being listed here; a field added to
`VitsTrainingArguments` must be placed in `TRAINING_GROUPS` (a test checks it).

Arguments come as flags, or as one JSON / YAML file whose values the flags after it override
(`run_finetune.py configs/demo.json --max_steps 50`). Any mistake in them (a mistyped flag or key, a value of the
wrong type, a value a dataclass refuses) raises `recipe.errors.ArgumentsError`, whose message `run_finetune.py` prints
as one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import shutil

import yaml
from transformers import HfArgumentParser

from recipe.errors import ArgumentsError, RaisesArgumentsError, help_epilog
from recipe.training.arguments import DataArguments, ModelArguments, VitsTrainingArguments
from recipe.training.sampling_arguments import check_speaker_sampling_applies

# The recipe's fields of VitsTrainingArguments and the Trainer arguments a fine-tune usually sets, by group, in the
# order --help shows them: (title, description, field names).
TRAINING_GROUPS = (
    (
        "training",
        "The Trainer arguments a fine-tune usually sets (with the recipe's defaults).",
        (
            "output_dir", "max_steps", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "learning_rate", "discriminator_learning_rate",
            "part_learning_rates", "fit_speaking_rate", "lr_scheduler_type",
            "warmup_ratio", "precision", "seed", "speaker_sampling", "logging_steps", "eval_strategy", "eval_steps",
            "save_strategy", "save_steps", "save_total_limit", "save_only_model", "load_best_model_at_end",
            "resume_from_checkpoint", "report_to", "ddp_timeout",
        ),
    ),
    (
        "objectives",
        "The VITS losses, and the objectives against a model that grows quiet.",
        (
            "segment_size", "mel_loss_weight", "kl_loss_weight", "duration_loss_weight", "generator_loss_weight",
            "feature_matching_loss_weight", "normalized_mel_loss", "amplitude_loss_weight", "amplitude_target_peak",
            "l2sp_weight",
        ),
    ),
    (
        "amplitude monitor",
        "Synthesizes fixed sentences at each evaluation and stops a run whose voice fades (or blows up).",
        (
            "amplitude_warning_ratio", "amplitude_critical_ratio", "amplitude_patience", "amplitude_monitor_texts",
        ),
    ),
    (
        "listening metrics",
        "Scores the monitor's sentences at each evaluation: intelligibility, likeness, quality (--metric_for_best_model).",
        (
            "eval_listening", "eval_asr_model", "eval_listen_texts", "listener_cer_margin", "metric_for_best_model",
            "greater_is_better",
        ),
    ),
    ("time budget", "Fit the run into a number of hours.", ("target_hours", "target_hours_timing_steps")),
    (
        "Hub",
        "Loading private models and data, and uploading the result.",
        ("token", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo", "hub_include_discriminator"),
    ),
)  # fmt: skip
# Trainer arguments whose meaning in this recipe differs from (or says more than) transformers' help
HELP_OVERRIDES = {
    "push_to_hub": "Upload the final model, tokenizer and a model card to --hub_model_id at the end (not the "
    "checkpoints).",
    "resume_from_checkpoint": "A checkpoint-N folder to resume from, or True: the newest intact checkpoint-N in "
    "--output_dir (incomplete or damaged ones are skipped, with a warning each).",
    "ddp_timeout": "Seconds a process waits for the others (setup and every collective, gloo on CPU included) "
    "before it fails: how long a run survives a hung process or machine.",
    "save_strategy": "When to save a checkpoint-N ('no', 'steps', 'epoch', 'best'). Ctrl-C / SIGTERM saves one "
    "in any case.",
}
OTHER_TRAINER_ARGUMENTS = (
    "all other Trainer arguments",
    "transformers.TrainingArguments (https://huggingface.co/docs/transformers/main_classes/trainer"
    "#transformers.TrainingArguments).",
)
USAGE = "run_finetune.py [CONFIG.json | CONFIG.yaml] [--flag value ...]"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag once (`--max_steps MAX_STEPS`, not also `--max-steps MAX_STEPS`), help from column 32."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=min(119, shutil.get_terminal_size().columns))

    def _format_action_invocation(self, action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        flag = action.option_strings[0]
        if action.nargs == 0:
            return flag
        return f"{flag} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


def _field_names(dataclass_type) -> list[str]:
    return [f.name for f in dataclasses.fields(dataclass_type) if f.init]


def argument_groups() -> list[tuple[str, str, list[str]]]:
    """`(title, description, field names)` of the recipe's groups, in the order `--help` shows them."""
    placed = {name for _, _, names in TRAINING_GROUPS for name in names}
    data = ("data", "What to train on, and how clips are screened.", _field_names(DataArguments))
    model = (
        "model",
        "What to start from, what to freeze, the vocabulary.",
        [name for name in _field_names(ModelArguments) if name not in placed],
    )
    groups = [data, model] + [(title, text, list(names)) for title, text, names in TRAINING_GROUPS]
    return groups


class RecipeArgumentParser(RaisesArgumentsError, HfArgumentParser):
    """`HfArgumentParser` over `(ModelArguments, DataArguments, VitsTrainingArguments)` with grouped `--help` and
    errors raised as `ArgumentsError` (one line, with the closest flag names) instead of a usage dump or a traceback.
    """

    def __init__(self):
        super().__init__(
            (ModelArguments, DataArguments, VitsTrainingArguments),
            prog="run_finetune.py",
            usage=USAGE,
            formatter_class=_HelpFormatter,
            description="Fine-tune a VITS / MMS-TTS model on your recordings. The recipe's arguments come first, by "
            "group; then all the other Trainer arguments.",
            epilog=help_epilog("run_finetune.py"),
        )
        self._regroup()

    def _regroup(self) -> None:
        # HfArgumentParser puts every field in the default group: move the recipe's into titled groups shown first
        actions = {}
        for action in self._optionals._group_actions:
            actions.setdefault(action.dest, []).append(action)
        groups = []
        for title, description, names in argument_groups():
            group = self.add_argument_group(title, description)
            for name in names:
                for action in actions.get(name, []):
                    if name in HELP_OVERRIDES and action.help is not argparse.SUPPRESS:
                        action.help = HELP_OVERRIDES[name]
                    self._optionals._group_actions.remove(action)
                    group._group_actions.append(action)
            groups.append(group)
        self._optionals.title, self._optionals.description = OTHER_TRAINER_ARGUMENTS
        self._action_groups = [self._positionals, *groups, self._optionals]

    def flags(self) -> list[str]:
        """Each flag's first spelling (`--max_steps`, not also `--max-steps`)."""
        return [action.option_strings[0] for action in self._actions if action.option_strings]

    def _unknown(self, words: list[str], known: list[str], what: str) -> ArgumentsError:
        parts = []
        for word in words:
            close = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
            parts.append(f"{word} (did you mean {' or '.join(close)}?)" if close else word)
        return ArgumentsError(f"unknown {what}: {', '.join(parts)}. `run_finetune.py --help` lists them all")

    def parse(self, argv: list[str]) -> tuple[ModelArguments, DataArguments, VitsTrainingArguments]:
        """The three dataclasses from `argv`: flags, or a JSON / YAML file (first) whose values the flags override.

        Raises:
            `ArgumentsError`: an unknown flag or file key (with the closest real names), a value argparse cannot
                convert, or a value a dataclass refuses.
        """
        argv = list(argv)
        if argv and argv[0].endswith((".json", ".yaml", ".yml")):
            path, argv = os.path.abspath(argv[0]), argv[1:]
            self._set_file_defaults(path)
        # unknown flags first: a typo is the likelier cause of whatever the dataclasses would then refuse
        _, remaining = self.parse_known_args(args=argv)
        if remaining:
            flags = [word.split("=", 1)[0] for word in remaining if word.startswith("-")]
            if flags:
                raise self._unknown(flags, self.flags(), "argument(s)")
            raise ArgumentsError(f"unexpected value(s) {remaining}: each value follows its --flag")
        try:
            model_args, data_args, training_args = self.parse_args_into_dataclasses(args=argv)
        except ArgumentsError:
            raise
        except ValueError as error:
            # a dataclass's __post_init__ refusing a value: its message names the flag and the value
            raise ArgumentsError(str(error)) from error
        # a flag of one dataclass that only applies with a flag of another
        check_speaker_sampling_applies(data_args.speakers, training_args.speaker_sampling)
        return model_args, data_args, training_args

    def _set_file_defaults(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ArgumentsError(f"{path}: no such configuration file")
        with open(path, encoding="utf-8") as handle:
            try:
                values = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
            except (json.JSONDecodeError, yaml.YAMLError) as error:
                kind = "JSON" if path.endswith(".json") else "YAML"
                raise ArgumentsError(f"{path}: not valid {kind} ({error})") from error
        if not isinstance(values, dict):
            raise ArgumentsError(f"{path} must hold a mapping of argument names to values")
        known = [action.dest for action in self._actions]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise self._unknown(unknown, known, f"argument(s) in {path}")
        self.set_defaults(**values)
        # a value from the file satisfies a required flag
        for action in self._actions:
            if action.dest in values:
                action.required = False
