"""The warm-up of an imported voice's training-only parts from its own synthesis (recipe/warmup.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsModel, set_seed

from recipe.piper.warmup import synthesize_targets, warm_up_from_own_synthesis
from recipe.voices import load_tokenizer

TEXTS = ["ez diçim malê", "baran dibare", "roj baş", "ev pirtûk e", "ava sar", "çiya bilind e"]


def test_targets_are_the_inference_pass():
    """The latent and durations kept are the ones `VitsModel.forward` decodes: same waveform for the same seed."""
    set_seed(0)
    vits = VitsModel(make_tiny_config()).eval()
    input_ids = torch.randint(1, 40, (9,))
    set_seed(4)
    target = synthesize_targets(vits, input_ids)
    set_seed(4)
    with torch.no_grad():
        expected = vits(input_ids=input_ids[None]).waveform[0]
    torch.testing.assert_close(target.waveform, expected)
    assert int(target.durations.sum()) == target.latents.shape[-1]


def test_warm_up_learns_the_posterior_and_leaves_inference_untouched():
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    before = {name: value.clone() for name, value in vits.state_dict().items()}
    report = warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=60, learning_rate=3e-3, batch_size=3)
    assert report["targets"] == len(TEXTS)
    assert report["posterior_loss_last"] < 0.8 * report["posterior_loss_first"]
    assert report["duration_nll_last"] < report["duration_nll_first"]
    trained = ("posterior_encoder.", "duration_predictor.post_", "duration_predictor.flows.1.")
    for name, value in vits.state_dict().items():
        if name.startswith(trained):
            continue
        assert torch.equal(value, before[name]), f"{name} moved"
    assert any(not torch.equal(vits.state_dict()[n], before[n]) for n in before if n.startswith("posterior_encoder."))
    assert all(parameter.requires_grad for parameter in vits.parameters())


def test_a_warm_up_that_does_not_lower_the_posterior_loss_is_an_error():
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    # a learning rate the random posterior encoder diverges at (measured: 3e5 -> 5e7)
    with pytest.raises(ValueError, match=r"did not lower the posterior loss .* of 8 steps at learning rate 1\b"):
        warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=8, learning_rate=1.0, batch_size=3)
    # one step cannot show a fall: the first and the last loss are the same step's
    with pytest.raises(ValueError, match=r"of 1 steps at learning rate 0.0006"):
        warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=1, batch_size=3)
