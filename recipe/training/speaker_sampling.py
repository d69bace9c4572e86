"""Which clips the training batches hold on several speakers: `--speaker_sampling proportional | balanced |
temperature:T`.

A speaker's weight comes from its number of training clips `n_s`, not its seconds of audio: each clip drawn trains the
decoder and discriminator on one fixed `--segment_size` segment whatever the clip's length, so what a speaker gets of
the training is the clips drawn from it. Counting clips also makes `temperature:1` exactly `proportional`.

- `proportional`: every clip equally likely, each speaker in proportion to its clips. The Trainer's own sampler is
  kept (a permutation of the clips per epoch, shuffled from the training seed): no change from the recipe before.
- `balanced`: every speaker equally likely.
- `temperature:T` (T >= 1): speaker `s` with probability proportional to `n_s ** (1 / T)`; 1 is `proportional`, a
  large T tends to `balanced` (`temperature:2`: speakers of 90 and 10 clips are drawn 0.75 / 0.25).

`SpeakerWeightedSampler` draws an epoch as long as the training set: first the speaker of each position, by the
speaker probabilities, then for each speaker its clips in shuffled rounds (every clip of a speaker once before any of
them again), so that a speaker's probability is split evenly over its clips and a speaker drawn less than it has clips
does not see the same clip twice in an epoch. The draw depends only on the seed and the epoch: every process of a DDP
run draws the same epoch and accelerate's `BatchSamplerShard` gives each its own batches of it; a resumed run draws the
epoch it stopped in again and the Trainer skips the batches already trained. `SpeakerSamplingMixin` puts it into
`VitsTrainer`'s train dataloader.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

logger = logging.getLogger(__name__)

PROPORTIONAL = "proportional"
BALANCED = "balanced"
TEMPERATURE = "temperature"
FORMS = "proportional, balanced or temperature:T (a number T >= 1)"
# the feature column with each clip's speaker index (`recipe.data.features.feature_types`)
SPEAKER_COLUMN = "speaker_id"


@dataclass(frozen=True)
class SpeakerSampling:
    """A parsed `--speaker_sampling`: `kind` is `proportional`, `balanced` or `temperature` (with `temperature`)."""

    kind: str
    temperature: float = 1.0

    @property
    def weighs_speakers(self) -> bool:
        """Whether the draw differs from the Trainer's own (every clip equally likely)."""
        return self.kind != PROPORTIONAL

    def speaker_probabilities(self, clips: Counter) -> dict[int, float]:
        """Each speaker's probability per draw, from its number of clips (`clips`: speaker -> clips)."""
        if self.kind == BALANCED:
            weights = {speaker: 1.0 for speaker in clips}
        else:
            exponent = 1.0 / self.temperature if self.kind == TEMPERATURE else 1.0
            weights = {speaker: float(count) ** exponent for speaker, count in clips.items()}
        total = sum(weights.values())
        return {speaker: weight / total for speaker, weight in sorted(weights.items())}


def parse_speaker_sampling(text: str) -> SpeakerSampling:
    """`--speaker_sampling` as a `SpeakerSampling`; a `ValueError` naming the value and the accepted forms otherwise.
    `temperature:1` is `proportional` (the same draw)."""
    text = str(text).strip()
    if text in (PROPORTIONAL, BALANCED):
        return SpeakerSampling(text)
    kind, colon, value = text.partition(":")
    if kind != TEMPERATURE:
        raise ValueError(f"--speaker_sampling {text!r}: use {FORMS}")
    if not colon or not value.strip():
        raise ValueError(f"--speaker_sampling {text!r}: give the temperature, e.g. temperature:2; use {FORMS}")
    try:
        temperature = float(value)
    except ValueError:
        raise ValueError(f"--speaker_sampling {text!r}: {value!r} is not a number; use {FORMS}") from None
    if not math.isfinite(temperature):
        raise ValueError(f"--speaker_sampling {text!r}: the limit of a growing temperature is 'balanced'; use {FORMS}")
    if temperature < 1:
        raise ValueError(
            f"--speaker_sampling {text!r}: a temperature below 1 would favour the speakers with the most clips even "
            f"more than proportional; use {FORMS}"
        )
    return SpeakerSampling(PROPORTIONAL) if temperature == 1 else SpeakerSampling(TEMPERATURE, temperature)


def clip_probabilities(speaker_ids: Sequence[int], sampling: SpeakerSampling) -> np.ndarray:
    """The probability of each clip per draw: its speaker's probability split evenly over the speaker's clips."""
    speaker_ids = np.asarray(speaker_ids)
    clips = Counter(speaker_ids.tolist())
    per_speaker = sampling.speaker_probabilities(clips)
    return np.array([per_speaker[speaker] / clips[speaker] for speaker in speaker_ids.tolist()])


