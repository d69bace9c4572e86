"""The flags of `run_finetune.py` that adapt a voice's parts and its tempo (a base of `VitsTrainingArguments`):
`--part_learning_rates` (`recipe.training.part_learning_rates`) and `--fit_speaking_rate`
(`recipe.training.rate_fit`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from recipe.training.part_learning_rates import parse_part_learning_rates


@dataclass
class AdaptationArguments:
    fit_speaking_rate: bool = field(
        default=False,
        metadata={
            "help": "After training, scale the saved model's speaking_rate (its length scale) so that it speaks the "
            "training texts at their recordings' rate: characters per second of speech, median over the clips "
            "(recipe/training/rate_fit.py)."
        },
    )
    part_learning_rates: str | None = field(
        default=None,
        metadata={
            "help": "Parts of the model at their own peak learning rate, 'PREFIX:RATE,...': a prefix of the "
            "VitsModel's weight names (duration_predictor, flow, duration_predictor.flows, ...); the rest keeps "
            "learning_rate (recipe/training/part_learning_rates.py)."
        },
    )

    def check_adaptation_arguments(self) -> None:
        """Raises `ValueError` for a `--part_learning_rates` that does not parse."""
        parse_part_learning_rates(self.part_learning_rates)
