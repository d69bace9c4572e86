"""The loss functions: values they must take on known inputs, gain invariance of the normalized mel term, L2-SP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.model.losses import (
    L2SPReference,
    LossWeights,
    amplitude_loss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    log_duration_loss,
    mel_loss,
    normalized_mel_loss,
    stochastic_duration_loss,
)

SPECTROGRAM = SpectrogramConfig(sampling_rate=16000, n_fft=1024, hop_length=256, win_length=1024)


def voiced_clip(num_frames: int = 32, seed: int = 0) -> torch.Tensor:
    """A tremolo two-partial tone with a little noise: a stand-in for a voiced segment."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(num_frames * 256) / 16000
    tone = 0.5 * torch.sin(2 * math.pi * 220 * time) + 0.2 * torch.sin(2 * math.pi * 660 * time)
    return tone * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * time)) + 0.02 * torch.randn(len(time), generator=generator)


def test_normalized_mel_loss_gives_a_loud_and_a_quiet_copy_equal_weight():
    clip = voiced_clip()
    generated = 0.8 * clip + 0.05 * torch.randn(len(clip), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 1, 32)

    def losses(gain):
        target_mel = log_mel_spectrogram((gain * clip)[None], SPECTROGRAM)
        generated_mel = log_mel_spectrogram((gain * generated)[None], SPECTROGRAM)
        return normalized_mel_loss(generated_mel, target_mel, mask).item(), mel_loss(
            generated_mel, target_mel, mask
        ).item()

    loud_normalized, loud_plain = losses(1.0)
    for gain, tolerance in [(0.1, 0.01), (0.01, 0.03)]:  # -20 dB and -40 dB
        quiet_normalized, quiet_plain = losses(gain)
        assert quiet_normalized == pytest.approx(loud_normalized, rel=tolerance)
    # The plain log-mel L1 gives the -40 dB copy less weight: its quiet bins sit on the spectrogram's floor.
    assert quiet_plain < 0.97 * loud_plain

    # In one batch, the two copies contribute equally: the batch loss is the mean of the two equal terms.
    batch_target = log_mel_spectrogram(torch.stack([clip, 0.1 * clip]), SPECTROGRAM)
    batch_generated = log_mel_spectrogram(torch.stack([generated, 0.1 * generated]), SPECTROGRAM)
    batch_loss = normalized_mel_loss(batch_generated, batch_target, torch.ones(2, 1, 32)).item()
    assert batch_loss == pytest.approx(loud_normalized, rel=0.01)


def test_normalized_mel_loss_averages_only_the_utterances_that_have_frames():
    target = torch.randn(3, 80, 16)
    generated = (target + 0.5 * torch.randn(3, 80, 16)).requires_grad_()
    mask = torch.ones(3, 1, 16)
    mask[1] = 0  # a segment with no real frame
    alone = [normalized_mel_loss(generated[i : i + 1], target[i : i + 1], mask[i : i + 1]) for i in (0, 2)]
    batch = normalized_mel_loss(generated, target, mask)
    assert batch.item() == pytest.approx((alone[0].item() + alone[1].item()) / 2, rel=1e-6)
    # no frame at all: zero, and still a graph to backpropagate through
    empty = normalized_mel_loss(generated, target, torch.zeros(3, 1, 16))
    assert empty.item() == 0.0
    empty.backward()
    assert generated.grad is not None and torch.all(generated.grad == 0)


def test_mel_losses_ignore_frames_past_the_clip():
    target = torch.zeros(1, 80, 6)
    generated = torch.zeros(1, 80, 6)
    generated[..., 4:] = 5.0  # garbage in the padded frames
    mask = torch.tensor([[[1.0, 1, 1, 1, 0, 0]]])
    assert mel_loss(generated, target, mask).item() == 0.0
    assert normalized_mel_loss(generated, target, mask).item() == 0.0
    assert mel_loss(generated, target, torch.ones(1, 1, 6)).item() == pytest.approx(5.0 * 2 / 6)


def test_kl_loss_averages_to_the_analytic_kl_over_posterior_samples():
    generator = torch.Generator().manual_seed(0)
    channels, frames = 4, 20000
    posterior_mean, posterior_log_stddev = torch.tensor(0.3), torch.tensor(-0.5)
    prior_mean, prior_log_stddev = torch.tensor(-0.2), torch.tensor(0.1)
    # VITS's estimate: z_p sampled from the posterior (here the flow is the identity).
    samples = posterior_mean + posterior_log_stddev.exp() * torch.randn(1, channels, frames, generator=generator)
    estimate = kl_loss(
        samples,
        posterior_log_stddev.expand(1, channels, frames),
        prior_mean.expand(1, channels, frames),
        prior_log_stddev.expand(1, channels, frames),
        torch.ones(1, 1, frames),
    )
    analytic = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior_mean, posterior_log_stddev.exp()),
        torch.distributions.Normal(prior_mean, prior_log_stddev.exp()),
    )
    # kl_loss sums channels and averages frames.
    assert estimate.item() == pytest.approx(channels * analytic.item(), rel=0.02)


