"""Monotonic alignment search (MAS): the most likely monotonic text-to-frame alignment, as VITS trains it.

The search itself is the Cython dynamic program of the `monotonic-alignment-search` package (Glow-TTS / VITS),
`maximum_path_c`, called on the clips' own lengths; this module builds its input (the prior log-likelihood of every
frame under every token) and turns the path into per-token durations. The package's wheel is built without OpenMP,
so the search runs on one host thread, clip after clip.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monotonic_alignment_search.core import maximum_path_c


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
    # one transfer of the lengths to the host, where the search runs anyway
    lengths = torch.stack([text_mask.sum(dim=1), frame_mask.sum(dim=1)]).to("cpu", torch.int32).numpy()
    text_lengths, frame_lengths = np.ascontiguousarray(lengths[0]), np.ascontiguousarray(lengths[1])
    if (text_lengths < 1).any():
        raise ValueError("monotonic_alignment: an utterance has no token")
    too_long = np.flatnonzero(text_lengths > frame_lengths)
    if len(too_long):
        details = ", ".join(f"#{i}: {text_lengths[i]} tokens > {frame_lengths[i]} frames" for i in too_long)
        raise ValueError(f"monotonic_alignment: more tokens than spectrogram frames ({details}); filter such clips")
    # The package's convention is value[b, x, y] with x the shorter (text) axis, as in Glow-TTS. The search reads each
    # clip's [:text_length, :frame_length] block only, so the padding needs no masking, and it overwrites the values
    # with its running sums: hence a copy (which is the device-to-host transfer on a GPU). Calling `maximum_path_c`
    # directly skips the package wrapper's mask product, mask transfer and extra copies: 7.1-9.6 ms instead of
    # 11.7-23.2 ms for the GPU benchmark's batch on the CPU host (`python benchmarks/objective_effects.py mas`).
    values = log_likelihood.detach().to("cpu", torch.float32, copy=True).contiguous().numpy()
    path = np.zeros(values.shape, dtype=np.int32)
    maximum_path_c(path, values, text_lengths, frame_lengths)
    return torch.from_numpy(path).to(log_likelihood.device).float()


def durations_from_alignment(alignment: torch.Tensor) -> torch.Tensor:
    """Frames per token: `(batch, tokens, frames)` -> `(batch, 1, tokens)`, float."""
    return alignment.sum(dim=2).unsqueeze(1).float()
