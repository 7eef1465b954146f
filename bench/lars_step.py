"""Benchmark (not a test): time of one LARS optimizer step over one SGD step (same model, same grads).

    .venv/bin/python bench/lars_step.py [--model alexnet_bn|resnet18] [--device cpu|cuda] [--threads 1]

Both optimizers use torch's foreach code path; LARS adds two ``_foreach_norm`` calls, a few small
vector ops on the stacked norms and one ``_foreach_mul_``, and never synchronises with the host.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from repro.lars.models import alexnet_bn_small
from repro.lars.optim import LARS


def _model(name: str) -> nn.Module:
    if name == "alexnet_bn":
        return alexnet_bn_small(num_classes=10, image_size=32, conv=(64, 128, 256), fc=512)
    if name == "resnet18":
        import torchvision

        return torchvision.models.resnet18(num_classes=1000)
    raise SystemExit(f"unknown model {name!r}")


def _time_steps(opt: torch.optim.Optimizer, device: torch.device, n: int) -> float:
    for _ in range(5):  # warm-up (state allocation, kernels)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="alexnet_bn", choices=["alexnet_bn", "resnet18"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = _model(args.model).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True)
    lars = LARS(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    t_sgd = _time_steps(sgd, device, args.steps)
    t_lars = _time_steps(lars, device, args.steps)
    print(f"{args.model} on {device} ({n_tensors} tensors, {n_params / 1e6:.2f} M parameters, {args.threads} thread(s))")
    print(f"SGD step  {t_sgd * 1e3:8.3f} ms")
    print(f"LARS step {t_lars * 1e3:8.3f} ms   ratio LARS/SGD = {t_lars / t_sgd:.2f}")


if __name__ == "__main__":
    main()
