"""Vocabulary extension: the report tells lost letters from stripped punctuation, the extended tokenizer and model
round-trip through save and load and read the new letters, and frozen original rows survive real AdamW steps."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from transformers import VitsModel, VitsTokenizer, set_seed

from recipe.data.pipeline import DataError, prepare_datasets
from recipe.model.preparation import prepare_for_training, save_for_inference
from recipe.model.vocabulary import (
    FrozenEmbeddingRows,
    RestoreFrozenRowsCallback,
    extend_text_embeddings,
    extend_tokenizer,
    extend_vocabulary,
    parse_init_map,
    prepare_embeddings_for_training,
    source_texts,
)
from recipe.text import character_kind, count_dropped_characters, summarize_dropped_characters
from recipe.training.arguments import DataArguments, ModelArguments

# The demo data's Kurmanji letters the reduced vocabulary below lacks.
REMOVED_LETTERS = ("ş", "ê")


@pytest.fixture
def reduced_tokenizer(tmp_path) -> VitsTokenizer:
    """The demo tokenizer without `ş` and `ê` (ids renumbered 0..n-1), as an MMS checkpoint lacking two letters."""
    vocabulary = json.loads((DEMO_DIR / "tiny_model" / "vocab.json").read_text(encoding="utf-8"))
    kept = sorted((token for token in vocabulary if token not in REMOVED_LETTERS), key=vocabulary.get)
    folder = tmp_path / "reduced_tokenizer"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(kept)}, ensure_ascii=False), "utf-8")
    config = json.loads((DEMO_DIR / "tiny_model" / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("added_tokens_decoder")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return VitsTokenizer.from_pretrained(str(folder))


def not_in_vocabulary(texts, tokenizer) -> dict[str, int]:
    """The letters, marks and digits of `texts` the tokenizer's vocabulary lacks (not what it strips by design)."""
    dropped = count_dropped_characters(texts, tokenizer)
    return {char: count for char, count in dropped.items() if character_kind(char) == "not_in_vocabulary"}


def test_missing_letters_are_told_apart_from_stripped_punctuation(reduced_tokenizer):
    texts = ["Roj baş, tu çawa yî?", "Navê min Azad e!", "Ez 3 sêv dixwim."]
    missing = not_in_vocabulary(texts, reduced_tokenizer)
    assert missing == {"ş": 1, "ê": 2, "3": 1}

    summary = summarize_dropped_characters(count_dropped_characters(texts, reduced_tokenizer), 50)
    assert summary["not_in_vocabulary"] == {"ê": 2, "ş": 1, "3": 1}
    assert summary["normalized_away"] == {",": 1, "?": 1, "!": 1, ".": 1}


def test_nfc_and_lowercase_happen_before_the_vocabulary_check(reduced_tokenizer):
    # "E" + combining circumflex is "ê" after NFC and lowercasing; "Ç" lowercases to "ç", which the vocabulary has.
    assert not_in_vocabulary(["E\u0302 Ç"], reduced_tokenizer) == {"ê": 1}


def test_data_report_lists_missing_letters_before_and_after_extension(tmp_path, reduced_tokenizer):
    data_args = DataArguments(
        dataset_name=str(DEMO_DIR / "kmr_ljspeech"), eval_fraction=0.125, cache_dir=str(tmp_path / "cache")
    )
    scanned = not_in_vocabulary(source_texts(data_args), reduced_tokenizer)
    assert set(scanned) == set(REMOVED_LETTERS) and all(count > 0 for count in scanned.values())

    config = make_tiny_config(vocab_size=len(reduced_tokenizer.get_vocab()))
    # Most clips lose a letter: the run stops before featurizing, naming the letters and the flag that adds them.
    with pytest.raises(DataError, match=r"train: 21 of 28 clips.*'ê' x\d+, 'ş' x\d+: add them .*--extend_vocabulary"):
        prepare_datasets(data_args, reduced_tokenizer, config, str(tmp_path / "before"))
    data_args.keep_clips_with_dropped_characters = True
    _, report = prepare_datasets(data_args, reduced_tokenizer, config, str(tmp_path / "before"))
    lost = {**report["train"]["dropped_characters"]["not_in_vocabulary"]}
    for char, count in report["eval"]["dropped_characters"]["not_in_vocabulary"].items():
        lost[char] = lost.get(char, 0) + count
    # The cheap scan of the raw texts counts what featurizing every clip counts.
    assert lost == dict(scanned)

    data_args.keep_clips_with_dropped_characters = False
    extended, vocabulary_report = extend_vocabulary(data_args, reduced_tokenizer)
    assert [entry["character"] for entry in vocabulary_report["added"]] == sorted(REMOVED_LETTERS)
    features, report = prepare_datasets(data_args, extended, config, str(tmp_path / "after"))
    assert report["train"]["dropped_characters"]["not_in_vocabulary"] == {}
    new_id = extended.get_vocab()["ş"]
    # The cache was rebuilt with the extended vocabulary: the new id is in the cached input_ids.
    assert any(new_id in ids for ids in features["train"]["input_ids"])


