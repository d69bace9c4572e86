"""`--speaker_sampling`, the flag of `run_finetune.py` that weighs the speakers of a `--speakers` run in the training
draw (a base of `VitsTrainingArguments`; the sampler is `recipe.training.speaker_sampling`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from recipe.errors import ArgumentsError
from recipe.training.speaker_sampling import parse_speaker_sampling

DEFAULT_SPEAKER_SAMPLING = "proportional"
# the Trainer's samplers the speaker draw can replace: "random" (its permutation) and "group_by_length" (combined:
# the draw, ordered by length as LengthGroupedSampler orders it)
COMBINES_WITH = ("random", "group_by_length")


@dataclass
class SpeakerSamplingArguments:
    speaker_sampling: str = field(
        default=DEFAULT_SPEAKER_SAMPLING,
        metadata={
            "help": "With --speakers: how often each speaker's clips are drawn. 'proportional' (every clip equally "
            "likely: a speaker in proportion to its clips, the Trainer's own shuffle), 'balanced' (every speaker "
            "equally likely) or 'temperature:T' (T >= 1: speaker s in proportion to its clips n_s ** (1/T); "
            "temperature:2 draws speakers of 90 and 10 clips 0.75 / 0.25). A speaker's share is split evenly over "
            "its clips."
        },
    )

    def check_speaker_sampling(self) -> None:
        """Raises `ValueError` for a value that does not parse, or a weighted draw with a Trainer sampler it cannot
        replace (called by `VitsTrainingArguments.__post_init__`, after `train_sampling_strategy` is settled)."""
        sampling = parse_speaker_sampling(self.speaker_sampling)
        if sampling.weighs_speakers and self.train_sampling_strategy not in COMBINES_WITH:
            raise ValueError(
                f"--speaker_sampling {self.speaker_sampling} draws the clips itself, which "
                f"--train_sampling_strategy {self.train_sampling_strategy} would replace: give one of them "
                f"(--speaker_sampling combines with --train_sampling_strategy {' or '.join(COMBINES_WITH)})"
            )


def check_speaker_sampling_applies(speakers: str | None, speaker_sampling: str) -> None:
    """Refuses a `--speaker_sampling` other than the default on a run that trains one speaker (no `--speakers`): there
    is nothing to weigh, and the value says the user expects several speakers."""
    default = parse_speaker_sampling(DEFAULT_SPEAKER_SAMPLING)
    if speakers is None and parse_speaker_sampling(speaker_sampling) != default:
        raise ArgumentsError(
            f"--speaker_sampling {speaker_sampling} weighs the speakers of a --speakers run; without --speakers the "
            f"run trains one speaker: give --speakers, or leave --speaker_sampling at {DEFAULT_SPEAKER_SAMPLING}"
        )
