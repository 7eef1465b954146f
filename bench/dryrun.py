"""Benchmark: ``snakemake -n`` on the full config with 100k videos sharded (goal <= 30 s).

    .venv/bin/python -m bench.dryrun [--videos 100000] [--videos-per-shard 100] [--stress 10]

The graph stage's mining jobs are ``graph.mine.n_shards`` for downloaded videos
(workflow/rules/graph.smk); workflow/configs/full.yaml has 1000, about 100 videos per job for the
paper's 100k videos. The benchmark writes a temporary extra configfile setting
``graph.mine.n_shards = ceil(videos / videos_per_shard)`` and times
``snakemake -n --configfile workflow/configs/full.yaml <extra>`` in an empty scratch folder (the whole
DAG is planned: ~1,200 jobs). ``--stress V`` adds a second row with V videos per shard (10: 10,000
mining jobs) to show how planning time grows with the job count.

Reference, measured in the same run: ``snakemake -n`` on the embedded default (config.yaml, ~200 jobs).
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402
from bench.dag import REPO, snakemake_env, snakemake_exe  # noqa: E402

FULL = REPO / "workflow" / "configs" / "full.yaml"
GOAL_S = 30.0


def dry_run(workdir: Path, configfiles: list[Path]) -> tuple[float, int, int, str]:
    """(wall seconds, return code, planned jobs, output tail) of ``snakemake -n``."""
    cmd = [snakemake_exe(), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--cores", "2"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), cwd=REPO)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    m = re.search(r"^total\s+(\d+)\s*$", out, re.M)
    return wall, proc.returncode, int(m.group(1)) if m else -1, out[-2000:]


def run(*, videos: int = 100_000, videos_per_shard: int = 100, stress: int | None = None,
        verbose: bool = True) -> list[dict[str, Any]]:
    """Rows: the full config's dry run with ``videos / videos_per_shard`` mining shards (+ the stress case)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_dryrun_") as tmp:
        tmp = Path(tmp)
        (tmp / "default").mkdir()
        ref_s, ref_rc, ref_jobs, ref_tail = dry_run(tmp / "default", [])
        if ref_rc != 0:
            raise RuntimeError(f"snakemake -n on the embedded default failed:\n{ref_tail}")
        cases = [videos_per_shard] + ([stress] if stress else [])
        for per in cases:
            shards = math.ceil(videos / per)
            wd = tmp / f"full_{shards}"
            wd.mkdir()
            extra = tmp / f"shards_{shards}.yaml"
            extra.write_text(f"graph:\n  mine:\n    n_shards: {shards}\n")
            s, rc, jobs, tail = dry_run(wd, [FULL, extra])
            if verbose:
                print(f"snakemake -n, full config, {videos:,} videos in {shards:,} shards: {s:.1f} s, {jobs:,} jobs "
                      f"(rc {rc}); embedded default: {ref_s:.1f} s, {ref_jobs} jobs; goal <= {GOAL_S:g} s", flush=True)
            r = row(f"dag: snakemake -n, full config, {videos // 1000}k videos / {shards:,} shards", ours=s,
                    reference=ref_s, unit="s", reference_name=f"snakemake -n on the embedded default ({ref_jobs} jobs)",
                    goal_on="ours", goal_op="<=", goal=GOAL_S, goal_text=f"<= {GOAL_S:g} s",
                    details={"videos": videos, "videos_per_shard": per, "n_shards": shards, "jobs": jobs,
                             "reference_jobs": ref_jobs, "rc": rc,
                             "command": f"snakemake -n --configfile workflow/configs/full.yaml <graph.mine.n_shards: {shards}>",
                             **({"tail": tail} if rc != 0 else {})})
            if rc != 0:
                r["met"] = False
            rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=100_000)
    p.add_argument("--videos-per-shard", type=int, default=100)
    p.add_argument("--stress", type=int, default=None, help="also time V videos per shard (e.g. 10)")
    args = p.parse_args(argv)
    run(videos=args.videos, videos_per_shard=args.videos_per_shard, stress=args.stress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
