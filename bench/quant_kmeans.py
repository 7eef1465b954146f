"""Benchmark: 1-D Hessian-weighted k-means (sort once + prefix sums) vs scikit-learn's KMeans.

    .venv/bin/python bench/quant_kmeans.py [--n 1000000] [--k 32] [--threads 1]
    .venv/bin/python -m bench.quant_kmeans --quick

Both minimize the Hessian-weighted k-means objective of Choi et al. (1612.01543, Sec. 3.2), sum_i h_i (w_i - c_j(i))^2, on the same 1M synthetic
"weights" (a Laplace/Gaussian mixture like a trained net's) with log-normal Hessian weights.
scikit-learn gets ``sample_weight=h`` and its defaults (k-means++ seeding, n_init=1, Lloyd); ours is
timed end to end (sort, prefix sums, seeding, Lloyd, labels), with the stage's default seeding
(k-means++) and with the optimal-partition seeding (dp). Prints the speed ratio and both objectives
(goal: >= 10x faster, objective no worse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import best_of, row  # noqa: E402

GOAL_SPEEDUP = 10.0


def make_weights(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = np.concatenate([rng.laplace(0.0, 0.05, n // 2), rng.normal(0.0, 0.02, n - n // 2)])
    h = np.exp(rng.normal(0.0, 1.0, n))
    return w, h


def run(*, n: int = 1_000_000, k: int = 32, threads: int = 1, repeats: int = 3, seed: int = 0,
        verbose: bool = True) -> list[dict[str, Any]]:
    """Two rows: time of ours (stage default k-means++ seeding) over sklearn's, and objective over sklearn's."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from repro.quant.kmeans1d import weighted_kmeans_1d

    w, h = make_weights(n, seed)
    with threadpool_limits(threads):
        t_sk, sk = best_of(lambda: KMeans(k, n_init=1, random_state=seed).fit(w[:, None], sample_weight=h), 1)
        sk_obj = float(sk.inertia_)
        results = {}
        for init in ("kmeans++", "dp"):
            rng = np.random.default_rng(seed)
            t, res = best_of(lambda: weighted_kmeans_1d(w, h, k, init=init, rng=rng), repeats)
            results[init] = (t, float(res.objective), int(res.n_iter))
    if verbose:
        print(f"N = {n:,} weights, k = {k}, sklearn threads = {threads}")
        print(f"{'method':<34}{'time (s)':>10}{'objective':>16}{'speed-up':>10}{'obj / sklearn':>15}")
        print(f"{'sklearn KMeans(sample_weight)':<34}{t_sk:>10.3f}{sk_obj:>16.6f}{1.0:>10.1f}{1.0:>15.6f}")
        for init, (t, obj, it) in results.items():
            name = f"ours 1-D weighted Lloyd ({init})"
            print(f"{name:<34}{t:>10.3f}{obj:>16.6f}{t_sk / t:>10.1f}{obj / sk_obj:>15.6f}   ({it} Lloyd iterations)")
    t, obj, it = results["kmeans++"]
    details = {"n": n, "k": k, "threads": threads, "sklearn_n_iter": int(sk.n_iter_), "ours_n_iter": it,
               "speedup": t_sk / t,
               "dp_init": {"seconds": results["dp"][0], "objective": results["dp"][1], "speedup": t_sk / results["dp"][0],
                           "objective_ratio": results["dp"][1] / sk_obj}}
    ref = "sklearn KMeans(n_init=1, sample_weight=h)"
    rows = [
        row(f"quant: HW k-means time ({n / 1e6:g}M weights, k={k})", ours=t, reference=t_sk, unit="s", reference_name=ref,
            goal_on="ratio", goal_op="<=", goal=1 / GOAL_SPEEDUP, goal_text=f">= {GOAL_SPEEDUP:g}x faster (ratio <= 0.1)",
            details=details),
        row(f"quant: HW k-means objective ({n / 1e6:g}M weights, k={k})", ours=obj, reference=sk_obj, unit="sum h (w-c)^2",
            reference_name=ref, goal_on="ratio", goal_op="<=", goal=1.0 + 1e-9, goal_text="no worse (ratio <= 1)",
            details={"n": n, "k": k}),
    ]
    if verbose:
        ok = all(r["met"] for r in rows)
        print("goal (>= 10x faster, objective no worse):", "met" if ok else "NOT met")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="threads for scikit-learn (ours is single-threaded numpy)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="one repeat")
    args = p.parse_args(argv)
    run(n=args.n, k=args.k, threads=args.threads, repeats=1 if args.quick else args.repeats, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
