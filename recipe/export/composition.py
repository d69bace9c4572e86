"""Precomposed letters through Piper's text mode: the model's one id rebuilt from a base letter and its marks.

Piper's text mode decomposes the text (NFD) before it looks characters up, so a vocabulary letter such as Kurmanji
`ç` reaches the graph as `c` then U+0327 COMBINING CEDILLA, each followed by the blank, where the model was trained on
the one id of `ç`. `letter_composition` gives each code point of such a decomposition an id Piper can send (the
model's own id when the model has the character, a new id past the vocabulary otherwise) and a table of steps
`(letter so far, next code point) -> letter`; `ComposeLetters` runs those steps inside the exported graph, before the
text encoder, so that the encoder reads exactly the tokenizer's ids.

What Piper sends that composes into no vocabulary letter keeps Piper's own reading of it: the base letter is spoken
and a mark the model has no id for is dropped with the blank before it (`ñ` with no `ñ` in the vocabulary is `n`,
as without this stage).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import torch
from torch import nn

from recipe.export.characters import describe
from recipe.export.errors import ExportError

DROP = -1  # `final_ids` value: delete the token (and the blank before it)


@dataclass
class LetterComposition:
    """How Piper's ids for decomposed letters become the model's ids.

    Args:
        extra_ids (`dict[str, int]`): code points of the vocabulary letters' decompositions that the model has no id
            for (combining marks, mostly) -> the id Piper sends for them, from the model's vocabulary size up.
        steps (`dict[tuple[int, int], int]`): `(id of the letter so far, id of the next code point) -> id of the
            letter with it`; a letter "so far" that the vocabulary lacks (`e` + dot below, on the way to `ệ`) has an
            id of its own, past `extra_ids`.
        final_ids (`dict[int, int]`): what the ids past the vocabulary become once no step applies: an unfinished
            letter its base letter's id (or `DROP` when the model has no base letter), a lone code point `DROP`.
        num_ids (`int`): the ids the graph accepts, the vocabulary's and the new ones.
        max_steps (`int`): the most code points after the base letter in one decomposition.
    """

    extra_ids: dict[str, int]
    steps: dict[tuple[int, int], int]
    final_ids: dict[int, int]
    num_ids: int
    max_steps: int


def sendable_ids(vocabulary) -> dict[str, int]:
    """The characters the model keeps that Piper can send as they are (NFD leaves them alone) -> the model's ids."""
    return {
        char: index for char, index in vocabulary.runtime_ids.items() if unicodedata.normalize("NFD", char) == char
    }


def split_letters(vocabulary) -> list[str]:
    """The characters the model keeps (`runtime_ids`, upper case included) that Piper cannot read on its own: NFD
    splits them, and the ids of their parts that Piper would send (skipping what its map lacks) are not the model's
    one id. `İ` -> `I` + U+0307 with only `i` in the vocabulary reads right without help (the dot is skipped);
    `ç` -> `c` + U+0327 does not."""
    sent_ids = sendable_ids(vocabulary)
    return sorted(
        char
        for char, index in vocabulary.runtime_ids.items()
        if unicodedata.normalize("NFD", char) != char
        and [sent_ids[part] for part in unicodedata.normalize("NFD", char) if part in sent_ids] != [index]
    )


def letter_composition(vocabulary, vocab_size: int) -> LetterComposition | None:
    """The `LetterComposition` of a `CharacterVocabulary` (`recipe.export.characters`), `None` when Piper reads
    every character the model keeps without help (see `split_letters`).

    Args:
        vocabulary (`CharacterVocabulary`): the model's characters and `runtime_ids` (every character the model
            keeps -> its id, upper case included).
        vocab_size (`int`): the model's `vocab_size`; new ids start there.

    Raises:
        `ExportError` when two letters that Piper sends alike are different letters for the model (no vocabulary
        seen so far has such a pair).
    """
    split = split_letters(vocabulary)
    if not split:
        return None
    sent_ids = sendable_ids(vocabulary)
    decompositions = {char: unicodedata.normalize("NFD", char) for char in split}
    extra_ids: dict[str, int] = {}
    for decomposition in decompositions.values():
        for part in decomposition:
            if part not in sent_ids and part not in extra_ids:
                extra_ids[part] = vocab_size + len(extra_ids)
    piper_ids = {**sent_ids, **extra_ids}

    # A letter composes one code point at a time: each step goes from the letter so far to the letter with the next
    # code point, a letter the model keeps (its id) or one on the way that it lacks (a new id).
    final_ids: dict[int, int] = {index: DROP for index in extra_ids.values()}
    next_id = vocab_size + len(extra_ids)
    steps: dict[tuple[int, int], int] = {}
    for decomposition in sorted(decompositions.values(), key=lambda text: (len(text), text)):
        state = piper_ids[decomposition[0]]
        for end in range(2, len(decomposition) + 1):
            key = (state, piper_ids[decomposition[end - 1]])
            target = vocabulary.runtime_ids.get(unicodedata.normalize("NFC", decomposition[:end]))
            if key in steps:
                if target is not None and steps[key] != target:
                    raise ExportError(
                        "Piper's text mode cannot express this vocabulary: it sends "
                        f"{describe([unicodedata.normalize('NFC', decomposition[:end])])} like another letter the "
                        "model reads differently. Export to sherpa-onnx or onnx instead."
                    )
            else:
                if target is None:
                    # a letter on the way that the model lacks is read as the longest part of it the model has
                    target, next_id = next_id, next_id + 1
                    final_ids[target] = final_ids.get(state, state)
                steps[key] = target
            state = steps[key]
    return LetterComposition(
        extra_ids=extra_ids,
        steps=steps,
        final_ids=final_ids,
        num_ids=next_id,
        max_steps=max(len(decomposition) - 1 for decomposition in decompositions.values()),
    )