def test_extended_tokenizer_and_model_round_trip_and_read_the_new_letters(tmp_path, reduced_tokenizer):
    base_size = len(reduced_tokenizer.get_vocab())
    set_seed(0)
    vits = VitsModel(make_tiny_config(vocab_size=base_size))
    original_rows = vits.text_encoder.embed_tokens.weight.detach().clone()

    extended, added = extend_tokenizer(reduced_tokenizer, ["ş", "ê", "a"])  # "a" is already there
    assert added == ["ê", "ş"]
    assert reduced_tokenizer.get_vocab().get("ş") is None  # the original is left as it was
    new_ids = extend_text_embeddings(vits, extended, added, parse_init_map("ş:s"))
    assert new_ids == [base_size, base_size + 1]
    weight = vits.text_encoder.embed_tokens.weight
    vocabulary = extended.get_vocab()
    assert vits.config.vocab_size == base_size + 2
    assert torch.equal(weight[:base_size], original_rows)
    assert torch.equal(weight[vocabulary["ş"]], original_rows[vocabulary["s"]])
    assert torch.allclose(weight[vocabulary["ê"]], original_rows.mean(dim=0))

    prepare_for_training(vits)
    save_for_inference(vits, str(tmp_path / "model"))
    extended.save_pretrained(str(tmp_path / "model"))
    saved_vocabulary = json.loads((tmp_path / "model" / "vocab.json").read_text(encoding="utf-8"))
    assert saved_vocabulary["ş"] == vocabulary["ş"] and saved_vocabulary["ê"] == vocabulary["ê"]

    tokenizer = VitsTokenizer.from_pretrained(str(tmp_path / "model"))
    model = VitsModel.from_pretrained(str(tmp_path / "model")).eval()
    assert tokenizer.phonemize is False
    inputs = tokenizer("baş ê", return_tensors="pt")
    assert vocabulary["ş"] in inputs["input_ids"][0].tolist() and vocabulary["ê"] in inputs["input_ids"][0].tolist()
    assert torch.equal(model.text_encoder.embed_tokens.weight, weight.detach())
    set_seed(0)
    speech = model(**inputs).waveform
    assert speech.shape[-1] > 0 and torch.isfinite(speech).all()
    # The ids reach the new rows: changing the row of "ş" changes the speech of a text holding "ş".
    with torch.no_grad():
        model.text_encoder.embed_tokens.weight[vocabulary["ş"]] += 1.0
    set_seed(0)
    changed = model(**inputs).waveform
    assert changed.shape != speech.shape or not torch.allclose(changed, speech)


