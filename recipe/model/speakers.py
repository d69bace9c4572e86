"""Speakers added to a voice without changing how it speaks: a single-speaker model made multi-speaker, and rows added
to a multi-speaker model's speaker table.

VITS conditions four parts on a speaker embedding `g` (transformers' `VitsModel`, `speaker_embedding_size > 0`):
the posterior encoder's and each flow layer's WaveNet (`cond_layer`, a weight-normed 1x1 convolution whose output
is added inside every WaveNet layer), the duration predictor (`cond`, added to its input) and the HiFi-GAN decoder
(`cond`, added to its first hidden state). Each adds `W g + b`. A single-speaker model has none of these layers:
`with_speakers` builds them with `W = 0` and `b = 0`, so that at step 0 every speaker id synthesizes exactly what
the original model did (the additions are exact zeros), and fine-tuning starts from the original voice: the
gradient of `W` is not zero (it is the upstream gradient times `g`), so the layers learn at the first step, and the
embeddings follow once `W` is no longer zero. Under weight norm (`W = g_norm * v / |v|`) the norm `g_norm` is
zeroed and `v` keeps its random direction, since `v = 0` would divide by zero.

`add_speakers` appends rows to the table of a multi-speaker model: the existing rows and every other weight are
kept bit for bit, so the existing speakers synthesize as before.
"""

from __future__ import annotations

import copy

import torch
from torch.nn.utils import parametrize
from transformers import VitsModel

# VITS's `gin_channels` (256) for its multi-speaker VCTK model, Piper's default for multi-speaker voices too: the
# conditioning layers' input width; a smaller table saves little (num_speakers x 256 numbers)
DEFAULT_SPEAKER_EMBEDDING_SIZE = 256
# the conditioning layers, by the name of their attribute in transformers' VITS modules
CONDITIONING_LAYER_NAMES = ("cond_layer", "cond")


def conditioning_layers(vits: VitsModel) -> dict[str, torch.nn.Conv1d]:
    """The speaker-conditioning convolutions of `vits`, by module name (none in a single-speaker model)."""
    return {
        name: module
        for name, module in vits.named_modules()
        if name.rsplit(".", 1)[-1] in CONDITIONING_LAYER_NAMES and isinstance(module, torch.nn.Conv1d)
    }


def _zero_conditioning(conv: torch.nn.Conv1d) -> None:
    with torch.no_grad():
        if parametrize.is_parametrized(conv, "weight"):
            # weight norm: the norm (original0) to zero, the direction (original1) kept
            conv.parametrizations.weight.original0.zero_()
        elif hasattr(conv, "weight_g"):  # the older torch.nn.utils.weight_norm
            conv.weight_g.zero_()
        else:
            conv.weight.zero_()
        conv.bias.zero_()


def with_speakers(
    vits: VitsModel, num_speakers: int, speaker_embedding_size: int = DEFAULT_SPEAKER_EMBEDDING_SIZE
) -> VitsModel:
    """A multi-speaker copy of the single-speaker `vits` (same class) that synthesizes exactly as `vits` for every
    speaker id until it is trained.

    Args:
        vits (`VitsModel`, or a subclass such as the Piper type-2 decoder's): a model with `num_speakers` 1.
        num_speakers (`int`): the speakers of the new table (at least 2).
        speaker_embedding_size (`int`, *optional*, defaults to 256): the embedding width (VITS's and Piper's).

    Raises:
        `ValueError`: `vits` has speakers already (`add_speakers` adds rows to them), or `num_speakers` < 2.
    """
    if vits.config.num_speakers > 1:
        raise ValueError(
            f"The model already has {vits.config.num_speakers} speakers: add_speakers adds rows to its table"
        )
    if num_speakers < 2 or speaker_embedding_size < 1:
        raise ValueError(
            f"Need num_speakers >= 2 and speaker_embedding_size >= 1, got {num_speakers}, {speaker_embedding_size}"
        )
    config = copy.deepcopy(vits.config)
    config.num_speakers = num_speakers
    config.speaker_embedding_size = speaker_embedding_size
    multi = type(vits)(config).to(device=vits.device, dtype=vits.dtype)
    missing, unexpected = multi.load_state_dict(vits.state_dict(), strict=False)
    layers = conditioning_layers(multi)
    new_prefixes = ("embed_speaker.", *(f"{name}." for name in layers))
    unexplained = [key for key in missing if not key.startswith(new_prefixes)]
    if unexpected or unexplained:
        raise RuntimeError(
            f"{type(vits).__name__}: the multi-speaker copy does not hold the same weights (missing "
            f"{unexplained[:5]}, unexpected {unexpected[:5]}): make a loaded voice multi-speaker before "
            "prepare_for_training, which changes how the decoder's weights are held"
        )
    for conv in layers.values():
        _zero_conditioning(conv)
    multi.train(vits.training)
    return multi


def add_speakers(vits: VitsModel, count: int) -> VitsModel:
    """`vits` (multi-speaker) with `count` more rows in its speaker table, in place; the existing rows and every
    other weight are unchanged. The new rows are drawn as `nn.Embedding` draws its own (normal, std 1).

    Raises:
        `ValueError`: `vits` is single-speaker (`with_speakers` makes it multi-speaker), or `count` < 1.
    """
    if vits.config.num_speakers <= 1:
        raise ValueError("The model has one speaker: with_speakers makes it multi-speaker")
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    old = vits.embed_speaker
    table = torch.nn.Embedding(old.num_embeddings + count, old.embedding_dim).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        table.weight[: old.num_embeddings] = old.weight
    vits.embed_speaker = table
    vits.config.num_speakers = table.num_embeddings
    return vits
