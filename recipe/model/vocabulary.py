"""New letters for an MMS vocabulary: find them in the data, add them to the tokenizer and the text embedding.

Only letters and combining marks are added. Digits are not: a digit is read as a word that depends on the number
around it ("2" is "du", "20" is "bîst"), which one embedding row cannot learn; numbers are written out in the text
instead. Punctuation, symbols and spacing are normalized away by design. `extend_vocabulary` lists what it skipped,
and why, in its report.

    tokenizer, report = extend_vocabulary(data_args, tokenizer)      # before the features are tokenized
    new_tokens = [entry["character"] for entry in report["added"]]   # the tokenizer: reloaded, with the new letters
    ...                                                              # prepare_datasets(..., tokenizer, ...)
    new_ids = extend_text_embeddings(vits, tokenizer, new_tokens, parse_init_map("ş:s,ê:e"))
    frozen = FrozenEmbeddingRows(vits.text_encoder.embed_tokens, trainable_ids=new_ids)
    trainer.add_callback(RestoreFrozenRowsCallback(frozen))

Order matters: the tokenizer is extended before `prepare_datasets` tokenizes the texts, so that the cached
`input_ids` hold the new ids (the feature cache key includes the vocabulary, so a cache built with the old one is
not reused).

`transformers.VitsModel.resize_token_embeddings` does not work (`get_input_embeddings` is not implemented for
VITS), so the text encoder's `embed_tokens` is replaced by hand and `config.vocab_size` updated: the saved model is a
plain `VitsModel` whose embedding has a row for every id of the saved tokenizer.

Frozen rows stay bit-identical through training: a gradient hook zeroes their gradient (so Adam's moments and the
clipping norm never see it), and because AdamW's decoupled weight decay shrinks a weight even when its gradient is
zero, the rows are also written back from a snapshot after every optimizer step.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import unicodedata
from collections import Counter

import torch
from torch import nn
from transformers import TrainerCallback, VitsTokenizer

from recipe.data.sources import load_source_from_args
from recipe.data.text_screening import is_number
from recipe.text import character_kind, count_dropped_characters

logger = logging.getLogger(__name__)


# Why `extend_vocabulary` leaves a dropped character out, by kind.
SKIP_REASONS = {
    "number": "a digit is said as a word that depends on the whole number: write numbers out in words in the text",
    "normalized_away": "punctuation, a symbol or spacing: the tokenizer strips it by design, the model never hears it",
}


def _skip_reason(char: str) -> str | None:
    """Why `char` is not added to the vocabulary (a key of `SKIP_REASONS`), or `None` for a letter or mark."""
    if character_kind(char) == "normalized_away":
        return "normalized_away"
    return "number" if is_number(char) else None


def source_texts(data_args, token: str | None = None) -> list[str]:
    """The raw texts of the training split and the eval split (when the source has one) that `data_args` names."""
    source = load_source_from_args(data_args, token=token)
    names = [data_args.train_split_name]
    eval_name = data_args.eval_split_name or source.default_eval_split
    if eval_name and eval_name != data_args.train_split_name:
        names.append(eval_name)
    texts = []
    for name in names:
        split = source.split(name)
        # `top` and `best` are chosen later, from the audio: every speaker's letters count
        if data_args.speaker_id not in (None, "top", "best") and source.speaker_column is not None:
            # letters of the kept speaker only: rows for letters nobody trains would stay at their initialization
            speakers = split[source.speaker_column]
            texts += [
                text
                for text, speaker in zip(split[source.text_column], speakers)
                if str(speaker) == data_args.speaker_id
            ]
        else:
            texts += split[source.text_column]
    return texts


def extend_tokenizer(tokenizer: VitsTokenizer, characters) -> tuple[VitsTokenizer, list[str]]:
    """A copy of `tokenizer` whose vocabulary also holds `characters`, with ids after the existing ones.

    The copy is saved and reloaded through `save_pretrained` / `from_pretrained`, so it behaves exactly as the saved
    tokenizer will; its runtime settings (`phonemize`, `normalize`, `is_uroman`, `add_blank`) are kept.

    Args:
        tokenizer (`VitsTokenizer`): left unchanged.
        characters (iterable of `str`): single characters to add; those already in the vocabulary are skipped. They
            get ids in code-point order, so that every process of a distributed run builds the same vocabulary.

    Returns:
        `tuple(VitsTokenizer, list[str])`: the extended tokenizer and the characters added, in id order.

    Raises:
        `ValueError` for an entry that is not one character, or a vocabulary whose ids are not 0..n-1.
    """
    vocabulary = dict(tokenizer.encoder)
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError("The tokenizer's ids are not 0..n-1: new characters cannot be appended after them")
    new_tokens = []
    for char in sorted(set(characters)):
        if len(char) != 1:
            raise ValueError(f"Vocabulary extension adds single characters, got {char!r}")
        if char not in vocabulary:
            new_tokens.append(char)
    for offset, char in enumerate(new_tokens):
        vocabulary[char] = len(tokenizer.encoder) + offset
    settings = {name: getattr(tokenizer, name) for name in ("phonemize", "normalize", "is_uroman", "add_blank")}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
            json.dump(vocabulary, handle, ensure_ascii=False, indent=2, sort_keys=True)
        extended = VitsTokenizer.from_pretrained(folder)
    for name, value in settings.items():
        setattr(extended, name, value)
    if new_tokens:
        logger.info("Added %d characters to the vocabulary: %s", len(new_tokens), "".join(new_tokens))
    return extended, new_tokens


def parse_init_map(spec: str | None) -> dict[str, str]:
    """`"ş:s,ê:e"` -> `{"ş": "s", "ê": "e"}`: each new character's row starts as the row of a similar one.

    Raises:
        `ValueError` naming the entry that is not `new:existing` with one character on each side.
    """
    if not spec:
        return {}
    mapping = {}
    for entry in spec.split(","):
        parts = [unicodedata.normalize("NFC", part.strip()) for part in entry.split(":")]
        if len(parts) != 2 or len(parts[0]) != 1 or len(parts[1]) != 1:
            raise ValueError(
                f"--init_new_tokens_from: {entry.strip()!r} is not 'new:similar' with one character on each side "
                "(e.g. 'ş:s,ê:e')"
            )
        mapping[parts[0]] = parts[1]
    return mapping


def extend_text_embeddings(
    vits, tokenizer: VitsTokenizer, new_tokens: list[str], init_from: dict[str, str] | None = None
) -> list[int]:
    """Give every id of the extended `tokenizer` a row in the text encoder's embedding; returns the new tokens' ids.

    A new row starts as the row of the declared similar character (`init_from`) or else as the mean of the model's
    existing rows: a neutral start that the new letter's clips move from, instead of a random vector far from
    every trained row. `vits.config.vocab_size` is updated so that the model saves and reloads with the new size.

    Args:
        vits (`VitsModel`): modified in place.
        tokenizer (`VitsTokenizer`): the extended tokenizer (from `extend_tokenizer`).
        new_tokens (`list[str]`): the characters `extend_tokenizer` added.
        init_from (`dict[str, str]`, *optional*): new character -> existing character whose row it copies.

    Raises:
        `ValueError` when a similar character is not in the model's original vocabulary, or a new token is missing
        from the tokenizer.
    """
    init_from = init_from or {}
    for char in init_from:
        if char not in new_tokens:
            logger.warning(
                "--init_new_tokens_from names %r, which is not a new character: nothing to initialize", char
            )
    vocabulary = tokenizer.get_vocab()
    missing = [char for char in new_tokens if char not in vocabulary]
    if missing:
        raise ValueError(f"New tokens {missing} are not in the tokenizer's vocabulary: extend the tokenizer first")
    new_ids = [vocabulary[char] for char in new_tokens]
    old = vits.text_encoder.embed_tokens
    old_size = old.num_embeddings
    new_id_set = set(new_ids)
    original_ids = [i for i in range(old_size) if i not in new_id_set]
    new_size = max([old_size, *[i + 1 for i in new_ids]])
    embedding = nn.Embedding(new_size, old.embedding_dim, padding_idx=old.padding_idx)
    embedding.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        embedding.weight[:old_size] = old.weight
        mean_row = old.weight[original_ids].mean(dim=0)
        for char, token_id in zip(new_tokens, new_ids):
            similar = init_from.get(char)
            if similar is None:
                embedding.weight[token_id] = mean_row
                continue
            similar_id = vocabulary.get(similar)
            if similar_id is None or similar_id in new_id_set or similar_id >= old_size:
                raise ValueError(
                    f"--init_new_tokens_from {char}:{similar}: {similar!r} is not in the model's original vocabulary"
                )
            embedding.weight[token_id] = old.weight[similar_id]
    embedding.weight.requires_grad_(old.weight.requires_grad)
    vits.text_encoder.embed_tokens = embedding
    vits.config.vocab_size = new_size
    return new_ids


class FrozenEmbeddingRows:
    """Keeps every row of `embedding` except `trainable_ids` bit-identical through training.

    A gradient hook zeroes the frozen rows' gradient; `restore()`, called after each optimizer step, writes them back
    from a snapshot, which undoes AdamW's weight decay (it moves a weight whatever its gradient). The embedding's
    weight is set trainable, so that the new rows learn even with `--freeze_text_encoder`.

    Args:
        embedding (`nn.Embedding`): the text encoder's `embed_tokens`.
        trainable_ids (`list[int]`): rows that learn (the new tokens); all others are frozen.
    """

    def __init__(self, embedding: nn.Embedding, trainable_ids: list[int]):
        self.embedding = embedding
        trainable = torch.zeros(embedding.num_embeddings, 1, dtype=torch.bool)
        trainable[list(trainable_ids)] = True
        self.trainable_ids = sorted(trainable_ids)
        self.frozen_ids = (~trainable.squeeze(1)).nonzero().squeeze(1)
        self.snapshot = embedding.weight.detach()[self.frozen_ids].clone()
        self._mask = trainable.to(embedding.weight.dtype)
        embedding.weight.requires_grad_(True)
        self._handle = embedding.weight.register_hook(self._mask_gradient)

    def _mask_gradient(self, gradient: torch.Tensor) -> torch.Tensor:
        if self._mask.device != gradient.device or self._mask.dtype != gradient.dtype:
            self._mask = self._mask.to(device=gradient.device, dtype=gradient.dtype)
        return gradient * self._mask

    @torch.no_grad()
    def restore(self) -> None:
        """Write the frozen rows back from the snapshot (after an optimizer step)."""
        weight = self.embedding.weight
        if self.snapshot.device != weight.device:  # the Trainer moves the model after this was built
            self.snapshot = self.snapshot.to(weight.device)
            self.frozen_ids = self.frozen_ids.to(weight.device)
        weight.index_copy_(0, self.frozen_ids, self.snapshot.to(weight.dtype))

    def remove(self) -> None:
        """Detach the gradient hook."""
        self._handle.remove()


class RestoreFrozenRowsCallback(TrainerCallback):
    """Calls `FrozenEmbeddingRows.restore` after every optimizer step of a `Trainer`."""

    def __init__(self, frozen: FrozenEmbeddingRows):
        self.frozen = frozen

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.frozen.restore()


def extend_vocabulary(
    data_args, tokenizer: VitsTokenizer, min_count: int = 1, token: str | None = None
) -> tuple[VitsTokenizer, dict]:
    """Scan the data, add the letters and marks it uses and the tokenizer lacks; returns the tokenizer and a report.

    Digits, punctuation, symbols and spacing the tokenizer drops are never added: each is listed under `skipped`
    with the reason (`SKIP_REASONS`), and logged.

    Args:
        data_args (`DataArguments`): the data whose raw texts are scanned, without decoding any audio (`source_texts`:
            the training split and the eval split, one speaker's texts with `--speaker_id ID`).
        tokenizer (`VitsTokenizer`): left unchanged.
        min_count (`int`, *optional*, defaults to 1): letters seen fewer times are not added.
        token (`str`, *optional*): Hub token, for a private dataset.

    Returns:
        `tuple(VitsTokenizer, dict)`: the extended tokenizer (or `tokenizer` itself when no letter is missing) and
        `{"added": [{"character", "name", "count", "id"}], "skipped": [{"character", "name", "count", "reason"}],
        "vocab_size_before", "vocab_size_after"}`.
    """
    dropped = count_dropped_characters(source_texts(data_args, token=token), tokenizer)
    letters = Counter(
        {char: count for char, count in dropped.items() if _skip_reason(char) is None and count >= min_count}
    )
    skipped = [
        {"character": char, "name": _name(char), "count": count, "reason": SKIP_REASONS[_skip_reason(char)]}
        for char, count in dropped.most_common()
        if _skip_reason(char) is not None
    ]
    for kind, reason in SKIP_REASONS.items():
        chars = [entry for entry in skipped if entry["reason"] == reason]
        if chars:
            listed = ", ".join(f"{entry['character']!r} x{entry['count']}" for entry in chars[:20])
            # a skipped digit is a clip that will be dropped (`text_not_in_vocabulary`) unless the text is rewritten
            level = logging.WARNING if kind == "number" else logging.INFO
            logger.log(level, "--extend_vocabulary does not add %s (%s): %s", listed, kind, reason)
    before = len(tokenizer.get_vocab())
    report = {"added": [], "skipped": skipped, "vocab_size_before": before, "vocab_size_after": before}
    if not letters:
        return tokenizer, report
    extended, added = extend_tokenizer(tokenizer, letters)
    vocabulary = extended.get_vocab()
    report["added"] = [
        {"character": char, "name": _name(char), "count": letters[char], "id": vocabulary[char]} for char in added
    ]
    report["vocab_size_after"] = len(vocabulary)
    return extended, report


def _name(char: str) -> str:
    return unicodedata.name(char, f"U+{ord(char):04X}")


def prepare_embeddings_for_training(
    vits, new_ids: list[int], freeze_original: bool
) -> tuple[FrozenEmbeddingRows | None, list[TrainerCallback]]:
    """After `prepare_for_training`: the frozen-row guard the flags ask for, and the callbacks the Trainer needs.

    The original rows are frozen when `freeze_original` is set, and also when the text encoder is frozen
    (`--freeze_text_encoder`) but new rows were added: they would otherwise never learn, and the new letters would
    keep their initial rows.

    Returns:
        `tuple(FrozenEmbeddingRows | None, list[TrainerCallback])`.
    """
    embedding = vits.text_encoder.embed_tokens
    text_encoder_frozen = not embedding.weight.requires_grad
    if not freeze_original and not (text_encoder_frozen and new_ids):
        return None, []
    if not new_ids:
        # nothing new to learn: every row is an original one
        embedding.weight.requires_grad_(False)
        return None, []
    if not freeze_original:
        logger.info("The text encoder is frozen: only the %d new embedding rows will learn", len(new_ids))
    frozen = FrozenEmbeddingRows(embedding, trainable_ids=new_ids)
    return frozen, [RestoreFrozenRowsCallback(frozen)]