def _adamw_steps(vits, token_ids: torch.Tensor, steps: int, frozen: FrozenEmbeddingRows | None) -> None:
    """Real AdamW steps with weight decay on a loss of the text encoder's output."""
    optimizer = torch.optim.AdamW(vits.text_encoder.parameters(), lr=1e-2, weight_decay=0.1)
    if frozen is not None:
        optimizer.register_step_post_hook(lambda *_: frozen.restore())
    for _ in range(steps):
        output = vits.text_encoder(input_ids=token_ids, padding_mask=torch.ones(*token_ids.shape, 1))
        loss = output.last_hidden_state.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_original_rows_stay_bit_identical_while_new_rows_learn(reduced_tokenizer):
    base_size = len(reduced_tokenizer.get_vocab())
    set_seed(0)
    vits = VitsModel(make_tiny_config(vocab_size=base_size))
    extended, added = extend_tokenizer(reduced_tokenizer, REMOVED_LETTERS)
    new_ids = extend_text_embeddings(vits, extended, added)
    embedding = vits.text_encoder.embed_tokens
    before = embedding.weight.detach().clone()
    encoder_weight = next(vits.text_encoder.encoder.parameters())
    encoder_before = encoder_weight.detach().clone()
    frozen = FrozenEmbeddingRows(embedding, trainable_ids=new_ids)
    token_ids = extended("roj baş, navê min", return_tensors="pt")["input_ids"]

    _adamw_steps(vits, token_ids, steps=3, frozen=frozen)
    after = embedding.weight.detach()
    assert torch.equal(after[:base_size], before[:base_size])
    assert all(not torch.equal(after[i], before[i]) for i in new_ids)
    # The rest of the text encoder trained.
    assert not torch.equal(encoder_weight.detach(), encoder_before)

    # Without the restore after the step, weight decay alone moves the frozen rows: the test above can fail.
    frozen.remove()
    masked_only = FrozenEmbeddingRows(embedding, trainable_ids=new_ids)
    before = embedding.weight.detach().clone()
    _adamw_steps(vits, token_ids, steps=1, frozen=None)
    assert not torch.equal(embedding.weight.detach()[:base_size], before[:base_size])
    masked_only.remove()


def test_new_rows_learn_under_a_frozen_text_encoder(reduced_tokenizer):
    vits = VitsModel(make_tiny_config(vocab_size=len(reduced_tokenizer.get_vocab())))
    extended, added = extend_tokenizer(reduced_tokenizer, REMOVED_LETTERS)
    new_ids = extend_text_embeddings(vits, extended, added)
    prepare_for_training(vits, ModelArguments(freeze_text_encoder=True))
    assert not vits.text_encoder.embed_tokens.weight.requires_grad
    # Without --freeze_original_embeddings too: the new rows would otherwise keep their initial values.
    frozen, callbacks = prepare_embeddings_for_training(vits, new_ids, freeze_original=False)
    assert vits.text_encoder.embed_tokens.weight.requires_grad
    assert frozen.trainable_ids == new_ids and isinstance(callbacks[0], RestoreFrozenRowsCallback)


def test_freezing_original_rows_without_new_ones_freezes_the_embedding(reduced_tokenizer):
    vits = VitsModel(make_tiny_config(vocab_size=len(reduced_tokenizer.get_vocab())))
    prepare_for_training(vits)
    assert prepare_embeddings_for_training(vits, [], freeze_original=True) == (None, [])
    assert not vits.text_encoder.embed_tokens.weight.requires_grad
    assert any(p.requires_grad for p in vits.text_encoder.encoder.parameters())
    # Nothing asked, nothing changed.
    other = VitsModel(make_tiny_config(vocab_size=len(reduced_tokenizer.get_vocab())))
    assert prepare_embeddings_for_training(other, [], freeze_original=False) == (None, [])
    assert other.text_encoder.embed_tokens.weight.requires_grad


@pytest.mark.parametrize("spec", ["ş", "ş:s:x", "şş:s", "ş:", ":s"])
def test_bad_init_map_entries_name_the_entry(spec):
    with pytest.raises(ValueError, match="new:similar"):
        parse_init_map(spec)


def test_init_from_a_letter_outside_the_original_vocabulary_is_refused(reduced_tokenizer):
    vits = VitsModel(make_tiny_config(vocab_size=len(reduced_tokenizer.get_vocab())))
    extended, added = extend_tokenizer(reduced_tokenizer, REMOVED_LETTERS)
    with pytest.raises(ValueError, match="ê:ş"):
        extend_text_embeddings(vits, extended, added, {"ê": "ş"})


def test_vocabulary_flags_need_extend_vocabulary():
    with pytest.raises(ValueError, match="--freeze_original_embeddings only applies"):
        ModelArguments(freeze_original_embeddings=True)
    assert parse_init_map("ş:s, ê:e") == {"ş": "s", "ê": "e"}


