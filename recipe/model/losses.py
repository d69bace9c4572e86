"""VITS training losses as small pure functions, plus the two objectives the trainer calls.

Every function casts its inputs to float32 and runs with autocast disabled: under bf16 / fp16 autocast the exp, log
and squared terms of the KL and the duration NLL lose too much precision (and overflow in fp16).

Shapes: `B` batch, `C` latent channels, `T` frames, `N` tokens, `S` segment frames, `M` mel bins.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

# Added to the target mel energy of the normalized loss and to RMS / peak before their log: silence stays finite.
NORMALIZATION_EPS = 1e-5
AMPLITUDE_EPS = 1e-5


def _fp32():
    """Disable autocast on every device type that has it, so that the losses run in float32."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast("cpu", enabled=False))
    if torch.cuda.is_available():
        stack.enter_context(torch.autocast("cuda", enabled=False))
    return stack


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` (broadcastable) is 1."""
    mask = mask.float().expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def mel_loss(generated_log_mel: torch.Tensor, target_log_mel: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """L1 between log-mels `(B, M, S)` over the valid frames (`frame_mask` `(B, 1, S)`), VITS's reconstruction term."""
    with _fp32():
        return masked_mean((generated_log_mel.float() - target_log_mel.float()).abs(), frame_mask)


def normalized_mel_loss(
    generated_log_mel: torch.Tensor, target_log_mel: torch.Tensor, frame_mask: torch.Tensor
) -> torch.Tensor:
    """Mel reconstruction divided per utterance by the target segment's mel energy, so loud and quiet clips weigh the same.

    Computed on mel magnitudes (`exp` of the log-mels): `sum |mel_g - mel_t| / (sum mel_t + eps)` per utterance,
    then averaged over the batch. Both numerator and denominator scale with the clip's gain, so a clip and its
    copy at any gain give the same loss. (The log-mel L1 divided by an energy would not: dividing by the energy
    would make quiet clips weigh more, and the log-mel L1 itself shrinks for quiet clips, whose quiet bins sit on
    the spectrogram's floor.)
    """
    with _fp32():
        mask = frame_mask.float().expand_as(target_log_mel)
        generated, target = torch.exp(generated_log_mel.float()) * mask, torch.exp(target_log_mel.float()) * mask
        error = (generated - target).abs().sum(dim=(1, 2))
        energy = target.sum(dim=(1, 2))
        has_frames = (mask.sum(dim=(1, 2)) > 0).float()
        per_utterance = error / (energy + NORMALIZATION_EPS)
        # the mean over utterances that have frames (0 when none has), without reading `has_frames` on the host: a
        # branch on it would synchronize with the device in every step
        return (per_utterance * has_frames).sum() / has_frames.sum().clamp(min=1.0)


def kl_loss(
    prior_latents: torch.Tensor,
    posterior_log_stddev: torch.Tensor,
    prior_means: torch.Tensor,
    prior_log_stddev: torch.Tensor,
    frame_mask: torch.Tensor,
) -> torch.Tensor:
    """KL between the posterior and the aligned prior, VITS's estimate (`z_p` sampled from the posterior).

    Args:
        prior_latents (`(B, C, T)`): `z_p = flow(z)`.
        posterior_log_stddev (`(B, C, T)`): `logs_q`.
        prior_means, prior_log_stddev (`(B, C, T)`): the text prior expanded to frames by the alignment.
        frame_mask (`(B, 1, T)`).

    Returns: the summed KL divided by the number of valid frames.
    """
    with _fp32():
        prior_latents, posterior_log_stddev = prior_latents.float(), posterior_log_stddev.float()
        prior_means, prior_log_stddev, frame_mask = prior_means.float(), prior_log_stddev.float(), frame_mask.float()
        kl = prior_log_stddev - posterior_log_stddev - 0.5
        kl = kl + 0.5 * (prior_latents - prior_means) ** 2 * torch.exp(-2.0 * prior_log_stddev)
        return torch.sum(kl * frame_mask) / frame_mask.sum().clamp_min(1.0)


def stochastic_duration_loss(duration_nll: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """The stochastic duration predictor's NLL `(B,)` summed over the batch, divided by the number of tokens (VITS)."""
    with _fp32():
        return duration_nll.float().sum() / text_mask.float().sum().clamp_min(1.0)


def log_duration_loss(
    predicted_log_durations: torch.Tensor, durations: torch.Tensor, text_mask: torch.Tensor
) -> torch.Tensor:
    """Squared error of log durations `(B, 1, N)` (deterministic duration predictor), per token (VITS)."""
    with _fp32():
        text_mask = text_mask.float()
        target = torch.log(durations.float() + 1e-6) * text_mask
        error = (predicted_log_durations.float() - target) ** 2 * text_mask
        return error.sum() / text_mask.sum().clamp_min(1.0)


def amplitude_loss(
    generated_waveform: torch.Tensor,
    target_waveform: torch.Tensor,
    sample_mask: torch.Tensor,
    target_peak: float | None = None,
) -> torch.Tensor:
    """L1 between the generated and target segments' RMS and peak, in log units (nepers), over valid samples.

    The log makes the term's pull the same for quiet and loud clips and puts it on the scale of the log-mel L1
    (an L1 on raw RMS values of ~0.05 gives gradients ~1000x weaker than the mel term's). With `target_peak`
    (e.g. 0.85) the peak is pulled to that fixed value instead of the target's.

    Args:
        generated_waveform, target_waveform (`(B, 1, samples)`); sample_mask (`(B, 1, samples)`).
    """
    with _fp32():
        mask = sample_mask.float()
        count = mask.sum(dim=(1, 2)).clamp_min(1.0)
        generated, target = generated_waveform.float() * mask, target_waveform.float() * mask
        rms_generated = torch.sqrt(generated.pow(2).sum(dim=(1, 2)) / count + AMPLITUDE_EPS**2)
        rms_target = torch.sqrt(target.pow(2).sum(dim=(1, 2)) / count + AMPLITUDE_EPS**2)
        peak_generated = generated.abs().amax(dim=(1, 2)) + AMPLITUDE_EPS
        if target_peak is None:
            peak_target = target.abs().amax(dim=(1, 2)) + AMPLITUDE_EPS
        else:
            peak_target = torch.full_like(peak_generated, float(target_peak))
        rms_term = (torch.log(rms_generated) - torch.log(rms_target)).abs()
        peak_term = (torch.log(peak_generated) - torch.log(peak_target)).abs()
        return (rms_term + peak_term).mean()


@dataclass
class DiscriminatorPass:
    """The discriminator's scores and feature maps of one training step's real and generated segments: one forward
    that serves both objectives (`generator_objective`, `discriminator_objective`)."""

    real_scores: list[torch.Tensor]
    real_maps: list[list[torch.Tensor]]
    fake_scores: list[torch.Tensor]
    fake_maps: list[list[torch.Tensor]]


def discriminate(discriminator, outputs, detach_generated: bool = False) -> DiscriminatorPass:
    """`discriminator` on `outputs`' real and generated segments (`target_waveform`, `generated_waveform`).

    Args:
        discriminator (`VitsDiscriminator`, or its DDP wrapper).
        outputs (`VitsTrainingOutput`): the training forward's output.
        detach_generated (`bool`, *optional*, defaults to `False`): score a detached copy of the generated audio,
            so that no gradient of this pass can reach the generator.
    """
    generated = outputs.generated_waveform.detach() if detach_generated else outputs.generated_waveform
    real_scores, real_maps = discriminator(outputs.target_waveform)
    fake_scores, fake_maps = discriminator(generated)
    return DiscriminatorPass(real_scores, real_maps, fake_scores, fake_maps)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Turn `requires_grad` off for `module`'s parameters inside the block (restored on exit).

    Gradients still flow through the module to its inputs; none reach its own weights. VITS's two passes score the
    generated audio with the discriminator frozen for the generator's objective and again, detached, for the
    discriminator's: the reference `VitsTrainer`'s one pass is tested against (and the benchmarks' older step).
    """
    parameters = list(module.parameters())
    flags = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in zip(parameters, flags):
            parameter.requires_grad_(flag)


def generator_adversarial_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss: sum over sub-discriminators of mean((1 - D(fake))^2)."""
    with _fp32():
        return sum(torch.mean((1 - score.float()) ** 2) for score in fake_scores)


def feature_matching_loss(real_maps: list[list[torch.Tensor]], fake_maps: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's feature maps of real (detached) and generated audio, summed over layers."""
    with _fp32():
        return sum(
            torch.mean((real.detach().float() - fake.float()).abs())
            for real_layers, fake_layers in zip(real_maps, fake_maps)
            for real, fake in zip(real_layers, fake_layers)
        )


def discriminator_adversarial_loss(
    real_scores: list[torch.Tensor], fake_scores: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """LSGAN discriminator loss, split: (sum of mean((1 - D(real))^2), sum of mean(D(fake)^2))."""
    with _fp32():
        real = sum(torch.mean((1 - score.float()) ** 2) for score in real_scores)
        fake = sum(torch.mean(score.float() ** 2) for score in fake_scores)
        return real, fake


class L2SPReference:
    """Snapshot of a module's trainable weights; `penalty(module)` is their mean squared distance from it (L2-SP).

    Take the snapshot after `prepare_for_training` (weight norm and freezing change the parameter set). Names are
    matched without the `module.` (DDP) and `_orig_mod.` (torch.compile) prefixes, so the penalty can be computed on
    the wrapped model.
    """

    def __init__(self, module: torch.nn.Module):
        self.reference = {
            self._canonical(name): parameter.detach().clone()
            for name, parameter in module.named_parameters()
            if parameter.requires_grad
        }
        if not self.reference:
            raise ValueError("L2SPReference: the module has no trainable parameter")
        self.num_weights = sum(tensor.numel() for tensor in self.reference.values())

    @staticmethod
    def _canonical(name: str) -> str:
        for prefix in ("module.", "_orig_mod."):
            while name.startswith(prefix):
                name = name[len(prefix) :]
        return name

    def penalty(self, module: torch.nn.Module) -> torch.Tensor:
        """Mean over all snapshot weights of (w - w_0)^2, float32."""
        parameters = {self._canonical(name): parameter for name, parameter in module.named_parameters()}
        missing = [name for name in self.reference if name not in parameters]
        if missing:
            raise KeyError(f"L2SPReference: parameters missing from the module: {missing[:5]}")
        total = None
        with _fp32():
            for name, reference in self.reference.items():
                parameter = parameters[name]
                if reference.device != parameter.device:  # the Trainer may move the model after the snapshot
                    reference = self.reference[name] = reference.to(parameter.device)
                term = (parameter.float() - reference.float()).pow(2).sum()
                total = term if total is None else total + term
        return total / self.num_weights


@dataclass
class LossWeights:
    """Weights of the generator's loss terms (a weight of 0 turns a term off).

    Its defaults are the defaults of the matching `VitsTrainingArguments` fields (`mel_loss_weight`, ...,
    `l2sp_weight`), which read them from this class.

    Args:
        mel (`float`, defaults to 45): log-mel L1 (or its normalized form with `normalized_mel`).
        kl (`float`, defaults to 1), duration (`float`, defaults to 1).
        generator (`float`, defaults to 1), feature_matching (`float`, defaults to 2): adversarial terms, used only
            with a discriminator.
        normalized_mel (`bool`, defaults to `False`): use `normalized_mel_loss` as the mel term.
        amplitude (`float`, defaults to 0), amplitude_target_peak (`float`, *optional*): `amplitude_loss`.
        l2sp (`float`, defaults to 0): strength of the pull towards the starting weights.
    """

    mel: float = 45.0
    kl: float = 1.0
    duration: float = 1.0
    generator: float = 1.0
    feature_matching: float = 2.0
    normalized_mel: bool = False
    amplitude: float = 0.0
    amplitude_target_peak: float | None = None
    l2sp: float = 0.0

    @classmethod
    def from_training_args(cls, args) -> LossWeights:
        """From a `VitsTrainingArguments`."""
        return cls(
            mel=args.mel_loss_weight,
            kl=args.kl_loss_weight,
            duration=args.duration_loss_weight,
            generator=args.generator_loss_weight,
            feature_matching=args.feature_matching_loss_weight,
            normalized_mel=args.normalized_mel_loss,
            amplitude=args.amplitude_loss_weight,
            amplitude_target_peak=args.amplitude_target_peak,
            l2sp=args.l2sp_weight,
        )


def duration_loss(outputs) -> torch.Tensor:
    """The duration term of a `VitsTrainingOutput`: NLL for the stochastic predictor, else log-duration MSE."""
    if outputs.duration_nll is not None:
        return stochastic_duration_loss(outputs.duration_nll, outputs.text_mask)
    return log_duration_loss(outputs.predicted_log_durations, outputs.durations, outputs.text_mask)


def generator_objective(
    outputs,
    weights: LossWeights,
    discriminated: DiscriminatorPass | None = None,
    l2sp: L2SPReference | None = None,
    model=None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's total loss and its unweighted components (detached, for logging).

    Args:
        outputs (`VitsTrainingOutput`): the training forward's output.
        weights (`LossWeights`).
        discriminated (`DiscriminatorPass`, *optional*): the discriminator's pass over this output (`discriminate`,
            generated audio not detached); adds `generator` and `feature_matching`. Their gradients flow through the
            discriminator to the generated audio, and into the discriminator's own parameters too unless the backward
            is limited to the generator's (`VitsTrainer` gives `backward` the generator's parameters as `inputs`).
        l2sp (`L2SPReference`, *optional*), model (`torch.nn.Module`, *optional*): adds `l2sp` (needs both, and a
            non-zero `weights.l2sp`).

    Returns:
        `tuple(torch.Tensor, dict[str, torch.Tensor])`: the weighted sum and the components `mel`, `kl`, `duration`
        (+ `generator`, `feature_matching`, `amplitude`, `l2sp` when used).
    """
    mel_term = normalized_mel_loss if weights.normalized_mel else mel_loss
    components = {
        "mel": mel_term(outputs.generated_log_mel, outputs.target_log_mel, outputs.segment_frame_mask),
        "kl": kl_loss(
            outputs.prior_latents,
            outputs.posterior_log_stddev,
            outputs.prior_means,
            outputs.prior_log_stddev,
            outputs.frame_mask,
        ),
        "duration": duration_loss(outputs),
    }
    total = weights.mel * components["mel"] + weights.kl * components["kl"] + weights.duration * components["duration"]
    if discriminated is not None:
        components["generator"] = generator_adversarial_loss(discriminated.fake_scores)
        components["feature_matching"] = feature_matching_loss(discriminated.real_maps, discriminated.fake_maps)
        total = total + weights.generator * components["generator"]
        total = total + weights.feature_matching * components["feature_matching"]
    if weights.amplitude > 0:
        components["amplitude"] = amplitude_loss(
            outputs.generated_waveform,
            outputs.target_waveform,
            outputs.segment_sample_mask,
            weights.amplitude_target_peak,
        )
        total = total + weights.amplitude * components["amplitude"]
    if weights.l2sp > 0:
        if l2sp is None or model is None:
            raise ValueError("generator_objective: l2sp weight > 0 needs both an L2SPReference and the model")
        components["l2sp"] = l2sp.penalty(model)
        total = total + weights.l2sp * components["l2sp"]
    return total, {name: value.detach() for name, value in components.items()}


def discriminator_objective(discriminated: DiscriminatorPass) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LSGAN loss of the discriminator on its pass over the real segment and the generated one (`discriminate`).

    With the generated audio not detached in `discriminated`, the loss's gradient reaches the generator too unless
    the backward is limited to the discriminator's parameters (`VitsTrainer` does so).

    Returns:
        `tuple(torch.Tensor, dict[str, torch.Tensor])`: the loss and `discriminator`, `discriminator_real`,
        `discriminator_fake` (detached).
    """
    real_scores, fake_scores = discriminated.real_scores, discriminated.fake_scores
    real, fake = discriminator_adversarial_loss(real_scores, fake_scores)
    loss = real + fake
    return loss, {
        "discriminator": loss.detach(),
        "discriminator_real": real.detach(),
        "discriminator_fake": fake.detach(),
    }


__all__ = [
    "DiscriminatorPass",
    "L2SPReference",
    "LossWeights",
    "amplitude_loss",
    "discriminate",
    "discriminator_adversarial_loss",
    "discriminator_objective",
    "duration_loss",
    "feature_matching_loss",
    "frozen",
    "generator_adversarial_loss",
    "generator_objective",
    "kl_loss",
    "log_duration_loss",
    "mel_loss",
    "normalized_mel_loss",
    "stochastic_duration_loss",
]
