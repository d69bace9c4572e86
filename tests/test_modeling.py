"""The training forward pass: segments, gradients, autocast, speakers, freezing, weight norm and the saved model."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import make_tiny_config
from safetensors import safe_open
from torch.nn.utils import parametrize
from transformers import VitsModel, set_seed

from recipe.audio import log_mel_spectrogram
from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator
from recipe.model.losses import (
    L2SPReference,
    LossWeights,
    discriminate,
    discriminator_objective,
    generator_objective,
)
from recipe.model.preparation import decoder_weight_norm_layers, prepare_for_training, save_for_inference
from recipe.model.training_forward import VitsForTraining
from recipe.voices.folder import IMPORT_REPORT_NAME

HOP = 256
STEPS = 40
TINY_DISCRIMINATOR = DiscriminatorConfig(
    periods=[2, 3, 5, 7, 11], period_channels=[1, 4, 8], scale_channels=[1, 4, 16]
)


def make_batch(model: VitsForTraining, frame_lengths=(40, 6), num_tokens=(5, 3), seed=0):
    """Tremolo tones of the given lengths, their log-mels (as the data cache holds them) and random tokens."""
    generator = torch.Generator().manual_seed(seed)
    batch_size, max_frames, max_tokens = len(frame_lengths), max(frame_lengths), max(num_tokens)
    waveform = torch.zeros(batch_size, max_frames * HOP)
    for i, frames in enumerate(frame_lengths):
        time = torch.arange(frames * HOP) / 16000
        waveform[i, : frames * HOP] = 0.4 * torch.sin(2 * math.pi * (150 + 50 * i) * time) * torch.sin(math.pi * time)
    log_mel = log_mel_spectrogram(waveform, model.spectrogram_config)
    input_ids = torch.randint(1, model.vits.config.vocab_size, (batch_size, max_tokens), generator=generator)
    attention_mask = torch.zeros(batch_size, max_tokens, dtype=torch.long)
    for i, tokens in enumerate(num_tokens):
        attention_mask[i, :tokens] = 1
    return {
        "input_ids": input_ids * attention_mask,
        "attention_mask": attention_mask,
        "waveform": waveform,
        "waveform_lengths": torch.tensor(frame_lengths) * HOP,
        "log_mel": log_mel,
        "mel_lengths": torch.tensor(frame_lengths),
        "speaker_id": torch.zeros(batch_size, dtype=torch.long),
    }


def make_model(segment_size=8, **config_overrides):
    set_seed(0)
    vits = prepare_for_training(VitsModel(make_tiny_config(**config_overrides)))
    return VitsForTraining(vits, segment_size=segment_size)


def test_segments_are_the_matching_slices_of_waveform_and_log_mel():
    model = make_model(segment_size=8)
    batch = make_batch(model, frame_lengths=(40, 6))  # the second clip is shorter than a segment
    set_seed(3)
    outputs = model(**batch)
    assert outputs.generated_waveform.shape == outputs.target_waveform.shape == (2, 1, 8 * HOP)
    assert outputs.generated_log_mel.shape == outputs.target_log_mel.shape == (2, 80, 8)
    start = int(outputs.segment_starts[0])
    assert 0 <= start <= 40 - 8
    torch.testing.assert_close(outputs.target_waveform[0, 0], batch["waveform"][0, start * HOP : (start + 8) * HOP])
    torch.testing.assert_close(outputs.target_log_mel[0], batch["log_mel"][0, :, start : start + 8])
    # Short clip: starts at 0, 6 real frames, padding masked and silent in both waveforms.
    assert int(outputs.segment_starts[1]) == 0
    assert outputs.segment_frame_mask[1, 0].tolist() == [1.0] * 6 + [0.0] * 2
    assert torch.all(outputs.generated_waveform[1, 0, 6 * HOP :] == 0)
    torch.testing.assert_close(outputs.target_log_mel[1, :, :6], batch["log_mel"][1, :, :6])
    # Durations come from the alignment: every frame of a clip goes to exactly one of its tokens.
    assert outputs.durations.sum(dim=(1, 2)).tolist() == [40.0, 6.0]
    assert torch.all(outputs.durations[0, 0, :5] >= 1) and torch.all(outputs.durations[1, 0, 3:] == 0)


# LayerDrop (config.layerdrop, 0.1 by default) skips whole text-encoder layers at random in train mode; a skipped
# layer gets no gradient in that step, so these tests turn it off. No other parameter is expected to get none: the
# stochastic duration predictor's flows all run in the training (forward) direction, and the speaker embedding and
# conditioning layers are used whenever the model has speakers.
@pytest.mark.parametrize(
    "config_overrides",
    [
        {"layerdrop": 0.0},
        {"layerdrop": 0.0, "use_stochastic_duration_prediction": False},
        {"layerdrop": 0.0, "num_speakers": 2, "speaker_embedding_size": 8},
    ],
    ids=["stochastic-duration", "deterministic-duration", "two-speakers"],
)
def test_one_step_gives_every_trainable_parameter_a_finite_nonzero_gradient(config_overrides):
    model = make_model(**config_overrides)
    discriminator = VitsDiscriminator(TINY_DISCRIMINATOR)
    batch = make_batch(model, frame_lengths=(16, 6))
    batch["speaker_id"] = torch.tensor([0, model.vits.config.num_speakers - 1])
    weights = LossWeights(amplitude=1.0, l2sp=1.0)
    reference = L2SPReference(model)
    with torch.no_grad():  # move away from the snapshot so that L2-SP has a gradient too
        for parameter in model.parameters():
            parameter.add_(1e-3)
    set_seed(0)
    outputs = model(**batch)
    loss, components = generator_objective(outputs, weights, discriminate(discriminator, outputs), reference, model)
    loss.backward()
    assert set(components) == {"mel", "kl", "duration", "generator", "feature_matching", "amplitude", "l2sp"}
    no_gradient = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    not_finite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert no_gradient == [] and not_finite == []
    if model.vits.config.num_speakers > 1:
        assert model.vits.embed_speaker.weight.grad[:2].abs().sum(1).gt(0).all()


def test_speaker_id_is_required_and_checked_for_multi_speaker_models():
    model = make_model(num_speakers=2, speaker_embedding_size=8)
    batch = make_batch(model)
    batch["speaker_id"] = torch.tensor([0, 2])
    with pytest.raises(ValueError, match="outside 0..1"):
        model(**batch)
    batch["speaker_id"] = None
    with pytest.raises(ValueError, match="needs a speaker_id"):
        model(**batch)


def test_all_losses_finite_under_bf16_autocast():
    model = make_model()
    discriminator = VitsDiscriminator(TINY_DISCRIMINATOR)
    batch = make_batch(model, frame_lengths=(12, 6), num_tokens=(4, 3))
    weights = LossWeights(amplitude=1.0, amplitude_target_peak=0.85, l2sp=1.0, normalized_mel=True)
    reference = L2SPReference(model)
    set_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(**batch)
        discriminated = discriminate(discriminator, outputs)
        loss, components = generator_objective(outputs, weights, discriminated, reference, model)
        discriminator_loss, discriminator_components = discriminator_objective(discriminated)
    for name, value in {**components, **discriminator_components}.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
    assert torch.isfinite(loss) and torch.isfinite(discriminator_loss)
    (loss + discriminator_loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_freezing_flags_freeze_exactly_their_submodules():
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    flags = SimpleNamespace(freeze_text_encoder=True, freeze_flow=True, freeze_decoder=False)
    prepare_for_training(vits, flags)
    assert not any(p.requires_grad for p in vits.text_encoder.parameters())
    assert not any(p.requires_grad for p in vits.flow.parameters())
    assert all(p.requires_grad for p in vits.decoder.parameters())
    assert all(p.requires_grad for p in vits.posterior_encoder.parameters())
    everything = SimpleNamespace(
        freeze_text_encoder=True,
        freeze_duration_predictor=True,
        freeze_posterior_encoder=True,
        freeze_flow=True,
        freeze_decoder=True,
    )
    with pytest.raises(ValueError, match="nothing left to train"):
        prepare_for_training(VitsModel(make_tiny_config()), everything)


def test_warming_up_untrained_parts_trains_only_what_the_import_report_names(tmp_path):
    set_seed(0)
    flags = SimpleNamespace(warmup_untrained_parts=True, model_name_or_path=str(tmp_path))
    with pytest.raises(ValueError, match="needs a model folder made by `python -m recipe.piper import`"):
        prepare_for_training(VitsModel(make_tiny_config()), flags)
    report = tmp_path / IMPORT_REPORT_NAME
    report.write_text(json.dumps({"untrained_prefixes": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="no untrained parts to warm up"):
        prepare_for_training(VitsModel(make_tiny_config()), flags)
    report.write_text(json.dumps({"untrained_prefixes": ["posterior_encoder.", "duration_predictor.post_flows."]}))
    vits = prepare_for_training(VitsModel(make_tiny_config()), flags)
    trained = {name for name, parameter in vits.named_parameters() if parameter.requires_grad}
    assert trained and all(
        name.startswith(("posterior_encoder.", "duration_predictor.post_flows.")) for name in trained
    )
    assert all(p.requires_grad for p in vits.posterior_encoder.parameters())


def test_save_for_inference_removes_decoder_weight_norm_and_reproduces_the_waveform(tmp_path):
    model = make_model()
    # Train one step so that the weight-norm magnitude and direction differ from their initial values.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    set_seed(0)
    loss, _ = generator_objective(model(**make_batch(model)), LossWeights())
    loss.backward()
    optimizer.step()
    vits = model.vits
    assert all(parametrize.is_parametrized(layer, "weight") for layer in decoder_weight_norm_layers(vits))

    save_for_inference(vits, str(tmp_path / "saved"))
    # The training model keeps its weight norm (the optimizer holds those parameters).
    assert all(parametrize.is_parametrized(layer, "weight") for layer in decoder_weight_norm_layers(vits))
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert not [key for key in keys if key.startswith("decoder.") and "parametrizations" in key]
    assert "decoder.upsampler.0.weight" in keys
    # The WaveNet layers' weight norm is the stock model's own and stays.
    assert any(key.startswith("posterior_encoder.") and "parametrizations" in key for key in keys)

    reloaded = VitsModel.from_pretrained(str(tmp_path / "saved")).eval()
    vits.eval()
    inputs = make_batch(model)["input_ids"][:1]
    with torch.no_grad():
        set_seed(7)
        expected = vits(input_ids=inputs).waveform
        set_seed(7)
        actual = reloaded(input_ids=inputs).waveform
    assert expected.shape == actual.shape and expected.abs().max() > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_overfitting_one_utterance_lowers_the_mel_loss():
    """A short version of the 200-step overfit of benchmarks/objective_effects.py (which also runs it with a GAN)."""
    model = make_model(segment_size=8)
    batch = make_batch(model, frame_lengths=(12,), num_tokens=(4,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.8, 0.99))
    set_seed(0)
    mel_losses = []
    for _ in range(STEPS):
        loss, components = generator_objective(model(**batch), LossWeights())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mel_losses.append(components["mel"].item())
    first, last = sum(mel_losses[:5]) / 5, sum(mel_losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)
