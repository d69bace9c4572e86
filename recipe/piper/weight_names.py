"""Weights of the original VITS (jaywalnut310/vits; Piper's `SynthesizerTrn`) under transformers' `VitsModel` names.

VITS names its parts `enc_p` (text encoder), `enc_q` (posterior encoder), `flow`, `dp` (duration predictor), `dec`
(HiFi-GAN) and `emb_g` (speakers), keeps `Flip` entries inside its flow lists, and stores layers trained with
weight norm as `weight_g` / `weight_v` (or `parametrizations.weight.original0/1`). transformers' `VitsModel` holds the
same layers under other names, without the `Flip` entries, with Linear instead of 1x1 Conv projections in attention.

`vits_to_transformers(state)` turns a VITS state dict (weight norm already folded into plain `weight`s, e.g. by
`fold_weight_norm`) into transformers' names and shapes; `load_plain_weights(model, weights)` assigns such plain
weights to a `VitsModel`, including its layers that carry parametrized weight norm. The type-2 HiFi-GAN blocks of
Piper's medium / low voices keep VITS's `convs.N` names (`recipe.piper.decoder`).
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.utils import parametrize

from recipe.model.discriminator import fold_weight_norm

# (VITS pattern, transformers replacement), tried in order; the first match renames the whole key.
_RULES: list[tuple[str, str]] = [
    (r"^enc_p\.emb\.weight$", "text_encoder.embed_tokens.weight"),
    (
        r"^enc_p\.encoder\.attn_layers\.(\d+)\.conv_([qkv])\.(weight|bias)$",
        r"text_encoder.encoder.layers.\1.attention.\2_proj.\3",
    ),
    (
        r"^enc_p\.encoder\.attn_layers\.(\d+)\.conv_o\.(weight|bias)$",
        r"text_encoder.encoder.layers.\1.attention.out_proj.\2",
    ),
    (r"^enc_p\.encoder\.attn_layers\.(\d+)\.(emb_rel_[kv])$", r"text_encoder.encoder.layers.\1.attention.\2"),
    (r"^enc_p\.encoder\.norm_layers_1\.(\d+)\.gamma$", r"text_encoder.encoder.layers.\1.layer_norm.weight"),
    (r"^enc_p\.encoder\.norm_layers_1\.(\d+)\.beta$", r"text_encoder.encoder.layers.\1.layer_norm.bias"),
    (r"^enc_p\.encoder\.norm_layers_2\.(\d+)\.gamma$", r"text_encoder.encoder.layers.\1.final_layer_norm.weight"),
    (r"^enc_p\.encoder\.norm_layers_2\.(\d+)\.beta$", r"text_encoder.encoder.layers.\1.final_layer_norm.bias"),
    (
        r"^enc_p\.encoder\.ffn_layers\.(\d+)\.(conv_[12])\.(weight|bias)$",
        r"text_encoder.encoder.layers.\1.feed_forward.\2.\3",
    ),
    (r"^enc_p\.proj\.(weight|bias)$", r"text_encoder.project.\1"),
    (r"^enc_q\.pre\.", "posterior_encoder.conv_pre."),
    (r"^enc_q\.enc\.", "posterior_encoder.wavenet."),
    (r"^enc_q\.proj\.", "posterior_encoder.conv_proj."),
    (r"^dec\.ups\.(\d+)\.", r"decoder.upsampler.\1."),
    (r"^dec\.", "decoder."),
    (r"^emb_g\.weight$", "embed_speaker.weight"),
    (r"^dp\.flows\.0\.m$", "duration_predictor.flows.0.translate"),
    (r"^dp\.flows\.0\.logs$", "duration_predictor.flows.0.log_scale"),
    (r"^dp\.post_flows\.0\.m$", "duration_predictor.post_flows.0.translate"),
    (r"^dp\.post_flows\.0\.logs$", "duration_predictor.post_flows.0.log_scale"),
    (r"^dp\.pre\.", "duration_predictor.conv_pre."),
    (r"^dp\.proj\.", "duration_predictor.conv_proj."),
    (r"^dp\.convs\.", "duration_predictor.conv_dds."),
    (r"^dp\.cond\.", "duration_predictor.cond."),
    (r"^dp\.post_pre\.", "duration_predictor.post_conv_pre."),
    (r"^dp\.post_proj\.", "duration_predictor.post_conv_proj."),
    (r"^dp\.post_convs\.", "duration_predictor.post_conv_dds."),
]
# Inside a depth-separable conv stack (VITS's DDSConv)
_DDS_RULES = [
    (r"\.convs_sep\.", ".convs_dilated."),
    (r"\.convs_1x1\.", ".convs_pointwise."),
    (r"\.(norms_[12]\.\d+)\.gamma$", r".\1.weight"),
    (r"\.(norms_[12]\.\d+)\.beta$", r".\1.bias"),
]


def _flow_key(key: str) -> str | None:
    """`flow.flows.{2k}.*` (VITS: coupling layers with a Flip at every odd index) -> `flow.flows.{k}.*`."""
    match = re.match(r"^flow\.flows\.(\d+)\.(pre|enc|post)\.(.*)$", key)
    if match is None:
        return None
    index, part, rest = int(match.group(1)), match.group(2), match.group(3)
    if index % 2:
        raise ValueError(f"{key}: VITS's prior flow has Flip layers (no weights) at odd indices")
    return f"flow.flows.{index // 2}.{ {'pre': 'conv_pre', 'enc': 'wavenet', 'post': 'conv_post'}[part] }.{rest}"


def _duration_flow_key(key: str) -> str | None:
    """`dp.(post_)flows.{2k-1}.*` (VITS: [EA, ConvFlow, Flip, ConvFlow, Flip, ...]) -> `(post_)flows.{k}.*`."""
    match = re.match(r"^dp\.(flows|post_flows)\.(\d+)\.(pre|convs|proj)\.(.*)$", key)
    if match is None:
        return None
    flows, index, part, rest = match.group(1), int(match.group(2)), match.group(3), match.group(4)
    if index % 2 == 0:
        raise ValueError(f"{key}: VITS's duration flows have ConvFlow layers at odd indices only")
    part = {"pre": "conv_pre", "convs": "conv_dds", "proj": "conv_proj"}[part]
    return f"duration_predictor.{flows}.{(index + 1) // 2}.{part}.{rest}"


def transformers_key(key: str) -> str:
    """The transformers `VitsModel` name of a VITS state-dict key (weight norm folded). Raises on unknown keys."""
    for renamed in (_flow_key(key), _duration_flow_key(key)):
        if renamed is not None:
            break
    else:
        renamed = None
        for pattern, replacement in _RULES:
            if re.search(pattern, key):
                renamed = re.sub(pattern, replacement, key)
                break
    if renamed is None:
        raise KeyError(f"{key}: not a weight of a VITS generator this recipe knows")
    if "conv_dds." in renamed:
        for pattern, replacement in _DDS_RULES:
            renamed = re.sub(pattern, replacement, renamed)
    return renamed


def vits_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VITS generator state dict (any weight norm folded here) under transformers' names and shapes."""
    converted = {}
    for key, value in fold_weight_norm(state).items():
        name = transformers_key(key)
        if re.search(r"\.attention\.(q|k|v|out)_proj\.weight$", name):
            value = value.squeeze(-1)  # VITS's 1x1 Conv1d -> transformers' Linear
        converted[name] = value
    return converted


