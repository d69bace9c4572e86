"""The VITS / HiFi-GAN discriminator: one scale discriminator plus multi-period discriminators, with weight norm.

The module layout (`discriminators.0` the scale discriminator, `discriminators.1..` one per period, each with `convs`
and `final_conv`) is the one of the `discriminator.*` keys in the `*-train` checkpoints of `ylacombe/finetune-hf-vits`
(e.g. `ylacombe/mms-tts-eng-train`), so their weights load directly, whichever weight-norm naming they were saved
with: plain `weight`, old `weight_g` / `weight_v`, or parametrized `parametrizations.weight.original0/1`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from recipe.errors import MissingInputError, UnavailableError
from recipe.hub_access import check_hub_name, is_refused_pickle, offline_miss, refused_pickle_error

DISCRIMINATOR_CONFIG_NAME = "discriminator_config.json"
DISCRIMINATOR_WEIGHTS_NAME = "discriminator.safetensors"
# The files a discriminator is read from, in order of preference; from a Hub repository only these are fetched (no
# tokenizer, no README), and `pytorch_model.bin` only when there is no safetensors file, so nothing comes twice.
HUB_CONFIG_FILES = ("config.json", DISCRIMINATOR_CONFIG_NAME)
HUB_SAFETENSORS_FILES = (DISCRIMINATOR_WEIGHTS_NAME, "model.safetensors")
HUB_PICKLE_FILE = "pytorch_model.bin"
# `owner/name` as the Hub spells a repository id.
HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_NOT_FETCHED = "no such local folder, and the Hub repository could not be fetched"


class DiscriminatorUnavailableError(UnavailableError, FileNotFoundError):
    """A `--discriminator` Hub id while the Hub is unreachable, or offline (`HF_HUB_OFFLINE`) and not in the cache; a
    `FileNotFoundError` too, as every discriminator that cannot be had is for `load_discriminator`'s callers."""


@dataclass
class DiscriminatorConfig:
    """Architecture of `VitsDiscriminator`; the defaults are VITS's (and the `*-train` checkpoints').

    Args:
        periods (`list[int]`, *optional*, defaults to `[2, 3, 5, 7, 11]`): one period discriminator each.
        period_channels (`list[int]`, *optional*, defaults to `[1, 32, 128, 512, 1024]`): conv channels of each.
        scale_channels (`list[int]`, *optional*, defaults to `[1, 16, 64, 256, 1024]`): conv channels of the scale
            discriminator; each must be a multiple of 4 times the previous (grouped convolutions).
        kernel_size (`int`, *optional*, defaults to 5): period discriminators' kernel.
        stride (`int`, *optional*, defaults to 3): period discriminators' stride.
        leaky_relu_slope (`float`, *optional*, defaults to 0.1).
    """

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [1, 32, 128, 512, 1024])
    scale_channels: list[int] = field(default_factory=lambda: [1, 16, 64, 256, 1024])
    kernel_size: int = 5
    stride: int = 3
    leaky_relu_slope: float = 0.1

    @classmethod
    def from_vits_train_config(cls, config: dict) -> DiscriminatorConfig:
        """Read the `discriminator_*` fields of a `*-train` checkpoint's `config.json` (defaults where absent)."""
        defaults = cls()
        return cls(
            periods=list(config.get("discriminator_periods", defaults.periods)),
            period_channels=list(config.get("discriminator_period_channels", defaults.period_channels)),
            scale_channels=list(config.get("discriminator_scale_channels", defaults.scale_channels)),
            kernel_size=int(config.get("discriminator_kernel_size", defaults.kernel_size)),
            stride=int(config.get("discriminator_stride", defaults.stride)),
            leaky_relu_slope=float(config.get("leaky_relu_slope", defaults.leaky_relu_slope)),
        )


