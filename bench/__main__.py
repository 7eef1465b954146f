"""``python -m bench`` (``make bench``): run the benchmarks, write ``results/bench.json`` and ``results/bench.png``.

    .venv/bin/python -m bench                  # everything but the default DAG (about 2-3 min on 2 cores)
    .venv/bin/python -m bench --dag default    # + the whole DAG on the embedded default (about 25 min more)
    .venv/bin/python -m bench --quick          # a fast subset: small sizes, no DAG run (~2 min)
    .venv/bin/python -m bench --only lars kmeans --out /tmp/bench.json

Benchmarks (names for ``--only``/``--skip``), each timed against a reference in the same run:

* ``dag``       the whole DAG on the smoke config (goal <= 3 min on 2 cores) and, with ``--dag default``
                or ``--dag both``, on the embedded default (goal <= 20 min); per-rule times from the
                Snakemake benchmark TSVs;
* ``detect``    detection training images/s, ours vs torchvision's reference loop (goal >= 1.0x), and
                inference s/image;
* ``kmeans``    Hessian-weighted k-means, 1M weights, k = 32, vs scikit-learn (goal >= 10x, objective no worse);
* ``graph``     transitive-graph building at growing N, fitted growth exponent (goal <= 1.2);
* ``lars``      LARS step / SGD step (goal <= 1.3);
* ``dryrun``    ``snakemake -n`` on the full config with 100k videos sharded (goal <= 30 s);
* ``pretrain``  data loading share of the pretraining step (goal < 10%).

A benchmark that fails is recorded as a row with ``met: false`` and the error, and the others still run.
Rows of earlier runs in the output file whose benchmark was not run this time are kept (so ``--only``
refreshes some rows without dropping the rest). The exit code is 0 when every benchmark ran, whether or
not its goal was met.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import machine

REPO = Path(__file__).resolve().parents[1]
ORDER = ("kmeans", "graph", "lars", "detect", "dryrun", "pretrain", "dag")


def _benchmarks(args: argparse.Namespace) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    quick, threads = args.quick, args.threads

    def kmeans():
        from bench import quant_kmeans

        return quant_kmeans.run(n=100_000 if args.tiny else 1_000_000, k=32, threads=threads,
                                repeats=1 if quick else 3)

    def graph():
        from bench import graph_scaling

        sizes = [2_000, 4_000, 8_000] if args.tiny else None
        return graph_scaling.run(sizes=sizes, quick=quick and not args.tiny, threads=threads)

    def lars():
        from bench import lars_step

        return lars_step.run(threads=threads, quick=quick)

    def detect():
        from bench import detect_step, detect_throughput

        if args.tiny:
            return (detect_throughput.run(steps=1, rounds=1, n_train=4, n_val=2, threads=threads)
                    + detect_step.run(steps=1, rounds=1, n_train=4, n_val=2, threads=threads))
        return (detect_throughput.run(threads=threads, quick=quick)
                + detect_step.run(threads=threads, rounds=1 if quick else 3))

    def dryrun():
        from bench import dryrun as dr

        return dr.run(stress=None if quick else 10)

    def pretrain():
        from bench import pretrain_loading

        return pretrain_loading.run(threads=threads, quick=quick or args.tiny)

    def dag():
        from bench import dag as dg

        configs = {"none": [], "smoke": ["smoke"], "default": ["default"], "both": ["smoke", "default"]}[args.dag]
        rows = []
        for cfg in configs:
            workdir = None if args.dag_workdir is None else str(args.dag_workdir)
            rows += dg.run(config=cfg, cores=args.cores, workdir=workdir)
        return rows

    return {"kmeans": kmeans, "graph": graph, "lars": lars, "detect": detect, "dryrun": dryrun,
            "pretrain": pretrain, "dag": dag}


def _error_row(name: str, exc: BaseException) -> dict[str, Any]:
    return {"name": f"{name}: ERROR", "benchmark": name, "ours": float("nan"), "reference": None,
            "ratio": float("nan"), "unit": "", "reference_name": "", "machine": machine(), "goal": "runs",
            "goal_on": "ours", "goal_op": "<=", "goal_value": float("nan"), "met": False,
            "details": {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}}


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]], ran: set[str]) -> list[dict[str, Any]]:
    """New rows, plus old rows of benchmarks that did not run this time (in the standard order).

    Whole-DAG rows are kept per config: a ``--dag smoke`` run replaces the smoke row and keeps the
    default DAG's row of an earlier ``--dag default`` run (and the other way round)."""
    names = {n["name"] for n in new}
    kept = [r for r in old if r.get("name") not in names and (r.get("benchmark") not in ran or r.get("benchmark") == "dag")]
    rows = kept + new
    return sorted(rows, key=lambda r: ORDER.index(r["benchmark"]) if r.get("benchmark") in ORDER else len(ORDER))


