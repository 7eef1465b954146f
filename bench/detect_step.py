"""Benchmark: one detector training step (and inference) of the stage vs the same detector with
torchvision's proposal filtering and contiguous (NCHW) weights, timed in the same process.

    .venv/bin/python -m bench.detect_step [--models c4 fpn c5] [--steps 4] [--rounds 3] [--threads 1]

Ours is the detector exactly as ``python -m repro.detect train`` builds it (the embedded default's
``detect`` config, 256 px, batch 4): the RPN's NMS stops at the post-NMS budget
(``repro.detect.rpn``) and the weights (so every convolution, the C4 head's too) are channels-last.
The reference is the same detector with torchvision's ``RegionProposalNetwork.filter_proposals`` (NMS
over every candidate) and NCHW weights: what the stage ran before. Both start every block from the same
weights and train ``steps`` steps on the same batches (the stage's loader and loop); blocks alternate
(order swapped every round) and the time is process CPU time (one thread), so other jobs on a shared
machine do not enter the ratio. Row value: median over rounds of ours / reference. Goals for a train
step: <= 0.8 for C4 (its single-map RPN ranks 3840 candidates at 256 px; the others at most 1000 per
level), <= 1.0 elsewhere. Inference (s/image of ``repro.detect.engine.infer`` on the val images, same
alternation): <= 1.05 (no slower, within the noise of a shared machine). Measured on 2 shared cores
(3 rounds x 4 steps): train C4 0.69, FPN 0.90, C5 0.88; inference C4 0.78, FPN 0.95, C5 0.94.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402
from bench.detect_throughput import _default_config, make_data  # noqa: E402

GOALS = {"c4": 0.8}  # other models: 1.0


class _NCHWConv5Head(torch.nn.Module):
    """The C4 head as before: conv5 in the default layout, then average pooling."""

    def __init__(self, conv5: torch.nn.Module) -> None:
        super().__init__()
        self.conv5 = conv5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(x).mean(dim=(2, 3))


def reference_of(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a stage detector with torchvision's proposal filtering and NCHW weights."""
    from torchvision.models.detection.rpn import RegionProposalNetwork

    from repro.detect.models import _Conv5Head

    ref = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    ref.rpn.__class__ = RegionProposalNetwork  # same attributes; torchvision's filter_proposals
    if isinstance(ref.roi_heads.box_head, _Conv5Head):
        ref.roi_heads.box_head = _NCHWConv5Head(ref.roi_heads.box_head.conv5)
    return ref


def _train_block(model, train_set, cfg, steps: int) -> float:
    from repro.detect.data import train_loader
    from repro.detect.engine import build_optimizer, train

    optimizer = build_optimizer(model, cfg)
    loader = train_loader(train_set, batch_size=cfg["batch_size"], seed=0, start=0, total=steps, hflip=cfg["hflip"])
    c0 = time.process_time()
    train(model, optimizer, loader, device=torch.device("cpu"), start_step=0, total_steps=steps,
          lr_fn=lambda s: cfg["lr"] * 0.1, grad_clip=cfg["grad_clip"], checkpoint_every=10**9,
          save_checkpoint=lambda *_: None)
    return time.process_time() - c0


def _infer_block(model, val_set, cfg) -> float:
    from repro.detect.engine import infer

    images = [val_set[i][0] for i in range(len(val_set))]
    c0 = time.process_time()
    for i in range(0, len(images), cfg["eval_batch_size"]):
        infer(model, images[i:i + cfg["eval_batch_size"]], box_proposals=cfg["box_proposals_test"])
    return (time.process_time() - c0) / len(images)


def run(models: tuple[str, ...] = ("c4", "fpn", "c5"), *, steps: int = 4, rounds: int = 3, threads: int = 1,
        n_train: int = 64, n_val: int = 16) -> list[dict[str, Any]]:
    """Rows ``detect_step_<model>`` (train) and ``detect_infer_<model>``: ours / reference CPU time."""
    from bench.detect_throughput import build
    from repro.detect.config import resolve_config

    torch.set_num_threads(threads)
    cfg = resolve_config(_default_config()["detect"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", n_train=n_train, n_val=n_val, seed=0)
        for name in models:
            torch.manual_seed(0)
            ours, train_set, val_set = build(name, data, cfg)
            ref = reference_of(ours)
            state = copy.deepcopy(ours.state_dict())
            times: dict[str, dict[str, list[float]]] = {"train": {"ours": [], "ref": []},
                                                        "infer": {"ours": [], "ref": []}}
            for r in range(rounds):
                for arm in (("ours", "ref") if r % 2 == 0 else ("ref", "ours")):
                    model = ours if arm == "ours" else ref
                    model.load_state_dict(state)
                    times["train"][arm].append(_train_block(model, train_set, cfg, steps))
                    times["infer"][arm].append(_infer_block(model, val_set, cfg))
            for kind, unit in (("train", f"CPU s / {steps} steps"), ("infer", "CPU s / image")):
                t = times[kind]
                ratio = statistics.median(o / f for o, f in zip(t["ours"], t["ref"]))
                goal = GOALS.get(name, 1.0) if kind == "train" else 1.05
                rows.append(row(f"detect_{'step' if kind == 'train' else 'infer'}_{name}",
                                ours=statistics.median(t["ours"]), reference=statistics.median(t["ref"]),
                                ratio=ratio, unit=unit, goal_on="ratio", goal_op="<=", goal=goal,
                                reference_name="same detector, torchvision filter_proposals, NCHW weights",
                                details={"ours_s": t["ours"], "reference_s": t["ref"], "steps": steps,
                                         "threads": threads, "n_val": n_val}))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["c4", "fpn", "c5"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for r in run(tuple(args.models), steps=args.steps, rounds=args.rounds, threads=args.threads):
        print(f"{r['name']}: ours {r['ours']:.3f} reference {r['reference']:.3f} {r['unit']}"
              f" ratio {r['ratio']:.3f} (goal {r['goal']}: {'met' if r['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
