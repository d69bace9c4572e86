"""What a character model's tokenizer does to each character, as a table a runtime can hold.

An MMS-style `VitsTokenizer` (`phonemize=False`) reads text one code point at a time, after the recipe's NFC
(`recipe.text`): a character of the vocabulary keeps its id; with `normalize`, any other character is lower-cased
and kept when its lower case is in the vocabulary, else dropped; a blank (id 0) goes between characters when
`add_blank`. Neither Piper's text mode nor sherpa-onnx's character frontend runs the tokenizer, but both look each
character up in a table: `character_vocabulary` builds that table (`runtime_ids`), upper-case letters included,
from the tokenizer itself, so that every character the model would keep gets the id the model gives it.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass, field

from recipe.export.errors import ExportError
from recipe.voices.loading import tokenizer_kind


@dataclass
class CharacterVocabulary:
    """A character tokenizer's single-character tokens and how it puts them together.

    Args:
        ids (`dict[str, int]`): every token of one code point -> its id (tokens such as `<pad>` are left out: no
            character of a text turns into them).
        add_blank (`bool`): a blank (id 0) between characters and at both ends.
        uroman (`bool`): the tokenizer romanizes non-ASCII text with uroman first (`is_uroman`).
        language (`str`): the tokenizer's language code, `""` when it has none.
        runtime_ids (`dict[str, int]`): `ids` plus every other character the tokenizer turns into one of them
            (upper-case letters, NFC singletons, the language's own substitutions).
    """

    ids: dict[str, int]
    add_blank: bool
    uroman: bool
    language: str
    runtime_ids: dict[str, int] = field(default_factory=dict)

    blank_id: int = 0  # VitsTokenizer always inserts id 0


def model_character(char: str, tokenizer) -> str:
    """What the tokenizer (after the recipe's NFC) turns the single character `char` into, before it drops what its
    vocabulary lacks."""
    text = unicodedata.normalize("NFC", char)
    if tokenizer.normalize:
        text = tokenizer.normalize_text(text)
    # the tokenizer's language-specific substitutions (Romanian comma-below t), applied after lower-casing
    return tokenizer._preprocess_char(text)


def character_vocabulary(tokenizer) -> CharacterVocabulary:
    """The `CharacterVocabulary` of an MMS-style tokenizer.

    Every code point that the tokenizer could change is put through `model_character`: a runtime sees raw text, so
    its table must hold every character the model keeps, not only the vocabulary's own spelling.

    Raises:
        `ExportError` when the tokenizer phonemizes (not a character model), or turns a single character into several
        tokens (a runtime's table holds one id per character).
    """
    if tokenizer_kind(tokenizer) != "characters":
        raise ExportError(f"{type(tokenizer).__name__} is not a character tokenizer (VitsTokenizer, phonemize=False)")
    ids = {token: index for token, index in tokenizer.encoder.items() if len(token) == 1}
    runtime_ids = dict(ids)
    several = {}
    for code_point in range(sys.maxunicode + 1):
        char = chr(code_point)
        if char in ids or unicodedata.category(char) in ("Cs", "Cn"):
            continue  # lone surrogates and unassigned code points never reach a tokenizer
        if (
            char.lower() == char
            and unicodedata.normalize("NFC", char) == char
            and tokenizer._preprocess_char(char) == char
        ):
            continue  # the tokenizer keeps it as it is, and it is not in the vocabulary: dropped
        # lower-casing may give several code points ("İ" -> "i" + U+0307), of which the tokenizer keeps those in
        # its vocabulary
        kept = [mapped for mapped in model_character(char, tokenizer) if mapped in ids]
        if len(kept) == 1:
            runtime_ids[char] = ids[kept[0]]
        elif kept:
            several[char] = "".join(kept)
    if several:
        # no vocabulary seen so far has one (it needs two vocabulary letters from one upper-case character); a
        # runtime's table maps a character to one id, so it would drop what the model speaks
        raise ExportError(
            "The tokenizer turns each of these characters into several tokens, which a runtime's character table "
            f"cannot express: {describe(several)} (-> {', '.join(several.values())})"
        )
    return CharacterVocabulary(
        ids=ids,
        add_blank=bool(tokenizer.add_blank),
        uroman=bool(tokenizer.is_uroman),
        language=tokenizer.language or "",
        runtime_ids=runtime_ids,
    )


def describe(chars) -> str:
    """`ç (U+00E7 LATIN SMALL LETTER C WITH CEDILLA), ...` for an error message."""
    return ", ".join(
        f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed')})" for char in sorted(set(chars))
    )


# sherpa-onnx ends a sentence at these and synthesizes each sentence on its own: a check text without them compares
# one pass with one pass
_SENTENCE_ENDS = ".:?!"


def check_text(vocabulary, word_length: int = 6) -> str:
    """A text that holds every character of the vocabulary once, for checking an export: the vocabulary's letters in
    id order, then its other characters, in words of `word_length`, the first letter capitalized when the tokenizer
    lower-cases it.

    Whitespace and sentence-ending punctuation are left out (see `_SENTENCE_ENDS`), and so is a combining mark at the
    start of a word, which would attach to the space before it.

    Raises:
        `ExportError` when the vocabulary has no character to say.
    """
    chars = [
        char
        for char, _ in sorted(vocabulary.ids.items(), key=lambda item: item[1])
        if not char.isspace() and char not in _SENTENCE_ENDS
    ]
    marks = [char for char in chars if unicodedata.category(char).startswith("M")]
    # letters first, so that the text starts with one (capitalized below), then digits and punctuation
    bases = sorted((char for char in chars if char not in marks), key=lambda char: not char.isalpha())
    if not bases:
        raise ExportError("The vocabulary has no character that is not whitespace, a mark or a sentence end")
    words = ["".join(bases[start : start + word_length]) for start in range(0, len(bases), word_length)]
    # each combining mark after a base letter, inside the words
    words[0] = words[0][:1] + "".join(marks) + words[0][1:]
    first = words[0][0]
    capital = first.upper()
    if len(capital) == 1 and capital != first and vocabulary.runtime_ids.get(capital) == vocabulary.ids[first]:
        words[0] = capital + words[0][1:]
    return " ".join(words)