class SpeakerWeightedSampler(Sampler[int]):
    """Clip indices drawn by speaker weight, `len(speaker_ids)` of them per epoch, from `seed` and the epoch alone.

    Args:
        speaker_ids (`Sequence[int]`): the speaker of each clip of the training set.
        sampling (`SpeakerSampling`): how speakers are weighed.
        seed (`int`): the training seed (`--data_seed` when given, as the Trainer's own sampler).
        lengths (`Sequence[int]`, *optional*): each clip's length, with `--train_sampling_strategy group_by_length`:
            each epoch's draw is then ordered as transformers' `LengthGroupedSampler` orders a dataset (megabatches of
            `group_size` clips of similar length); `None` keeps the drawn order.
        group_size (`int`, *optional*): with `lengths`, the Trainer's batch size times the accumulation steps.
    """

    def __init__(
        self,
        speaker_ids: Sequence[int],
        sampling: SpeakerSampling,
        seed: int,
        lengths: Sequence[int] | None = None,
        group_size: int | None = None,
    ):
        self.speaker_ids = np.asarray(speaker_ids, dtype=np.int64)
        self.speakers = np.unique(self.speaker_ids)
        probabilities = sampling.speaker_probabilities(Counter(self.speaker_ids.tolist()))
        self.speaker_probabilities = np.array([probabilities[int(s)] for s in self.speakers])
        self.clips_of = {int(s): np.flatnonzero(self.speaker_ids == s) for s in self.speakers}
        self.seed = seed
        self.lengths = None if lengths is None else list(lengths)
        self.group_size = group_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.speaker_ids)

    def __iter__(self):
        return iter(self.draw(self.epoch))

    def draw(self, epoch: int) -> list[int]:
        """The clip indices of `epoch`, in training order."""
        rng = np.random.default_rng([self.seed, epoch])
        positions_speaker = rng.choice(self.speakers, size=len(self), p=self.speaker_probabilities)
        drawn = np.empty(len(self), dtype=np.int64)
        for speaker, clips in self.clips_of.items():
            positions = np.flatnonzero(positions_speaker == speaker)
            if len(positions) == 0:
                continue
            rounds = -(-len(positions) // len(clips))  # each clip once per round, in a new order each round
            drawn[positions] = np.concatenate([rng.permutation(clips) for _ in range(rounds)])[: len(positions)]
        if self.lengths is None:
            return drawn.tolist()
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        order = get_length_grouped_indices([self.lengths[i] for i in drawn], self.group_size, generator=generator)
        return drawn[order].tolist()


def speaker_sampler(args, dataset) -> SpeakerWeightedSampler | None:
    """The train sampler `--speaker_sampling` asks for on `dataset`; `None` to keep the Trainer's own (proportional,
    or a training set with one speaker, which has nothing to weigh: said in a log line)."""
    sampling = parse_speaker_sampling(args.speaker_sampling)
    if not sampling.weighs_speakers or dataset is None or SPEAKER_COLUMN not in dataset.column_names:
        return None
    speaker_ids = list(dataset[SPEAKER_COLUMN])
    if len(set(speaker_ids)) < 2:
        logger.info(
            f"--speaker_sampling {args.speaker_sampling}: the training set has one speaker, nothing to weigh; its "
            "clips are drawn as with proportional"
        )
        return None
    lengths = None
    if args.train_sampling_strategy == "group_by_length" and args.length_column_name in dataset.column_names:
        lengths = list(dataset[args.length_column_name])
    seed = args.data_seed if args.data_seed is not None else args.seed
    group_size = args.train_batch_size * args.gradient_accumulation_steps
    return SpeakerWeightedSampler(speaker_ids, sampling, seed, lengths=lengths, group_size=group_size)


class SpeakerSamplingMixin:
    """The `Trainer` hooks of `--speaker_sampling` (a base of `VitsTrainer`, before `Trainer`)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        self.speaker_sampler = speaker_sampler(self.args, dataset)
        if self.speaker_sampler is None:
            return super()._get_train_sampler(train_dataset)
        return self.speaker_sampler

    def _run_epoch(self, model, epoch, *args, **kwargs):
        # Trainer's set_epoch does not reach a sampler under accelerate's skip-and-shard wrappers (a DDP run resumed
        # mid-epoch: SkipBatchSampler(BatchSamplerShard(BatchSampler(sampler)))): the epoch is set here, where it is
        # known, so that the resumed epoch is drawn again as it was
        if getattr(self, "speaker_sampler", None) is not None:
            self.speaker_sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)
