"""VITS with HiFi-GAN residual blocks of type "2" (Piper's medium and low voices), which `VitsConfig` cannot express.

Reference: `ResBlock2` and `Generator` of the original VITS (jaywalnut310/vits, `modules.py` / `models.py`), as
shipped in Piper's training code (`piper.train.vits`). A type-2 block has one list of dilated convolutions, each
preceded by a leaky ReLU and added back to its input; a type-1 block (MMS, Piper "high") has two lists. Everything
else (upsampling, the average over blocks, conditioning, the final leaky ReLU and tanh) is transformers'
`VitsHifiGan`. `tests/test_piper.py` compares this decoder with Piper's `Generator` on the same weights.

A folder saved from such a model must not load in plain transformers with a silently random decoder: its config
(`Resblock2VitsConfig`) writes `resblock_kernel_sizes` as a message naming the recipe's loader, which transformers'
`VitsConfig` refuses (its field must be a list), and keeps the real kernel sizes beside it.
`recipe.voices.load_voice` reads such a folder back.
"""

from __future__ import annotations

from torch import nn
from transformers import VitsConfig, VitsModel
from transformers.models.vits.modeling_vits import VitsHifiGan

RESBLOCK_TYPE_KEY = "decoder_resblock_type"
KERNEL_SIZES_KEY = "decoder_resblock_kernel_sizes"
REFUSAL = (
    "This folder holds a VITS voice whose HiFi-GAN uses type-2 residual blocks (a Piper medium / low voice), which "
    "transformers' VitsModel cannot build (it would load with a random decoder). Load it with the fine-tuning "
    "recipe: `from recipe.voices import load_voice; model = load_voice(path)`."
)


class HifiGanResidualBlock2(nn.Module):
    """VITS's `ResBlock2`: `x = conv(leaky_relu(x)) + x` for each dilation."""

    def __init__(self, channels: int, kernel_size: int, dilation, leaky_relu_slope: float):
        super().__init__()
        self.leaky_relu_slope = leaky_relu_slope
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilation
        )

    def forward(self, hidden_states):
        for conv in self.convs:
            hidden_states = conv(nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope)) + hidden_states
        return hidden_states


class HifiGanDecoderResblock2(VitsHifiGan):
    """The whole HiFi-GAN decoder of a type-2 voice: transformers' `VitsHifiGan` with `HifiGanResidualBlock2` blocks
    (weights named as VITS's: `resblocks.N.convs.M`)."""

    def __init__(self, config: VitsConfig):
        super().__init__(config)
        self.resblocks = nn.ModuleList()
        for i in range(len(self.upsampler)):
            channels = config.upsample_initial_channel // (2 ** (i + 1))
            for kernel_size, dilation in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(HifiGanResidualBlock2(channels, kernel_size, dilation, config.leaky_relu_slope))

    def apply_weight_norm(self):
        raise NotImplementedError("use recipe.model.preparation.apply_decoder_weight_norm")

    def remove_weight_norm(self):
        raise NotImplementedError("use torch.nn.utils.parametrize.remove_parametrizations")


class Resblock2VitsConfig(VitsConfig):
    """A `VitsConfig` whose saved form plain transformers refuses, with a message naming the recipe's loader."""

    def to_dict(self):
        values = super().to_dict()
        values[RESBLOCK_TYPE_KEY] = "2"
        values[KERNEL_SIZES_KEY] = list(values["resblock_kernel_sizes"])
        values["resblock_kernel_sizes"] = REFUSAL
        return values

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        return super().from_dict(restore_config_dict(config_dict), **kwargs)


def is_resblock2_config_dict(config_dict: dict) -> bool:
    return str(config_dict.get(RESBLOCK_TYPE_KEY, "1")) == "2"


def restore_config_dict(config_dict: dict) -> dict:
    """A saved type-2 config's dict with its real `resblock_kernel_sizes` back in place (other dicts unchanged)."""
    if not is_resblock2_config_dict(config_dict):
        return config_dict
    restored = dict(config_dict)
    if KERNEL_SIZES_KEY in restored:
        restored["resblock_kernel_sizes"] = restored.pop(KERNEL_SIZES_KEY)
    restored.pop(RESBLOCK_TYPE_KEY, None)
    return restored


class VitsModelResblock2(VitsModel):
    """`VitsModel` with a type-2 HiFi-GAN decoder; everything else is transformers' model."""

    config_class = Resblock2VitsConfig

    def __init__(self, config: VitsConfig):
        if not isinstance(config, Resblock2VitsConfig):
            config = Resblock2VitsConfig.from_dict(config.to_dict())
        super().__init__(config)
        self.decoder = HifiGanDecoderResblock2(config)
