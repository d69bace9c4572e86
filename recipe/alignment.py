"""Monotonic alignment search (MAS): the most likely monotonic text-to-frame alignment, as VITS trains it.

The search itself is the Cython dynamic program of the `monotonic-alignment-search` package (Glow-TTS / VITS),
which runs the batch in parallel threads; this module builds its input (the prior log-likelihood of every frame
under every token) and turns the path into per-token durations.
"""

from __future__ import annotations

import math

import torch
from monotonic_alignment_search import maximum_path


def prior_log_likelihood(
    latents: torch.Tensor, prior_means: torch.Tensor, prior_log_stddev: torch.Tensor
) -> torch.Tensor:
    """Gaussian log-likelihood of every latent frame under every token's prior, summed over channels.

    Args:
        latents (`torch.Tensor` of shape `(batch, channels, frames)`): the flow's output `z_p`.
        prior_means (`torch.Tensor` of shape `(batch, channels, tokens)`): the text encoder's prior means.
        prior_log_stddev (`torch.Tensor` of shape `(batch, channels, tokens)`): the prior log standard deviations.

    Returns:
        `torch.Tensor` of shape `(batch, tokens, frames)`, float32.
    """
    # The expansion of VITS: sum_c log N(z_c; m_c, s_c) as four matmuls instead of a (B, C, T_text, T_frames) tensor.
    with torch.autocast(device_type=latents.device.type, enabled=False):
        return _prior_log_likelihood_fp32(latents.float(), prior_means.float(), prior_log_stddev.float())


def _prior_log_likelihood_fp32(latents, prior_means, prior_log_stddev):
    inverse_variance = torch.exp(-2 * prior_log_stddev)  # (B, C, N)
    constant = torch.sum(-0.5 * math.log(2 * math.pi) - prior_log_stddev, dim=1, keepdim=True)  # (B, 1, N)
    quadratic = torch.matmul(-0.5 * (latents**2).transpose(1, 2), inverse_variance)  # (B, T, N)
    cross = torch.matmul(latents.transpose(1, 2), prior_means * inverse_variance)  # (B, T, N)
    mean_term = torch.sum(-0.5 * (prior_means**2) * inverse_variance, dim=1, keepdim=True)  # (B, 1, N)
    return (constant + quadratic + cross + mean_term).transpose(1, 2)


def monotonic_alignment(
    log_likelihood: torch.Tensor, text_mask: torch.Tensor, frame_mask: torch.Tensor
) -> torch.Tensor:
    """Hard monotonic alignment maximizing the summed log-likelihood; every token gets at least one frame.

    Args:
        log_likelihood (`torch.Tensor` of shape `(batch, tokens, frames)`): score of frame `t` under token `n`.
        text_mask (`torch.Tensor` of shape `(batch, tokens)`): 1 for real tokens.
        frame_mask (`torch.Tensor` of shape `(batch, frames)`): 1 for real frames.

    Returns:
        `torch.Tensor` of shape `(batch, tokens, frames)`, 0 / 1, on the input's device: one token per frame, in order.

    Raises:
        `ValueError` when an utterance has more tokens than frames (no monotonic alignment exists) or no token.
    """
    text_lengths = text_mask.sum(dim=1)
    frame_lengths = frame_mask.sum(dim=1)
    if bool((text_lengths < 1).any()):
        raise ValueError("monotonic_alignment: an utterance has no token")
    too_long = (text_lengths > frame_lengths).nonzero().flatten().tolist()
    if too_long:
        details = ", ".join(f"#{i}: {int(text_lengths[i])} tokens > {int(frame_lengths[i])} frames" for i in too_long)
        raise ValueError(f"monotonic_alignment: more tokens than spectrogram frames ({details}); filter such clips")
    mask = text_mask.float().unsqueeze(2) * frame_mask.float().unsqueeze(1)
    # The package's convention is value[b, x, y] with x the shorter (text) axis, as in Glow-TTS.
    with torch.no_grad():
        path = maximum_path(log_likelihood.detach().float().contiguous(), mask.contiguous(), implementation="cython")
    return path.to(log_likelihood.device)


def durations_from_alignment(alignment: torch.Tensor) -> torch.Tensor:
    """Frames per token: `(batch, tokens, frames)` -> `(batch, 1, tokens)`, float."""
    return alignment.sum(dim=2).unsqueeze(1).float()
