"""Benchmark: growth of Transitive Invariance graph building with the number of patches.

    .venv/bin/python bench/graph_scaling.py [--sizes 10000 50000 200000] [--threads 1]
    .venv/bin/python -m bench.graph_scaling --quick

Times :func:`repro.graph.graph.build_graph` (spherical k-means parents, mutual top-10 neighbours
inside parents with one neighbour per video, 4-clique children, transitive pairs and the 7:2 pair
mixture; 1708.02901 Sec. 3.2-3.3) on synthetic unit feature vectors at growing N, and prints the
fitted growth exponent b of time ~ N^b (least squares on log-log). Goal: near-linear (b <~ 1.2):
there is no N x N matrix — k-means costs O(N K d) per iteration with K fixed, and the neighbour
search is bounded by ``knn_bucket`` per point (parents larger than that are bisected).

Reference, timed at the same sizes in the same run: one assignment pass of the same points to K fixed
centres (``x @ C.T`` and an argmax, O(N K d), exactly linear in N); its fitted exponent shows what a
linear workload measures as on this machine at these sizes (cache effects, noise).

Synthetic data: ``n_modes`` directions on the unit sphere in ``dim`` dimensions, each point one of
them plus Gaussian noise, 10 points per "video", 60% of points with a track end (an extra node).
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread unless told otherwise: set before numpy is imported, or OpenBLAS keeps
# its default thread pool and small matrix products thrash on a shared machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402

GOAL_EXPONENT = 1.2
QUICK_SIZES = [5_000, 20_000, 80_000]

BUILD = dict(n_clusters=100, min_cluster_size=10, kmeans_iters=10, knn=10, exclude_same_video=True,
             one_neighbour_per_video=True, max_groups_per_node=1, knn_bucket=512, pair_ratio=[7, 2])


def make_features(n: int, dim: int, n_modes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(unit features [n,dim], video [n_nodes], track_end [n_nodes], n_nodes)."""
    from repro.graph.features import l2_normalize

    rng = np.random.default_rng(seed)
    modes = l2_normalize(rng.normal(size=(n_modes, dim)))
    x = l2_normalize(modes[rng.integers(0, n_modes, n)] + rng.normal(size=(n, dim)) / np.sqrt(dim))
    video = np.arange(n) // 10
    tracked = np.flatnonzero(rng.random(n) < 0.6)
    n_nodes = n + len(tracked)
    track_end = np.full(n_nodes, -1, np.int64)
    track_end[tracked] = n + np.arange(len(tracked))
    video_all = np.concatenate([video, video[tracked]])
    return x.astype(np.float32), video_all, track_end, n_nodes


def time_build(n: int, *, dim: int, n_modes: int, seed: int, repeats: int) -> tuple[float, float, dict]:
    """Best wall time and best CPU time (process_time: robust to other jobs on a shared machine)."""
    from repro.graph.graph import build_graph

    x, video, track_end, n_nodes = make_features(n, dim, n_modes, seed)
    best_wall, best_cpu, info = float("inf"), float("inf"), {}
    for r in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        g = build_graph(x, np.arange(n), n_nodes, video, track_end, BUILD, np.random.default_rng(seed + r))
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        info = {"parents": int(g.parent_kept.sum()), "groups": len(g.groups), "pairs": len(g.pairs)}
    return best_wall, best_cpu, info


def time_reference(n: int, *, dim: int, n_modes: int, seed: int, repeats: int) -> float:
    """Best CPU time of a linear-cost pass over the same points: nearest of K fixed centres (O(N K d))."""
    x, *_ = make_features(n, dim, n_modes, seed)
    centres = x[np.random.default_rng(seed).choice(n, BUILD["n_clusters"], replace=False)]  # [K,d]
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        for _ in range(BUILD["kmeans_iters"]):  # as many passes as the k-means of build_graph makes
            np.argmax(x @ centres.T, axis=1)  # [N]
        best = min(best, time.process_time() - c0)
    return best


def fit_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope b of log(seconds) = a + b log(N)."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def run(*, sizes: list[int] | None = None, quick: bool = False, dim: int = 64, n_modes: int = 500,
        repeats: int = 1, threads: int = 1, seed: int = 0, verbose: bool = True) -> list[dict[str, Any]]:
    """One row: the fitted exponent of build_graph's CPU time over N, against a linear reference's."""
    from threadpoolctl import threadpool_limits

    from repro.common.runtime import configure_threads

    configure_threads(threads)
    with threadpool_limits(threads):  # numpy may have been imported (and its BLAS pool sized) already
        return _run(sizes=sizes, quick=quick, dim=dim, n_modes=n_modes, repeats=repeats, threads=threads, seed=seed,
                    verbose=verbose)


def _run(*, sizes, quick, dim, n_modes, repeats, threads, seed, verbose) -> list[dict[str, Any]]:
    sizes = QUICK_SIZES if quick else sorted(sizes or [10_000, 50_000, 200_000])
    walls, cpus, refs, infos = [], [], [], []
    if verbose:
        print(f"graph build, d={dim}, K={BUILD['n_clusters']}, knn={BUILD['knn']}, bucket={BUILD['knn_bucket']}, "
              f"threads={threads}")
    for n in sizes:
        wall, cpu, info = time_build(n, dim=dim, n_modes=n_modes, seed=seed, repeats=repeats)
        ref = time_reference(n, dim=dim, n_modes=n_modes, seed=seed, repeats=max(repeats, 2))
        walls.append(wall)
        cpus.append(cpu)
        refs.append(ref)
        infos.append(info)
        if verbose:
            print(f"  N={n:>8d}  wall {wall:7.2f} s  cpu {cpu:7.2f} s  {cpu / n * 1e6:6.1f} us/patch  "
                  f"(linear reference cpu {ref:6.3f} s)  {info}", flush=True)
    if len(sizes) < 2:
        raise ValueError("graph scaling needs at least two sizes to fit an exponent")
    b_cpu, b_wall, b_ref = fit_exponent(sizes, cpus), fit_exponent(sizes, walls), fit_exponent(sizes, refs)
    if verbose:
        verdict = "near-linear" if b_cpu <= GOAL_EXPONENT else "SUPER-LINEAR"
        print(f"fitted growth exponent: time ~ N^{b_cpu:.2f} (CPU time; wall time N^{b_wall:.2f}; linear reference "
              f"N^{b_ref:.2f}) -> {verdict}, goal <= {GOAL_EXPONENT}")
    return [row("graph: build growth exponent (CPU time ~ N^b)", ours=b_cpu, reference=b_ref, unit="exponent b",
                reference_name="exponent of an O(N K d) nearest-centre pass at the same N",
                goal_on="ours", goal_op="<=", goal=GOAL_EXPONENT,
                details={"sizes": sizes, "cpu_s": cpus, "wall_s": walls, "reference_cpu_s": refs,
                         "wall_exponent": b_wall, "graph": infos, "dim": dim, "build": BUILD})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    p.add_argument("--quick", action="store_true", help="sizes 5000 20000 80000 (seconds on one core)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--modes", type=int, default=500, help="directions the synthetic features cluster around")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run(sizes=args.sizes, quick=args.quick, dim=args.dim, n_modes=args.modes, repeats=args.repeats,
        threads=args.threads, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
