"""sherpa-onnx's layout: `model.onnx` with the metadata its VITS loader reads, and `tokens.txt`.

sherpa-onnx (`offline-tts-vits-model.cc`) configures a VITS voice from the graph's metadata: `sample_rate`,
`n_speakers`, `language`, `comment` (one containing `piper` means the graph takes Piper's inputs: ids, lengths,
the 3 scales, `sid`) and, for a character model, `frontend=characters` with `add_blank`, `blank_id` and
`use_eos_bos`. Its character frontend (`offline-tts-character-frontend.cc`) lower-cases ASCII letters, looks each
code point up in `tokens.txt` (`<character> <id>` per line; a line holding only an id is the space), skips what is
missing, and puts the blank between characters: with `use_eos_bos=0` that is `VitsTokenizer`'s
`[0, c1, 0, ..., 0]`. `tokens.txt` lists every character the model keeps, upper case included
(`recipe.export.characters`), so that non-ASCII capitals map too.

Refused, with the letters named: an ASCII capital that is a letter of its own in the vocabulary (sherpa-onnx
lower-cases it before the lookup), and a whitespace token other than the space (`tokens.txt` cannot hold it).

An imported Piper voice (espeak phonemes): sherpa-onnx 2.x has no espeak frontend any more, so the graph carries
Piper's metadata without `frontend`, `tokens.txt` its phoneme ids, and the caller passes the phonemes as code points
(`GenerationConfig.phoneme_codepoints`) from piper-tts's espeak-ng bridge (`recipe.export.phonemes`); the README's
command does so.
"""

from __future__ import annotations

import os

import numpy as np

from recipe.export.characters import character_vocabulary, describe
from recipe.export.errors import ExportError
from recipe.export.graph import read_metadata, set_metadata
from recipe.export.phonemes import phonemizer, phonemizer_settings, sherpa_tokens
from recipe.export.readme import python_heredoc
from recipe.voices.loading import tokenizer_kind

GRAPH_FILE = "model.onnx"
TOKENS_FILE = "tokens.txt"
WITH_LENGTHS = False
REQUIRES = ("onnx", "onnxruntime", "sherpa_onnx")
# what sherpa-onnx's tokens.txt reader (C++ `>>` on a line) treats as separators
_ASCII_WHITESPACE = "\t\n\v\f\r"


def tokens_table(vocabulary) -> dict[str, int]:
    """`tokens.txt`'s character -> id for a `CharacterVocabulary`.

    Raises:
        `ExportError` naming the vocabulary's ASCII capitals and whitespace tokens, which sherpa-onnx cannot map.
    """
    capitals = [char for char in vocabulary.ids if "A" <= char <= "Z"]
    if capitals:
        raise ExportError(
            "sherpa-onnx cannot express this vocabulary: its character frontend lower-cases ASCII letters before "
            f"looking them up, and the model reads these capitals as letters of their own: {describe(capitals)}. "
            "Export to piper or onnx instead."
        )
    whitespace = [char for char in vocabulary.ids if char in _ASCII_WHITESPACE]
    if whitespace:
        raise ExportError(
            f"sherpa-onnx's tokens.txt cannot hold the whitespace tokens {describe(whitespace)} of this vocabulary "
            "(it splits each line at whitespace). Export to onnx instead."
        )
    # ASCII capitals are lower-cased by sherpa-onnx before the lookup: entries for them would never be read
    return {
        char: index
        for char, index in vocabulary.runtime_ids.items()
        if not "A" <= char <= "Z" and char not in _ASCII_WHITESPACE
    }


