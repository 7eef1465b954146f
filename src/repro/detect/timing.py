"""Inference time per image of every trained detector, measured side by side (FPN Sec. 5.2.1).

"With feature sharing, our FPN-based Faster R-CNN system has inference time of 0.148 seconds per image
on a single NVIDIA M40 GPU for ResNet-50 ... the single-scale ResNet-50 baseline in Table 3(a) runs at
0.32 seconds." Absolute seconds depend on the machine, so the claim is tested as the ratio FPN / C4
(paper: 0.148 / 0.32 = 0.46), measured here so that timing noise cannot favour one model:

* one process times every model of a seed (the trained weights each training job wrote) on the same
  val images, at the config's image size, with the job's thread count;
* models are interleaved: each round times every model once on all images, the order rotated by one
  each round, so a slow spell of a shared machine falls on every model alike;
* on a CPU the clock is the process's CPU time (with one thread the wall time of an idle machine, and
  insensitive to other jobs); on a GPU the wall time with the device synchronised;
* a model's time is the median over rounds of seconds per image of :func:`repro.detect.engine.infer`
  (detections and all RPN proposals, as the evaluation), after one untimed warm-up batch.

The row's per-seed value is FPN's time over C4's for the weights of that seed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN

from repro.common.device import resolve_device
from repro.common.io import atomic_write_json, read_json
from repro.common.provenance import provenance_record
from repro.detect.backbone import build_body
from repro.detect.data import CocoDetection, find_splits
from repro.detect.engine import infer
from repro.detect.models import DetectorSettings, build_detector


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def time_models(models: Mapping[str, FasterRCNN], images: Sequence[Tensor], *, rounds: int, batch_size: int,
                box_proposals: int | None, device: torch.device) -> dict[str, list[float]]:
    """Seconds per image of each model in each round, the models interleaved (module doc)."""
    names = list(models)
    batches = [[im.to(device) for im in images[i:i + batch_size]] for i in range(0, len(images), batch_size)]
    for name in names:  # warm-up: first-call allocations and kernel selection are not timed
        infer(models[name], batches[0], box_proposals=box_proposals)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = _clock(device)
            for batch in batches:
                infer(models[name], batch, box_proposals=box_proposals)
            out[name].append((_clock(device) - t0) / len(images))
    return out


def load_detector(model: str, weights: Path, *, cfg: dict[str, Any], num_classes: int,
                  device: torch.device) -> FasterRCNN:
    """A trained detector from the state_dict its training job wrote (built as the job built it)."""
    body = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"], imagenet_init=False)
    det = build_detector(model, body=body, num_classes=num_classes, settings=DetectorSettings.from_config(cfg))
    det.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return det.to(device).eval()


def timing_summary(per_seed: Mapping[int, Mapping[str, list[float]]]) -> dict[str, Any]:
    """Median s/image per model and seed, their mean over seeds, and FPN / C4 per seed (where both ran)."""
    medians = {s: {m: statistics.median(v) for m, v in times.items()} for s, times in per_seed.items()}
    models = sorted({m for t in medians.values() for m in t})
    mean = {m: statistics.fmean(t[m] for t in medians.values() if m in t) for m in models}
    ratio = {s: t["fpn"] / t["c4"] for s, t in medians.items() if "fpn" in t and "c4" in t}
    return {"s_per_image": mean, "per_seed_s_per_image": medians, "fpn_over_c4": ratio}


def timing_job(data: Path, metrics: Sequence[Path], weights: Sequence[Path], out: Path, cfg: dict[str, Any], *,
               threads: int, started: str) -> None:
    """``python -m repro.detect time``: time every run's detector (its metrics file names model and seed),
    seed by seed, on the first ``timing_images`` val images, and write the timing JSON."""
    if len(metrics) != len(weights):
        raise ValueError(f"--metrics ({len(metrics)}) and --weights ({len(weights)}) must pair up")
    device = resolve_device(cfg["device"], key="detect.device")
    train_split, val_split = find_splits(data)
    val = CocoDetection(val_split, max_images=cfg["timing_images"], cache=False)
    num_classes = len(train_split.coco["categories"]) + 1
    images = [val[i][0] for i in range(len(val))]
    runs: dict[int, dict[str, Path]] = {}
    for m, w in zip(metrics, weights):
        run = read_json(m)
        runs.setdefault(int(run["seed"]), {})[str(run["model"])] = Path(w)
    per_seed = {}
    for seed, paths in sorted(runs.items()):
        models = {m: load_detector(m, w, cfg=cfg, num_classes=num_classes, device=device) for m, w in paths.items()}
        per_seed[seed] = time_models(models, images, rounds=cfg["timing_rounds"], batch_size=cfg["eval_batch_size"],
                                     box_proposals=cfg["box_proposals_test"], device=device)
        print(f"[detect time] seed {seed}: " + ", ".join(
            f"{m} {statistics.median(v):.4f} s/img" for m, v in per_seed[seed].items()), flush=True)
    atomic_write_json(out, {
        "units": "seconds per image (median over rounds)",
        "clock": "wall, device synchronised" if device.type == "cuda" else "process CPU time",
        "device": str(device), "threads": threads, "image_size": [cfg["min_size"], cfg["max_size"]],
        "n_images": len(images), "rounds": cfg["timing_rounds"], "per_round": per_seed,
        **timing_summary(per_seed), "provenance": provenance_record(cfg, None, started=started, stage="detect"),
    })
