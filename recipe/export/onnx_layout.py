"""The plain ONNX layout: `model.onnx` (batched, with `output_lengths`) and the model's tokenizer files.

For any runtime that runs ONNX (onnxruntime on a server, onnxruntime-web in a browser): the caller turns text into
ids with the saved tokenizer (`VitsTokenizer.from_pretrained(folder)`; for an imported Piper voice, Piper's
phonemizer and the `phoneme_id_map` of `piper_voice.json`) and runs the graph. The graph's metadata
carries what a caller needs to know besides the ids (sampling rate, blank, speakers).
"""

from __future__ import annotations

import math
import os

import numpy as np

from recipe.export.errors import ExportError
from recipe.export.graph import set_metadata
from recipe.export.readme import python_heredoc
from recipe.piper.tokenizer import PIPER_CONFIG_NAME
from recipe.voices.loading import tokenizer_kind

GRAPH_FILE = "model.onnx"
WITH_LENGTHS = True
REQUIRES = ("onnx", "onnxruntime")


def prepare(model, tokenizer) -> dict:
    """What the folder needs: the tokenizer to save, the graph's `metadata`, `num_speakers` and the default scales."""
    config = model.config
    metadata = {
        "sample_rate": int(config.sampling_rate),
        "hop_length": int(math.prod(config.upsample_rates)),
        "n_speakers": int(config.num_speakers),
        "add_blank": int(bool(getattr(tokenizer, "add_blank", False))),
        "scales": "noise_scale, length_scale, noise_scale_duration",
        "default_scales": f"{float(config.noise_scale)}, {1.0 / float(config.speaking_rate)}, "
        f"{float(config.noise_scale_duration)}",
    }
    return {
        "tokenizer": tokenizer,
        "metadata": metadata,
        "num_speakers": int(config.num_speakers),
        "scales": [float(config.noise_scale), 1.0 / float(config.speaking_rate), float(config.noise_scale_duration)],
    }


def write(folder: str, spec: dict) -> None:
    """Save the tokenizer next to the graph and write the graph's metadata."""
    spec["tokenizer"].save_pretrained(folder)
    set_metadata(os.path.join(folder, GRAPH_FILE), spec["metadata"])


def load_runtime(folder: str, num_threads: int | None = None):
    """The graph in onnxruntime with the folder's tokenizer: a function `(text, speaker_id=None) -> waveform`,
    noise off.

    Args:
        folder (`str`): the exported folder.
        num_threads (`int`, *optional*): intra-op threads; `None` for onnxruntime's default (all cores).
    """
    from recipe.export.dependencies import require
    from recipe.text import encode_text
    from recipe.voices import load_tokenizer

    onnxruntime = require("onnxruntime")
    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        os.path.join(folder, GRAPH_FILE), sess_options=options, providers=["CPUExecutionProvider"]
    )
    tokenizer = load_tokenizer(folder)
    takes_speaker = any(node.name == "sid" for node in session.get_inputs())

    def synthesize(text: str, speaker_id: int | None = None) -> np.ndarray:
        _, token_ids = encode_text(text, tokenizer)
        if not token_ids:
            raise ExportError(f"The tokenizer turned {text!r} into no tokens")
        inputs = {
            "input": np.asarray([token_ids], dtype=np.int64),
            "input_lengths": np.asarray([len(token_ids)], dtype=np.int64),
            "scales": np.asarray([0.0, 1.0, 0.0], dtype=np.float32),
        }
        if takes_speaker:
            inputs["sid"] = np.asarray([speaker_id or 0], dtype=np.int64)
        waveform, lengths = session.run(["output", "output_lengths"], inputs)
        return waveform[0, 0, : int(lengths[0])]

    return synthesize