def prepare(model, tokenizer) -> dict:
    """What the folder needs: `tokens` (character or phoneme -> id), `metadata` (the graph's), `phonemizer` (for an
    imported Piper voice: `phoneme_type`, `espeak_voice`; `None` for a character model), `uroman`, `num_speakers`
    and the model's default scales.

    Raises:
        `ExportError` for a vocabulary or phoneme map sherpa-onnx cannot express (see `tokens_table`,
        `recipe.export.phonemes.sherpa_tokens`), or a tokenizer that is neither a character tokenizer nor an
        imported Piper voice's.
    """
    config = model.config
    metadata = {
        "model_type": "vits",
        # "piper" tells sherpa-onnx the graph's inputs are Piper's (input, input_lengths, scales, sid)
        "comment": "piper",
        "n_speakers": int(config.num_speakers),
        "sample_rate": int(config.sampling_rate),
    }
    spec = {
        "num_speakers": int(config.num_speakers),
        "noise_scale": float(config.noise_scale),
        "noise_scale_w": float(config.noise_scale_duration),
        "length_scale": 1.0 / float(config.speaking_rate),
    }
    if tokenizer_kind(tokenizer) == "piper_phonemes":
        settings = phonemizer_settings(tokenizer)
        language = tokenizer.piper_config.get("language", {})
        metadata.update(
            {
                "language": language.get("name_english") or language.get("code") or "unknown",
                "voice": settings["espeak_voice"],
                # read back by `load_runtime` (sherpa-onnx ignores it): how to phonemize for this graph
                "phoneme_type": settings["phoneme_type"],
            }
        )
        return {
            **spec,
            "tokens": sherpa_tokens(tokenizer),
            "metadata": metadata,
            "phonemizer": settings,
            "uroman": False,
        }
    vocabulary = character_vocabulary(tokenizer)
    metadata.update(
        {
            "language": vocabulary.language or "unknown",
            "frontend": "characters",
            "add_blank": int(vocabulary.add_blank),
            "blank_id": vocabulary.blank_id,
            "use_eos_bos": 0,
            "punctuation": "",
        }
    )
    return {
        **spec,
        "tokens": tokens_table(vocabulary),
        "metadata": metadata,
        "phonemizer": None,
        "uroman": vocabulary.uroman,
    }


def write(folder: str, spec: dict) -> None:
    """Write `tokens.txt` and the graph's metadata."""
    with open(os.path.join(folder, TOKENS_FILE), "w", encoding="utf-8") as handle:
        for char, index in sorted(spec["tokens"].items(), key=lambda item: (item[1], item[0])):
            # the space's line is " <id>": the readers take a line with one field as the space's id
            handle.write(f"{char} {index}\n")
    set_metadata(os.path.join(folder, GRAPH_FILE), spec["metadata"])


def load_runtime(folder: str, num_threads: int | None = None):
    """The voice in sherpa-onnx: a function `(text, speaker_id=None) -> waveform` that synthesizes with noise off.

    Silences are kept as the model makes them (`silence_scale=1`; sherpa-onnx's default 0.2 shortens them).

    Args:
        folder (`str`): the exported folder.
        num_threads (`int`, *optional*): sherpa-onnx's threads; `None` for its default (1).
    """
    from recipe.export.dependencies import require

    sherpa_onnx = require("sherpa_onnx")
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=os.path.join(folder, GRAPH_FILE),
        tokens=os.path.join(folder, TOKENS_FILE),
        noise_scale=0.0,
        noise_scale_w=0.0,
        length_scale=1.0,
    )
    model_config = sherpa_onnx.OfflineTtsModelConfig(vits=vits)
    if num_threads is not None:
        model_config.num_threads = num_threads
    config = sherpa_onnx.OfflineTtsConfig(model=model_config, silence_scale=1.0)
    if not config.validate():
        raise ExportError(f"sherpa-onnx rejects the folder {folder}: {config}")
    tts = sherpa_onnx.OfflineTts(config)
    metadata = read_metadata(os.path.join(folder, GRAPH_FILE))
    # a character model is read by sherpa-onnx's own frontend; a phoneme voice needs its phonemes given
    to_codepoints = (
        None if "frontend" in metadata else phonemizer(metadata.get("phoneme_type", "espeak"), metadata["voice"])
    )

    def synthesize(text: str, speaker_id: int | None = None) -> np.ndarray:
        generation = sherpa_onnx.GenerationConfig()
        generation.sid = speaker_id or 0
        generation.speed = 1.0
        generation.silence_scale = 1.0
        if to_codepoints is not None:
            generation.phoneme_codepoints = to_codepoints(text)
        audio = tts.generate(text, generation)
        if len(audio.samples) == 0:
            raise ExportError(f"sherpa-onnx produced no audio for {text!r}")
        return np.asarray(audio.samples, dtype=np.float32)

    return synthesize