def _scores_and_feature_maps(discriminator: nn.Module, hidden_states: torch.Tensor):
    """The layer stack shared by the scale and period discriminators: each conv with leaky ReLU, then the final conv.

    Returns `(scores (batch, n), feature_maps)`: the flattened final output and every layer's output.
    """
    feature_maps = []
    for conv in discriminator.convs:
        hidden_states = nn.functional.leaky_relu(conv(hidden_states), discriminator.leaky_relu_slope)
        feature_maps.append(hidden_states)
    hidden_states = discriminator.final_conv(hidden_states)
    feature_maps.append(hidden_states)
    return torch.flatten(hidden_states, 1, -1), feature_maps


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN's scale discriminator on the raw waveform (VITS's `DiscriminatorS`)."""

    def __init__(self, channels: list[int], leaky_relu_slope: float = 0.1):
        super().__init__()
        self.leaky_relu_slope = leaky_relu_slope
        self.convs = nn.ModuleList([nn.Conv1d(channels[0], channels[1], 15, 1, padding=7)])
        groups = 4
        for in_channels, out_channels in zip(channels[1:-1], channels[2:]):
            self.convs.append(nn.Conv1d(in_channels, out_channels, 41, 4, groups=groups, padding=20))
            groups *= 4
        last = channels[-1]
        self.convs.append(nn.Conv1d(last, last, 41, 4, groups=groups, padding=20))
        self.convs.append(nn.Conv1d(last, last, 5, 1, padding=2))
        self.final_conv = nn.Conv1d(last, 1, 3, 1, padding=1)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _scores_and_feature_maps(self, waveform)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the waveform folded into `(length / period, period)` (VITS's `DiscriminatorP`)."""

    def __init__(self, channels: list[int], period: int, kernel_size: int = 5, stride: int = 3, slope: float = 0.1):
        super().__init__()
        self.period = period
        self.leaky_relu_slope = slope
        padding = ((kernel_size - 1) // 2, 0)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, (kernel_size, 1), (stride, 1), padding=padding)
            for in_channels, out_channels in zip(channels[:-1], channels[1:])
        )
        self.convs.append(nn.Conv2d(channels[-1], channels[-1], (kernel_size, 1), 1, padding=padding))
        self.final_conv = nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch_size, channels, length = waveform.shape
        if length % self.period:
            waveform = nn.functional.pad(waveform, (0, self.period - length % self.period), mode="reflect")
        hidden_states = waveform.view(batch_size, channels, -1, self.period)
        return _scores_and_feature_maps(self, hidden_states)


