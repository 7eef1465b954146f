"""Helper of run_rehearsal.sh: check what the rehearsal run left in its work folder.

    check_rehearsal.py SUMMARY.tsv RUN_DIR

SUMMARY.tsv is `snakemake --summary` of the run. Checks: every output exists and is up to date; each
downloaded dataset was verified (its .download.json lists the archives with their md5s); the mining
jobs met the corrupt video and went on; every stage's claims file holds rows; the report and
claims table were written at `scale: full`. Prints one line per check; exit status 1 on a problem.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

DATASETS = ("coco2017", "voc2007", "cifar10", "mnist", "videos")


def main(summary: str, run: str) -> int:
    run_dir = Path(run)
    problems: list[str] = []
    rows = list(csv.DictReader(open(summary), delimiter="\t"))
    bad = [(r["output_file"], r["status"]) for r in rows
           if r["status"] != "ok" or not (run_dir / r["output_file"]).exists()]
    if not rows or bad:
        problems.append(f"outputs missing or not up to date: {bad or 'no rows in --summary'}")
    print(f"check_rehearsal: {len(rows)} outputs of the DAG, {len(bad)} missing or stale")

    for name in DATASETS:
        marker = run_dir / "results" / "data" / "raw" / name / ".download.json"
        if not marker.is_file():
            problems.append(f"{marker} missing")
            continue
        files = json.loads(marker.read_text())["files"]
        if not all(f.get("md5") for f in files):
            problems.append(f"{marker}: a file without its md5")
        print(f"check_rehearsal: downloads.{name}: {', '.join(f['file'] for f in files)} verified and unpacked")

    shards = sorted((run_dir / "results" / "graph" / "shards").glob("shard_*.json"))
    stats = [json.loads(p.read_text()) for p in shards]
    corrupt = sum(int(s.get("totals", {}).get("videos_corrupt", 0)) for s in stats)
    if corrupt < 1:
        problems.append(f"no mining shard reported the corrupt video ({len(shards)} shard manifests)")
    print(f"check_rehearsal: {len(shards)} mining shards, {corrupt} corrupt video(s) skipped")

    claims = sorted((run_dir / "results" / "claims").glob("*.json"))
    counts: dict[str, int] = {}
    for path in claims:
        data = json.loads(path.read_text())
        if not isinstance(data, list) or not data:
            problems.append(f"{path}: no claim rows")
            continue
        for row in data:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    print(f"check_rehearsal: {len(claims)} claims files ({', '.join(p.stem for p in claims)}); verdicts {counts}")
    html = run_dir / "results" / "report" / "index.html"
    if "Scale <b>full</b>" not in (html.read_text() if html.is_file() else ""):
        problems.append(f"{html}: missing, or not written at scale full")
    table = run_dir / "results" / "claims.csv"
    n_rows = sum(1 for _ in csv.DictReader(open(table))) if table.is_file() else 0
    if not n_rows:
        problems.append(f"{table}: missing or empty")
    print(f"check_rehearsal: report {html.relative_to(run_dir)} at scale full, {n_rows} rows in claims.csv")
    if problems:
        print("check_rehearsal: PROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
