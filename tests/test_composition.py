"""Precomposed letters through Piper's text mode: Piper's ids for the decomposed text, put through the graph's first
stage (`ComposeLetters`), must be the ids the model's tokenizer gives the text.

Piper's ids come from piper-tts itself (`phonemes_to_ids` on the NFD code points, as its text mode does).
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
import torch
from transformers import VitsTokenizer

from recipe.export.characters import character_vocabulary
from recipe.export.composition import ComposeLetters, letter_composition
from recipe.export.piper_layout import piper_id_map
from recipe.text import encode_text

phoneme_ids = pytest.importorskip("piper.phoneme_ids", reason='needs piper-tts: pip install -e ".[piper]"')

KURMANJI = ["<pad>", " ", "'", "-", *"abcdefghijklmnopqrstuvwxyz", *"çêîûş", "<unk>"]
# letters of one and two marks, where the one-mark step between `e` and `ệ` (`ẹ`) is not in the vocabulary, and a
# letter (`ơ`) that is both a letter and the base of longer ones (`ớ`, `ợ`)
VIETNAMESE_LIKE = ["<pad>", " ", *"abdeghnoôơtư", "ê", "ệ", "ớ", "ợ", "ấ", "ư", "<unk>"]


def tokenizer_for(tmp_path, vocabulary, add_blank=True):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({token: index for index, token in enumerate(dict.fromkeys(vocabulary))}), "utf-8")
    return VitsTokenizer(str(path), phonemize=False, add_blank=add_blank)


def stage_and_map(tokenizer):
    vocabulary = character_vocabulary(tokenizer)
    composition = letter_composition(vocabulary, len(tokenizer.encoder))
    return ComposeLetters(composition, vocabulary.add_blank), piper_id_map(vocabulary, composition)


def piper_ids(text, id_map):
    """What Piper's text mode sends for `text`."""
    return phoneme_ids.phonemes_to_ids(list(unicodedata.normalize("NFD", text)), id_map)


def composed(stage, rows):
    lengths = torch.tensor([len(row) for row in rows])
    batch = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = torch.tensor(row)
    ids, new_lengths = stage(batch, lengths)
    return [ids[index, :length].tolist() for index, length in enumerate(new_lengths.tolist())]


@pytest.mark.parametrize("add_blank", [True, False])
def test_kurmanji_letters_and_capitals_reach_the_model_as_its_ids(tmp_path, add_blank):
    tokenizer = tokenizer_for(tmp_path, KURMANJI, add_blank=add_blank)
    stage, id_map = stage_and_map(tokenizer)
    for text in ["Çima Şêrîn ji Gundê Hûr hat", "çç ş", "ÇÊÎÛŞ", "ç", "aç-ş'û"]:
        assert composed(stage, [piper_ids(text, id_map)]) == [encode_text(text, tokenizer)[1]], text


def test_letters_of_several_marks_compose_left_to_right(tmp_path):
    tokenizer = tokenizer_for(tmp_path, VIETNAMESE_LIKE)
    stage, id_map = stage_and_map(tokenizer)
    assert stage.num_passes == 2
    for text in ["ệ", "Ệ ê e", "ợ ơ ớ ô ấ", "Tợ Ơ ƠỚ", "tệ tơ hớn", "ư ơ ươ"]:
        assert composed(stage, [piper_ids(text, id_map)]) == [encode_text(text, tokenizer)[1]], text


@pytest.mark.parametrize("vocabulary", [KURMANJI, VIETNAMESE_LIKE], ids=["kurmanji", "vietnamese-like"])
def test_random_texts_of_what_the_model_keeps(tmp_path, vocabulary):
    tokenizer = tokenizer_for(tmp_path, vocabulary)
    stage, id_map = stage_and_map(tokenizer)
    alphabet = sorted(char for char in character_vocabulary(tokenizer).runtime_ids if not char.isspace()) + [" "] * 4
    generator = np.random.default_rng(0)
    # stripped: the tokenizer strips the ends of a text, Piper's API does not (its command does)
    texts = ["".join(generator.choice(alphabet, size=generator.integers(1, 12))).strip() or "a" for _ in range(200)]
    rows = [piper_ids(text, id_map) for text in texts]
    assert composed(stage, rows) == [encode_text(text, tokenizer)[1] for text in texts]