def _phonemes_script(settings: dict) -> tuple[str, str]:
    """The script lines that import a phonemizer and set `generation.phoneme_codepoints` for a phoneme voice."""
    if settings["phoneme_type"] == "text":
        return (
            "import unicodedata\n",
            'generation.phoneme_codepoints = [[ord(char) for char in unicodedata.normalize("NFD", text)]]\n',
        )
    return (
        "from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer\n",
        f'sentences = EspeakPhonemizer(ESPEAK_DATA_DIR).phonemize("{settings["espeak_voice"]}", text)\n'
        "generation.phoneme_codepoints = "
        "[[ord(c) for phoneme in sentence for c in phoneme] for sentence in sentences]\n",
    )


def usage(spec: dict) -> str:
    """The README's "Run it" section: a Python command with sherpa-onnx, and what it does to the text."""
    romanize = (
        "import uroman\ntext = uroman.Uroman().romanize_string(text)  # the model reads romanized text\n"
        if spec["uroman"]
        else ""
    )
    speaker = "generation.sid = 0  # the speaker\n" if spec["num_speakers"] > 1 else ""
    phonemes_import, phonemes = _phonemes_script(spec["phonemizer"]) if spec["phonemizer"] else ("", "")
    script = (
        "import sherpa_onnx\n"
        f"{phonemes_import}"
        "vits = sherpa_onnx.OfflineTtsVitsModelConfig(\n"
        f'    model="{GRAPH_FILE}", tokens="{TOKENS_FILE}", noise_scale={spec["noise_scale"]}, '
        f"noise_scale_w={spec['noise_scale_w']}, length_scale={spec['length_scale']}\n"
        ")\n"
        "config = sherpa_onnx.OfflineTtsConfig("
        "model=sherpa_onnx.OfflineTtsModelConfig(vits=vits), silence_scale=1.0)\n"
        "tts = sherpa_onnx.OfflineTts(config)\n"
        'text = "Your text here"\n'
        f"{romanize}"
        "generation = sherpa_onnx.GenerationConfig()\n"
        "generation.silence_scale = 1.0\n"
        f"{speaker}"
        f"{phonemes}"
        "audio = tts.generate(text, generation)\n"
        'sherpa_onnx.write_wave("out.wav", audio.samples, audio.sample_rate)\n'
    )
    lines = [
        "From this folder, with `sherpa-onnx` installed (`pip install sherpa-onnx`"
        + (", and `piper-tts` for its espeak-ng phonemizer" if spec["phonemizer"] else "")
        + "):",
        "",
        *python_heredoc(script),
        "",
        "sherpa-onnx's other front ends (its C++ command line, Android, iOS) load the same two files "
        "(`--vits-model=model.onnx --vits-tokens=tokens.txt`); the export checks the Python API.",
        "",
        "- `silence_scale=1.0` keeps the model's pauses; sherpa-onnx's default (0.2) shortens silences.",
    ]
    if spec["phonemizer"]:
        lines.append(
            "- sherpa-onnx 2.x does not phonemize: the script gives it the phonemes of each sentence as code points, "
            "from piper-tts's espeak-ng (the phonemizer Piper and the recipe use), and sherpa-onnx synthesizes one "
            "sentence at a time, as Piper does; the recipe's tokenizer reads a text's sentences as one sequence."
        )
    else:
        lines.append(
            "- sherpa-onnx's character frontend lower-cases ASCII letters (other capitals are listed in "
            "`tokens.txt`), skips characters the vocabulary lacks, as the model does, and does not NFC-normalize: "
            "type accented letters precomposed. It splits the text at `.`, `:`, `?`, `!` and synthesizes each "
            "sentence on its own, where the model reads the whole text at once."
        )
    if spec["uroman"]:
        lines.append("- The model reads romanized text (`is_uroman`): the script romanizes it with `uroman` first.")
    return "\n".join(lines)
