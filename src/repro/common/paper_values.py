"""The papers' reference numbers, kept in one place: ``repro/common/paper_values/<stage>.yaml``.

Each file is a list of entries ``{claim_id, paper, where (table/figure), value, unit, claim}`` and an
optional ``kind``: ``claim`` (default; a headline claim the stage tests) or ``reference`` (a table cell a
stage draws beside its own curve or cites in a claim's note, not a claim by itself). ``paper`` is the
arXiv id. Stages read their ``paper_value`` from here; the report lists every claim, run or not.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

REQUIRED = ("claim_id", "paper", "where", "value", "unit", "claim")
KINDS = ("claim", "reference")
_ARXIV = re.compile(r"\b(\d{4}\.\d{4,5})\b")


def arxiv_id(paper: object) -> str:
    """The arXiv id in ``paper`` ("1612.03144", or a label such as "FPN (arXiv 1612.03144)")."""
    found = _ARXIV.findall(str(paper))
    if len(set(found)) != 1:
        raise ValueError(f"paper {paper!r} must name exactly one arXiv id (e.g. '1612.03144')")
    return found[0]


@lru_cache(maxsize=1)
def all_paper_values() -> dict[str, dict[str, Any]]:
    """Every reference entry by claim_id (ids are unique across stages)."""
    out: dict[str, dict[str, Any]] = {}
    folder = resources.files("repro.common") / "paper_values"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        stage = entry.name[: -len(".yaml")]
        for item in yaml.safe_load(entry.read_text()) or []:
            missing = [k for k in REQUIRED if k not in item]
            if missing:
                raise ValueError(f"paper_values/{entry.name}: entry {item.get('claim_id')!r} lacks {missing}")
            if item["claim_id"] in out:
                raise ValueError(f"paper_values: duplicate claim_id {item['claim_id']!r}")
            kind = item.get("kind", "claim")
            if kind not in KINDS:
                raise ValueError(f"paper_values/{entry.name}: entry {item['claim_id']!r} has kind {kind!r}, not one of {KINDS}")
            out[item["claim_id"]] = {**item, "paper": arxiv_id(item["paper"]), "kind": kind, "stage": stage}
    return out


def paper_value(claim_id: str) -> dict[str, Any]:
    """The reference entry for one claim (KeyError naming the id if it is not recorded)."""
    values = all_paper_values()
    if claim_id not in values:
        raise KeyError(f"no paper value recorded for claim_id {claim_id!r} in repro/common/paper_values/")
    return values[claim_id]
