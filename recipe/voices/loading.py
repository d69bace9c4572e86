"""One way to load any voice the recipe trains, compares, monitors or exports: a model folder (or Hub id) and its
tokenizer.

Every entry point (`run_finetune.py`, resume, `recipe.compare`, the amplitude monitor, export) loads through
`load_voice` / `load_tokenizer` / `load_voice_config`, so that a voice type that needs more than a plain
`VitsModel.from_pretrained` (e.g. an imported Piper voice with its own decoder) is loaded the same way everywhere,
and asks `tokenizer_kind` what the loaded tokenizer reads.

A name that is not a local path is checked before the first Hub access (`recipe.hub_access.check_before_loading`):
with no network, or with `HF_HUB_OFFLINE` set and the model not in the cache, the loaders fail at once with one line
naming the flag (`flag`), the id and the ways out, instead of retrying for minutes and failing on something else.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

from transformers import VitsConfig, VitsModel, VitsTokenizer
from transformers.utils import cached_file

from recipe.errors import MissingInputError
from recipe.hub_access import check_before_loading
from recipe.piper.decoder import Resblock2VitsConfig, VitsModelResblock2, is_resblock2_config_dict
from recipe.piper.tokenizer import PIPER_CONFIG_NAME, PiperPhonemeTokenizer

logger = logging.getLogger(__name__)

# IPA letters and stress / length marks: a vocabulary holding them is a phoneme vocabulary (phonemize=True)
_IPA_RANGES = ((0x0250, 0x02AF), (0x02C8, 0x02C8), (0x02CC, 0x02CC), (0x02D0, 0x02D1))

TokenizerKind = Literal["characters", "phonemes", "piper_phonemes"]
# the flag a voice's name usually comes from, for the messages of a caller that does not say which
DEFAULT_FLAG = "--model_name_or_path"


def tokenizer_kind(tokenizer) -> TokenizerKind:
    """What a voice's tokenizer (`load_tokenizer`) reads.

    - `"characters"`: a `VitsTokenizer` with `phonemize=False` (every MMS model): the text's characters.
    - `"phonemes"`: a `VitsTokenizer` with `phonemize=True` (a phoneme vocabulary): the IPA phonemes espeak gives
      through the `phonemizer` package.
    - `"piper_phonemes"`: a `PiperPhonemeTokenizer` (an imported Piper voice): Piper's phoneme ids, from piper-tts's
      espeak-ng bridge and the voice's `phoneme_id_map`.

    Raises:
        `TypeError` for any other tokenizer.
    """
    if isinstance(tokenizer, PiperPhonemeTokenizer):
        return "piper_phonemes"
    if isinstance(tokenizer, VitsTokenizer):
        return "phonemes" if tokenizer.phonemize else "characters"
    raise TypeError(f"{type(tokenizer).__name__} is not a voice tokenizer (VitsTokenizer or PiperPhonemeTokenizer)")


def _holds_ipa(vocabulary) -> bool:
    return any(low <= ord(char) <= high for token in vocabulary for char in token for low, high in _IPA_RANGES)


def load_tokenizer(
    name_or_path: str, revision: str | None = None, token: str | None = None, *, flag: str = DEFAULT_FLAG
):
    """The voice's tokenizer: a `PiperPhonemeTokenizer` for an imported Piper voice (its folder holds
    `piper_voice.json`), else a `VitsTokenizer`, with `phonemize` turned off for a character vocabulary (every MMS
    model).

    `VitsTokenizer` defaults to `phonemize=True`, which needs espeak and produces IPA symbols an MMS character
    vocabulary does not hold: every letter would be dropped.

    Args:
        flag (`str`, *optional*, defaults to `"--model_name_or_path"`): the flag `name_or_path` was given to, for
            the messages.

    Raises:
        `MissingInputError` (a path that does not exist, a folder without a tokenizer), `UnavailableError` (the Hub
        unreachable, or offline without the model in its cache): `recipe.hub_access.check_before_loading`.
    """
    check_before_loading(name_or_path, flag)
    piper_config = cached_file(
        name_or_path,
        PIPER_CONFIG_NAME,
        revision=revision,
        token=token,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if piper_config is not None:
        return PiperPhonemeTokenizer.from_pretrained(os.path.dirname(piper_config))
    vocabulary = VitsTokenizer.vocab_files_names["vocab_file"]
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, vocabulary)):
        # transformers would fail on it with a TypeError about a None path
        raise MissingInputError(
            f"{flag} {name_or_path!r}: a folder without a tokenizer (no {vocabulary} or {PIPER_CONFIG_NAME}); give a "
            "model folder saved with its tokenizer (save_pretrained), or the tokenizer's folder as --tokenizer_name"
        )
    tokenizer = VitsTokenizer.from_pretrained(name_or_path, revision=revision, token=token)
    if tokenizer.phonemize and not _holds_ipa(tokenizer.get_vocab()):
        logger.info(f"{name_or_path}: character vocabulary, so the text is not phonemized (phonemize=False)")
        tokenizer.phonemize = False
    return tokenizer


def load_voice_config(
    name_or_path: str, revision: str | None = None, token: str | None = None, *, flag: str = DEFAULT_FLAG
) -> VitsConfig:
    """The voice's model configuration: a `VitsConfig`, or a `Resblock2VitsConfig` for a type-2 HiFi-GAN voice;
    `name_or_path` is checked as `load_tokenizer` checks it."""
    check_before_loading(name_or_path, flag)
    config_dict, _ = VitsConfig.get_config_dict(name_or_path, revision=revision, token=token)
    if is_resblock2_config_dict(config_dict):
        return Resblock2VitsConfig.from_dict(config_dict)
    return VitsConfig.from_dict(config_dict)


def _model_class(config: VitsConfig) -> type[VitsModel]:
    return VitsModelResblock2 if isinstance(config, Resblock2VitsConfig) else VitsModel


def model_from_config(config: VitsConfig) -> VitsModel:
    """A randomly initialized model of the voice type `config` describes."""
    return _model_class(config)(config)


def load_voice(
    name_or_path: str, revision: str | None = None, token: str | None = None, *, flag: str = DEFAULT_FLAG
) -> VitsModel:
    """The voice's model with its trained weights (`VitsModel`, or `VitsModelResblock2` for a type-2 decoder);
    `name_or_path` is checked as `load_tokenizer` checks it."""
    config = load_voice_config(name_or_path, revision=revision, token=token, flag=flag)
    return _model_class(config).from_pretrained(name_or_path, config=config, revision=revision, token=token)