def _ids_script(tokenizer) -> str:
    """Script lines that turn `text` into the model's `ids`: the saved `VitsTokenizer`, or for an imported Piper
    voice, Piper's own phonemizer and id map (the sentences' ids one after the other, as the recipe reads them)."""
    if tokenizer_kind(tokenizer) != "piper_phonemes":
        return (
            "import unicodedata\n"
            "from transformers import VitsTokenizer\n"
            'tokenizer = VitsTokenizer.from_pretrained(".")\n'
            'text = unicodedata.normalize("NFC", "Your text here")\n'
            'ids = np.array([tokenizer(text)["input_ids"]], dtype=np.int64)\n'
        )
    if tokenizer.phoneme_type == "text":
        phonemize = 'sentences = [list(unicodedata.normalize("NFD", text))]\n'
    else:
        phonemize = (
            "from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer\n"
            'clusters = {tuple(cluster) for cluster in voice.get("vowel_clusters") or []} or None\n'
            "sentences = EspeakPhonemizer(ESPEAK_DATA_DIR).phonemize(\n"
            '    voice["espeak"]["voice"], text, vowel_clusters=clusters\n'
            ")\n"
        )
    return (
        "import json, unicodedata\n"
        "from piper.phoneme_ids import phonemes_to_ids\n"
        f'voice = json.load(open("{PIPER_CONFIG_NAME}", encoding="utf-8"))\n'
        'text = "Your text here"\n'
        f"{phonemize}"
        'ids = [i for sentence in sentences for i in phonemes_to_ids(sentence, voice["phoneme_id_map"])]\n'
        "ids = np.array([ids], dtype=np.int64)\n"
    )


def usage(spec: dict) -> str:
    """The README's "Run it" section: a Python command with onnxruntime and the saved tokenizer."""
    noise_scale, length_scale, noise_scale_duration = spec["scales"]
    speaker = '    "sid": np.array([0], dtype=np.int64),  # the speaker\n' if spec["num_speakers"] > 1 else ""
    script = (
        "import numpy as np, onnxruntime, soundfile\n"
        f"{_ids_script(spec['tokenizer'])}"
        f'session = onnxruntime.InferenceSession("{GRAPH_FILE}")\n'
        "inputs = {\n"
        '    "input": ids,\n'
        '    "input_lengths": np.array([ids.shape[1]], dtype=np.int64),\n'
        f'    "scales": np.array([{noise_scale}, {length_scale}, {noise_scale_duration}], dtype=np.float32),\n'
        f"{speaker}"
        "}\n"
        'waveform, lengths = session.run(["output", "output_lengths"], inputs)\n'
        f'soundfile.write("out.wav", waveform[0, 0, : lengths[0]], {spec["metadata"]["sample_rate"]})\n'
    )
    return "\n".join(
        [
            "From this folder, with `onnxruntime`, "
            + ("`piper-tts`" if tokenizer_kind(spec["tokenizer"]) == "piper_phonemes" else "`transformers`")
            + " and `soundfile` installed:",
            "",
            *python_heredoc(script),
            "",
            "- Inputs: `input` (batch, tokens) int64 ids, `input_lengths` (batch,), `scales` = noise scale, length "
            "scale (1 / speaking rate), duration-noise scale"
            + (", `sid` (batch,) speaker ids" if spec["num_speakers"] > 1 else "")
            + ". Outputs: `output` (batch, 1, samples) and `output_lengths` (batch,), the valid samples of each "
            "item of a padded batch. Scales `[0, 1, 0]` give the model's noiseless output.",
            "- In a padded batch, the decoder's convolutions see the padding after a shorter item: its last samples "
            "(the decoder's receptive field) differ from those of the item synthesized alone, as in a batched "
            "`VitsModel`.",
            (
                "- The ids are Piper's: its espeak-ng phonemizer (piper-tts) and the voice's `phoneme_id_map` "
                f"(`{PIPER_CONFIG_NAME}`), the sentences' ids one after the other, as the recipe reads them."
                if tokenizer_kind(spec["tokenizer"]) == "piper_phonemes"
                else "- The tokenizer is the model's (`VitsTokenizer`: lower-casing, the blank between characters, "
                "uroman when `is_uroman` and the `uroman` package is installed); NFC first, as the recipe's "
                "training does."
            ),
        ]
    )