def _finite(obj: Any) -> Any:
    """NaN/inf -> None everywhere, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _goal_score(r: dict[str, Any]) -> float:
    """How far a row is from its goal on a common scale: >= 1 met, < 1 missed (threshold / value or value / threshold)."""
    value = r["ours"] if r["goal_on"] == "ours" else r["ratio"]
    t = r["goal_value"]
    if value is None or t is None or not (value == value and t == t) or value <= 0 or t <= 0:
        return float("nan")
    return t / value if r["goal_op"] in ("<=", "<") else value / t


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Left: every row's margin to its goal (log scale, >= 1 = met). Right: the smoke DAG's slowest jobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dag_rows = [r for r in rows if r.get("benchmark") == "dag" and r["details"].get("jobs_s")]
    fig, axes = plt.subplots(1, 2 if dag_rows else 1, figsize=(15 if dag_rows else 9, 0.55 * max(len(rows), 6) + 1.5),
                             squeeze=False)
    ax = axes[0, 0]
    shown = rows[::-1]
    scores = [_goal_score(r) for r in shown]
    ys = list(range(len(shown)))
    # bars from 1 to the margin: right of the line = goal met with that factor to spare, left = missed
    ax.barh(ys, [(s if s == s else 1.0) - 1.0 for s in scores], left=1.0,
            color=["tab:green" if r["met"] else "tab:red" for r in shown])
    ax.set_xscale("log")
    finite = [v for v in scores if v == v] or [1.0]
    ax.set_xlim(min(0.5, min(finite) / 1.5), max(2.0, max(finite) * 1.5))
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(ys)
    labels = []
    for r in shown:
        value = f"{r['ours']:.4g} {r['unit']}" if r["goal_on"] == "ours" else f"ratio {r['ratio']:.3g}"
        labels.append(f"{r['name']}\n{value}; goal {r['goal']}")
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("margin to goal (threshold/value or value/threshold; >= 1 met, log scale)")
    m = rows[0]["machine"] if rows else machine()
    ax.set_title(f"repro benchmarks: {sum(r['met'] for r in rows)}/{len(rows)} goals met\n"
                 f"{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {m.get('device')}", fontsize=9)
    if dag_rows:
        ax2 = axes[0, 1]
        r = dag_rows[0]
        jobs = list(r["details"]["jobs_s"].items())[:20][::-1]
        ax2.barh(range(len(jobs)), [s for _, s in jobs], color="tab:blue")
        ax2.set_yticks(range(len(jobs)))
        ax2.set_yticklabels([j for j, _ in jobs], fontsize=7)
        ax2.set_xlabel("job wall seconds (Snakemake benchmark TSV)")
        ax2.set_title(f"{r['name']}: {r['ours']:.0f} s wall, slowest jobs", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a fast subset: small sizes and no DAG run")
    p.add_argument("--dag", choices=["none", "smoke", "default", "both"], default=None,
                   help="whole-DAG runs: smoke (default), default (~25 min), both, none (default with --quick)")
    p.add_argument("--only", nargs="+", choices=ORDER, help="run only these benchmarks")
    p.add_argument("--skip", nargs="+", choices=ORDER, default=[], help="skip these benchmarks")
    p.add_argument("--dag-workdir", type=Path, default=None,
                   help="run the DAG(s) in this folder and keep it (e.g. `.` after `make clean-results`: the"
                        " timed default run then also leaves the report in results/); default: a fresh temporary one")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads of the in-process benchmarks")
    p.add_argument("--cores", type=int, default=2, help="--cores of the whole-DAG runs")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds-long sizes, for the tests
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench.json")
    p.add_argument("--figure", type=Path, default=None, help="default: the --out path with .png")
    args = p.parse_args(argv)
    if args.dag is None:
        args.dag = "none" if args.quick else "smoke"
    if args.dag_workdir is not None and args.dag == "both":
        p.error("--dag-workdir takes one DAG run: use --dag smoke or --dag default with it")
    # one BLAS/OpenMP pool size for the in-process benchmarks, set before numpy/torch are imported
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from repro.common.io import atomic_write_json, read_json
    from repro.common.provenance import now_iso

    selected = [b for b in ORDER if (args.only is None or b in args.only) and b not in args.skip]
    if args.dag == "none" and args.only is None:
        selected = [b for b in selected if b != "dag"]
    benches = _benchmarks(args)
    started = now_iso()
    new: list[dict[str, Any]] = []
    failed = []
    for name in selected:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = benches[name]()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            rows = [_error_row(name, exc)]
            failed.append(name)
        for r in rows:
            r["benchmark"] = name
            r["bench_s"] = time.perf_counter() - t0
            print(f"   {'met ' if r['met'] else 'MISS'}  {r['name']}: ours {r['ours']:.4g} {r['unit']}, reference "
                  f"{r['reference'] if r['reference'] is None else format(r['reference'], '.4g')}, ratio {r['ratio']:.3g}"
                  f"  (goal {r['goal']})", flush=True)
        new += rows
    old = read_json(args.out).get("rows", []) if args.out.exists() else []
    rows = _merge(old, new, set(selected))
    doc = {"command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
           "started": started, "finished": now_iso(), "machine": machine(), "rows": rows}
    atomic_write_json(args.out, _finite(doc))
    figure = args.figure or args.out.with_suffix(".png")
    plot(rows, figure)
    print(f"wrote {args.out} and {figure}: {sum(r['met'] for r in rows)}/{len(rows)} goals met")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