def test_duration_losses():
    text_mask = torch.tensor([[[1.0, 1, 1, 0]], [[1.0, 1, 0, 0]]])
    durations = torch.tensor([[[2.0, 1, 4, 0]], [[3.0, 5, 0, 0]]])
    assert log_duration_loss(torch.log(durations + 1e-6) * text_mask, durations, text_mask).item() == pytest.approx(
        0.0
    )
    off_by_one = torch.log(durations + 1e-6) * text_mask + text_mask  # every real token off by 1 in log space
    assert log_duration_loss(off_by_one, durations, text_mask).item() == pytest.approx(1.0)
    # Stochastic predictor: the NLL summed over the batch, per token (5 real tokens).
    assert stochastic_duration_loss(torch.tensor([10.0, 5.0]), text_mask).item() == pytest.approx(3.0)


def test_amplitude_loss_is_zero_on_match_and_pulls_a_quiet_segment_up():
    target = voiced_clip(8)[None, None]
    mask = torch.ones_like(target)
    assert amplitude_loss(target, target, mask).item() == pytest.approx(0.0, abs=1e-6)

    gain = torch.tensor(0.1, requires_grad=True)
    loss = amplitude_loss(gain * target, target, mask)
    # log-domain L1: |log 0.1| for the RMS and again for the peak
    assert loss.item() == pytest.approx(2 * math.log(10), rel=1e-3)
    loss.backward()
    assert gain.grad.item() < 0  # gradient descent raises the gain

    peak = target.abs().max().item()
    fixed = amplitude_loss(target, target, mask, target_peak=0.85).item()
    assert fixed == pytest.approx(abs(math.log(peak) - math.log(0.85)), rel=1e-3)

    # Samples past the end of the clip do not count.
    padded_target = torch.cat([target, torch.zeros_like(target)], dim=2)
    padded_generated = torch.cat([target, torch.ones_like(target)], dim=2)
    padded_mask = torch.cat([mask, torch.zeros_like(mask)], dim=2)
    assert amplitude_loss(padded_generated, padded_target, padded_mask).item() == pytest.approx(0.0, abs=1e-6)


def test_lsgan_losses():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    assert generator_adversarial_loss(ones).item() == 0.0
    assert generator_adversarial_loss(zeros).item() == 2.0
    real, fake = discriminator_adversarial_loss(real_scores=ones, fake_scores=zeros)
    assert real.item() == 0.0 and fake.item() == 0.0
    real, fake = discriminator_adversarial_loss(real_scores=zeros, fake_scores=ones)
    assert real.item() == 2.0 and fake.item() == 2.0
    maps = [[torch.ones(2, 4), torch.zeros(2, 3)]]
    assert feature_matching_loss(maps, [[torch.zeros(2, 4), torch.zeros(2, 3)]]).item() == 1.0


def test_l2sp_penalty_is_the_mean_squared_distance_and_follows_wrapped_models():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].bias.requires_grad_(False)  # frozen weights are not part of the snapshot
    reference = L2SPReference(model)
    assert reference.penalty(model).item() == 0.0
    with torch.no_grad():
        model[0].weight.add_(2.0)  # 6 weights moved by 2
        model[1].bias.add_(100.0)  # frozen: ignored
    trainable = 6 + 2 + 2  # weight(2x3) + bias(2) + weight(1x2)
    assert reference.penalty(model).item() == pytest.approx(6 * 4.0 / trainable)

    class Wrapper(nn.Module):  # how DDP names the parameters: module.<name>
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert reference.penalty(Wrapper(model)).item() == pytest.approx(6 * 4.0 / trainable)
    with pytest.raises(KeyError, match="missing"):
        reference.penalty(nn.Linear(3, 2))


def test_loss_weights_from_training_args(tmp_path):
    from recipe.training.arguments import VitsTrainingArguments

    args = VitsTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        mel_loss_weight=30.0,
        normalized_mel_loss=True,
        amplitude_loss_weight=2.0,
        amplitude_target_peak=0.85,
        l2sp_weight=0.5,
    )
    weights = LossWeights.from_training_args(args)
    assert weights == LossWeights(
        mel=30.0, kl=1.0, duration=1.0, generator=1.0, feature_matching=2.0, normalized_mel=True, amplitude=2.0,
        amplitude_target_peak=0.85, l2sp=0.5,
    )  # fmt: skip
