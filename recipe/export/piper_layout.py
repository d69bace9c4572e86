"""Piper's layout: `voice.onnx` + `voice.onnx.json`, loadable by `piper-tts` (`PiperVoice.load`) and its CLI.

A character model is written in Piper's text mode (`"phoneme_type": "text"`). Piper then turns text into ids this
way (`piper.voice.PiperVoice.phonemize`, `piper.phoneme_ids.phonemes_to_ids`): the text's NFD code points, each
looked up in `phoneme_id_map` (a character missing from the map is skipped), each followed by the pad symbol `_`'s
ids, the whole between the start `^` and end `$` ids. With `_` -> `[0]` (the blank; `[]` without `add_blank`) and
`^`, `$` -> `[]`, that is exactly `VitsTokenizer`'s `[0, c1, 0, c2, ..., 0]`, and the map holds every character the
model keeps (upper case included, see `recipe.export.characters`).

A precomposed letter of the vocabulary that NFD splits (`ç` -> `c` + U+0327) reaches the graph as Piper sends it,
`c`, blank, cedilla, blank: the map gives the cedilla an id of its own, and the graph's first stage
(`recipe.export.composition.ComposeLetters`) puts the model's one id of `ç` back before the text encoder.

What the text mode cannot express, and is refused with the symbols named: `^` / `$` (or a `_` that is not the
blank) as letters of the vocabulary, since Piper reserves them.

An imported Piper voice (espeak phonemes) gets its own Piper config back, with the model's rate, symbols, speakers
and sampling settings (`recipe.export.phonemes`).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from recipe.export.characters import character_vocabulary, describe
from recipe.export.composition import ComposeLetters, letter_composition, sendable_ids
from recipe.export.errors import ExportError
from recipe.export.phonemes import piper_voice_config
from recipe.voices.loading import tokenizer_kind

GRAPH_FILE = "voice.onnx"
CONFIG_FILE = "voice.onnx.json"
WITH_LENGTHS = False
REQUIRES = ("onnx", "onnxruntime", "piper")
# Piper's reserved symbols (piper.const): pad, start and end of a sentence
PAD, BOS, EOS = "_", "^", "$"


def piper_id_map(vocabulary, composition=None) -> dict[str, list[int]]:
    """Piper's `phoneme_id_map` for a `CharacterVocabulary`: every character Piper may send (it decomposes the text
    first, so no character that NFD changes) -> the model's id, plus the code points of `composition` (the marks of
    the vocabulary's precomposed letters) -> their new ids.

    Raises:
        `ExportError` naming the vocabulary's letters that Piper reserves.
    """
    pad_ids = [vocabulary.blank_id] if vocabulary.add_blank else []
    reserved = [char for char in (BOS, EOS) if char in vocabulary.ids]
    if PAD in vocabulary.ids and [vocabulary.ids[PAD]] != pad_ids:
        reserved.append(PAD)
    if reserved:
        raise ExportError(
            f"Piper's text mode cannot express this vocabulary: it reserves {describe(reserved)} for its pad / start "
            "/ end symbols, and the model reads them as letters. Export to sherpa-onnx or onnx instead."
        )
    id_map = {PAD: pad_ids, BOS: [], EOS: []}
    for char, index in sorted(sendable_ids(vocabulary).items(), key=lambda item: (item[1], item[0])):
        id_map[char] = [index]
    if composition is not None:
        for char, index in composition.extra_ids.items():
            id_map[char] = [index]
    return id_map


def prepare(model, tokenizer) -> dict:
    """What the folder needs: `voice_config` (the `voice.onnx.json`), `uroman`, `num_speakers`, `phonemes` (an
    imported Piper voice, whose own config is written back) and `input_stage` (the graph's first stage, `None` when
    Piper's ids are the model's).

    Raises:
        `ExportError` for a vocabulary Piper's text mode cannot express (see `piper_id_map`), or a tokenizer that is
        neither a character tokenizer nor an imported Piper voice's.
    """
    config = model.config
    num_speakers = int(config.num_speakers)
    if tokenizer_kind(tokenizer) == "piper_phonemes":
        return {
            "voice_config": piper_voice_config(model, tokenizer),
            "uroman": False,
            "num_speakers": num_speakers,
            "phonemes": True,
            "input_stage": None,
        }
    vocabulary = character_vocabulary(tokenizer)
    composition = letter_composition(vocabulary, int(config.vocab_size))
    voice_config = {
        "audio": {"sample_rate": int(config.sampling_rate)},
        # Piper requires the key; the text mode does not use espeak
        "espeak": {"voice": vocabulary.language},
        "language": {"code": vocabulary.language},
        "phoneme_type": "text",
        # the ids the graph reads: the vocabulary's, and those of the marks it composes into letters
        "num_symbols": composition.num_ids if composition else int(config.vocab_size),
        "num_speakers": num_speakers,
        "speaker_id_map": {str(speaker): speaker for speaker in range(num_speakers)} if num_speakers > 1 else {},
        # the model's own sampling settings, so that Piper sounds like `VitsModel` with its defaults
        "inference": {
            "noise_scale": float(config.noise_scale),
            "length_scale": 1.0 / float(config.speaking_rate),
            "noise_w": float(config.noise_scale_duration),
        },
        "hop_length": int(math.prod(config.upsample_rates)),
        "phoneme_id_map": piper_id_map(vocabulary, composition),
    }
    return {
        "voice_config": voice_config,
        "uroman": vocabulary.uroman,
        "num_speakers": num_speakers,
        "phonemes": False,
        "input_stage": ComposeLetters(composition, vocabulary.add_blank) if composition else None,
    }


def write(folder: str, spec: dict) -> None:
    """Write `voice.onnx.json` next to the graph."""
    with open(os.path.join(folder, CONFIG_FILE), "w", encoding="utf-8") as handle:
        json.dump(spec["voice_config"], handle, ensure_ascii=False, indent=2)


def load_runtime(folder: str, num_threads: int | None = None):
    """The voice in Piper: a function `(text, speaker_id=None) -> waveform` that synthesizes with noise off.

    Args:
        folder (`str`): the exported folder.
        num_threads (`int`, *optional*): onnxruntime intra-op threads; `None` keeps Piper's own session (all
            cores).
    """
    from recipe.export.dependencies import require

    piper = require("piper")
    voice = piper.PiperVoice.load(os.path.join(folder, GRAPH_FILE))
    if num_threads is not None:
        onnxruntime = require("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        voice.session = onnxruntime.InferenceSession(
            os.path.join(folder, GRAPH_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def synthesize(text: str, speaker_id: int | None = None) -> np.ndarray:
        # no peak normalization (Piper's default), so that the level is the model's
        syn_config = piper.SynthesisConfig(
            speaker_id=speaker_id, noise_scale=0.0, length_scale=1.0, noise_w_scale=0.0, normalize_audio=False
        )
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config)]
        if not chunks:
            raise ExportError(f"Piper produced no audio for {text!r}")
        return np.concatenate(chunks)

    return synthesize


def usage(spec: dict) -> str:
    """The README's "Run it" section: the Piper CLI command, and what Piper does to the text."""
    uroman = "uroman | " if spec["uroman"] else ""
    speaker = " -s 0" if spec["num_speakers"] > 1 else ""
    lines = [
        "From this folder, with `piper-tts` installed (`pip install piper-tts`):",
        "",
        "```bash",
        f"echo 'Your text here' | {uroman}piper -m {GRAPH_FILE}{speaker} --no-normalize -f out.wav",
        "```",
        "",
        "- `--no-normalize` keeps the model's own level; without it Piper scales every sentence to full scale.",
    ]
    if spec["phonemes"]:
        voice_config = spec["voice_config"]
        lines.append(
            "- Piper phonemizes the text itself ("
            + (
                f"espeak-ng, voice `{voice_config['espeak']['voice']}`"
                if voice_config.get("phoneme_type", "espeak") == "espeak"
                else "NFD code points"
            )
            + ") and synthesizes one sentence at a time; the recipe's tokenizer reads a text's sentences as one "
            "sequence of ids, so the two agree sentence by sentence."
        )
    else:
        lines.append(
            "- Piper reads the text in its text mode: each character (after NFD) is looked up in `phoneme_id_map`, "
            "upper case maps to the model's lower-case letters, and characters the vocabulary lacks are skipped, as "
            "the model skips them. Unlike the model, Piper decomposes accented letters the vocabulary lacks and "
            "speaks their base letter, and reads `_`, `^`, `$` in the text as its pad / start / end symbols (each "
            "adds a blank)."
        )
        if spec["input_stage"] is not None:
            lines.append(
                "- Precomposed letters of the vocabulary reach the graph decomposed (`ç` as `c`, then U+0327): "
                "`phoneme_id_map` gives their combining marks ids past the vocabulary, and the graph composes each "
                "letter's one id again before the text encoder."
            )
    if spec["uroman"]:
        lines.append(
            "- The model reads romanized text (`is_uroman`): `uroman` (installed with this recipe) romanizes it "
            "first, as the recipe's tokenizer does; Piper itself cannot."
        )
    if spec["num_speakers"] > 1:
        lines.append(f"- `-s N` picks the speaker, 0 to {spec['num_speakers'] - 1}.")
    return "\n".join(lines)
