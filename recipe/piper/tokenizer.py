"""The tokenizer of an imported Piper voice: text -> Piper's phoneme ids, exactly as piper-tts computes them.

Piper phonemizes with espeak-ng through its own bridge (`piper.phonemize_espeak`, the espeak-ng data shipped in the
piper-tts wheel), one phoneme list per sentence, and turns each sentence into `BOS, PAD, (phoneme, PAD)*, EOS` ids
through the voice's `phoneme_id_map` (`piper.phoneme_ids.phonemes_to_ids`). Piper's training concatenates the
sentences' ids of an utterance; synthesis runs sentence by sentence. A phoneme missing from the map is skipped by
Piper with a log line; here it is counted, so that the data report shows it like any tokenizer's lost characters.

The voice's own Piper JSON config is kept as it is in the model folder (`piper_voice.json`), so the export can write
it back for the Piper runtime. piper-tts is GPL-3.0 and an optional extra: it is imported only when an imported voice
is used (`pip install -e ".[piper]"`).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter

from recipe.errors import MissingExtraError

PIPER_CONFIG_NAME = "piper_voice.json"
SUPPORTED_PHONEME_TYPES = ("espeak", "text")
# Piper's special symbols (piper.const): beginning / end of a sentence, and the pad put after every phoneme
BOS, EOS, PAD = "^", "$", "_"

_PHONEMIZER_BY_PID: dict[int, object] = {}


def require_piper():
    """Import piper-tts, or say which extra brings it."""
    try:
        import piper  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            'Piper voices need piper-tts (GPL-3.0, an optional extra): pip install -e ".[piper]"'
        ) from error


def _espeak_phonemizer():
    """The process's espeak-ng phonemizer (a native library handle: one per process, rebuilt after a fork)."""
    pid = os.getpid()
    if pid not in _PHONEMIZER_BY_PID:
        require_piper()
        from piper.phonemize_espeak import ESPEAK_DATA_DIR, EspeakPhonemizer

        _PHONEMIZER_BY_PID.clear()
        _PHONEMIZER_BY_PID[pid] = EspeakPhonemizer(ESPEAK_DATA_DIR)
    return _PHONEMIZER_BY_PID[pid]


def check_piper_config(piper_config: dict, source: str) -> None:
    """Refuse a Piper config this tokenizer cannot reproduce, naming `source` and the field."""
    for field in ("phoneme_id_map", "audio"):
        if field not in piper_config:
            raise ValueError(f"{source}: not a Piper voice config (no {field!r})")
    phoneme_type = piper_config.get("phoneme_type", "espeak")
    if phoneme_type not in SUPPORTED_PHONEME_TYPES:
        raise ValueError(
            f"{source}: phoneme_type {phoneme_type!r} is not supported (the recipe reproduces Piper's "
            f"{' and '.join(SUPPORTED_PHONEME_TYPES)} phonemes only)"
        )
    if phoneme_type == "espeak" and not piper_config.get("espeak", {}).get("voice"):
        raise ValueError(f"{source}: an espeak voice needs espeak.voice")
    missing = [symbol for symbol in (BOS, EOS, PAD) if symbol not in piper_config["phoneme_id_map"]]
    if missing:
        raise ValueError(f"{source}: phoneme_id_map lacks Piper's special symbols {missing}")


class PiperPhonemeTokenizer:
    """Text to Piper phoneme ids, with the interface the recipe's data pipeline and synthesis use.

    Args:
        piper_config (`dict`): the voice's Piper JSON config (`phoneme_id_map`, `phoneme_type`, `espeak.voice`, ...).
    """

    # what `recipe.text` and the feature cache read from a tokenizer
    phonemize = False
    normalize = False
    add_blank = False
    is_uroman = False

    def __init__(self, piper_config: dict):
        check_piper_config(piper_config, "piper config")
        self.piper_config = piper_config
        self.phoneme_type = piper_config.get("phoneme_type", "espeak")
        self.espeak_voice = piper_config.get("espeak", {}).get("voice")
        self.language = piper_config.get("language", {}).get("code")
        self.id_map = {phoneme: list(ids) for phoneme, ids in piper_config["phoneme_id_map"].items()}
        vowel_clusters = piper_config.get("vowel_clusters") or {}
        self.vowel_clusters = {tuple(cluster) for cluster in vowel_clusters} or None

    @classmethod
    def from_pretrained(cls, folder: str, **_) -> PiperPhonemeTokenizer:
        path = os.path.join(folder, PIPER_CONFIG_NAME)
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    def save_pretrained(self, folder: str, **_) -> tuple[str]:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, PIPER_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.piper_config, handle, ensure_ascii=False, indent=2)
        return (path,)

    @property
    def pad_token_id(self) -> int:
        return self.id_map[PAD][0]

    def get_vocab(self) -> dict[str, int]:
        """Phoneme -> its first id (Piper maps a phoneme to a list of ids; every shipped voice uses one)."""
        return {phoneme: ids[0] for phoneme, ids in self.id_map.items()}

    def phonemize_sentences(self, text: str) -> list[list[str]]:
        """Phonemes per sentence, as `PiperVoice.phonemize` gives them (without its `[[ raw phoneme ]]` blocks)."""
        if self.phoneme_type == "text":
            return [list(unicodedata.normalize("NFD", text))]
        sentences = _espeak_phonemizer().phonemize(self.espeak_voice, text, vowel_clusters=self.vowel_clusters)
        return [sentence for sentence in sentences if sentence]

    def sentence_ids(self, phonemes: list[str], dropped: Counter | None = None) -> list[int]:
        """`piper.phoneme_ids.phonemes_to_ids` with the missing phonemes counted in `dropped`."""
        ids = self.id_map[BOS] + self.id_map[PAD]
        for phoneme in phonemes:
            if phoneme not in self.id_map:
                if dropped is not None:
                    dropped[phoneme] += 1
                continue
            ids = ids + self.id_map[phoneme] + self.id_map[PAD]
        return ids + self.id_map[EOS]

    def model_text(self, text: str) -> str:
        """The text as the model's data keeps it: as written (stripped), since synthesis phonemizes it again."""
        return text.strip()

    def encode_with_dropped(self, text: str) -> tuple[str, list[int], Counter, int]:
        """`(model_text(text), ids, phonemes missing from the id map, number of phonemes)`; the sentences' ids are
        concatenated, as Piper's training does."""
        dropped, ids, num_phonemes = Counter(), [], 0
        for sentence in self.phonemize_sentences(text):
            ids.extend(self.sentence_ids(sentence, dropped))
            num_phonemes += len(sentence)
        return self.model_text(text), ids, dropped, num_phonemes
