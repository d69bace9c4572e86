"""The stochastic duration predictor's training loss (its negative log-likelihood), in the flow order VITS trained with.

Reference: `StochasticDurationPredictor.forward(..., reverse=False)` of the original VITS (jaywalnut310/vits,
`models.py`), also shipped in Piper's training code (`piper.train.vits.models`). Its flow lists are
`[ElementwiseAffine, ConvFlow, Flip, ConvFlow, Flip, ...]`: the channels are flipped after every ConvFlow, not after
the ElementwiseAffine.

Why the recipe has its own: transformers' `VitsStochasticDurationPredictor` holds the same layers without the `Flip`
entries and, in its training direction, flips after *every* flow, the ElementwiseAffine included. Its inference
direction (`reverse=True`) inverts VITS's order correctly, so a pretrained MMS or Piper predictor is right at
inference; but training it through transformers' `reverse=False` fits the flows for another order than the one
inference inverts, and the voice's rhythm degrades as it trains. This module runs VITS's order over transformers'
submodules (no weights of its own); `tests/test_duration.py` checks it against Piper's module on the same weights
and noise.

Shapes: `B` batch, `H` hidden channels, `N` tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _flows_in_vits_order(
    flows: nn.ModuleList, latents: torch.Tensor, mask: torch.Tensor, conditioning: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`flows` = `[ElementwiseAffine, ConvFlow x n]` applied forward as VITS's `[EA, ConvFlow, Flip, ConvFlow, Flip, ...]`.

    Returns the transformed latents and the summed log-determinant `(B,)`.
    """
    latents, log_determinant = flows[0](latents, mask)
    for flow in flows[1:]:
        latents, flow_log_determinant = flow(latents, mask, global_conditioning=conditioning)
        log_determinant = log_determinant + flow_log_determinant
        latents = torch.flip(latents, [1])  # VITS's Flip, whose log-determinant is 0
    return latents, log_determinant


def stochastic_duration_nll(
    predictor: nn.Module,
    hidden_states: torch.Tensor,
    text_mask: torch.Tensor,
    durations: torch.Tensor,
    speaker_embeddings: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of `durations` under the stochastic duration predictor, per utterance, as VITS computes it.

    A variational bound: `nll + log q`, with the posterior flows (`post_flows`) dequantizing the integer durations.

    Args:
        predictor (`VitsStochasticDurationPredictor`): transformers' module; its weights are used as they are.
        hidden_states (`(B, H, N)`): the text encoder's output (detached here, as in VITS: the duration loss does not
            train the text encoder).
        text_mask (`(B, 1, N)`): 1 for real tokens.
        durations (`(B, 1, N)`): frames per token from the monotonic alignment.
        speaker_embeddings (`(B, E, 1)`, *optional*): for multi-speaker models.
        noise (`(B, 2, N)`, *optional*): the posterior's standard-normal draw; drawn here when not given.

    Returns:
        `torch.Tensor` of shape `(B,)`.
    """
    inputs = predictor.conv_pre(hidden_states.detach())
    if speaker_embeddings is not None:
        inputs = inputs + predictor.cond(speaker_embeddings.detach())
    inputs = predictor.conv_dds(inputs, text_mask)
    inputs = predictor.conv_proj(inputs) * text_mask

    durations = durations.to(inputs.dtype)
    duration_features = predictor.post_conv_pre(durations)
    duration_features = predictor.post_conv_dds(duration_features, text_mask)
    duration_features = predictor.post_conv_proj(duration_features) * text_mask

    if noise is None:
        noise = torch.randn(durations.shape[0], 2, durations.shape[2], device=inputs.device, dtype=inputs.dtype)
    noise = noise.to(inputs.dtype) * text_mask

    # Posterior q(u, nu | d): dequantization noise u in (0, 1) and the auxiliary nu.
    posterior, log_determinant_posterior = _flows_in_vits_order(
        predictor.post_flows, noise, text_mask, inputs + duration_features
    )
    unconstrained, auxiliary = torch.split(posterior, [1, 1], dim=1)
    dequantization = torch.sigmoid(unconstrained) * text_mask
    log_determinant_posterior = log_determinant_posterior + torch.sum(
        (nn.functional.logsigmoid(unconstrained) + nn.functional.logsigmoid(-unconstrained)) * text_mask, [1, 2]
    )
    log_q = torch.sum(-0.5 * (math.log(2 * math.pi) + noise**2) * text_mask, [1, 2]) - log_determinant_posterior

    # Prior flows on (log(d - u), nu); VITS's `Log` flow first.
    log_durations = torch.log(torch.clamp_min((durations - dequantization) * text_mask, 1e-5)) * text_mask
    log_determinant = torch.sum(-log_durations, [1, 2])
    latents = torch.cat([log_durations, auxiliary], dim=1)
    latents, flows_log_determinant = _flows_in_vits_order(predictor.flows, latents, text_mask, inputs)
    log_determinant = log_determinant + flows_log_determinant
    nll = torch.sum(0.5 * (math.log(2 * math.pi) + latents**2) * text_mask, [1, 2]) - log_determinant
    return nll + log_q
