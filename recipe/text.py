"""Text to token ids the way the model's own tokenizer does it, plus the count of characters that get lost.

`VitsTokenizer` lowercases (`normalize`), romanizes non-ASCII text with uroman (`is_uroman`) and, for MMS character
vocabularies (`phonemize=False`), silently strips every character its vocabulary lacks. Training must see exactly the
ids that inference will produce, so this module calls the tokenizer itself and adds only two things:

- text is put in Unicode NFC first, so that a letter typed as base + combining mark (`e` + U+0302) reaches the
  vocabulary as the one code point (`ê`) MMS vocabularies hold, instead of losing its mark;
- uroman runs once per worker process: the tokenizer builds a new `uroman.Uroman()` (seconds of loading) on every
  call, which would dominate preprocessing.

`encode_text_with_dropped` names what the vocabulary loses, so that a tokenizer that drops a third of a language's
letters is caught before training rather than heard after it. `character_kind` tells the two kinds of loss apart: a
letter, mark or digit the vocabulary lacks (`not_in_vocabulary`: the text no longer says what the recording says;
`recipe.data.text_screening` drops such clips) and punctuation, symbols or spacing that MMS vocabularies leave out by
design (`normalized_away`).
"""

from __future__ import annotations

import copy
import os
import unicodedata
from collections import Counter

# One uroman instance per process, keyed by pid: a worker forked by `datasets.map(num_proc=...)` builds its own
# instead of using a copy whose owner may be another process.
_UROMAN_BY_PID: dict[int, object] = {}


def get_uroman():
    """The process's `uroman.Uroman` instance, built on first use (loading its tables takes a few seconds)."""
    pid = os.getpid()
    if pid not in _UROMAN_BY_PID:
        import uroman

        _UROMAN_BY_PID.clear()
        _UROMAN_BY_PID[pid] = uroman.Uroman()
    return _UROMAN_BY_PID[pid]


def romanize(text: str) -> str:
    """Latin-script transliteration of `text` with uroman."""
    return get_uroman().romanize_string(text)


def _without_uroman(tokenizer):
    """A shallow copy of `tokenizer` that skips its own uroman step (this module has already applied it)."""
    if not getattr(tokenizer, "is_uroman", False):
        return tokenizer
    plain = copy.copy(tokenizer)
    plain.is_uroman = False
    return plain


def pre_vocabulary_text(text: str, tokenizer) -> str:
    """NFC, then uroman when the tokenizer asks for it and the text is not plain ASCII (the tokenizer's own rule)."""
    text = unicodedata.normalize("NFC", text)
    if getattr(tokenizer, "is_uroman", False) and not text.isascii():
        text = romanize(text)
    return text


def normalize_text(text: str, tokenizer) -> str:
    """The text the model actually reads: NFC, uroman when `tokenizer.is_uroman`, then the tokenizer's normalization.

    Args:
        text (`str`): raw transcription.
        tokenizer (`VitsTokenizer`): the model's tokenizer.

    Returns:
        `str`: for a character vocabulary, the lowercased text with every character outside the vocabulary removed
        (phonemes when the tokenizer phonemizes).
    """
    if hasattr(tokenizer, "model_text"):  # a tokenizer of its own (Piper phonemes): it says what it reads
        return tokenizer.model_text(text)
    plain = _without_uroman(tokenizer)
    normalized, _ = plain.prepare_for_tokenization(pre_vocabulary_text(text, tokenizer))
    return normalized


def encode_text(text: str, tokenizer) -> tuple[str, list[int]]:
    """Normalized text and its token ids (with the blank between characters when `tokenizer.add_blank`).

    Returns:
        `tuple(str, list[int])`: `normalize_text(text, tokenizer)` and the ids `tokenizer(text)` gives, except that
        uroman has run once per process and the text was NFC-normalized.
    """
    normalized, input_ids, _, _ = encode_text_with_dropped(text, tokenizer)
    return normalized, input_ids


