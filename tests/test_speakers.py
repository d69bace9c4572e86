"""Speakers added without changing the voice: at step 0 every speaker id of a model made multi-speaker synthesizes
exactly what the single-speaker original did, part by part (posterior encoder, flow, duration predictor, decoder)
and end to end; rows added to a speaker table keep the old ones bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsModel, VitsTokenizer, pipeline, set_seed

import recipe.model.speakers
from recipe.model.preparation import prepare_for_training
from recipe.model.speakers import add_speakers, conditioning_layers, with_speakers
from recipe.model.training_forward import VitsForTraining

NUM_SPEAKERS = 3
EMBEDDING = 8
HOP = 256


def _single(stochastic: bool = True) -> VitsModel:
    set_seed(0)
    model = VitsModel(make_tiny_config(use_stochastic_duration_prediction=stochastic)).eval()
    # noise off: synthesis is a function of the text alone
    model.noise_scale = model.noise_scale_duration = 0.0
    return model


def _multi(single: VitsModel) -> VitsModel:
    multi = with_speakers(single, NUM_SPEAKERS, EMBEDDING).eval()
    multi.noise_scale = multi.noise_scale_duration = 0.0
    return multi


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    frames = 12
    return {
        "ids": torch.randint(1, 40, (1, 7), generator=generator),
        "spectrogram": torch.randn(1, 513, frames, generator=generator),
        "mask": torch.ones(1, 1, frames),
        "latents": torch.randn(1, 16, frames, generator=generator),
        "text_hidden": torch.randn(1, 16, 7, generator=generator),
        "text_mask": torch.ones(1, 1, 7),
        "durations": torch.randint(1, 4, (1, 1, 7), generator=generator).float(),
    }


def _speaker(multi: VitsModel, speaker: int) -> torch.Tensor:
    return multi.embed_speaker(torch.tensor([speaker])).unsqueeze(-1)


def _each_part(model: VitsModel, inputs: dict, speaker_embeddings) -> dict[str, torch.Tensor]:
    """The outputs of the four conditioned parts on fixed inputs (their noise seeded alike)."""
    torch.manual_seed(1)
    latents, means, log_stddev = model.posterior_encoder(inputs["spectrogram"], inputs["mask"], speaker_embeddings)
    parts = {"posterior_latents": latents, "posterior_means": means, "posterior_log_stddev": log_stddev}
    parts["flow"] = model.flow(inputs["latents"], inputs["mask"], speaker_embeddings)
    parts["flow_reverse"] = model.flow(inputs["latents"], inputs["mask"], speaker_embeddings, reverse=True)
    predictor = model.duration_predictor
    if model.config.use_stochastic_duration_prediction:
        torch.manual_seed(2)
        parts["duration_nll"] = predictor(
            inputs["text_hidden"], inputs["text_mask"], speaker_embeddings, durations=inputs["durations"]
        )
        parts["duration_inference"] = predictor(
            inputs["text_hidden"], inputs["text_mask"], speaker_embeddings, reverse=True, noise_scale=0.0
        )
    else:
        parts["duration"] = predictor(inputs["text_hidden"], inputs["text_mask"], speaker_embeddings)
    parts["decoder"] = model.decoder(inputs["latents"], speaker_embeddings)
    return parts


@pytest.mark.parametrize("stochastic", [True, False], ids=["stochastic-duration", "deterministic-duration"])
def test_every_speaker_of_the_new_model_speaks_as_the_original_part_by_part(stochastic):
    single = _single(stochastic)
    multi = _multi(single)
    assert multi.config.num_speakers == NUM_SPEAKERS and multi.config.speaker_embedding_size == EMBEDDING
    names = set(conditioning_layers(multi))
    assert {"posterior_encoder.wavenet.cond_layer", "decoder.cond", "duration_predictor.cond"} <= names
    assert any(name.startswith("flow.") for name in names)
    inputs = _inputs()
    with torch.no_grad():
        expected = _each_part(single, inputs, None)
        for speaker in range(NUM_SPEAKERS):
            actual = _each_part(multi, inputs, _speaker(multi, speaker))
            for part, value in expected.items():
                assert torch.equal(actual[part], value), f"speaker {speaker}: {part}"


@pytest.mark.parametrize("stochastic", [True, False], ids=["stochastic-duration", "deterministic-duration"])
def test_every_speaker_of_the_new_model_synthesizes_the_original_waveform(stochastic):
    single, inputs = _single(stochastic), _inputs()
    multi = _multi(single)
    with torch.no_grad():
        expected = single(inputs["ids"]).waveform
        for speaker in range(NUM_SPEAKERS):
            assert torch.equal(multi(inputs["ids"], speaker_id=speaker).waveform, expected), speaker


def test_the_training_forward_is_unchanged_for_every_speaker():
    set_seed(0)
    loaded = VitsModel(make_tiny_config())
    # as run_finetune.py would: the loaded voice made multi-speaker, then prepared for training
    multi = prepare_for_training(with_speakers(loaded, NUM_SPEAKERS, EMBEDDING))
    single = prepare_for_training(loaded)
    frames = 20
    generator = torch.Generator().manual_seed(3)
    batch = {
        "input_ids": torch.randint(1, 40, (2, 6), generator=generator),
        "attention_mask": torch.ones(2, 6, dtype=torch.long),
        "waveform": 0.1 * torch.randn(2, frames * HOP, generator=generator),
        "waveform_lengths": torch.tensor([frames * HOP, frames * HOP]),
        "log_mel": torch.randn(2, 80, frames, generator=generator),
        "mel_lengths": torch.tensor([frames, frames]),
    }
    torch.manual_seed(5)
    expected = VitsForTraining(single, segment_size=8)(**batch)
    for speakers in ([0, 1], [2, 2]):
        torch.manual_seed(5)
        actual = VitsForTraining(multi, segment_size=8)(**batch, speaker_id=torch.tensor(speakers))
        for name in ("generated_waveform", "prior_latents", "posterior_log_stddev", "prior_means"):
            assert torch.equal(getattr(actual, name), getattr(expected, name)), (speakers, name)


def test_a_wrong_initialisation_is_caught(monkeypatch):
    """The part-by-part check fails when the conditioning layers are left as initialized (biases zeroed only)."""

    def biases_only(conv):
        with torch.no_grad():
            conv.bias.zero_()

    monkeypatch.setattr(recipe.model.speakers, "_zero_conditioning", biases_only)
    single = _single()
    multi = _multi(single)
    inputs = _inputs()
    with torch.no_grad():
        expected = _each_part(single, inputs, None)
        actual = _each_part(multi, inputs, _speaker(multi, 1))
    differing = {part for part, value in expected.items() if not torch.equal(actual[part], value)}
    assert {"posterior_means", "flow", "decoder", "duration_inference"} <= differing


def test_the_multi_speaker_model_trains_its_conditioning_from_the_first_step():
    set_seed(0)
    multi = prepare_for_training(with_speakers(VitsModel(make_tiny_config()), NUM_SPEAKERS, EMBEDDING))
    inputs = _inputs()
    waveform = multi.decoder(inputs["latents"], _speaker(multi, 1))
    waveform.square().mean().backward()
    assert multi.decoder.cond.weight.grad.abs().sum() > 0, "the zero weights get a gradient"


def test_a_saved_multi_speaker_model_reloads_and_speaks_per_speaker_in_the_pipeline(tmp_path):
    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    set_seed(0)
    single = VitsModel(make_tiny_config(vocab_size=len(tokenizer))).eval()
    multi = with_speakers(single, NUM_SPEAKERS, EMBEDDING)
    with torch.no_grad():  # speakers that differ, as after training
        multi.decoder.cond.weight.normal_(std=0.5)
    multi.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = VitsModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_speakers == NUM_SPEAKERS
    tts = pipeline("text-to-speech", model=str(tmp_path))
    outputs = []
    for speaker in range(NUM_SPEAKERS):
        set_seed(0)
        expected = multi.eval()(**tokenizer("roj bas", return_tensors="pt"), speaker_id=speaker).waveform
        set_seed(0)
        audio = tts("roj bas", forward_params={"speaker_id": speaker})["audio"]
        torch.testing.assert_close(torch.as_tensor(audio).reshape(-1), expected.detach().reshape(-1))
        outputs.append(expected)
    assert not torch.equal(outputs[0], outputs[1])


def test_added_speakers_keep_the_old_rows_and_every_other_weight_bit_for_bit():
    multi = _multi(_single())
    before = {name: value.clone() for name, value in multi.state_dict().items()}
    inputs = _inputs()
    with torch.no_grad():
        speeches = [multi(inputs["ids"], speaker_id=speaker).waveform for speaker in range(NUM_SPEAKERS)]
    add_speakers(multi, 2)
    assert multi.config.num_speakers == NUM_SPEAKERS + 2 and multi.embed_speaker.num_embeddings == NUM_SPEAKERS + 2
    after = multi.state_dict()
    for name, value in before.items():
        if name == "embed_speaker.weight":
            assert torch.equal(after[name][:NUM_SPEAKERS], value)
        else:
            assert torch.equal(after[name], value), name
    with torch.no_grad():
        for speaker, speech in enumerate(speeches):
            assert torch.equal(multi(inputs["ids"], speaker_id=speaker).waveform, speech)
        multi(inputs["ids"], speaker_id=NUM_SPEAKERS + 1)  # the new ids synthesize


def test_speakers_are_added_the_right_way_round():
    single, multi = _single(), _multi(_single())
    with pytest.raises(ValueError, match="already has 3 speakers"):
        with_speakers(multi, 4)
    with pytest.raises(ValueError, match="has one speaker"):
        add_speakers(single, 1)
    with pytest.raises(ValueError, match="num_speakers >= 2"):
        with_speakers(single, 1)


def test_an_imported_piper_voice_type_becomes_multi_speaker_the_same_way():
    from recipe.piper.decoder import Resblock2VitsConfig, VitsModelResblock2

    set_seed(0)
    type2 = dict(resblock_kernel_sizes=[3, 5, 7], resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])
    single = VitsModelResblock2(Resblock2VitsConfig(**make_tiny_config(**type2).to_dict())).eval()
    single.noise_scale = single.noise_scale_duration = 0.0
    multi = _multi(single)
    assert type(multi) is VitsModelResblock2 and isinstance(multi.config, Resblock2VitsConfig)
    inputs = _inputs()
    with torch.no_grad():
        expected = single(inputs["ids"]).waveform
        for speaker in range(NUM_SPEAKERS):
            assert torch.equal(multi(inputs["ids"], speaker_id=speaker).waveform, expected), speaker


def test_the_amplitude_monitor_hears_the_speakers_in_turn():
    from recipe.training.amplitude_probe import synthesize_texts

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    set_seed(0)
    multi = with_speakers(VitsModel(make_tiny_config(vocab_size=len(tokenizer))), NUM_SPEAKERS, EMBEDDING)
    with torch.no_grad():  # speakers that differ, as after training
        multi.decoder.cond.weight.normal_(std=0.5)
    waveforms = synthesize_texts(multi, tokenizer, ["roj bas"] * (NUM_SPEAKERS + 1))
    assert not np.array_equal(waveforms[0], waveforms[1]), "the same sentence, read by speakers 0 and 1"
    assert np.array_equal(waveforms[0], waveforms[NUM_SPEAKERS]), "speaker 0 again"
