"""Benchmark (not a test): time of one LARS optimizer step over one SGD step (same model, same grads).

    .venv/bin/python bench/lars_step.py [--model alexnet_bn|resnet18] [--device cpu|cuda] [--threads 1]
    .venv/bin/python -m bench.lars_step --quick

Both optimizers use torch's foreach code path; LARS adds two ``_foreach_norm`` calls, a few small
vector ops on the stacked norms and one ``_foreach_mul_``, and never synchronises with the host.
The reference is ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4, foreach=True)``. The two are
timed in many short alternating blocks (SGD, LARS, SGD, LARS, ...); the ratio is the median over the
blocks of LARS block / the SGD block just before it, so a burst of load from other jobs on a shared
machine cannot land on one side only. Goal: LARS / SGD <= 1.3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402
from repro.lars.models import alexnet_bn_small  # noqa: E402
from repro.lars.optim import LARS  # noqa: E402

GOAL_RATIO = 1.3


def _model(name: str) -> nn.Module:
    if name == "alexnet_bn":
        return alexnet_bn_small(num_classes=10, image_size=32, conv=(64, 128, 256), fc=512)
    if name == "resnet18":
        import torchvision

        return torchvision.models.resnet18(num_classes=1000)
    raise SystemExit(f"unknown model {name!r}")


def _time_block(opt: torch.optim.Optimizer, device: torch.device, n: int) -> float:
    """Mean seconds per step over ``n`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def run(*, model: str = "alexnet_bn", device: str | None = None, threads: int = 1, steps: int = 400,
        blocks: int = 80, quick: bool = False, verbose: bool = True) -> list[dict[str, Any]]:
    """One row: seconds per LARS step over seconds per SGD step (median of paired alternating blocks)."""
    torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if quick:
        steps, blocks = 150, 30
    net = _model(model).to(dev)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    n_params = sum(p.numel() for p in net.parameters())
    n_tensors = len(list(net.parameters()))
    sgd = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True)
    lars = LARS(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    for opt in (sgd, lars):  # warm-up (state allocation, kernels)
        _time_block(opt, dev, 5)
    t_sgd, t_lars = [], []
    per_block = max(1, steps // blocks)
    for _ in range(blocks):
        t_sgd.append(_time_block(sgd, dev, per_block))
        t_lars.append(_time_block(lars, dev, per_block))
    sgd_s, lars_s = statistics.median(t_sgd), statistics.median(t_lars)
    ratio = statistics.median(l / s for l, s in zip(t_lars, t_sgd))
    if verbose:
        print(f"{model} on {dev} ({n_tensors} tensors, {n_params / 1e6:.2f} M parameters, {threads} thread(s))")
        print(f"SGD step  {sgd_s * 1e3:8.3f} ms")
        print(f"LARS step {lars_s * 1e3:8.3f} ms   ratio LARS/SGD = {ratio:.2f} (goal <= {GOAL_RATIO})")
    return [row(f"lars: LARS step / SGD step ({model})", ours=lars_s * 1e3, reference=sgd_s * 1e3, unit="ms/step", ratio=ratio,
                reference_name="torch.optim.SGD(momentum, weight_decay, foreach=True).step(); ratio = median of paired blocks",
                goal_on="ratio", goal_op="<=", goal=GOAL_RATIO, device=str(dev),
                details={"model": model, "tensors": n_tensors, "parameters": n_params, "threads": threads,
                         "steps_per_block": per_block, "blocks": blocks,
                         "sgd_ms_blocks": [t * 1e3 for t in t_sgd], "lars_ms_blocks": [t * 1e3 for t in t_lars]})]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="alexnet_bn", choices=["alexnet_bn", "resnet18"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--blocks", type=int, default=80, help="alternating SGD/LARS blocks; the median paired ratio counts")
    ap.add_argument("--quick", action="store_true", help="150 steps in 30 blocks")
    args = ap.parse_args(argv)
    run(model=args.model, device=args.device, threads=args.threads, steps=args.steps, blocks=args.blocks,
        quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
