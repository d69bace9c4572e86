"""The discriminator: architecture, weight norm, and loading from this recipe's and from `*-train` checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch.nn.utils import parametrize

from recipe.discriminator import DiscriminatorConfig, VitsDiscriminator, load_discriminator, save_discriminator

TINY = DiscriminatorConfig(periods=[2, 3, 5, 7, 11], period_channels=[1, 4, 8], scale_channels=[1, 4, 16])
TRAIN_CONFIG = {  # the discriminator fields of a `*-train` checkpoint's config.json (tiny sizes)
    "model_type": "vits",
    "discriminator_periods": TINY.periods,
    "discriminator_period_channels": TINY.period_channels,
    "discriminator_scale_channels": TINY.scale_channels,
    "discriminator_kernel_size": 5,
    "discriminator_stride": 3,
}


def scores_of(discriminator, waveform):
    with torch.no_grad():
        scores, _ = discriminator(waveform)
    return scores


def test_default_architecture_is_vits_scale_plus_five_periods_with_weight_norm():
    torch.manual_seed(0)
    discriminator = VitsDiscriminator()
    assert len(discriminator.discriminators) == 6
    assert [d.period for d in discriminator.discriminators[1:]] == [2, 3, 5, 7, 11]
    # VITS's multi-period discriminator has 46.7 M parameters.
    assert sum(p.numel() for p in discriminator.parameters()) == pytest.approx(46.7e6, rel=0.01)
    assert all(parametrize.is_parametrized(conv, "weight") for conv in discriminator._convolutions())
    scores, feature_maps = VitsDiscriminator(TINY)(torch.randn(2, 1, 2048))
    assert len(scores) == len(feature_maps) == 6
    assert all(score.shape[0] == 2 and score.dim() == 2 for score in scores)


def test_saved_discriminator_reloads_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    discriminator = VitsDiscriminator(TINY)
    with torch.no_grad():  # make the magnitudes differ from what weight norm's initialization would derive
        for conv in discriminator._convolutions():
            conv.parametrizations.weight.original0.mul_(1.5)
    save_discriminator(discriminator, str(tmp_path))
    reloaded = load_discriminator(str(tmp_path))
    assert reloaded.config == TINY
    waveform = torch.randn(1, 1, 4096)
    for expected, actual in zip(scores_of(discriminator, waveform), scores_of(reloaded, waveform)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def write_train_checkpoint(folder, discriminator, naming):
    """A `*-train` folder: config.json and model.safetensors with generator keys and `discriminator.*` keys."""
    state = {"text_encoder.embed_tokens.weight": torch.randn(4, 2)}
    for name, module in discriminator.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            prefix = f"discriminator.{name}"
            weight_g = module.parametrizations.weight.original0.detach()
            weight_v = module.parametrizations.weight.original1.detach()
            state[f"{prefix}.bias"] = module.bias.detach()
            if naming == "weight_g/weight_v":
                state[f"{prefix}.weight_g"], state[f"{prefix}.weight_v"] = weight_g, weight_v
            elif naming == "parametrizations":
                state[f"{prefix}.parametrizations.weight.original0"] = weight_g
                state[f"{prefix}.parametrizations.weight.original1"] = weight_v
            else:
                state[f"{prefix}.weight"] = module.weight.detach()
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TRAIN_CONFIG))


@pytest.mark.parametrize("naming", ["weight_g/weight_v", "parametrizations", "plain"])
def test_loads_the_discriminator_of_a_train_checkpoint(tmp_path, naming):
    torch.manual_seed(1)
    source = VitsDiscriminator(TINY)
    with torch.no_grad():
        for conv in source._convolutions():
            conv.parametrizations.weight.original0.mul_(0.7)
    folder = tmp_path / "mms-tts-xyz-train"
    write_train_checkpoint(folder, source, naming)
    loaded = load_discriminator(str(folder))
    assert loaded.config == TINY
    waveform = torch.randn(1, 1, 4096)
    for expected, actual in zip(scores_of(source, waveform), scores_of(loaded, waveform)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_specs_and_clear_errors(tmp_path):
    assert load_discriminator("none") is None
    assert isinstance(load_discriminator("random", TINY), VitsDiscriminator)
    with pytest.raises(FileNotFoundError, match="not 'random', 'none' or an existing folder"):
        load_discriminator(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no discriminator.safetensors"):
        load_discriminator(str(tmp_path))
    # A plain inference checkpoint has no discriminator.
    plain = tmp_path / "mms-tts-xyz"
    plain.mkdir()
    save_file({"text_encoder.embed_tokens.weight": torch.randn(4, 2)}, str(plain / "model.safetensors"))
    with pytest.raises(ValueError, match="holds no 'discriminator"):
        load_discriminator(str(plain))
    # Weights of another architecture are named, not silently half-loaded.
    other = tmp_path / "other"
    save_discriminator(
        VitsDiscriminator(DiscriminatorConfig(periods=[2], period_channels=[1, 4], scale_channels=[1, 4])), str(other)
    )
    (other / "discriminator_config.json").write_text(json.dumps(TINY.__dict__))
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_discriminator(str(other))