# Cyrillic -> Latin for the letters of the texts below: a stand-in for uroman, whose real tables take seconds to load
# per process (the real romanization is tested in test_text.py); what is tested here is how often it is built.
_CYRILLIC = {
    **dict(zip("абвгдеиклмнопрстуяПКДСН", "abvgdeiklmnoprstuyaPKDSN")),
    **{"х": "kh", "Х": "Kh", "ш": "sh"},
}


def _romanize(text: str) -> str:
    return "".join(_CYRILLIC.get(char, char) for char in text)


class _CountingUroman:
    """Stands in for `uroman.Uroman`: records the building process's id in a file, romanizes with `_CYRILLIC`."""

    log_path = None

    def __init__(self):
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")

    def romanize_string(self, text: str) -> str:
        return _romanize(text)


def test_uroman_is_built_once_per_worker_and_the_report_shows_examples(tmp_path, monkeypatch):
    import uroman

    import recipe.data.features
    import recipe.text

    texts = ["Привет мир", "Как дела", "Доброе утро", "Спасибо", "Хорошо", "До свидания", "Да", "Нет"]
    folder = tmp_path / "cyrillic"
    (folder / "wavs").mkdir(parents=True)
    lines = []
    for index, text in enumerate(texts):
        shutil.copy(DEMO_DIR / "kmr_ljspeech" / "wavs" / f"KMR-{index + 1:04d}.wav", folder / "wavs" / f"C{index}.wav")
        lines.append(f"C{index}|{text}|{text}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocabulary = {"<pad>": 0, " ": 1, **{chr(ord("a") + i): i + 2 for i in range(26)}, "<unk>": 28}
    (tmp_path / "vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    tokenizer = VitsTokenizer(str(tmp_path / "vocab.json"), phonemize=False, is_uroman=True)

    _CountingUroman.log_path = str(tmp_path / "constructions.log")
    monkeypatch.setattr(uroman, "Uroman", _CountingUroman)
    monkeypatch.setattr(recipe.text, "_UROMAN_BY_PID", {})
    # 8 clips are far too few for a worker pool to pay (recipe.data runs them in the main process): force the pool
    monkeypatch.setattr(recipe.data.features, "MIN_CLIPS_PER_WORKER", 1)
    # demo recordings under other sentences: their speaking rates are far apart, not what this test is about
    data_args = DataArguments(
        dataset_name=str(folder),
        eval_fraction=0.25,
        preprocessing_num_workers=2,
        cache_dir=str(tmp_path / "cache"),
        max_rate_deviation=0,
    )
    features, report = prepare_datasets(data_args, tokenizer, make_tiny_config(vocab_size=29), str(tmp_path / "out"))

    builders = (tmp_path / "constructions.log").read_text().split()
    # one map per split, two worker processes each: at most 4 builds for 8 clips, and never two in one process
    assert len(builders) == len(set(builders)) <= 4
    assert str(os.getpid()) not in builders  # the main process romanized nothing itself
    romanized = [_romanize(text).lower() for text in texts]
    assert sorted(list(features["train"]["text"]) + list(features["eval"]["text"])) == sorted(romanized)
    # The report shows up to 5 clips per split before and after romanization (6 train and 2 eval clips here).
    examples = report["train"]["uroman_examples"] + report["eval"]["uroman_examples"]
    assert len(examples) == 7
    assert {(example["text"], example["model_text"]) for example in examples} <= set(zip(texts, romanized))


def test_tokenizer_kind_tells_letters_phonemes_and_piper_phonemes_apart():
    from recipe.piper.tokenizer import PiperPhonemeTokenizer
    from recipe.voices import tokenizer_kind

    letters = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model")
    phonemes = VitsTokenizer.from_pretrained(DEMO_DIR / "tiny_model", phonemize=True)
    id_map = {"_": [0], "^": [1], "$": [2], "a": [3]}
    piper = PiperPhonemeTokenizer({"audio": {"sample_rate": 22050}, "phoneme_type": "text", "phoneme_id_map": id_map})
    assert [tokenizer_kind(t) for t in (letters, phonemes, piper)] == ["characters", "phonemes", "piper_phonemes"]
    with pytest.raises(TypeError, match="str is not a voice tokenizer"):
        tokenizer_kind("a tokenizer's name")