def load_plain_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copy plain weights into `model`; a layer with parametrized weight norm gets magnitude and direction of `weight`.

    Args:
        model (`nn.Module`): e.g. a `VitsModel`; its shapes must match.
        weights (`dict`): transformers names with plain `weight`s (`vits_to_transformers`).

    Returns:
        `list[str]`: the model's parameter and buffer names that `weights` did not set (they keep their values).

    Raises:
        `KeyError` for a weight the model has no place for; `ValueError` for a shape mismatch.
    """
    targets = dict(model.state_dict())
    assigned = set()
    with torch.no_grad():
        for name, value in weights.items():
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name)
            if leaf == "weight" and parametrize.is_parametrized(module, "weight"):
                magnitude_name = f"{name[: -len('weight')]}parametrizations.weight.original0"
                direction_name = f"{name[: -len('weight')]}parametrizations.weight.original1"
                _check_shape(direction_name, targets[direction_name], value)
                targets[direction_name].copy_(value)
                targets[magnitude_name].copy_(torch.norm_except_dim(value, 2, 0))
                assigned.update({magnitude_name, direction_name})
                continue
            if name not in targets:
                raise KeyError(f"{name}: the model has no such weight")
            _check_shape(name, targets[name], value)
            targets[name].copy_(value)
            assigned.add(name)
    return sorted(set(targets) - assigned)


def _check_shape(name: str, target: torch.Tensor, value: torch.Tensor) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"{name}: the voice has shape {tuple(value.shape)}, the model {tuple(target.shape)}")
