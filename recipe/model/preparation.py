"""A pretrained `VitsModel` made ready for training, and saved back as a plain one.

- Weight norm on the HiFi-GAN decoder while training, as VITS was trained (`apply_decoder_weight_norm`), and a save
  that removes it again (`inference_state_dict`, `save_for_inference`), so that the saved folder is a plain
  `VitsModel`.
- No layer drop in the text encoder (`disable_layer_drop`).
- Freezing: the submodules the `--freeze_*` flags name, or everything but the parts an imported voice lacks
  (`--warmup_untrained_parts`, read from the folder's import report: `recipe.voices.folder`).

`prepare_for_training` does all of it in order.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm
from transformers import VitsModel

from recipe.voices.folder import untrained_prefixes

logger = logging.getLogger(__name__)


def decoder_weight_norm_layers(vits: VitsModel) -> list[nn.Module]:
    """The decoder layers VITS trains with weight norm: the upsamplers and every residual-block convolution."""
    layers = list(vits.decoder.upsampler)
    for block in vits.decoder.resblocks:
        # type 1 (MMS, Piper high) has two conv lists per block, type 2 (Piper medium / low) one
        for name in ("convs1", "convs2", "convs"):
            layers.extend(getattr(block, name, []))
    return layers


def apply_decoder_weight_norm(vits: VitsModel) -> None:
    """Weight norm (parametrized) on the decoder layers that lack it; a no-op when already applied."""
    for layer in decoder_weight_norm_layers(vits):
        if not parametrize.is_parametrized(layer, "weight"):
            weight_norm(layer)


FREEZABLE_SUBMODULES = {
    "freeze_text_encoder": "text_encoder",
    "freeze_duration_predictor": "duration_predictor",
    "freeze_posterior_encoder": "posterior_encoder",
    "freeze_flow": "flow",
    "freeze_decoder": "decoder",
}


def disable_layer_drop(vits: VitsModel) -> None:
    """No layer drop in the text encoder, whatever the config says: VITS (MMS, Piper) never trained with it.

    `VitsConfig.layerdrop` defaults to 0.1 and converted configs carry that default; in train mode the encoder would
    then skip each of its layers with that probability (at 0.1 and 6 layers, 47% of steps skip at least one).
    """
    if vits.config.layerdrop:
        logger.info(
            f"layerdrop {vits.config.layerdrop} in the model config: off for training (VITS trains without it)"
        )
    vits.config.layerdrop = 0.0
    vits.text_encoder.encoder.layerdrop = 0.0


def prepare_for_training(vits: VitsModel, model_args=None) -> VitsModel:
    """Put weight norm on the decoder, turn layer drop off, freeze the submodules `model_args` names, and switch to
    train mode.

    Args:
        vits (`VitsModel`): modified in place and returned.
        model_args (`ModelArguments`, *optional*): its `freeze_*` flags; nothing is frozen when `None`.

    Raises:
        `ValueError` when every parameter ends up frozen.
    """
    apply_decoder_weight_norm(vits)
    disable_layer_drop(vits)
    for flag, submodule in FREEZABLE_SUBMODULES.items():
        if model_args is not None and getattr(model_args, flag, False):
            for parameter in getattr(vits, submodule).parameters():
                parameter.requires_grad_(False)
    if model_args is not None and getattr(model_args, "warmup_untrained_parts", False):
        prefixes = untrained_prefixes(model_args.model_name_or_path)
        for name, parameter in vits.named_parameters():
            if not name.startswith(prefixes):
                parameter.requires_grad_(False)
        logger.info(f"--warmup_untrained_parts: training only {', '.join(prefixes)}; the rest is frozen")
    if not any(parameter.requires_grad for parameter in vits.parameters()):
        raise ValueError("Every submodule is frozen: nothing left to train")
    return vits.train()


def inference_state_dict(vits: VitsModel) -> dict[str, torch.Tensor]:
    """`vits.state_dict()` with each weight-normed decoder layer's weight materialized as a plain `weight`."""
    state = vits.state_dict()
    for name, module in vits.decoder.named_modules():
        if module in decoder_weight_norm_layers(vits) and parametrize.is_parametrized(module, "weight"):
            prefix = f"decoder.{name}."
            for key in [key for key in state if key.startswith(prefix + "parametrizations.weight.")]:
                del state[key]
            state[prefix + "weight"] = module.weight.detach()
    return state


def save_for_inference(vits: VitsModel, folder: str, **save_pretrained_kwargs) -> None:
    """Save a copy of `vits` without the training-time decoder weight norm: a plain `VitsModel` folder.

    The training model is left untouched (its weight-norm parameters are what the optimizer holds). The WaveNet
    layers' parametrized weight norm is part of the stock model and is kept.
    """
    # A fresh model rather than copy.deepcopy: a deep copy shares the parametrized class of each layer with the
    # original, and removing the parametrization from the copy deletes the original's `weight` property too.
    inference_model = type(vits)(vits.config)
    inference_model.load_state_dict(inference_state_dict(vits), strict=True)
    inference_model.to(dtype=next(vits.parameters()).dtype).eval()
    inference_model.save_pretrained(folder, **save_pretrained_kwargs)