class ComposeLetters(nn.Module):
    """The graph's first stage for a Piper text-mode voice: Piper's ids in, the tokenizer's ids out.

    Each pass looks at every token and the character before it (`stride` back: 2 with the blank between
    characters, 1 without): where `(character before, token)` is a step, the character becomes the composed letter,
    and the token is deleted with the blank before it. A token whose own character before it is composing in the
    same pass waits for the next pass, so that letters of several marks compose left to right. After `max_steps`
    passes, `final_ids` settles what is left. Every pass keeps the batch's rows apart and returns new lengths; it is
    traced into the ONNX graph (Gather, TopK), so it runs in any runtime that runs the rest of the graph.

    Args:
        composition (`LetterComposition`): the steps and final ids.
        add_blank (`bool`): the tokenizer puts a blank between characters.
    """

    def __init__(self, composition: LetterComposition, add_blank: bool):
        super().__init__()
        self.stride = 2 if add_blank else 1
        self.num_passes = composition.max_steps
        num_ids = composition.num_ids
        followers = sorted({follower for _, follower in composition.steps})
        # column of each id among the code points that can follow a letter; the last column: "follows nothing"
        column = torch.full((num_ids,), len(followers), dtype=torch.long)
        for position, follower in enumerate(followers):
            column[follower] = position
        # one row per id, and a last row for "no character before" (the start of a text)
        table = torch.full((num_ids + 1, len(followers) + 1), DROP, dtype=torch.long)
        for (state, follower), letter in composition.steps.items():
            table[state, column[follower]] = letter
        final = torch.arange(num_ids, dtype=torch.long)
        for index, settled in composition.final_ids.items():
            final[index] = settled
        self.register_buffer("column", column, persistent=False)
        self.register_buffer("table", table.reshape(-1), persistent=False)
        self.register_buffer("final", final, persistent=False)
        self.row_width = len(followers) + 1
        self.start_row = num_ids

    @staticmethod
    def _filled(tensor: torch.Tensor, fill) -> torch.Tensor:
        # the tracer has no `full_like` with a bool fill
        return torch.zeros_like(tensor) if fill is False else torch.full_like(tensor, fill)

    def _before(self, tensor: torch.Tensor, fill) -> torch.Tensor:
        """`tensor` shifted right by `stride` along the tokens: each position sees the character before it."""
        head = self._filled(tensor[:, : self.stride], fill)
        return torch.cat([head, tensor[:, : -self.stride]], dim=1)[:, : tensor.shape[1]]

    def _after(self, tensor: torch.Tensor, shift: int, fill) -> torch.Tensor:
        """`tensor` shifted left by `shift`: each position sees the token `shift` after it."""
        tail = self._filled(tensor[:, :shift], fill)
        return torch.cat([tensor[:, shift:], tail], dim=1)[:, : tensor.shape[1]]

    def _delete(self, input_ids, input_lengths, deleted):
        """Remove the `deleted` tokens of each row, keeping order; the rows' new lengths."""
        num_tokens = input_ids.shape[1]
        positions = torch.arange(num_tokens, device=input_ids.device).unsqueeze(0)
        keep = (positions < input_lengths.unsqueeze(1)) & ~deleted
        # kept tokens first, in their order: sort by position, deleted ones pushed past the end
        order = torch.argsort(torch.where(keep, positions, positions + num_tokens), dim=1)
        lengths = keep.sum(dim=1)
        kept_positions = torch.arange(lengths.max(), device=input_ids.device).unsqueeze(0)
        ids = torch.gather(input_ids, 1, order[:, : kept_positions.shape[1]])
        return torch.where(kept_positions < lengths.unsqueeze(1), ids, torch.zeros_like(ids)), lengths

    def _with_blank_before(self, deleted):
        # the blank before a deleted character goes with it, so blanks and characters keep alternating
        return deleted | self._after(deleted, 1, False) if self.stride == 2 else deleted

    def forward(self, input_ids: torch.Tensor, input_lengths: torch.Tensor):
        for _ in range(self.num_passes):
            num_tokens = input_ids.shape[1]
            valid = torch.arange(num_tokens, device=input_ids.device).unsqueeze(0) < input_lengths.unsqueeze(1)
            before = self._before(input_ids, self.start_row)
            composed = self.table[before * self.row_width + self.column[input_ids]]
            steps = (composed != DROP) & valid
            steps = steps & ~self._before(steps, False)
            # the character before each step takes the composed letter; the step's own token goes
            letters = torch.where(
                self._after(steps, self.stride, False), self._after(composed, self.stride, DROP), input_ids
            )
            input_ids, input_lengths = self._delete(letters, input_lengths, self._with_blank_before(steps))
        settled = self.final[input_ids]
        dropped = settled == DROP
        return self._delete(torch.where(dropped, input_ids, settled), input_lengths, self._with_blank_before(dropped))
