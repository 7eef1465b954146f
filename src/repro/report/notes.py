"""A stage's scale note said once: the sentences every row's note shares, and what differs per row."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

# a clause ends at "; ", a sentence at . ! ? followed by space and a capital or a bracket (not "e.g. x", "0.5")
_SENTENCE_END = re.compile(r"(?<=;)\s+|(?<=[.!?])\s+(?=[A-Z(\[])")


def sentences(note: str) -> list[str]:
    """The note's sentences and clauses, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(note.strip()) if s.strip()]


def split_common(notes: Sequence[str], among: Sequence[bool] | None = None) -> tuple[str, list[str], list[int]]:
    """(the shared sentences, in their first note's order; each note without them; the notes kept whole).

    Shared: the sentences every note ``among`` picks (default: all) contains; where there is none, the
    largest set that at least two thirds (and two) of them each contain in full, so one row of another
    kind (a timing row beside accuracy rows) does not stop the rest from being said once. A note that lacks any shared sentence is kept whole, and
    its index is returned when ``among`` picked it.
    """
    use = list(among) if among is not None else [True] * len(notes)
    split = [sentences(n) for n in notes]
    pick = [set(parts) for parts, u in zip(split, use) if u]
    if len(pick) < 2:
        return "", list(notes), []
    shared = set.intersection(*pick)
    if not shared:  # no sentence in every note: the one most of them share
        need = max(2, math.ceil(2 * len(pick) / 3))
        counts = Counter(s for parts in pick for s in parts)
        shared = {s for s, c in counts.items() if c >= need}
        while shared and sum(shared <= parts for parts in pick) < need:
            shared.discard(min(shared, key=lambda s: (counts[s], s)))
    if not shared:
        return "", list(notes), []
    covered = [shared <= set(parts) for parts in split]
    first = next(parts for parts, c, u in zip(split, covered, use) if c and u)
    common = " ".join(s for s in dict.fromkeys(first) if s in shared)
    own = [" ".join(s for s in parts if s not in shared) if c else note
           for parts, c, note in zip(split, covered, notes)]
    return common, own, [i for i, (c, u) in enumerate(zip(covered, use)) if u and not c]
