"""The training path is VITS's: the stochastic duration NLL in VITS's flow order (against Piper's own module, same
weights and noise), inference durations unchanged, and no layer drop while training."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_config
from test_modeling import make_batch
from transformers import VitsModel, set_seed

from recipe.model.duration import stochastic_duration_nll
from recipe.model.preparation import prepare_for_training
from recipe.model.training_forward import VitsForTraining
from recipe.piper.weight_names import load_plain_weights, vits_to_transformers

models = pytest.importorskip("piper.train.vits.models", reason="needs the piper extra (pip install -e '.[piper]')")

# VITS's duration predictor: 3-layer depth-separable convs and 4 posterior flows, whatever the prior's flow count
SDP_CONFIG = dict(duration_predictor_num_flows=4, depth_separable_num_layers=3)


def reference_and_model(seed=0):
    """Piper's `StochasticDurationPredictor` with random weights (its zero-initialized projections too) and a tiny
    `VitsModel` holding the same weights, both in eval mode (no dropout)."""
    config = make_tiny_config(**SDP_CONFIG)
    torch.manual_seed(seed)
    reference = models.StochasticDurationPredictor(config.hidden_size, config.hidden_size, 3, 0.5, n_flows=4)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.3)
    vits = VitsModel(config).eval()
    state = {f"dp.{key}": value for key, value in reference.state_dict().items()}
    load_plain_weights(vits, vits_to_transformers(state))
    return reference.eval(), vits


def inputs(config, batch_size=2, tokens=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch_size, config.hidden_size, tokens, generator=generator)
    mask = torch.ones(batch_size, 1, tokens)
    mask[1, :, 5:] = 0
    durations = torch.randint(1, 9, (batch_size, 1, tokens), generator=generator).float() * mask
    return hidden, mask, durations


def test_duration_nll_matches_vits_on_the_same_weights_and_noise():
    reference, vits = reference_and_model()
    hidden, mask, durations = inputs(vits.config)
    torch.manual_seed(5)
    expected = reference(hidden, mask, w=durations)
    torch.manual_seed(5)
    recipe_nll = stochastic_duration_nll(vits.duration_predictor, hidden, mask, durations)
    torch.testing.assert_close(recipe_nll, expected, rtol=1e-5, atol=1e-4)
    # transformers' own training direction flips after the ElementwiseAffine too: it is not VITS's NLL
    torch.manual_seed(5)
    transformers_nll = vits.duration_predictor(hidden, mask, durations=durations, reverse=False)
    assert not torch.allclose(transformers_nll, expected, rtol=1e-3)


def test_training_forward_computes_the_duration_nll_as_vits_does():
    """Through `VitsForTraining`: the NLL equals Piper's module on the same hidden states, durations and noise."""
    reference, _ = reference_and_model()
    set_seed(0)
    vits = prepare_for_training(VitsModel(make_tiny_config(**SDP_CONFIG)))
    state = {f"dp.{key}": value for key, value in reference.state_dict().items()}
    load_plain_weights(vits, vits_to_transformers(state))
    model = VitsForTraining(vits, segment_size=8).eval()  # eval: no dropout, so both sides see the same network
    captured = {}
    predictor = vits.duration_predictor
    # the hidden states the predictor reads, and the random state just before it draws its posterior noise
    predictor.conv_pre.register_forward_pre_hook(lambda module, args: captured.update(hidden=args[0].clone()))
    predictor.post_conv_proj.register_forward_hook(
        lambda module, args, output: captured.update(rng=torch.get_rng_state())
    )
    batch = make_batch(model, frame_lengths=(40, 24), num_tokens=(6, 4))
    set_seed(1)
    output = model(**batch)
    torch.set_rng_state(captured["rng"])
    expected = reference(captured["hidden"], output.text_mask, w=output.durations.float())
    torch.testing.assert_close(output.duration_nll, expected, rtol=1e-5, atol=1e-4)


def test_inference_durations_match_vits():
    reference, vits = reference_and_model()
    hidden, mask, _ = inputs(vits.config)
    torch.manual_seed(7)
    expected = reference(hidden, mask, reverse=True, noise_scale=0.8)
    torch.manual_seed(7)
    log_durations = vits.duration_predictor(hidden, mask, reverse=True, noise_scale=0.8)
    torch.testing.assert_close(log_durations * mask, expected * mask, rtol=1e-5, atol=1e-5)


def test_layer_drop_is_off_in_training_whatever_the_config_says(caplog):
    set_seed(0)
    config = make_tiny_config(layerdrop=0.9, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    with caplog.at_level("INFO", logger="recipe"):
        vits = prepare_for_training(VitsModel(config))
    assert vits.training
    assert "layerdrop 0.9" in caplog.text
    input_ids = torch.randint(1, config.vocab_size, (1, 12))
    mask = torch.ones_like(input_ids)
    padding = mask.unsqueeze(-1).float()
    # with no dropout left, a train-mode encoder that skips no layer gives the same output at every call
    outputs = [
        vits.text_encoder(input_ids=input_ids, padding_mask=padding, attention_mask=mask).last_hidden_state
        for _ in range(8)
    ]
    for output in outputs[1:]:
        torch.testing.assert_close(output, outputs[0])
