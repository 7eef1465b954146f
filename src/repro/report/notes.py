"""A stage's scale note said once: the sentences every row's note shares, and what differs per row."""

from __future__ import annotations

import re
from typing import Sequence

# a clause ends at "; ", a sentence at . ! ? followed by space and a capital or a bracket (not "e.g. x", "0.5")
_SENTENCE_END = re.compile(r"(?<=;)\s+|(?<=[.!?])\s+(?=[A-Z(\[])")


def sentences(note: str) -> list[str]:
    """The note's sentences and clauses, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(note.strip()) if s.strip()]


def split_common(notes: Sequence[str]) -> tuple[str, list[str]]:
    """(the sentences found in every note, in the first note's order; each note without them). One note,
    or none, has nothing in common to lift out."""
    if len(notes) < 2:
        return "", list(notes)
    split = [sentences(n) for n in notes]
    shared = set(split[0]).intersection(*map(set, split[1:]))
    common = " ".join(s for s in dict.fromkeys(split[0]) if s in shared)
    return common, [" ".join(s for s in parts if s not in shared) for parts in split]
