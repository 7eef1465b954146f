"""Render the one-page, self-contained HTML report (figures embedded as data URIs)."""

from __future__ import annotations

import base64
import html
import math
import mimetypes
import os
from pathlib import Path
from typing import Any

import pandas as pd

from repro.common.claims import N_MAX, NO_EFFECT, NO_TEST, UNDERPOWERED
from repro.report.collect import NOT_RUN, PAPERS
from repro.report.notes import split_common

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f3f7} td.num{text-align:right;font-variant-numeric:tabular-nums} .n{white-space:nowrap} small{color:#555}
table.claims{table-layout:fixed} table.claims td{overflow-wrap:anywhere} td.metric,td.note{font-size:0.85em}
.holds{background:#e3f2e5}.fails{background:#fbe3e3}.inconclusive{background:#f1f1f1}.notrun{color:#888}
p.stagenote{font-size:0.85em;color:#333;background:#f7f9fb;border-left:3px solid #1f4e79;padding:4px 8px;margin:0.3em 0}
td.power{font-size:0.85em} .holm{font-size:0.8em;color:#555} figure.forest img{max-width:100%}
figure{display:inline-block;margin:0.5em;max-width:100%} figure img{max-width:560px;border:1px solid #ddd}
figcaption{font-size:0.85em;color:#555} code{font-size:0.9em} h2{border-bottom:2px solid #1f4e79;padding-bottom:2px}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _ours(row: pd.Series) -> str:
    if row["status"] == NOT_RUN:
        return f'<span class="notrun">{NOT_RUN}</span>'
    if row["ours_mean"] is None or pd.isna(row["ours_mean"]):
        return "missing value"
    ci = row["ours_ci95"]
    text = _fmt(float(row["ours_mean"]))
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        text += f" [{_fmt(float(ci[0]))}, {_fmt(float(ci[1]))}]"
    return f"{text} (n={int(row['n_seeds'])})"


def embed(path: str | os.PathLike) -> str:
    """A file as a data: URI, so the page is one self-contained file."""
    path = Path(path)
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _figure(path: Path, caption: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<figure{cls}><img src="{embed(path)}" alt="{html.escape(caption)}">'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _power(row: pd.Series) -> str:
    """The row's test, p-value, minimum detectable effect and the seeds a decisive verdict needs."""
    if row["test"] not in ("t", "welch", "equivalence") or not _present(row["p_value"]):
        return "—" if row["test"] != "unknown" else "claims file predates the test fields"
    thr = float(row["threshold"])
    test = {"t": f"t vs {_fmt(thr)}", "welch": f"Welch vs {_fmt(thr)}", "equivalence": f"equivalence ±{_fmt(thr)}"}[row["test"]]
    parts = [test, f"p = {_fmt(float(row['p_value']), 2)}"]
    if _present(row["mde"]):
        parts.append(f"MDE {_fmt(float(row['mde']), 3)}")
        parts.append(f"n needed {int(row['n_needed'])}" if _present(row["n_needed"]) else f"n needed &gt; {N_MAX}")
    else:
        parts.append("no power figures: one seed or one deterministic run")
    return "<br>".join(parts)


def _verdict(row: pd.Series) -> str:
    """The verdict, why an inconclusive one is so, and whether a decisive one survives Holm."""
    if row["status"] == NOT_RUN:
        return "—"
    text = html.escape(row["verdict"])
    if row["power"]:
        text += f"<br><small>{html.escape(row['power'])}</small>"
    marks = {True: "✓", False: "✗"}
    if row["holm_paper"] in marks:
        text += (f"<br><span class='holm'>Holm: paper {marks[row['holm_paper']]}, "
                 f"table {marks[row['holm_table']]}</span>")
    return text


def _stage_note(stage: str, common: str, but: list[str]) -> str:
    if not common:
        return ""
    rows = "every measured row below" + (f" but {', '.join(but)} (their notes in full)" if but else "")
    return (f"<p class='stagenote'><b>{html.escape(stage)}</b>, said once for {html.escape(rows)}: "
            f"{html.escape(common)}</p>")


def _claims_table(rows: pd.DataFrame) -> str:
    """One stage's rows of one paper: the notes' shared sentences once above, each row's own beside it."""
    notes = rows["scale_note"].astype(str).copy()
    stated = notes != NOT_RUN  # a stage's own note, not the placeholder of a reference entry no stage ran
    # the shared sentences are looked for among the measured rows: a row the stage did not run may say
    # only why, and then shares nothing
    common, own, whole = split_common(notes[stated].tolist(), among=(rows["status"] != NOT_RUN)[stated].tolist())
    notes[stated] = own
    but = [str(rows.loc[stated, "claim_id"].iloc[i]) for i in whole]
    cols = "".join(f'<col style="width:{w}%">' for w in (19, 12, 10, 15, 11, 9, 24))
    head = cols + ("<tr><th>claim</th><th>metric</th><th>paper (where)</th><th>ours: mean [95% CI] (n seeds)</th>"
                   "<th>test, power (80%)</th><th>verdict</th><th>this row's note</th></tr>")
    body = []
    for i, row in rows.iterrows():
        cls = "notrun" if row["status"] == NOT_RUN else row["verdict"]
        where = f"<br><small>{html.escape(str(row['where']))}</small>" if row["where"] else ""
        has_value = row["paper_value"] is not None and pd.notna(row["paper_value"])
        unit = f" {html.escape(str(row['unit']))}" if row["unit"] and has_value else ""
        body.append(
            f'<tr class="{cls}"><td><b>{html.escape(row["claim_id"])}</b><br>{html.escape(row["claim"])}</td>'
            f'<td class="metric">{html.escape(str(row["metric"]))}</td><td class="num"><span class="n">{_fmt(row["paper_value"])}</span>{unit}{where}</td>'
            f'<td class="num">{_ours(row)}</td><td class="power">{_power(row)}</td><td>{_verdict(row)}</td>'
            f'<td class="note">{html.escape(notes[i])}</td></tr>'
        )
    return _stage_note(str(rows["stage"].iloc[0]), common, but) + f"<table class='claims'>{head}{''.join(body)}</table>"


SUMMARY_HEAD = (
    "<tr><th>paper</th><th>title</th><th>holds</th><th>fails</th><th>inconclusive: underpowered</th>"
    "<th>inconclusive: no effect at this power</th><th>no test</th><th>not run at this scale</th>"
    "<th>holds surviving Holm (paper / table)</th><th>fails surviving Holm (paper / table)</th></tr>"
)


def _summary_table(summary: pd.DataFrame) -> str:
    rows = []
    for _, s in summary.iterrows():
        cells = [s[k] for k in ("holds", "fails", UNDERPOWERED, NO_EFFECT, NO_TEST, NOT_RUN)]
        cells += [f"{s['holds_holm_paper']} / {s['holds_holm_table']}", f"{s['fails_holm_paper']} / {s['fails_holm_table']}"]
        rows.append(f"<tr><td><a href='#p{s['paper']}'>{s['paper']}</a></td><td>{html.escape(s['title'])}</td>"
                    + "".join(f"<td class='num'>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{SUMMARY_HEAD}{''.join(rows)}</table>"


def _trend_section(paths: list[Path]) -> str:
    """The opt-in scale_trend figures: each failing or inconclusive claim at 1x, 2x and 4x the default."""
    if not paths:
        return ""
    return ("<h2>Where each failing claim is heading</h2><p>The stage rerun at 2x and 4x the default's data and "
            "steps (<code>snakemake scale_trend</code>): each claim that fails or is inconclusive at the default, "
            "its mean and 95% CI against scale beside the paper's value.</p>"
            + "".join(_figure(p, f"{p.parent.name}: claims against scale", "forest") for p in paths))


def render(
    claims: pd.DataFrame,
    summary: pd.DataFrame,
    overview_figures: dict[str, Path],
    stage_figures: dict[str, list[Path]],
    provenance: dict[str, Any],
    wall_times: pd.DataFrame,
    *,
    trend_figures: list[Path] | None = None,
) -> str:
    """The whole page: summary, one section per paper, the stages' figures, provenance."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>repro report</title><style>{CSS}</style></head><body>"]
    parts.append("<h1>Reproduction report</h1>")
    parts.append(
        f"<p>Scale <b>{html.escape(str(provenance.get('scale')))}</b>, commit <code>{html.escape(str(provenance.get('git_commit')))}</code>, "
        f"run {html.escape(str(provenance.get('finished')))}. Verdicts: <i>holds</i> when the 95% CI over seeds lies on the claimed side, "
        "<i>fails</i> when it lies on the other, <i>inconclusive</i> otherwise: <i>underpowered</i> when the run could not have "
        "detected the paper's effect (its minimum detectable effect, MDE, at 80% power exceeds it; without a comparable paper "
        "value, when the seeds the observed effect needs are within reach), <i>no effect at this power</i> when it could have and did "
        "not. <i>n needed</i>: seeds for a decisive verdict at the observed effect and spread. Holm: whether a decisive verdict "
        "survives Holm's correction over the paper's tested claims and over the whole table (α = 0.05).</p>"
    )
    parts.append("<h2>Summary</h2>" + _summary_table(summary))
    for paper, rows in claims.groupby("paper", sort=True):
        title = PAPERS.get(paper, "")
        parts.append(f"<h2 id='p{paper}'>arXiv {html.escape(paper)}: {html.escape(title)}</h2>")
        if paper in overview_figures:
            parts.append(_figure(overview_figures[paper], f"arXiv {paper}: each tested claim's mean and 95% CI against its "
                                                          "threshold, the paper's value marked, coloured by verdict",
                                 "forest"))
        for _, stage_rows in rows.groupby("stage", sort=False):
            parts.append(_claims_table(stage_rows))
    parts.append(_trend_section(trend_figures or []))
    if stage_figures:
        parts.append("<h2>Figures by stage</h2>")
        for stage, paths in sorted(stage_figures.items()):
            parts.append(f"<h3>{html.escape(stage)}</h3>")
            parts.extend(_figure(p, p.name) for p in paths)
    parts.append("<h2>Provenance</h2><table>")
    for key in ("git_commit", "config_sha256", "scale", "started", "finished", "host", "python"):
        parts.append(f"<tr><th>{key}</th><td><code>{html.escape(str(provenance.get(key)))}</code></td></tr>")
    pkgs = ", ".join(f"{k} {v}" for k, v in (provenance.get("packages") or {}).items())
    parts.append(f"<tr><th>packages</th><td>{html.escape(pkgs)}</td></tr></table>")
    if not wall_times.empty:
        per_stage = wall_times.groupby("stage")["seconds"].agg(["sum", "count", "max"]).reset_index()
        parts.append("<h3>Wall time per stage (Snakemake benchmark files)</h3><table><tr><th>stage</th><th>jobs</th><th>total s</th><th>longest job s</th></tr>")
        for _, r in per_stage.iterrows():
            parts.append(f"<tr><td>{html.escape(r['stage'])}</td><td class='num'>{int(r['count'])}</td><td class='num'>{r['sum']:.1f}</td><td class='num'>{r['max']:.1f}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
