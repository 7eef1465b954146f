"""Benchmark: 1-D Hessian-weighted k-means (sort once + prefix sums) vs scikit-learn's KMeans.

    .venv/bin/python bench/quant_kmeans.py [--n 1000000] [--k 32] [--threads 1]

Both minimize the Hessian-weighted k-means objective of Choi et al. (1612.01543, Sec. 3.2), sum_i h_i (w_i - c_j(i))^2, on the same 1M synthetic
"weights" (a Laplace/Gaussian mixture like a trained net's) with log-normal Hessian weights.
scikit-learn gets ``sample_weight=h`` and its defaults (k-means++ seeding, n_init=1, Lloyd); ours is
timed end to end (sort, prefix sums, seeding, Lloyd, labels), with the stage's default seeding
(k-means++) and with the optimal-partition seeding (dp). Prints the speed ratio and both objectives
(goal: >= 10x faster, objective no worse).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_weights(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = np.concatenate([rng.laplace(0.0, 0.05, n // 2), rng.normal(0.0, 0.02, n - n // 2)])
    h = np.exp(rng.normal(0.0, 1.0, n))
    return w, h


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="threads for scikit-learn (ours is single-threaded numpy)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from repro.quant.kmeans1d import weighted_kmeans_1d

    w, h = make_weights(args.n, args.seed)
    with threadpool_limits(args.threads):
        t_sk, sk = best_time(lambda: KMeans(args.k, n_init=1, random_state=args.seed).fit(w[:, None], sample_weight=h), 1)
        sk_obj = float(sk.inertia_)
        rows = []
        for init in ("kmeans++", "dp"):
            rng = np.random.default_rng(args.seed)
            t, res = best_time(lambda: weighted_kmeans_1d(w, h, args.k, init=init, rng=rng), args.repeats)
            rows.append((init, t, res.objective, res.n_iter))
    print(f"N = {args.n:,} weights, k = {args.k}, sklearn threads = {args.threads}")
    print(f"{'method':<34}{'time (s)':>10}{'objective':>16}{'speed-up':>10}{'obj / sklearn':>15}")
    print(f"{'sklearn KMeans(sample_weight)':<34}{t_sk:>10.3f}{sk_obj:>16.6f}{1.0:>10.1f}{1.0:>15.6f}")
    ok = True
    for init, t, obj, it in rows:
        name = f"ours 1-D weighted Lloyd ({init})"
        print(f"{name:<34}{t:>10.3f}{obj:>16.6f}{t_sk / t:>10.1f}{obj / sk_obj:>15.6f}   ({it} Lloyd iterations)")
        ok &= (t_sk / t >= 10.0) and obj <= sk_obj * (1 + 1e-9)
    print("goal (>= 10x faster, objective no worse):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
