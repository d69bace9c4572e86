"""The discriminator: architecture, weight norm, and loading from this recipe's and from `*-train` checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from recipe.model.discriminator import DiscriminatorConfig, VitsDiscriminator, load_discriminator, save_discriminator

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
    with pytest.raises(FileNotFoundError, match="missing'?: not 'random', 'none', an existing folder or a Hub id"):
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


class FakeHub:
    """Stands in for `huggingface_hub.snapshot_download`: records each call, answers with a prepared local folder."""

    def __init__(self, folder=None, error=None):
        self.folder, self.error, self.calls = folder, error, []

    def __call__(self, repo_id, allow_patterns=None, **kwargs):
        self.calls.append((repo_id, list(allow_patterns)))
        if self.error is not None:
            raise self.error
        return str(self.folder)


def test_a_hub_id_fetches_only_the_configs_and_weights_of_a_train_checkpoint(tmp_path, monkeypatch):
    import huggingface_hub

    torch.manual_seed(2)
    source = VitsDiscriminator(TINY)
    snapshot = tmp_path / "snapshot"
    write_train_checkpoint(snapshot, source, "weight_g/weight_v")
    hub = FakeHub(snapshot)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.chdir(tmp_path)  # no local folder of that name

    loaded = load_discriminator("ylacombe/mms-tts-xyz-train")
    assert hub.calls == [
        (
            "ylacombe/mms-tts-xyz-train",
            ["config.json", "discriminator_config.json", "discriminator.safetensors", "model.safetensors"],
        )
    ]
    assert loaded.config == TINY
    waveform = torch.randn(1, 1, 4096)
    for expected, actual in zip(scores_of(source, waveform), scores_of(loaded, waveform)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_a_hub_checkpoint_without_safetensors_falls_back_to_pytorch_model_bin(tmp_path, monkeypatch):
    import huggingface_hub

    torch.manual_seed(3)
    source = VitsDiscriminator(TINY)
    snapshot = tmp_path / "snapshot"
    write_train_checkpoint(snapshot, source, "plain")
    torch.save(load_file(snapshot / "model.safetensors"), snapshot / "pytorch_model.bin")
    (snapshot / "model.safetensors").unlink()
    hub = FakeHub(snapshot)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.chdir(tmp_path)

    loaded = load_discriminator("someone/old-train")
    assert [patterns[-1] for _, patterns in hub.calls] == ["model.safetensors", "pytorch_model.bin"]
    waveform = torch.randn(1, 1, 4096)
    for expected, actual in zip(scores_of(source, waveform), scores_of(loaded, waveform)):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_a_hub_id_that_cannot_be_fetched_is_named(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.chdir(tmp_path)
    offline = FakeHub(error=LocalEntryNotFoundError("Cannot find the requested files in the disk cache"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="'someone/missing-train'.*could not be fetched.*disk cache"):
        load_discriminator("someone/missing-train")
    # a repository holding no weights at all (e.g. only a README) is named too
    empty = tmp_path / "empty_snapshot"
    empty.mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(empty))
    with pytest.raises(FileNotFoundError, match="'someone/empty'.*no discriminator.safetensors"):
        load_discriminator("someone/empty")


def test_an_existing_local_folder_named_like_a_hub_id_is_read_locally(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    save_discriminator(VitsDiscriminator(TINY), str(tmp_path / "runs" / "round1"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(error=AssertionError("must stay local")))
    assert load_discriminator("runs/round1").config == TINY
