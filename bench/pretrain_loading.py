"""Benchmark: data loading vs compute in the pretraining loop (goal: loading < 10% of the step time).

    .venv/bin/python -m bench.pretrain_loading [--steps 30] [--threads 1]
    .venv/bin/python -m bench.pretrain_loading --quick

Runs the stage's own loop, :func:`repro.pretrain.engine.train`, unchanged (read-only use of the
stage's code) on the embedded default's settings (``pretrain:`` of config.yaml, the backbone of
``detect:``, ``graph.mine.patch_size`` patches) with synthetic patches and pairs, and splits every
step with two official hooks:

* ``net.register_forward_pre_hook``: the forward pass starts;
* ``optimizer.register_step_post_hook``: the optimizer step has finished.

compute = forward start -> optimizer step end (forward, ranking loss, backward, update);
loading = previous step end -> forward start (pair indices, patch fetch from the ``PatchBank``,
uint8 -> float normalisation, flips, the LR, the per-step bookkeeping). The fetch alone is timed by
wrapping the bank. Rows: the bank preloaded in memory (the default: the patches fit) and read from
the memory-mapped ``patches.npy`` on disk (the full-scale path, ``preload_gb`` exceeded). Times are
process CPU time (one thread: what an idle machine's wall time would be); wall-clock shares are in
the details. The ratio is loading / (loading + compute).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL_SHARE = 0.10


def _default_config() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def _synthetic(n_patches: int, size: int, n_pairs: int, n_parents: int, seed: int):
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, size=(n_patches, 3, size, size), dtype=np.uint8)  # [N,3,S,S]
    a = rng.integers(0, n_patches, n_pairs)
    b = rng.integers(0, n_patches, n_pairs)
    parent = rng.integers(0, n_parents, n_pairs)
    return patches, a, b, parent


class _TimedFetch:
    """Wraps the PatchBank: CPU and wall seconds of every fetch."""

    def __init__(self, bank) -> None:
        self.bank, self.cpu, self.wall = bank, [], []

    def __call__(self, rows):
        c0, w0 = time.process_time(), time.perf_counter()
        out = self.bank(rows)
        self.cpu.append(time.process_time() - c0)
        self.wall.append(time.perf_counter() - w0)
        return out


def measure(*, preload: bool, steps: int, warmup: int, threads: int, seed: int, workdir: Path,
            cfg: dict[str, Any]) -> dict[str, Any]:
    """Per-step loading and compute seconds (CPU and wall) of ``steps`` steps after ``warmup`` steps."""
    import torch

    from repro.common.runtime import configure_threads
    from repro.pretrain.data import PatchBank
    from repro.pretrain.engine import TrainConfig, make_optimizer, train
    from repro.pretrain.models import triplet_net

    configure_threads(threads)
    p = cfg["pretrain"]
    size = int(cfg["graph"]["mine"]["patch_size"])
    batch = int(p["batch"])
    patches, a, b, parent = _synthetic(max(4000, 4 * batch), size, 20 * batch, 16, seed)
    path = workdir / "patches.npy"
    np.save(path, patches)
    mem = np.load(path, mmap_mode="r")  # as repro.pretrain.data.load_patches opens it
    bank = PatchBank(mem, np.concatenate([a, b]), torch.device("cpu"), preload_bytes=4e9 if preload else 0.0)
    fetch = _TimedFetch(bank)
    torch.manual_seed(seed)
    net = triplet_net(backbone=cfg["detect"]["backbone"], width=int(cfg["detect"]["width"]),
                      blocks=tuple(cfg["detect"].get("blocks", (1, 1, 1, 1))), hidden=int(p["hidden"]),
                      embed=int(p["embed"]))
    opt = make_optimizer(net.parameters(), p["optimizer"])
    marks: list[tuple[str, float, float]] = [("end", time.process_time(), time.perf_counter())]
    net.register_forward_pre_hook(lambda *_: marks.append(("fwd", time.process_time(), time.perf_counter())))
    opt.register_step_post_hook(lambda *_: marks.append(("end", time.process_time(), time.perf_counter())))
    tcfg = TrainConfig(steps=warmup + steps, batch=batch, margin=float(p["margin"]), negatives=p["negatives"],
                       hard_fraction=float(p["hard_fraction"]), flip=bool(p["flip"]), lr=float(p["optimizer"]["lr"]),
                       schedule=p["schedule"], warmup_steps=int(p["warmup_steps"]))
    marks[0] = ("end", time.process_time(), time.perf_counter())
    train(net, opt, fetch, torch.from_numpy(bank.rows_of(a)), torch.from_numpy(bank.rows_of(b)),
          torch.from_numpy(parent), tcfg, seed=seed, desc="bench pretrain")
    kinds = [m[0] for m in marks]
    if kinds != ["end"] + ["fwd", "end"] * (warmup + steps):
        raise RuntimeError("pretrain loop: expected one forward and one optimizer step per training step")
    load_cpu, comp_cpu, load_wall, comp_wall = [], [], [], []
    for i in range(warmup, warmup + steps):
        (_, c_end, w_end), (_, c_fwd, w_fwd), (_, c_next, w_next) = marks[2 * i], marks[2 * i + 1], marks[2 * i + 2]
        load_cpu.append(c_fwd - c_end)
        comp_cpu.append(c_next - c_fwd)
        load_wall.append(w_fwd - w_end)
        comp_wall.append(w_next - w_fwd)
    return {"load_cpu": load_cpu, "compute_cpu": comp_cpu, "load_wall": load_wall, "compute_wall": comp_wall,
            "fetch_cpu": fetch.cpu[warmup:], "batch": batch, "patch_size": size, "preloaded": bank._data is not None}


def run(*, steps: int = 30, warmup: int = 3, threads: int = 1, seed: int = 0, quick: bool = False,
        verbose: bool = True) -> list[dict[str, Any]]:
    """Two rows (bank in memory, bank memory-mapped): loading CPU s per step over the whole step."""
    if quick:
        steps, warmup = 8, 2
    cfg = _default_config()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        for preload in (True, False):
            m = measure(preload=preload, steps=steps, warmup=warmup, threads=threads, seed=seed, workdir=Path(tmp),
                        cfg=cfg)
            load, comp = float(np.sum(m["load_cpu"])) / steps, float(np.sum(m["compute_cpu"])) / steps
            share = load / (load + comp)
            wall_share = float(np.sum(m["load_wall"]) / (np.sum(m["load_wall"]) + np.sum(m["compute_wall"])))
            where = "in memory" if preload else "memory-mapped"
            if verbose:
                print(f"pretrain step ({where}, batch {m['batch']} pairs of {m['patch_size']} px, {threads} thread(s)): "
                      f"loading {load * 1e3:.2f} ms (fetch {np.mean(m['fetch_cpu']) * 1e3:.2f} ms) + compute "
                      f"{comp * 1e3:.1f} ms per step -> loading share {share:.1%} (wall clock {wall_share:.1%}); "
                      f"goal < {GOAL_SHARE:.0%}", flush=True)
            rows.append(row(f"pretrain: data loading share of the step (bank {where})", ours=load * 1e3,
                            reference=(load + comp) * 1e3, ratio=share, unit="ms/step",
                            reference_name="the whole step (loading + forward/loss/backward/update), same run",
                            goal_on="ratio", goal_op="<", goal=GOAL_SHARE, goal_text=f"loading < {GOAL_SHARE:.0%} of the step",
                            details={"steps": steps, "batch_pairs": m["batch"], "patch_size": m["patch_size"],
                                     "threads": threads, "preloaded": m["preloaded"],
                                     "fetch_ms": float(np.mean(m["fetch_cpu"]) * 1e3),
                                     "compute_ms": comp * 1e3, "wall_clock_share": wall_share,
                                     "clock": "process CPU time"}))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="8 steps")
    args = p.parse_args(argv)
    run(steps=args.steps, threads=args.threads, seed=args.seed, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
