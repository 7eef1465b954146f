"""The README's results table: paper x holds / fails / underpowered / no effect / not run, from a run.

``python -m repro.report.readme results/report/summary.md README.md`` puts the table the report
wrote into README.md between :data:`BEGIN` and :data:`END` (the rest of the README is left alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from repro.common.claims import NO_EFFECT, NO_TEST, UNDERPOWERED
from repro.common.io import atomic_write_bytes
from repro.report.collect import NOT_RUN, PAPERS

BEGIN = "<!-- results-table:begin (python -m repro.report.readme results/report/summary.md README.md) -->"
END = "<!-- results-table:end -->"
SHORT = {
    "1612.01543": "Network quantization", "1612.02136": "Mode-regularized GAN", "1612.03144": "FPN",
    "1703.06870": "Mask R-CNN (RoIAlign)", "1708.02556": "MGAN", "1708.02901": "Transitive invariance",
    "1708.03888": "LARS",
}


def _short(commit: str) -> str:
    """The commit's first 12 hex digits, keeping provenance's ``-dirty`` mark of uncommitted changes."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def results_table(summary: pd.DataFrame, *, scale: str, commit: str, date: str) -> str:
    """Markdown: one line per paper with its verdict counts, Holm survivors, and the run it comes from."""
    lines = [
        f"**Results of the {scale} run** ({date}, commit `{_short(commit)}`; details in `results/report/index.html`)",
        "",
        "| paper | holds | fails | underpowered | no effect at this power | no test | not run at this scale | holds after Holm (paper / table) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = {k: 0 for k in ("holds", "fails", UNDERPOWERED, NO_EFFECT, NO_TEST, NOT_RUN, "holds_holm_paper", "holds_holm_table")}
    for _, s in summary.iterrows():
        name = SHORT.get(s["paper"], PAPERS.get(s["paper"], ""))
        counts = [int(s[k]) for k in total]
        for k, v in zip(total, counts):
            total[k] += v
        lines.append(f"| {name} [{s['paper']}](https://arxiv.org/abs/{s['paper']}) | "
                     + " | ".join(str(c) for c in counts[:6]) + f" | {counts[6]} / {counts[7]} |")
    t = list(total.values())
    lines.append("| **all** | " + " | ".join(f"**{c}**" for c in t[:6]) + f" | **{t[6]} / {t[7]}** |")
    lines += ["", "Underpowered: the run could not have detected the paper's effect (80% power); no effect at this "
              "power: it could have and did not; no test: a count at our scale or a composite row. Per row: seeds "
              "needed, p-value and Holm in the report."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the block between BEGIN and END (or put one at the top, under the title)."""
    text = readme.read_text()
    block = f"{BEGIN}\n{table.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{block}\n{body}"
    atomic_write_bytes(readme, text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.report.readme", description=__doc__)
    parser.add_argument("summary", type=Path, help="results/report/summary.md written by the report stage")
    parser.add_argument("readme", type=Path)
    args = parser.parse_args(argv)
    update_readme(args.readme, args.summary.read_text())
    print(f"[repro.report.readme] {args.readme}: results table from {args.summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from repro.common.cli import run_cli

    sys.exit(run_cli(main, prog="python -m repro.report.readme"))
