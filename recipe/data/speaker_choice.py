"""Which speakers a multi-speaker run trains: `--speakers all | top:N | min_minutes:M | best:N | ID,ID,...`.

`choose_speakers` picks them from the seconds of audio each speaker has in the training split (measured from the
file headers, `recipe.data.splits`); every choice is deterministic (ties go to the smaller id) and says which
speakers were left out and why. `best:N` (and `--speaker_id best`) is chosen after screening instead, from what each
speaker keeps (`recipe.data.speaker_best`).
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

from recipe.data.source import DataError

ALL = "all"
TOP = "top"
MIN_MINUTES = "min_minutes"
# `--speakers best:N` / `--speaker_id best`: chosen by the screening's results (`recipe.data.speaker_best`)
BEST = "best"


@dataclass(frozen=True)
class SpeakerRule:
    """A parsed `--speakers`: `kind` is `all`, `top` / `best` (`value` speakers), `min_minutes` (`value` minutes) or
    `ids`."""

    kind: str
    value: float | None = None
    ids: tuple[str, ...] = ()

    @property
    def needs_durations(self) -> bool:
        """Whether the choice weighs speakers by their audio (a list of ids only checks that they exist)."""
        return self.kind in (TOP, MIN_MINUTES)


def parse_speakers(text: str) -> SpeakerRule:
    """`--speakers` as a `SpeakerRule`; a `DataError` (a `ValueError`) naming the accepted forms for anything else."""
    text = text.strip()
    forms = "all, top:N (N >= 2), min_minutes:M (M > 0), best:N (N >= 2) or a comma-separated list of speaker ids"
    if text == ALL:
        return SpeakerRule(ALL)
    if text == BEST:
        raise DataError(
            f"--speakers {text!r}: give the number of speakers, best:N (N >= 2); for one, --speaker_id best"
        )
    kind, colon, value = text.partition(":")
    if colon and kind in (TOP, MIN_MINUTES, BEST):
        try:
            number = float(value) if kind == MIN_MINUTES else int(value)
        except ValueError:
            raise DataError(f"--speakers {text!r}: {value!r} is not a number; use {forms}") from None
        if kind == BEST and number < 2:
            one = "one speaker is --speaker_id best" if number == 1 else "it keeps no speaker"
            raise DataError(f"--speakers {text!r}: best:N needs N >= 2 ({one}); use --speaker_id best for one")
        if (kind == TOP and number < 2) or (kind == MIN_MINUTES and not number > 0):
            raise DataError(f"--speakers {text!r}: use {forms}")
        return SpeakerRule(kind, number)
    ids = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise DataError(f"--speakers {text!r}: use {forms}")
    return SpeakerRule("ids", ids=ids)


def _ranked(seconds: Counter) -> list[str]:
    return sorted(seconds, key=lambda speaker: (-seconds[speaker], speaker))


def _short(speaker: str) -> str:
    # Common Voice client ids are 128 hex digits
    return speaker if len(speaker) <= 16 else f"{speaker[:12]}..."


def choose_speakers(rule: SpeakerRule, seconds: Counter, clips: Counter) -> tuple[tuple[str, ...], list[str]]:
    """The chosen speaker ids (sorted) and one line per speaker left out, saying why.

    Args:
        rule (`SpeakerRule`).
        seconds (`Counter`): readable audio per speaker id in the training split (empty unless
            `rule.needs_durations`).
        clips (`Counter`): clips per speaker id in the training split.

    Raises:
        `DataError`: fewer than two speakers would be chosen, or ids not in the data (naming the closest real ones
        and the ones with the most clips).
    """
    if rule.kind == "ids":
        unknown = [speaker for speaker in rule.ids if speaker not in clips]
        if unknown:
            known = list(clips)
            closest = {s: difflib.get_close_matches(s, known, n=3, cutoff=0.5) for s in unknown}
            most = ", ".join(f"{_short(s)!r} ({n} clips)" for s, n in clips.most_common(5))
            hints = "; ".join(
                f"{s!r}: closest {', '.join(repr(c) for c in near)}" if near else f"{s!r}: nothing close"
                for s, near in closest.items()
            )
            raise DataError(
                f"--speakers names {len(unknown)} id(s) with no clip in the training split ({hints}); the speakers "
                f"with the most clips: {most}"
            )
        chosen = rule.ids
        reasons = {s: "not in --speakers" for s in clips if s not in chosen}
    elif rule.kind == ALL:
        chosen = tuple(clips)
        reasons = {}
    elif rule.kind == TOP:
        ranked = _ranked(seconds)
        chosen = tuple(ranked[: int(rule.value)])
        reasons = {s: f"rank {i + 1} by audio, beyond top:{int(rule.value)}" for i, s in enumerate(ranked)}
        reasons = {s: why for s, why in reasons.items() if s not in chosen}
    else:
        chosen = tuple(s for s in _ranked(seconds) if seconds[s] >= 60 * rule.value)
        reasons = {
            s: f"{seconds.get(s, 0) / 60:.2f} minutes of audio < min_minutes:{rule.value:g}"
            for s in clips
            if s not in chosen
        }
    if len(chosen) < 2:
        raise DataError(
            f"--speakers chose {len(chosen)} speaker(s) out of {len(clips)} in the training split: a multi-speaker "
            "model needs at least two (for one speaker, use --speaker_id ID, top or best)"
        )
    left_out = [f"{_short(s)}: {why}" for s, why in sorted(reasons.items())]
    return tuple(sorted(chosen)), left_out
