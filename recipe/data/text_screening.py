"""Text that does not say what the recording says: letters and digits the tokenizer deletes.

An MMS character tokenizer deletes every character its vocabulary lacks. Punctuation it deletes by design (the model
never hears it), but a deleted letter or digit leaves a text that no longer matches the audio: `Ez 2 sêvan` trains as
`ez  sêvan` while the speaker says "du". `recipe.data` drops such a clip as `text_not_in_vocabulary` (unless
`--keep_clips_with_dropped_characters`), and stops before featurizing when more than
`--max_text_not_in_vocabulary_fraction` of a split would go, with `text_loss_error`.

    lost = lost_characters(dropped)                  # the letters and digits among a clip's dropped characters
    error = text_loss_error("train", 12, 100, {"2": 5, "ş": 9}, 0.05)
"""

from __future__ import annotations

import unicodedata

from recipe.data.source import DataError
from recipe.text import character_kind

# How many characters of each kind an error message lists.
MAX_LISTED = 15


def lost_characters(dropped: str) -> str:
    """The letters, combining marks and digits among `dropped` (a clip's dropped characters, in text order):
    what the recording says and the model would not read. Punctuation, symbols and spacing are left out."""
    return "".join(char for char in dropped if character_kind(char) == "not_in_vocabulary")


def is_number(char: str) -> bool:
    """True for a digit or another number character (`²`, `½`): written out in words, never added as a letter."""
    return unicodedata.category(char)[0] == "N"


def _listed(characters: dict[str, int]) -> str:
    ordered = sorted(characters.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{char!r} x{count}" for char, count in ordered[:MAX_LISTED])
    return shown + (f" and {len(ordered) - MAX_LISTED} more" if len(ordered) > MAX_LISTED else "")


def text_loss_error(split: str, clips: int, considered: int, characters: dict[str, int], limit: float) -> DataError:
    """The error that stops a run whose split would lose more than `limit` of its clips to `text_not_in_vocabulary`.

    Args:
        split (`str`): the split's name.
        clips (`int`): clips whose text loses a letter or digit.
        considered (`int`): clips of the split (of the kept speakers).
        characters (`dict[str, int]`): lost character -> occurrences in the split.
        limit (`float`): `--max_text_not_in_vocabulary_fraction`.

    Returns:
        `DataError` naming the characters with their counts, and what to do about each kind.
    """
    letters = {char: count for char, count in characters.items() if not is_number(char)}
    numbers = {char: count for char, count in characters.items() if is_number(char)}
    advice = []
    if letters:
        advice.append(f"letters {_listed(letters)}: add them to the vocabulary with --extend_vocabulary")
    if numbers:
        advice.append(
            f"digits {_listed(numbers)}: write the numbers out in words in the text, as the recording says them "
            "(--extend_vocabulary does not add digits)"
        )
    return DataError(
        f"{split}: {clips} of {considered} clips ({clips / considered:.1%}) have letters or digits that the "
        f"tokenizer's vocabulary lacks, more than --max_text_not_in_vocabulary_fraction {limit}: they would be "
        f"dropped as text_not_in_vocabulary. {'; '.join(advice)}. Or train on them with these characters deleted "
        "from the text: --keep_clips_with_dropped_characters."
    )
