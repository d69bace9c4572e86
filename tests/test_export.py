"""ONNX export for Piper, sherpa-onnx and onnxruntime: each runtime's audio against `VitsModel`'s, noise off.

Tiny random models (seconds per export). The runtimes are driven through their own APIs (`PiperVoice.load`,
`sherpa_onnx.OfflineTts`, `onnxruntime.InferenceSession`) and through the commands the exported README gives.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DEMO_DIR, REPO_ROOT, make_tiny_config

pytest.importorskip("onnxruntime", reason='the export tests need the export extra: pip install -e ".[export]"')
pytest.importorskip("onnx", reason='the export tests need the export extra: pip install -e ".[export]"')

from transformers import VitsModel, VitsTokenizer  # noqa: E402

from recipe.export import ExportError, export_voice, piper_layout  # noqa: E402
from recipe.export.characters import character_vocabulary  # noqa: E402
from recipe.export.check import MAX_ABS_DIFFERENCE  # noqa: E402
from recipe.export.dependencies import require  # noqa: E402
from recipe.text import encode_text  # noqa: E402
from recipe.voices import load_tokenizer, load_voice  # noqa: E402
from recipe.voices.lineage import write_lineage  # noqa: E402
from recipe.voices.speaker_map import read_speaker_map, speaker_map, write_speaker_map
from recipe.voices.synthesis import synthesize  # noqa: E402

# An MMS-like character vocabulary that Piper's text mode can express (no precomposed letters): id 0 is the pad,
# which the tokenizer also puts between characters.
ASCII_VOCABULARY = ["<pad>", " ", "'", "-", *"abcdefghijklmnopqrstuvwxyz", "<unk>"]
TEXT = "Hello world it's a test"
# noise 0 in the saved config: the runtimes' defaults (and so the READMEs' commands) are then noiseless too
NOISELESS = dict(noise_scale=0.0, noise_scale_duration=0.0)


def save_model(folder, vocabulary=ASCII_VOCABULARY, seed=0, is_uroman=False, **config):
    """A tiny random VITS model and its character tokenizer in `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump({token: index for index, token in enumerate(vocabulary)}, handle, ensure_ascii=False)
    tokenizer = VitsTokenizer(os.path.join(folder, "vocab.json"), phonemize=False, is_uroman=is_uroman)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    VitsModel(make_tiny_config(vocab_size=len(vocabulary), **{**NOISELESS, **config})).save_pretrained(folder)
    return str(folder)


def model_waveform(model_dir, text, speaker_id=None):
    """`VitsModel`'s waveform for `text`, noise off, through the recipe's inference path."""
    model = load_voice(model_dir)
    model.noise_scale = model.noise_scale_duration = 0.0
    waveform, _ = synthesize(model, load_tokenizer(model_dir), text, speaker_id=speaker_id)
    return waveform


def assert_parity(waveform, reference):
    waveform = np.asarray(waveform, dtype=np.float64).reshape(-1)
    assert waveform.shape == reference.shape
    assert np.max(np.abs(waveform - reference)) <= MAX_ABS_DIFFERENCE


def readme_command(folder):
    """The bash command of the exported README's "Run it" section."""
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    return re.search(r"```bash\n(.*?)\n```", readme, re.DOTALL).group(1)


def run_readme_command(folder, text):
    # the placeholder is quoted for bash (echo) or for Python (the heredoc scripts)
    command = readme_command(folder).replace("'Your text here'", shlex.quote(text))
    command = command.replace('"Your text here"', json.dumps(text, ensure_ascii=False))
    environment = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    subprocess.run(["bash", "-c", command], cwd=folder, env=environment, check=True, capture_output=True)
    waveform, rate = sf.read(os.path.join(folder, "out.wav"), dtype="float32")
    return waveform, rate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = save_model(tmp_path_factory.mktemp("tiny"))
    write_lineage(folder, [{"round": 1, "started_from": "facebook/mms-tts-test", "dataset": "d", "steps": 3}])
    return folder


@pytest.fixture(scope="module")
def exports(model_dir, tmp_path_factory):
    """The tiny model in each format, exported once for the module."""
    root = tmp_path_factory.mktemp("exports")
    return {name: export_voice(model_dir, name, str(root / name)) for name in ("onnx", "piper", "sherpa-onnx")}


# ---------------------------------------------------------------------------------------------------------------
# Parity, per runtime


def test_onnx_graph_matches_model_on_a_padded_batch(model_dir, exports):
    onnxruntime = require("onnxruntime")
    session = onnxruntime.InferenceSession(exports["onnx"].graph_path, providers=["CPUExecutionProvider"])
    tokenizer = load_tokenizer(model_dir)
    texts = [TEXT, "a short one"]
    ids = [encode_text(text, tokenizer)[1] for text in texts]
    batch = np.zeros((2, max(map(len, ids))), dtype=np.int64)
    for row, token_ids in enumerate(ids):
        batch[row, : len(token_ids)] = token_ids
    waveform, lengths = session.run(
        ["output", "output_lengths"],
        {
            "input": batch,
            "input_lengths": np.array([len(token_ids) for token_ids in ids]),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        },
    )
    references = [model_waveform(model_dir, text) for text in texts]
    assert list(lengths) == [reference.size for reference in references]
    longest = int(np.argmax(lengths))
    assert_parity(waveform[longest, 0, : lengths[longest]], references[longest])
    # A shorter item is followed by padding frames, which the decoder's convolutions see at the item's end (as in
    # a batched `VitsModel`): all but its last samples match the item synthesized alone.
    shorter = 1 - longest
    tail = 4 * 256
    assert_parity(waveform[shorter, 0, : lengths[shorter] - tail], references[shorter][:-tail])


def test_noise_scales_reach_the_graph(exports):
    onnxruntime = require("onnxruntime")
    session = onnxruntime.InferenceSession(exports["onnx"].graph_path, providers=["CPUExecutionProvider"])
    inputs = {"input": np.array([[0, 5, 0, 6, 0, 7, 0, 8, 0]]), "input_lengths": np.array([9])}
    noiseless = session.run(["output"], {**inputs, "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)})[0]
    again = session.run(["output"], {**inputs, "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)})[0]
    noisy = session.run(["output"], {**inputs, "scales": np.array([0.667, 1.0, 0.0], dtype=np.float32)})[0]
    slower = session.run(["output"], {**inputs, "scales": np.array([0.0, 2.0, 0.0], dtype=np.float32)})[0]
    np.testing.assert_array_equal(noiseless, again)
    assert noisy.shape == noiseless.shape and not np.allclose(noisy, noiseless)
    assert slower.shape[-1] > noiseless.shape[-1]


def test_piper_voice_reads_the_model_ids_and_matches_it(model_dir, exports):
    piper = pytest.importorskip("piper")
    voice = piper.PiperVoice.load(exports["piper"].graph_path)
    syn_config = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0, normalize_audio=False)
    (chunk,) = list(voice.synthesize(TEXT, syn_config))
    assert chunk.phoneme_ids == encode_text(TEXT, load_tokenizer(model_dir))[1]
    assert_parity(chunk.audio_float_array, model_waveform(model_dir, TEXT))


def test_sherpa_onnx_matches_model(model_dir, exports):
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    folder = exports["sherpa-onnx"].output_dir
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=os.path.join(folder, "model.onnx"),
        tokens=os.path.join(folder, "tokens.txt"),
        noise_scale=0.0,
        noise_scale_w=0.0,
        length_scale=1.0,
    )
    tts = sherpa_onnx.OfflineTts(
        sherpa_onnx.OfflineTtsConfig(model=sherpa_onnx.OfflineTtsModelConfig(vits=vits), silence_scale=1.0)
    )
    generation = sherpa_onnx.GenerationConfig()
    generation.silence_scale = 1.0
    audio = tts.generate(TEXT, generation)
    assert audio.sample_rate == 16000
    assert_parity(audio.samples, model_waveform(model_dir, TEXT))


@pytest.mark.parametrize("export_format", ["piper", "sherpa-onnx", "onnx"])
def test_readme_command_speaks_like_the_model(model_dir, exports, export_format):
    waveform, rate = run_readme_command(exports[export_format].output_dir, TEXT)
    reference = model_waveform(model_dir, TEXT)
    assert rate == 16000 and waveform.shape == reference.shape
    # the WAV holds 16-bit samples
    assert np.max(np.abs(waveform - reference)) <= MAX_ABS_DIFFERENCE + 1 / 2**15


def test_export_check_and_readme(model_dir, exports):
    for name, result in exports.items():
        assert result.check["passed"] and result.check["same_length"], name
        with open(os.path.join(result.output_dir, "README.md"), encoding="utf-8") as handle:
            readme = handle.read()
        assert f"--format {name}" in readme and "| round | started_from |" in readme
        assert f"max abs difference: {result.check['max_abs_difference']:.2e}" in readme
        assert os.path.isfile(os.path.join(result.output_dir, "lineage.json"))
    # the default check text holds every letter of the vocabulary, capitalized at the start
    assert exports["piper"].check["text"].startswith("Abcdef ghijkl")


def test_multi_speaker_voice_keeps_its_speakers(tmp_path):
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    model_dir = save_model(tmp_path / "model", num_speakers=3, speaker_embedding_size=8)
    names = ["client-a", "client-b", "client-c"]
    write_speaker_map(model_dir, speaker_map(names, {0: 60.0, 1: 120.0, 2: 30.0}, "cv"))
    result = export_voice(model_dir, "sherpa-onnx", str(tmp_path / "out"))
    # every speaker checked in the runtime against VitsModel (0, the middle one, the last)
    assert result.check["speaker_ids_checked"] == [0, 1, 2] and result.check["passed"]
    assert read_speaker_map(result.output_dir)["speakers"][1] == {"id": 1, "name": "client-b", "train_minutes": 2.0}
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=result.graph_path, tokens=str(tmp_path / "out" / "tokens.txt"), noise_scale=0.0, noise_scale_w=0.0
    )
    tts = sherpa_onnx.OfflineTts(
        sherpa_onnx.OfflineTtsConfig(model=sherpa_onnx.OfflineTtsModelConfig(vits=vits), silence_scale=1.0)
    )
    assert tts.num_speakers == 3
    generation = sherpa_onnx.GenerationConfig()
    generation.silence_scale = 1.0
    generation.sid = 1
    speaker_1 = model_waveform(model_dir, TEXT, speaker_id=1)
    assert_parity(tts.generate(TEXT, generation).samples, speaker_1)
    assert not np.allclose(model_waveform(model_dir, TEXT, speaker_id=0)[:1000], speaker_1[:1000])

    onnx_export = export_voice(model_dir, "onnx", str(tmp_path / "onnx"))
    assert onnx_export.check["speaker_ids_checked"] == [0, 1, 2] and read_speaker_map(onnx_export.output_dir)

    piper = pytest.importorskip("piper")
    piper_export = export_voice(model_dir, "piper", str(tmp_path / "piper"))
    voice = piper.PiperVoice.load(piper_export.graph_path)
    assert voice.config.num_speakers == 3
    with open(piper_export.graph_path + ".json", encoding="utf-8") as handle:
        assert json.load(handle)["speaker_id_map"] == {"client-a": 0, "client-b": 1, "client-c": 2}
    syn_config = piper.SynthesisConfig(
        speaker_id=1, noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0, normalize_audio=False
    )
    (chunk,) = list(voice.synthesize(TEXT, syn_config))
    assert_parity(chunk.audio_float_array, speaker_1)


def test_uroman_model_through_the_readme_command(tmp_path):
    pytest.importorskip("piper")
    model_dir = save_model(tmp_path / "model", is_uroman=True)
    result = export_voice(model_dir, "piper", str(tmp_path / "out"))
    assert "uroman | piper" in readme_command(result.output_dir)
    # Cyrillic: the README's command pipes it through the uroman command line. The model's tokenizer romanizes it
    # with the same uroman library, which gives "Privet mir"; the reference starts from that romanization, since
    # loading uroman's tables costs 6 s of CPU per process.
    waveform, _ = run_readme_command(result.output_dir, "Привет мир")
    reference = model_waveform(model_dir, "Privet mir")
    assert waveform.shape == reference.shape
    assert np.max(np.abs(waveform - reference)) <= MAX_ABS_DIFFERENCE + 1 / 2**15


def test_int8_quantization(model_dir, tmp_path):
    onnx = require("onnx")
    result = export_voice(model_dir, "onnx", str(tmp_path / "int8"), quantize="int8")
    operators = {node.op_type for node in onnx.load(result.graph_path).graph.node}
    assert {"MatMulInteger", "ConvInteger"} <= operators
    assert np.isfinite(result.check["mcd"]) and np.isfinite(result.check["rms_dbfs"])
    with open(os.path.join(result.output_dir, "README.md"), encoding="utf-8") as handle:
        assert "int8 weights" in handle.read()


# ---------------------------------------------------------------------------------------------------------------
# An imported Piper voice: espeak phonemes and a type-2 HiFi-GAN decoder (Piper's medium voices)


@pytest.fixture(scope="module")
def piper_voice_dir(tmp_path_factory):
    """A tiny random voice shaped like an imported Piper voice (`recipe.piper.importer`): Piper's default phoneme map
    in `piper_voice.json`, 22.05 kHz, type-2 residual blocks in the decoder."""
    piper = pytest.importorskip("piper")
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    from recipe.piper.decoder import Resblock2VitsConfig, VitsModelResblock2
    from recipe.piper.tokenizer import PiperPhonemeTokenizer

    folder = tmp_path_factory.mktemp("piper_voice")
    piper_config = {
        "audio": {"sample_rate": 22050},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US", "name_english": "English"},
        "phoneme_type": "espeak",
        "num_symbols": 256,
        "num_speakers": 1,
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "piper_version": piper.__name__,
    }
    PiperPhonemeTokenizer(piper_config).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = make_tiny_config(
        vocab_size=256,
        sampling_rate=22050,
        resblock_kernel_sizes=[3, 5, 7],
        resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]],
        **NOISELESS,
    )
    VitsModelResblock2(Resblock2VitsConfig(**config.to_dict())).save_pretrained(str(folder))
    return str(folder)


PHONEME_TEXT = "Hello world, this is a test"


@pytest.mark.parametrize("export_format", ["piper", "sherpa-onnx", "onnx"])
def test_piper_voice_exports_and_its_readme_command_speaks_like_the_model(piper_voice_dir, tmp_path, export_format):
    from recipe.piper.decoder import HifiGanDecoderResblock2

    assert isinstance(load_voice(piper_voice_dir).decoder, HifiGanDecoderResblock2)
    result = export_voice(piper_voice_dir, export_format, str(tmp_path / export_format))
    assert result.check["passed"] and result.check["text"] == "The quick brown fox jumps over the lazy dog"
    waveform, rate = run_readme_command(result.output_dir, PHONEME_TEXT)
    reference = model_waveform(piper_voice_dir, PHONEME_TEXT)
    assert rate == 22050 and waveform.shape == reference.shape
    assert np.max(np.abs(waveform - reference)) <= MAX_ABS_DIFFERENCE + 1 / 2**15


def test_piper_voice_in_piper_and_sherpa_onnx(piper_voice_dir, tmp_path):
    piper = pytest.importorskip("piper")
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer

    reference = model_waveform(piper_voice_dir, PHONEME_TEXT)
    piper_result = export_voice(piper_voice_dir, "piper", str(tmp_path / "piper"))
    voice = piper.PiperVoice.load(piper_result.graph_path)
    assert voice.config.phoneme_type == "espeak" and voice.config.sample_rate == 22050
    syn_config = piper.SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0, normalize_audio=False)
    (chunk,) = list(voice.synthesize(PHONEME_TEXT, syn_config))
    assert chunk.phoneme_ids == encode_text(PHONEME_TEXT, load_tokenizer(piper_voice_dir))[1]
    assert_parity(chunk.audio_float_array, reference)

    sherpa_result = export_voice(piper_voice_dir, "sherpa-onnx", str(tmp_path / "sherpa"))
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=sherpa_result.graph_path,
        tokens=str(tmp_path / "sherpa" / "tokens.txt"),
        noise_scale=0.0,
        noise_scale_w=0.0,
    )
    tts = sherpa_onnx.OfflineTts(
        sherpa_onnx.OfflineTtsConfig(model=sherpa_onnx.OfflineTtsModelConfig(vits=vits), silence_scale=1.0)
    )
    generation = sherpa_onnx.GenerationConfig()
    generation.silence_scale = 1.0
    sentences = EspeakPhonemizer(ESPEAK_DATA_DIR).phonemize("en-us", PHONEME_TEXT)
    generation.phoneme_codepoints = [[ord(char) for phoneme in sentence for char in phoneme] for sentence in sentences]
    audio = tts.generate(PHONEME_TEXT, generation)
    assert audio.sample_rate == 22050
    assert_parity(audio.samples, reference)


def test_vowel_clusters_are_refused_by_sherpa_onnx(piper_voice_dir, tmp_path):
    from recipe.piper.tokenizer import PIPER_CONFIG_NAME

    shutil.copytree(piper_voice_dir, tmp_path / "voice")
    voice_config = json.loads((tmp_path / "voice" / PIPER_CONFIG_NAME).read_text(encoding="utf-8"))
    voice_config["phoneme_id_map"]["aɪ"] = [161]
    voice_config["vowel_clusters"] = [["a", "ɪ"]]
    (tmp_path / "voice" / PIPER_CONFIG_NAME).write_text(json.dumps(voice_config), encoding="utf-8")
    with pytest.raises(ExportError, match="vowel clusters, phonemes of several code points: .aɪ."):
        export_voice(str(tmp_path / "voice"), "sherpa-onnx", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# What a runtime's character table holds


def test_runtime_table_gives_the_tokenizer_ids():
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    vocabulary = character_vocabulary(tokenizer)
    assert vocabulary.runtime_ids["Ç"] == vocabulary.ids["ç"] and vocabulary.runtime_ids["A"] == vocabulary.ids["a"]
    for char, index in vocabulary.runtime_ids.items():
        assert encode_text(f"a{char}a", tokenizer)[1] == [0, vocabulary.ids["a"], 0, index, 0, vocabulary.ids["a"], 0]
    for char in ["!", "é", "1", "É", "."]:  # characters the model drops
        assert char not in vocabulary.runtime_ids
        assert encode_text(f"a{char}a", tokenizer)[1] == [0, vocabulary.ids["a"], 0, vocabulary.ids["a"], 0]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: a clear error, and nothing left in OUT


def leftovers(parent):
    return sorted(name for name in os.listdir(parent) if ".partial-" in name)


def demo_vocabulary():
    """The demo tokenizer's Kurmanji vocabulary in id order (with the precomposed letters ç ê î û ş)."""
    with open(DEMO_DIR / "tiny_model" / "vocab.json", encoding="utf-8") as handle:
        demo_ids = json.load(handle)
    return sorted(demo_ids, key=demo_ids.get)


def test_demo_vocabulary_in_sherpa_onnx_keeps_its_letters_and_capitals(tmp_path):
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    model_dir = save_model(tmp_path / "model", vocabulary=demo_vocabulary())
    result = export_voice(model_dir, "sherpa-onnx", str(tmp_path / "out"))
    assert "çêîû" in result.check["text"] and result.check["passed"]
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=result.graph_path, tokens=str(tmp_path / "out" / "tokens.txt"), noise_scale=0.0, noise_scale_w=0.0
    )
    tts = sherpa_onnx.OfflineTts(
        sherpa_onnx.OfflineTtsConfig(model=sherpa_onnx.OfflineTtsModelConfig(vits=vits), silence_scale=1.0)
    )
    generation = sherpa_onnx.GenerationConfig()
    generation.silence_scale = 1.0
    text = "Çima Şêrîn ji Gundê Hûr hat"  # non-ASCII capitals: sherpa-onnx maps them through tokens.txt
    assert_parity(tts.generate(text, generation).samples, model_waveform(model_dir, text))


def test_demo_vocabulary_in_piper_keeps_its_precomposed_letters(tmp_path):
    """Piper's text mode sends `ç` as `c` + U+0327: the graph composes the model's one id again."""
    model_dir = save_model(tmp_path / "model", vocabulary=demo_vocabulary())  # Kurmanji: ç ê î û ş
    result = export_voice(model_dir, "piper", str(tmp_path / "out"))
    assert "çêîû" in result.check["text"] and result.check["passed"]
    voice_config = json.loads((tmp_path / "out" / "voice.onnx.json").read_text(encoding="utf-8"))
    assert voice_config["phoneme_id_map"]["\u0327"] == [voice_config["num_symbols"] - 2]
    text = "Çima Şêrîn ji Gundê Hûr hat"
    reference = model_waveform(model_dir, text)
    assert_parity(piper_layout.load_runtime(str(tmp_path / "out"))(text), reference)
    waveform, _ = run_readme_command(str(tmp_path / "out"), text)
    assert_parity(waveform, reference)


def test_reserved_symbol_is_refused_by_piper(tmp_path):
    model_dir = save_model(tmp_path / "model", vocabulary=["<pad>", " ", "^", *"abcde"])
    with pytest.raises(ExportError, match=r"reserves '\^'"):
        export_voice(model_dir, "piper", str(tmp_path / "out"))


def test_ascii_capitals_of_their_own_are_refused_by_sherpa_onnx(tmp_path):
    model_dir = save_model(tmp_path / "model", vocabulary=["<pad>", " ", *"abcAB"])
    with pytest.raises(ExportError, match=r"lower-cases ASCII letters.*'A' \(U\+0041.*'B'"):
        export_voice(model_dir, "sherpa-onnx", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_not_a_model_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(ExportError, match="not a model folder: it has no config.json"):
        export_voice(str(tmp_path / "notes"), "onnx", str(tmp_path / "out"))
    with pytest.raises(ExportError, match="not a model folder: no such directory"):
        export_voice(str(tmp_path / "missing"), "onnx", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_quantization(model_dir, tmp_path):
    with pytest.raises(ExportError, match="Unknown format 'tflite': choose one of piper, sherpa-onnx, onnx"):
        export_voice(model_dir, "tflite", str(tmp_path / "out"))
    with pytest.raises(ExportError, match="Unknown quantization 'int4'"):
        export_voice(model_dir, "onnx", str(tmp_path / "out"), quantize="int4")
    completed = subprocess.run(
        [sys.executable, "-m", "recipe.export", model_dir, "--format", "tflite", "--output_dir", str(tmp_path / "o")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2 and "invalid choice: 'tflite'" in completed.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_output_folder_with_files_is_refused(model_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is not empty"):
        export_voice(model_dir, "onnx", str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == ["mine.txt"]


def test_failed_check_leaves_nothing(model_dir, tmp_path, monkeypatch):
    from recipe.export import onnx_layout

    real = onnx_layout.load_runtime

    def off_by_a_bit(folder, num_threads=None):
        synthesize_in_runtime = real(folder, num_threads)
        return lambda text, speaker_id=None: synthesize_in_runtime(text, speaker_id) + 0.01

    monkeypatch.setattr(onnx_layout, "load_runtime", off_by_a_bit)
    (tmp_path / "out").mkdir()  # an empty folder may be there, and stays as it was
    with pytest.raises(ExportError, match=r"does not reproduce the model .* max abs difference 0.01"):
        export_voice(model_dir, "onnx", str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == [] and not leftovers(tmp_path)


def test_missing_runtime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sherpa_onnx", None)  # what an uninstalled package looks like to import
    with pytest.raises(ImportError, match=r'sherpa-onnx .*pip install -e "\.\[export\]"'):
        require("sherpa_onnx")


def test_training_does_not_import_the_runtimes():
    code = (
        "import sys, run_finetune, recipe.training.trainer, recipe.voices; "
        "print([name for name in ('onnx', 'onnxruntime', 'sherpa_onnx', 'piper') if name in sys.modules])"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_benchmark_script_reports_parity_size_and_speed(tmp_path):
    output = tmp_path / "export.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "export_parity.py"), "--model_config", "tiny",
         "--formats", "onnx", "--runs", "1", "--skip_joe", "--output_json", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(output.read_text())
    (row,) = results["results"]
    assert row["format"] == "onnx" and row["same_length"] and row["max_abs_difference"] <= MAX_ABS_DIFFERENCE
    assert row["graph_mb"] > 0 and row["rtf"] > 0 and row["pytorch_rtf"] > 0
    assert results["joe"]["status"] == "skipped: --skip_joe"
