"""One way to load any voice the recipe trains, compares, monitors or exports: a model folder (or Hub id) and its
tokenizer.

Every entry point (`run_finetune.py`, resume, `recipe.compare`, the amplitude monitor, export) loads through
`load_voice` / `load_tokenizer` / `load_voice_config`, so that a voice type that needs more than a plain
`VitsModel.from_pretrained` (e.g. an imported Piper voice with its own decoder) is loaded the same way everywhere.
"""

from __future__ import annotations

import logging

from transformers import VitsConfig, VitsModel, VitsTokenizer

logger = logging.getLogger(__name__)

# IPA letters and stress / length marks: a vocabulary holding them is a phoneme vocabulary (phonemize=True)
_IPA_RANGES = ((0x0250, 0x02AF), (0x02C8, 0x02C8), (0x02CC, 0x02CC), (0x02D0, 0x02D1))


def is_phoneme_vocabulary(vocabulary) -> bool:
    return any(low <= ord(char) <= high for token in vocabulary for char in token for low, high in _IPA_RANGES)


def load_tokenizer(name_or_path: str, revision: str | None = None, token: str | None = None) -> VitsTokenizer:
    """The voice's tokenizer; a `VitsTokenizer` has `phonemize` turned off for a character vocabulary (every MMS model).

    `VitsTokenizer` defaults to `phonemize=True`, which needs espeak and produces IPA symbols an MMS character
    vocabulary does not hold: every letter would be dropped.
    """
    tokenizer = VitsTokenizer.from_pretrained(name_or_path, revision=revision, token=token)
    if tokenizer.phonemize and not is_phoneme_vocabulary(tokenizer.get_vocab()):
        logger.info(f"{name_or_path}: character vocabulary, so the text is not phonemized (phonemize=False)")
        tokenizer.phonemize = False
    return tokenizer


def load_voice_config(name_or_path: str, revision: str | None = None, token: str | None = None) -> VitsConfig:
    """The voice's model configuration."""
    return VitsConfig.from_pretrained(name_or_path, revision=revision, token=token)


def load_voice(name_or_path: str, revision: str | None = None, token: str | None = None) -> VitsModel:
    """The voice's model with its trained weights."""
    return VitsModel.from_pretrained(name_or_path, revision=revision, token=token)
