"""Text normalization: the tokenizer's own rules, NFC, uroman once per process, and the dropped-character count."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest
from conftest import DEMO_DIR

import recipe.text
from recipe.text import (
    encode_text,
    encode_text_with_dropped,
    get_uroman,
    normalize_text,
    pre_vocabulary_text,
    summarize_dropped_characters,
)


def dropped_characters(text: str, tokenizer) -> Counter:
    return encode_text_with_dropped(text, tokenizer)[2]


def reference_dropped_characters(text: str, tokenizer) -> Counter:
    """Independent of the one-pass code: NFC and uroman, the tokenizer's public lowercasing, then `get_vocab()`."""
    if tokenizer.phonemize:
        return Counter()
    prepared = pre_vocabulary_text(text, tokenizer)
    if tokenizer.normalize:
        prepared = tokenizer.normalize_text(prepared)
    vocabulary = tokenizer.get_vocab()
    return Counter(char for char in prepared if char not in vocabulary)


def test_ids_are_what_the_tokenizer_gives(tokenizer):
    text = "Roj baş, tu çawa yî? ÎRO Xweş!"
    normalized, ids = encode_text(text, tokenizer)
    assert normalized == "roj baş tu çawa yî îro xweş"
    assert ids == tokenizer(text).input_ids
    assert ids[0::2] == [tokenizer.pad_token_id] * (len(normalized) + 1)  # add_blank


def test_decomposed_letters_are_kept(tokenizer):
    decomposed = unicodedata.normalize("NFD", "Şev baş, xewa xweş.")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    # the tokenizer alone strips the combining marks; the recipe's normalization keeps the letters
    assert tokenizer.decode(tokenizer(decomposed).input_ids) == "sev bas xewa xwes"
    assert normalize_text(decomposed, tokenizer) == "şev baş xewa xweş"
    assert not [char for char in dropped_characters(decomposed, tokenizer) if char.isalpha()]


def test_uroman_romanizes_for_an_is_uroman_tokenizer(tokenizer, tmp_path):
    from transformers import VitsTokenizer

    romanizing = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"), is_uroman=True)
    normalized, ids = encode_text("Привет, мир!", romanizing)
    assert normalized == "privet mir"
    assert ids == romanizing(normalized).input_ids
    assert not dropped_characters("Привет, мир!", romanizing) - Counter(",!")
    # without is_uroman the Cyrillic letters are lost, and counted
    assert dropped_characters("Привет", tokenizer) == Counter("привет")
    assert normalize_text("Привет", tokenizer) == ""


def test_one_uroman_instance_per_process(monkeypatch):
    built = []

    class FakeUroman:
        def __init__(self):
            built.append(self)

    import uroman

    monkeypatch.setattr(uroman, "Uroman", FakeUroman)
    monkeypatch.setattr(recipe.text, "_UROMAN_BY_PID", {})
    first = get_uroman()
    assert get_uroman() is first and len(built) == 1
    # a forked worker (another pid) builds its own instead of using its parent's
    monkeypatch.setattr(recipe.text.os, "getpid", lambda: -1)
    assert get_uroman() is not first and len(built) == 2


def test_phonemizing_tokenizer_reports_no_dropped_characters(tmp_path):
    from transformers import VitsTokenizer

    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 1}), encoding="utf-8")
    phonemizing = VitsTokenizer(str(tmp_path / "vocab.json"), phonemize=True)
    # espeak is not installed for the tests: stand in for it (every letter of the text is outside the vocabulary)
    phonemizing.prepare_for_tokenization = lambda text, **kwargs: ("həˈloʊ", kwargs)
    assert dropped_characters("Hello", phonemizing) == Counter()


def test_summary_lists_top_characters_with_names():
    dropped = Counter({"ê": 5, ",": 3, **{chr(0x430 + i): 1 for i in range(25)}})
    summary = summarize_dropped_characters(dropped, total_characters=100)
    assert summary["total"] == 33 and summary["fraction"] == pytest.approx(0.33)
    assert summary["letters_fraction"] == pytest.approx(0.30)
    assert len(summary["top"]) == 20
    assert summary["top"][0] == {
        "character": "ê",
        "name": "LATIN SMALL LETTER E WITH CIRCUMFLEX",
        "count": 5,
        "is_letter": True,
    }
    assert summary["top"][1]["character"] == "," and not summary["top"][1]["is_letter"]


@pytest.mark.parametrize("options", [{}, {"normalize": False}, {"add_blank": False}, {"language": "ron"}])
def test_one_pass_encoding_matches_the_tokenizer(tokenizer, options):
    from transformers import VitsTokenizer

    variant = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"), **options) if options else tokenizer
    texts = [
        "Roj baş, tu çawa yî? ÎRO Xweş!",
        unicodedata.normalize("NFD", "Şev baş, xewa xweş."),
        "Ţară ȚARĂ €5 — Привет <unk>  ",
        "  ",
        "",
    ]
    for text in texts:
        normalized, ids, dropped, num_characters = encode_text_with_dropped(text, variant)
        # the reference: the tokenizer's own normalization and ids (after NFC), and the separate count
        assert normalized == normalize_text(text, variant)
        assert ids == variant(unicodedata.normalize("NFC", text), add_special_tokens=False).input_ids
        assert dropped == reference_dropped_characters(text, variant)
        lowered = unicodedata.normalize("NFC", text)
        assert num_characters == len(variant.normalize_text(lowered) if variant.normalize else lowered)
    assert encode_text_with_dropped("Xweş €!", tokenizer)[2] == Counter("€!")


def test_character_count_is_of_the_text_the_drops_are_counted_in(tokenizer):
    from transformers import VitsTokenizer

    # NFD: 9 code points, 7 letters and spaces after NFC, none of them dropped
    decomposed = unicodedata.normalize("NFD", "Şev baş")
    _, _, dropped, num_characters = encode_text_with_dropped(decomposed, tokenizer)
    assert (len(decomposed), num_characters, dropped) == (9, 7, Counter())
    # uroman writes "Щука" (4 characters) as "shchuka" (7): the drops and the count are both of the romanized text
    romanizing = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"), is_uroman=True)
    _, _, dropped, num_characters = encode_text_with_dropped("Щука!", romanizing)
    assert (num_characters, dropped) == (8, Counter("!"))