class VitsDiscriminator(nn.Module):
    """Scale discriminator + one period discriminator per period, with weight norm on every convolution.

    Args:
        config (`DiscriminatorConfig`, *optional*): the architecture; VITS's when `None`.

    `forward(waveform (batch, 1, samples))` returns `(scores, feature_maps)`: one `(batch, n)` score tensor and one
    list of feature maps per sub-discriminator.
    """

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = config or DiscriminatorConfig()
        slope = self.config.leaky_relu_slope
        self.discriminators = nn.ModuleList([ScaleDiscriminator(self.config.scale_channels, slope)])
        for period in self.config.periods:
            self.discriminators.append(
                PeriodDiscriminator(
                    self.config.period_channels, period, self.config.kernel_size, self.config.stride, slope
                )
            )
        for conv in self._convolutions():
            weight_norm(conv)

    def _convolutions(self):
        for discriminator in self.discriminators:
            yield from discriminator.convs
            yield discriminator.final_conv

    def forward(self, waveform: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feature_maps = [], []
        for discriminator in self.discriminators:
            score, maps = discriminator(waveform)
            scores.append(score)
            feature_maps.append(maps)
        return scores, feature_maps

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict with each weight-normed weight materialized as a plain `weight` (the portable layout)."""
        state = {}
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                state[f"{name}.weight"] = module.weight.detach().clone()
                state[f"{name}.bias"] = module.bias.detach().clone()
        return state

    def load_plain_state_dict(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load plain `weight` / `bias` tensors (see `plain_state_dict`); weight norm is re-derived from them."""
        expected = {}
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                expected[f"{name}.weight"] = module
                expected[f"{name}.bias"] = module
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{source}: discriminator weights do not match the architecture: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        with torch.no_grad():
            for key, module in expected.items():
                if key.endswith(".bias"):
                    if module.bias.shape != state[key].shape:
                        raise ValueError(
                            f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(module.bias.shape)}"
                        )
                    module.bias.copy_(state[key])
                    continue
                weight = state[key]
                if weight.shape != module.weight.shape:
                    raise ValueError(
                        f"{source}: {key} has shape {tuple(weight.shape)}, expected {tuple(module.weight.shape)}"
                    )
                # Assigning to a parametrized weight runs weight norm's right_inverse: g = ||w||, v = w.
                module.weight = weight.to(module.bias.dtype)


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert any weight-norm naming to plain `weight`: `weight_g` / `weight_v` or `parametrizations...original0/1`."""
    plain, pending = {}, {}
    for key, tensor in state.items():
        match = re.fullmatch(r"(.+)\.(?:weight_g|parametrizations\.weight\.original0)", key)
        if match:
            pending.setdefault(match.group(1), {})["g"] = tensor
            continue
        match = re.fullmatch(r"(.+)\.(?:weight_v|parametrizations\.weight\.original1)", key)
        if match:
            pending.setdefault(match.group(1), {})["v"] = tensor
            continue
        plain[key] = tensor
    for prefix, parts in pending.items():
        if set(parts) != {"g", "v"}:
            raise ValueError(
                f"{prefix}: weight-norm magnitude and direction must come together, found only {set(parts)}"
            )
        plain[f"{prefix}.weight"] = torch._weight_norm(parts["v"].float(), parts["g"].float(), 0)
    return plain


def _read_state_dict(folder: str, spec: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    for name in HUB_SAFETENSORS_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return load_file(path)
    path = os.path.join(folder, HUB_PICKLE_FILE)
    if os.path.isfile(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if is_refused_pickle(error):
                raise refused_pickle_error(path, error) from error
            raise
    raise MissingInputError(
        f"--discriminator {spec!r}: no {DISCRIMINATOR_WEIGHTS_NAME}, model.safetensors or pytorch_model.bin with "
        "discriminator weights"
    )


def download_from_hub(repo_id: str) -> str:
    """Fetch the configs and discriminator weights of a Hub repository (e.g. `ylacombe/mms-tts-eng-train`).

    Returns:
        `str`: the local snapshot folder.

    Raises:
        `FileNotFoundError` naming the repository when it cannot be fetched (missing, gated, no weights), a
        `DiscriminatorUnavailableError` when the Hub does not answer or, offline, the repository is not in the cache.
    """
    from huggingface_hub import snapshot_download

    try:
        check_hub_name(repo_id, "--discriminator")
    except UnavailableError as error:
        raise DiscriminatorUnavailableError(str(error)) from error
    try:
        folder = snapshot_download(repo_id, allow_patterns=[*HUB_CONFIG_FILES, *HUB_SAFETENSORS_FILES])
        if not any(os.path.isfile(os.path.join(folder, name)) for name in HUB_SAFETENSORS_FILES):
            folder = snapshot_download(repo_id, allow_patterns=[*HUB_CONFIG_FILES, HUB_PICKLE_FILE])
    except (OSError, ValueError) as error:  # huggingface_hub's HTTP, offline and validation errors
        offline = offline_miss(repo_id, "--discriminator", context=f"{_NOT_FETCHED}: ")
        if offline is not None:
            raise DiscriminatorUnavailableError(str(offline)) from error
        raise MissingInputError(
            f"--discriminator {repo_id!r}: {_NOT_FETCHED} (missing, or gated without a token?): {error}"
        ) from error
    return folder


def load_discriminator(spec: str, config: DiscriminatorConfig | None = None) -> VitsDiscriminator | None:
    """Build the discriminator `--discriminator` names.

    Args:
        spec (`str`): `"none"` (no adversarial training: returns `None`), `"random"` (fresh weights), or a folder or
            Hub id (`owner/name`, used when no such local folder exists): one written by `save_discriminator`, or a
            `*-train` checkpoint whose weights hold `discriminator.*` keys (e.g. `ylacombe/mms-tts-eng-train`).
        config (`DiscriminatorConfig`, *optional*): architecture of a `"random"` discriminator; VITS's by default.

    Raises:
        `FileNotFoundError` for a missing folder, a Hub repository that cannot be fetched or a missing weights file,
        `ValueError` when the weights hold no discriminator or do not match its architecture.
    """
    if spec == "none":
        return None
    if spec == "random":
        return VitsDiscriminator(config)
    source = spec
    if not os.path.exists(spec) and HUB_ID_PATTERN.fullmatch(spec):
        source = download_from_hub(spec)
    elif not os.path.isdir(spec):
        raise MissingInputError(
            f"--discriminator {spec!r}: not 'random', 'none', an existing folder or a Hub id (owner/name)"
        )
    return _load_from_folder(source, spec)


def _load_from_folder(folder: str, spec: str) -> VitsDiscriminator:
    """The discriminator in `folder` (a local folder or a Hub snapshot); errors name `spec`, what the user gave."""
    own_config = os.path.join(folder, DISCRIMINATOR_CONFIG_NAME)
    if os.path.isfile(own_config):
        with open(own_config) as handle:
            architecture = DiscriminatorConfig(**json.load(handle))
        state = _read_state_dict(folder, spec)
    else:
        model_config = os.path.join(folder, "config.json")
        raw = {}
        if os.path.isfile(model_config):
            with open(model_config) as handle:
                raw = json.load(handle)
        architecture = DiscriminatorConfig.from_vits_train_config(raw)
        state = {
            k[len("discriminator.") :]: v
            for k, v in _read_state_dict(folder, spec).items()
            if k.startswith("discriminator.")
        }
        if not state:
            raise ValueError(
                f"{spec}: the checkpoint holds no 'discriminator.*' weights (is it a '*-train' checkpoint?)"
            )
    discriminator = VitsDiscriminator(architecture)
    discriminator.load_plain_state_dict(fold_weight_norm(state), source=spec)
    return discriminator


def save_discriminator(discriminator: VitsDiscriminator, folder: str) -> None:
    """Write `discriminator_config.json` and `discriminator.safetensors` (plain weights) to `folder`."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, DISCRIMINATOR_CONFIG_NAME), "w") as handle:
        json.dump(asdict(discriminator.config), handle, indent=2)
    state = {k: v.contiguous().cpu() for k, v in discriminator.plain_state_dict().items()}
    save_file(state, os.path.join(folder, DISCRIMINATOR_WEIGHTS_NAME))
