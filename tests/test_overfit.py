"""The overfit criterion through the real `VitsTrainer`: one demo utterance, 200 steps, mel loss down >= 40%."""

from __future__ import annotations

import datasets
import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from trainer_helpers import TINY_DISCRIMINATOR
from transformers import VitsModel, VitsTokenizer, set_seed

from recipe.audio import SpectrogramConfig, decode_audio, log_mel_spectrogram, resample, to_mono
from recipe.data.collator import VitsDataCollator
from recipe.model.discriminator import VitsDiscriminator
from recipe.model.preparation import prepare_for_training
from recipe.model.training_forward import VitsForTraining
from recipe.text import encode_text
from recipe.training.arguments import VitsTrainingArguments
from recipe.training.trainer import VitsTrainer

STEPS = 200


def one_utterance(tokenizer, spectrogram: SpectrogramConfig) -> datasets.Dataset:
    """KMR-0004 ('Ez ji Amedê têm.') as a cached-feature row."""
    text = next(
        line.split("|")[1]
        for line in (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()
        if line.startswith("KMR-0004|")
    )
    normalized, input_ids = encode_text(text, tokenizer)
    decoded = decode_audio(str(DEMO_DIR / "kmr_ljspeech" / "wavs" / "KMR-0004.wav"))
    waveform = resample(to_mono(decoded.samples), decoded.sampling_rate, spectrogram.sampling_rate)
    frames = len(waveform) // spectrogram.hop_length
    waveform = waveform[: frames * spectrogram.hop_length]
    log_mel = log_mel_spectrogram(torch.from_numpy(waveform), spectrogram).numpy().T
    row = {
        "input_ids": [input_ids],
        "waveform": [waveform],
        "log_mel": [log_mel],
        "waveform_length": [len(waveform)],
        "mel_length": [frames],
        "text": [normalized],
    }
    return datasets.Dataset.from_dict(row)


@pytest.mark.parametrize("with_discriminator", [False, True], ids=["without_discriminator", "with_discriminator"])
def test_overfitting_one_utterance_for_200_steps_lowers_the_mel_loss_by_40_percent(with_discriminator, tmp_path):
    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    set_seed(0)
    vits = prepare_for_training(VitsModel(make_tiny_config(vocab_size=len(tokenizer), layerdrop=0.0)))
    model = VitsForTraining(vits, segment_size=32)
    args = VitsTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=1,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=0,
        disable_tqdm=True,
    )
    trainer = VitsTrainer(
        model=model,
        args=args,
        discriminator=VitsDiscriminator(TINY_DISCRIMINATOR) if with_discriminator else None,
        train_dataset=one_utterance(tokenizer, model.spectrogram_config),
        data_collator=VitsDataCollator(model.spectrogram_config),
    )
    trainer.train()
    mel = [entry["mel"] for entry in trainer.state.log_history if "mel" in entry]
    assert len(mel) == STEPS // 10
    # first and last logging windows: means of steps 1-10 and 191-200
    assert mel[-1] <= 0.6 * mel[0], f"mel loss {mel[0]:.3f} -> {mel[-1]:.3f}: less than a 40% drop"
    if with_discriminator:
        assert any("generator" in entry for entry in trainer.state.log_history)
