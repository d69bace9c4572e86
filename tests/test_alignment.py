"""Monotonic alignment search against an exhaustive search, and the prior log-likelihood it runs on."""

from __future__ import annotations

import itertools

import pytest
import torch

from recipe.model.alignment import durations_from_alignment, monotonic_alignment, prior_log_likelihood


def best_score_by_enumeration(scores: torch.Tensor) -> float:
    """Maximum over every monotonic alignment (each token >= 1 frame, in order) of `scores` `(tokens, frames)`."""
    num_tokens, num_frames = scores.shape
    best = -float("inf")
    # An alignment is a choice of the num_tokens - 1 frames where a new token starts.
    for cuts in itertools.combinations(range(1, num_frames), num_tokens - 1):
        bounds = (0, *cuts, num_frames)
        total = sum(scores[n, bounds[n] : bounds[n + 1]].sum().item() for n in range(num_tokens))
        best = max(best, total)
    return best


def assert_valid_path(path: torch.Tensor, num_tokens: int, num_frames: int):
    """One token per frame, starting at token 0, ending at the last token, never going back or skipping one."""
    assert torch.all(path[:num_tokens, :num_frames].sum(0) == 1)
    assert torch.all(path[num_tokens:] == 0) and torch.all(path[:, num_frames:] == 0)
    tokens = path[:num_tokens, :num_frames].argmax(0)
    steps = tokens[1:] - tokens[:-1]
    assert tokens[0] == 0 and tokens[-1] == num_tokens - 1
    assert torch.all((steps == 0) | (steps == 1))


@pytest.mark.parametrize(
    "num_tokens, num_frames", [(1, 1), (1, 7), (2, 2), (3, 3), (5, 5), (2, 9), (3, 8), (4, 10), (6, 11)]
)
def test_alignment_matches_exhaustive_search(num_tokens, num_frames):
    generator = torch.Generator().manual_seed(num_tokens * 100 + num_frames)
    for _ in range(3):
        scores = torch.randn(1, num_tokens, num_frames, generator=generator) * 3
        path = monotonic_alignment(scores, torch.ones(1, num_tokens), torch.ones(1, num_frames))[0]
        assert_valid_path(path, num_tokens, num_frames)
        assert (path * scores[0]).sum().item() == pytest.approx(best_score_by_enumeration(scores[0]), abs=1e-4)


def test_padded_batch_aligns_each_utterance_within_its_lengths():
    generator = torch.Generator().manual_seed(0)
    lengths = [(3, 9), (1, 4), (5, 5), (4, 7)]
    scores = torch.randn(len(lengths), 5, 9, generator=generator)
    text_mask = torch.zeros(len(lengths), 5)
    frame_mask = torch.zeros(len(lengths), 9)
    for i, (tokens, frames) in enumerate(lengths):
        text_mask[i, :tokens], frame_mask[i, :frames] = 1, 1
    paths = monotonic_alignment(scores, text_mask, frame_mask)
    for i, (tokens, frames) in enumerate(lengths):
        assert_valid_path(paths[i], tokens, frames)
        best = best_score_by_enumeration(scores[i, :tokens, :frames])
        assert (paths[i] * scores[i]).sum().item() == pytest.approx(best, abs=1e-4)
    durations = durations_from_alignment(paths)
    assert durations.shape == (len(lengths), 1, 5)
    assert durations.sum(dim=(1, 2)).tolist() == [float(frames) for _, frames in lengths]


def test_more_tokens_than_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="more tokens than spectrogram frames"):
        monotonic_alignment(torch.randn(2, 4, 3), torch.ones(2, 4), torch.ones(2, 3))


def test_prior_log_likelihood_is_the_gaussian_log_density_summed_over_channels():
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 3, 6, generator=generator)
    means = torch.randn(2, 3, 4, generator=generator)
    log_stddev = torch.randn(2, 3, 4, generator=generator) * 0.3
    expected = (
        torch.distributions.Normal(means.unsqueeze(3), log_stddev.exp().unsqueeze(3))
        .log_prob(latents.unsqueeze(2))  # (B, C, N, T)
        .sum(1)
    )
    torch.testing.assert_close(prior_log_likelihood(latents, means, log_stddev), expected, rtol=1e-4, atol=1e-4)