def test_what_composes_into_no_letter_is_read_as_piper_reads_it(tmp_path):
    tokenizer = tokenizer_for(tmp_path, VIETNAMESE_LIKE)
    stage, id_map = stage_and_map(tokenizer)
    # `ẹ` is on the way to `ệ` but not in the vocabulary: its base letter, as Piper alone speaks it; a mark after a
    # space, or one no letter has here, is dropped with its blank
    for text, spoken in [("ẹ", "e"), ("tẹt", "tet"), ("a \u0302b", "a b"), ("\u0323a", "a"), ("ñ", "n")]:
        assert composed(stage, [piper_ids(text, id_map)]) == [encode_text(spoken, tokenizer)[1]], text


def test_a_base_letter_the_vocabulary_lacks(tmp_path):
    tokenizer = tokenizer_for(tmp_path, ["<pad>", " ", *"abş"])  # `ş` but no `s`: Piper's map has no `S` either
    stage, id_map = stage_and_map(tokenizer)
    for text in ["aş sa", "Şa SA", "ŞŞ"]:
        assert composed(stage, [piper_ids(text, id_map)]) == [encode_text(text, tokenizer)[1]], text


def test_a_mark_piper_skips_rightly_needs_no_step(tmp_path):
    # `İ` is `I` + U+0307: the tokenizer reads it as `i`, and so does Piper, skipping the dot it has no id for
    tokenizer = tokenizer_for(tmp_path, ["<pad>", " ", *"abi"])
    assert letter_composition(character_vocabulary(tokenizer), len(tokenizer.encoder)) is None
    # with `ż` in the vocabulary the dot has an id, and after `I` it composes into nothing: dropped
    tokenizer = tokenizer_for(tmp_path, ["<pad>", " ", *"abiżz"])
    stage, id_map = stage_and_map(tokenizer)
    for text in ["İż", "aİ Ż"]:
        assert composed(stage, [piper_ids(text, id_map)]) == [encode_text(text, tokenizer)[1]], text


def test_rows_of_a_batch_compose_as_they_would_alone(tmp_path):
    tokenizer = tokenizer_for(tmp_path, VIETNAMESE_LIKE)
    stage, id_map = stage_and_map(tokenizer)
    texts = ["ệ tợ", "a", "ớớớ ê", ""]
    rows = [piper_ids(text, id_map) for text in texts]
    assert composed(stage, rows) == [encode_text(text, tokenizer)[1] for text in texts[:3]] + [[0]]


def test_stage_in_onnxruntime_equals_the_module(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    tokenizer = tokenizer_for(tmp_path, VIETNAMESE_LIKE)
    stage, id_map = stage_and_map(tokenizer)
    example = torch.tensor([piper_ids("ệ tợ ab", id_map)])
    path = str(tmp_path / "stage.onnx")
    torch.onnx.export(
        stage,
        (example, torch.tensor([example.shape[1]])),
        path,
        dynamo=False,
        opset_version=15,
        input_names=["input", "input_lengths"],
        output_names=["ids", "lengths"],
        dynamic_axes={"input": {0: "batch", 1: "tokens"}, "input_lengths": {0: "batch"}, "ids": {0: "batch", 1: "n"}},
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for texts in [["Tệ tợ hớn"], ["ợ", "ươ ấ ê"]]:
        rows = [piper_ids(text, id_map) for text in texts]
        batch = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for index, row in enumerate(rows):
            batch[index, : len(row)] = row
        ids, lengths = session.run(None, {"input": batch, "input_lengths": np.array([len(row) for row in rows])})
        assert [ids[index, :length].tolist() for index, length in enumerate(lengths)] == composed(stage, rows)


def test_no_stage_without_precomposed_letters(tmp_path):
    tokenizer = tokenizer_for(tmp_path, ["<pad>", " ", *"abc"])
    assert letter_composition(character_vocabulary(tokenizer), len(tokenizer.encoder)) is None