def encode_text_with_dropped(text: str, tokenizer) -> tuple[str, list[int], Counter, int]:
    """`encode_text`, plus the characters the vocabulary drops, with the tokenizer's lowercasing run once.

    `VitsTokenizer.normalize_text` walks the whole vocabulary at every character (0.15 ms for a short sentence with
    an MMS vocabulary); calling `normalize_text`, `tokenizer(text)` and a separate count one after the other
    would run it three times per clip. Here it runs once, and the rest of the tokenizer's own preparation
    (`prepare_for_tokenization` with `normalize=False`, then its strip of what the vocabulary lacks) and its
    tokenization run on the result, so that the ids stay the ones `tokenizer(text)` gives (the tests compare them).

    Dropped characters are counted after NFC, uroman and the tokenizer's lowercasing: an upper-case letter whose
    lower case is in the vocabulary is not dropped, and neither is a letter uroman transliterates. Punctuation is
    counted too (MMS vocabularies drop it by design; the report shows it so that a reader can tell it from lost
    letters).

    Returns:
        `tuple(str, list[int], Counter, int)`: the normalized text, its token ids, the characters the vocabulary
        drops (empty when the tokenizer phonemizes: characters are then mapped to phonemes, not kept or lost), and
        the number of characters of the text they were counted in (after NFC, uroman and lowercasing), the
        denominator of a dropped fraction.
    """
    if hasattr(tokenizer, "encode_with_dropped"):
        # an imported Piper voice's tokenizer (`recipe.piper.tokenizer`): Piper's own phonemes and ids, with the
        # phonemes its id map lacks as the dropped symbols
        return tokenizer.encode_with_dropped(text)
    plain = _without_uroman(tokenizer)
    prepared = pre_vocabulary_text(text, tokenizer)
    if getattr(tokenizer, "phonemize", False):
        # espeak turns the text into phonemes: nothing to share, and phonemes must not be phonemized again
        normalized, _ = plain.prepare_for_tokenization(prepared)
        return normalized, list(plain(prepared, add_special_tokens=False)["input_ids"]), Counter(), len(prepared)
    lowered = plain.normalize_text(prepared) if plain.normalize else prepared
    dropped = Counter(char for char in lowered if not _in_vocabulary(char, plain))
    normalized, _ = plain.prepare_for_tokenization(lowered, normalize=False)  # language fixes (Romanian comma-t)
    if plain.normalize:
        # the tokenizer's last normalizing step (`prepare_for_tokenization`), skipped above with `normalize=False`
        normalized = "".join(char for char in normalized if char in plain.encoder).strip()
    input_ids = plain(normalized, add_special_tokens=False, normalize=False)["input_ids"]
    return normalized, list(input_ids), dropped, len(lowered)


def _in_vocabulary(char: str, tokenizer) -> bool:
    # what `tokenizer.get_vocab()` holds, without building that dict for every clip
    return char in tokenizer.encoder or char in tokenizer.added_tokens_encoder


def count_dropped_characters(texts, tokenizer) -> Counter:
    """The dropped characters of `encode_text_with_dropped` summed over `texts`, fast enough for a whole dataset
    before it is featurized.

    Characters are counted once per text (NFC, and uroman when the tokenizer asks for it), then each distinct
    character is put through the tokenizer's lowercasing once: the vocabulary walk of `normalize_text` runs per
    distinct character instead of per character of the data.
    """
    if getattr(tokenizer, "phonemize", False):
        return Counter()
    if hasattr(tokenizer, "encode_with_dropped"):
        # phonemes come from espeak per text: there is no per-character shortcut
        dropped = Counter()
        for text in texts:
            dropped.update(tokenizer.encode_with_dropped("" if text is None else str(text))[2])
        return dropped
    counts = Counter()
    for text in texts:
        counts.update(pre_vocabulary_text("" if text is None else str(text), tokenizer))
    vocabulary = tokenizer.get_vocab()
    dropped = Counter()
    for char, count in counts.items():
        # lowercasing may turn one character into several ("İ" -> "i" + U+0307)
        shown = tokenizer.normalize_text(char) if getattr(tokenizer, "normalize", False) else char
        for lowered in shown:
            if lowered not in vocabulary:
                dropped[lowered] += count
    return dropped


def character_kind(char: str) -> str:
    """`"not_in_vocabulary"` for a letter, combining mark or digit; `"normalized_away"` for anything else.

    MMS character vocabularies hold letters, the space and a few marks such as the apostrophe; punctuation, symbols
    and other spacing are stripped by the tokenizer on purpose (the model never hears them). A lost letter or accent
    is a gap in the vocabulary that `--extend_vocabulary` can fill; a lost digit is a number to write out in words.
    """
    return "not_in_vocabulary" if unicodedata.category(char)[0] in {"L", "M", "N"} else "normalized_away"


def summarize_dropped_characters(dropped: Counter, total_characters: int, top: int = 20) -> dict:
    """Report entry for dropped characters: the `top` most frequent with counts and Unicode names.

    Args:
        dropped (`Counter`): dropped character -> count, summed over a split.
        total_characters (`int`): characters of the (NFC) texts the counts come from.
        top (`int`, *optional*, defaults to 20): how many characters to list.

    Returns:
        `dict` with `total` (dropped characters), `fraction` (of all characters), `letters_fraction` (dropped
        letters and combining marks over all characters: the number that must stay near zero), `top`, a list
        of `{"character", "name", "count", "is_letter"}`, and, split by `character_kind`,
        `not_in_vocabulary` and `normalized_away`: every such character with its count, most frequent first.
    """
    total = sum(dropped.values())
    letters = sum(count for char, count in dropped.items() if _is_letter(char))
    return {
        "total": total,
        "fraction": total / total_characters if total_characters else 0.0,
        "letters_fraction": letters / total_characters if total_characters else 0.0,
        "top": [
            {
                "character": char,
                "name": unicodedata.name(char, f"U+{ord(char):04X}"),
                "count": count,
                "is_letter": _is_letter(char),
            }
            for char, count in dropped.most_common(top)
        ],
        **{
            kind: {char: count for char, count in dropped.most_common() if character_kind(char) == kind}
            for kind in ("not_in_vocabulary", "normalized_away")
        },
    }


def _is_letter(char: str) -> bool:
    # L*: letters of any script; M*: combining marks (a lost accent changes the letter)
    return unicodedata.category(char)[0] in {"L", "M"}
