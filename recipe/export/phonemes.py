"""An imported Piper voice's phonemes, as the runtimes need them.

Such a voice (`recipe.piper.importer`) keeps its Piper config in its tokenizer (`recipe.piper.tokenizer`,
`piper_voice.json`): the `phoneme_id_map`, `phoneme_type` (`espeak`, or `text`: NFD code points) and the espeak voice.
Piper phonemizes text itself from that config. sherpa-onnx 2.x no longer does (its espeak frontend is gone): it takes
the phonemes as code points (`GenerationConfig.phoneme_codepoints`) and looks each up in `tokens.txt`, so each
phoneme of the map must be one code point with one id. The phonemes come from piper-tts's espeak-ng bridge, the one
Piper and the recipe's tokenizer use, so all three read the same ids.
"""

from __future__ import annotations

import copy
import math
import unicodedata

from recipe.export.characters import describe
from recipe.export.errors import ExportError

# Any text checks an export of a phoneme voice (both sides read the same phoneme ids); one sentence without a
# sentence end, because Piper and sherpa-onnx synthesize sentence by sentence and the recipe's tokenizer concatenates
# the sentences' ids.
CHECK_TEXT = "The quick brown fox jumps over the lazy dog"


def piper_voice_config(model, tokenizer) -> dict:
    """The voice's own Piper config with what the model says about itself (rate, symbols, speakers, sampling)."""
    config = model.config
    voice_config = copy.deepcopy(tokenizer.piper_config)
    voice_config.setdefault("audio", {})["sample_rate"] = int(config.sampling_rate)
    voice_config["num_symbols"] = int(config.vocab_size)
    voice_config["num_speakers"] = int(config.num_speakers)
    voice_config["hop_length"] = int(math.prod(config.upsample_rates))
    voice_config["inference"] = {
        "noise_scale": float(config.noise_scale),
        "length_scale": 1.0 / float(config.speaking_rate),
        "noise_w": float(config.noise_scale_duration),
    }
    return voice_config


def sherpa_tokens(tokenizer) -> dict[str, int]:
    """`tokens.txt`'s phoneme -> id for sherpa-onnx.

    Piper's espeak bridge gives one NFD code point per phoneme unless the voice merges vowel clusters (`aɪ`), so the
    map's entries of several code points (Piper's default map has some) are never read and are left out.

    Raises:
        `ExportError` naming the voice's vowel clusters, phonemes with more than one id, and a line break among the
        phonemes: sherpa-onnx reads one code point and one id per line.
    """
    id_map = {phoneme: ids for phoneme, ids in tokenizer.piper_config["phoneme_id_map"].items() if len(phoneme) == 1}
    reasons = []
    if tokenizer.vowel_clusters:
        clusters = sorted("".join(cluster) for cluster in tokenizer.vowel_clusters)
        reasons.append(f"vowel clusters, phonemes of several code points: {', '.join(map(repr, clusters))}")
    several = [phoneme for phoneme, ids in id_map.items() if len(ids) != 1]
    if several:
        reasons.append(f"phonemes with several ids: {', '.join(map(repr, several))}")
    breaks = [phoneme for phoneme in id_map if phoneme in "\n\r"]
    if breaks:
        reasons.append(f"line breaks: {describe(breaks)}")
    if reasons:
        raise ExportError(
            "sherpa-onnx cannot express this voice's phonemes (it reads one code point with one id per phoneme): "
            + "; ".join(reasons)
            + ". Export to piper or onnx instead."
        )
    return {phoneme: ids[0] for phoneme, ids in id_map.items()}


def phonemizer_settings(tokenizer) -> dict:
    """What a runtime's phonemizer needs: `phoneme_type` and `espeak_voice`."""
    return {"phoneme_type": tokenizer.phoneme_type, "espeak_voice": tokenizer.espeak_voice or ""}


def phonemizer(phoneme_type: str, espeak_voice: str):
    """A function `text -> [code points of each sentence's phonemes]`, as Piper computes them (`PiperVoice.phonemize`
    without its `[[ raw phonemes ]]` blocks): espeak-ng through piper-tts's bridge, or the text's NFD code points."""
    if phoneme_type == "text":
        return lambda text: [[ord(char) for char in unicodedata.normalize("NFD", text)]]
    from recipe.export.dependencies import require

    require("piper")
    from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer

    espeak = EspeakPhonemizer(ESPEAK_DATA_DIR)

    def codepoints(text: str) -> list[list[int]]:
        sentences = espeak.phonemize(espeak_voice, text)
        return [[ord(char) for phoneme in sentence for char in phoneme] for sentence in sentences if sentence]

    return codepoints
