"""Tiny synthetic features and a tiny trainer for the trainer, DDP and script tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import TrainerCallback, VitsModel, set_seed

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.data.collator import VitsDataCollator
from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator
from recipe.model.losses import L2SPReference
from recipe.model.preparation import prepare_for_training
from recipe.model.training_forward import VitsForTraining
from recipe.training.arguments import VitsTrainingArguments
from recipe.training.trainer import VitsTrainer

TINY_DISCRIMINATOR = DiscriminatorConfig(periods=[2, 3], period_channels=[1, 4, 8], scale_channels=[1, 4, 16])


def synthetic_features(config, num_clips: int = 8, seed: int = 0) -> datasets.Dataset:
    """Cached-feature rows (the `recipe.data` columns) of noisy tones with random token ids."""
    rng = np.random.default_rng(seed)
    spectrogram = SpectrogramConfig.from_model_config(config)
    columns = ("input_ids", "waveform", "log_mel", "waveform_length", "mel_length", "text", "path")
    rows = {name: [] for name in columns}
    for index in range(num_clips):
        frames = int(rng.integers(20, 40))
        time = np.arange(frames * spectrogram.hop_length) / config.sampling_rate
        tone = np.sin(2 * np.pi * (150 + 30 * index) * time) * (1 + 0.3 * rng.standard_normal(time.shape))
        waveform = (0.3 * tone).astype(np.float32)
        log_mel = log_mel_spectrogram(torch.from_numpy(waveform), spectrogram).numpy()[:, :frames].T
        rows["input_ids"].append(rng.integers(1, 30, int(rng.integers(5, 12))).tolist())
        rows["waveform"].append(waveform)
        rows["log_mel"].append(log_mel)
        rows["waveform_length"].append(len(waveform))
        rows["mel_length"].append(frames)
        rows["text"].append("roj bas")
        rows["path"].append(f"wavs/clip-{index}.wav")
    return datasets.Dataset.from_dict(rows)


def speaker_features(config, clips_per_speaker: dict[int, int]) -> datasets.Dataset:
    """`synthetic_features` with a `speaker_id` column: `clips_per_speaker[s]` clips of each speaker `s`, in order."""
    speaker_ids = [speaker for speaker, count in clips_per_speaker.items() for _ in range(count)]
    return synthetic_features(config, num_clips=len(speaker_ids)).add_column("speaker_id", speaker_ids)


@dataclass
class RecordingCollator(VitsDataCollator):
    """A `VitsDataCollator` that records the clips (paths) of each batch it builds."""

    batches: list = field(default_factory=list)

    def __call__(self, features):
        self.batches.append([f["path"] for f in features])
        return super().__call__(features)


def tiny_trainer(
    config,
    output_dir: str,
    discriminator: bool = True,
    seed: int = 0,
    init_seed: int | None = None,
    tokenizer=None,
    callbacks=None,
    features=None,
    data_collator=None,
    **overrides,
):
    """A `VitsTrainer` on a freshly seeded tiny model, synthetic data and a tiny discriminator.

    `init_seed` (defaults to `seed`) seeds the weights; `seed` is the training seed (data order, noise). `features`
    (defaults to `synthetic_features(config)`) and `data_collator` (defaults to a `VitsDataCollator`) replace the
    training data and its collator.
    """
    set_seed(seed if init_seed is None else init_seed)
    vits = prepare_for_training(VitsModel(config))
    model = VitsForTraining(vits, segment_size=8)
    kwargs = dict(
        output_dir=output_dir,
        max_steps=4,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        learning_rate=1e-3,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        seed=seed,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    args = VitsTrainingArguments(**kwargs)
    features = synthetic_features(config) if features is None else features
    return VitsTrainer(
        model=model,
        l2sp=L2SPReference(vits) if args.l2sp_weight > 0 else None,
        args=args,
        discriminator=VitsDiscriminator(TINY_DISCRIMINATOR) if discriminator else None,
        train_dataset=features,
        eval_dataset=features.select(range(2)),
        data_collator=data_collator or VitsDataCollator(SpectrogramConfig.from_model_config(config)),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


class StopAtStep(TrainerCallback):
    """Stops training after step `step`, as an interrupted run would (its checkpoints saved as usual)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
