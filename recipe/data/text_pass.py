"""The text pass: every clip's text normalized and tokenized once, before any audio is decoded.

    texts = encode_split(split, "train", settings, tokenizer, num_proc, cache_path)
    check_text_loss("train", split, texts, settings, data_args.max_text_not_in_vocabulary_fraction)

`encode_split` runs `encode_texts` in a `datasets.map` over the text (and speaker) column and gives each clip its
`TEXT_FEATURES` (the text the model reads, its `input_ids`, the characters the tokenizer dropped), which `featurize`
(`recipe.data.features`) then reads row for row. `check_text_loss` stops the run when too many clips of a split would
be dropped as `text_not_in_vocabulary`: a vocabulary that misses letters fails in seconds, not after the audio.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import datasets

from recipe.data.features import FeatureSettings, workers_for
from recipe.data.text_screening import lost_characters, text_loss_error
from recipe.text import encode_text_with_dropped

# What the text pass computes for each clip of a split, and `featurize` reads.
TEXT_FEATURES = {
    "__model_text": datasets.Value("string"),
    "__input_ids": datasets.List(datasets.Value("int32")),
    "__dropped_characters": datasets.Value("string"),
    "__num_characters": datasets.Value("int64"),
}
# Texts per batch of the text pass.
TEXT_BATCH_SIZE = 256


def encode_texts(texts: list, speakers: list | None = None, *, settings: FeatureSettings, tokenizer) -> dict:
    """The text pass, a `datasets.map(batched=True)` over the text (and speaker) column: each row's `TEXT_FEATURES`
    (`encode_text_with_dropped`).

    Rows of a speaker that is not kept are left empty: they are dropped as `speaker_filtered`, and uroman (2.7 ms a
    sentence) need not run on them.
    """
    speakers = speakers if speakers is not None else [""] * len(texts)
    columns = {name: [] for name in TEXT_FEATURES}
    for text, speaker in zip(texts, speakers):
        if settings.selected_speakers is not None and str(speaker) not in settings.selected_speakers:
            normalized, input_ids, dropped, num_characters = "", [], "", 0
        else:
            normalized, input_ids, counted, num_characters = encode_text_with_dropped(
                "" if text is None else str(text), tokenizer
            )
            dropped = "".join(counted.elements())
        columns["__model_text"].append(normalized)
        columns["__input_ids"].append(input_ids)
        columns["__dropped_characters"].append(dropped)
        columns["__num_characters"].append(num_characters)
    return columns


def encode_split(
    split: datasets.Dataset, name: str, settings: FeatureSettings, tokenizer, num_proc: int | None, cache_path: str
) -> datasets.Dataset:
    """The `TEXT_FEATURES` of `split`'s rows (`encode_texts`), row for row: an in-memory Arrow table of a few ids and
    strings per clip (compact to hand to worker processes), apart from the split, so that its audio is never copied."""
    columns = [settings.text_column] + ([settings.speaker_column] if settings.speaker_column else [])
    return split.map(
        encode_texts,
        fn_kwargs={"settings": settings, "tokenizer": tokenizer},
        input_columns=columns,
        batched=True,
        batch_size=TEXT_BATCH_SIZE,
        remove_columns=split.column_names,
        features=datasets.Features(TEXT_FEATURES),
        num_proc=workers_for(len(split), num_proc),
        keep_in_memory=True,
        # as for the features: the cache key names the content, so datasets need not hash the tokenizer with dill
        new_fingerprint=hashlib.sha256(f"{cache_path}:{name}:text".encode()).hexdigest()[:32],
        desc=f"Encoding the {name} texts",
    )


def check_text_loss(
    name: str, split: datasets.Dataset, texts: datasets.Dataset, settings: FeatureSettings, limit: float
) -> None:
    """Stop before featurizing `split` (whose `TEXT_FEATURES` are `texts`) when more than `limit` of its clips of the
    kept speakers would be dropped as `text_not_in_vocabulary` (`recipe.data.text_screening.text_loss_error`)."""
    if settings.keep_dropped_characters:
        return
    # read as lists: iterating a `datasets` column goes row by row (4.5 s for 100 000 rows)
    dropped_characters = texts.select_columns(["__dropped_characters"]).to_dict()["__dropped_characters"]
    if settings.speaker_column:
        speakers = split.select_columns([settings.speaker_column]).to_dict()[settings.speaker_column]
    else:
        speakers = [""] * len(split)
    considered, clips, characters = 0, 0, Counter()
    for dropped, speaker in zip(dropped_characters, speakers):
        if settings.selected_speakers is not None and str(speaker) not in settings.selected_speakers:
            continue
        considered += 1
        lost = lost_characters(dropped)
        if lost:
            clips += 1
            characters.update(lost)
    if considered and clips / considered > limit:
        raise text_loss_error(name, clips, considered, dict(characters), limit)
