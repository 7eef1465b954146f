"""One detection training job: build the detector, train with checkpoints, evaluate, write the outputs.

``python -m repro.detect train`` (:mod:`repro.detect.cli`) only parses the job and calls
:func:`train_and_evaluate` on every rank of the run (one process, or N under DDP).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.common.amp import from_config
from repro.common.checkpoint import RunCheckpoint, rng_state, run_identity, set_rng_state
from repro.common.distributed import DistInfo, unwrap, wrap_model
from repro.common.io import atomic_torch_save, atomic_write_json
from repro.common.provenance import provenance_record
from repro.detect.backbone import build_body, freeze_layers, load_backbone_weights
from repro.detect.data import CocoDetection, eval_loader, find_splits, train_loader
from repro.detect.engine import NonFiniteLossError, build_optimizer, evaluate_model, lr_at, train, write_train_log
from repro.detect.metrics import coco_from_dict, score_results
from repro.detect.models import FIXED_POOLER, DetectorSettings, build_detector

# Config keys that change how a run is carried out but not its numbers (not in a checkpoint's identity).
NOT_SHAPING_RUN = ("checkpoint_every", "device", "num_workers", "cache_images", "eval_batch_size", "models", "seeds",
                   "transfer", "amp", "timing_images", "timing_rounds", "test_dev")


@dataclass(frozen=True)
class TrainJob:
    """What one ``train`` command trains and where its outputs go (every path from the rule)."""

    model: str
    seed: int
    data: Path
    out: Path
    started: str
    threads: int = 1
    arm: str | None = None
    transfer: bool = False
    backbone_weights: Path | None = None
    checkpoint_dir: Path | None = None
    weights_out: Path | None = None
    metrics_csv: Path | None = None
    detections_out: Path | None = None
    proposals_out: Path | None = None


def train_and_evaluate(job: TrainJob, cfg: dict[str, Any], info: DistInfo, device: torch.device) -> int:
    """Train (every rank), then evaluate and write the outputs (rank 0); the exit code (3: diverged)."""
    rank = f" rank={info.rank}/{info.world_size}" if info.enabled else ""
    print(f"[detect train] model={job.model} seed={job.seed} device={device} arm={job.arm}{rank}", flush=True)

    train_split, val_split = find_splits(job.data)
    train_set = CocoDetection(train_split, skip_empty=cfg["skip_empty_train"], cache=cfg["cache_images"])
    val_set = CocoDetection(val_split, max_images=cfg["max_val_images"], cache=cfg["cache_images"])
    if train_set.cat_ids != val_set.cat_ids:
        raise ValueError(f"{job.data}: train and val splits have different categories")

    body = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"],
                      imagenet_weights=cfg["imagenet_weights"], imagenet_init=job.backbone_weights is None)
    if job.backbone_weights is not None:
        load_backbone_weights(body, job.backbone_weights)
        print(f"[detect train] backbone initialised from {job.backbone_weights}", flush=True)
    freeze_layers(body, cfg["trainable_layers"])
    settings = DetectorSettings.from_config(cfg)
    precision = from_config(cfg, device, section="detect")  # mixed precision on CUDA (repro.common.amp)
    model = precision.prepare(build_detector(job.model, body=body, num_classes=train_set.num_classes,
                                             settings=settings).to(device))
    # DDP with several ranks (BatchNorm synchronised); fpn_p2_only leaves P3-P5's 3x3 convs unused
    net = wrap_model(model, info, device, find_unused_parameters=job.model == "fpn_p2_only")
    model = unwrap(net)
    optimizer = build_optimizer(model, cfg)

    total = int(cfg["iterations"])
    start, train_s_before, recent, log_rows = 0, 0.0, None, None
    ckpt = RunCheckpoint(job.checkpoint_dir, run_identity(
        stage="detect.train", config=cfg, seed=job.seed, ignore=NOT_SHAPING_RUN,
        inputs={"data": job.data, "backbone": job.backbone_weights}, model=job.model, transfer=job.transfer,
    ), is_main=info.is_main)
    state = ckpt.resume()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        precision.restore(state)
        start, train_s_before = int(state["step"]), float(state["train_s"])
        recent, log_rows = state["recent_losses"], state["log"].tolist()
        print(f"resumed from step {start}", flush=True)

    t0 = time.perf_counter()

    def checkpoint(step: int, recent_losses: dict[str, list[float]], rows: list[list[float]]) -> None:
        ckpt.save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "rng": rng_state(), "train_s": train_s_before + time.perf_counter() - t0,
            "recent_losses": recent_losses, "log": torch.tensor(rows, dtype=torch.float64),
            **precision.checkpoint_state(),
        })

    decay_steps = [int(round(f * total)) for f in cfg["lr_decay_at"]]
    loader = train_loader(train_set, batch_size=cfg["batch_size"], seed=job.seed, start=start, total=total,
                          hflip=cfg["hflip"], num_workers=cfg["num_workers"], rank=info.rank,
                          world_size=info.world_size)
    try:
        final_losses, log_rows = train(
            net, optimizer, loader, device=device, start_step=start, total_steps=total,
            lr_fn=lambda s: lr_at(s, base_lr=cfg["lr"], warmup_iters=cfg["warmup_iters"],
                                  warmup_factor=cfg["warmup_factor"], steps=decay_steps, gamma=cfg["lr_gamma"]),
            grad_clip=cfg["grad_clip"], checkpoint_every=cfg["checkpoint_every"], save_checkpoint=checkpoint,
            recent=recent, log_rows=log_rows, dist=info, precision=precision,
        )
    except NonFiniteLossError as exc:
        print(f"[detect train] ERROR: {exc}", file=sys.stderr, flush=True)
        return 3
    train_s = train_s_before + time.perf_counter() - t0
    if not info.is_main:
        return 0
    if job.metrics_csv is not None:
        write_train_log(job.metrics_csv, log_rows)
    if job.weights_out is not None:
        atomic_torch_save(job.weights_out, model.state_dict())

    label_to_cat = [0] + val_set.cat_ids
    out = evaluate_model(model, eval_loader(val_set, batch_size=cfg["eval_batch_size"], num_workers=cfg["num_workers"]),
                         device=device, box_proposals=cfg["box_proposals_test"], label_to_cat=label_to_cat)
    scores = score_results(coco_from_dict(val_set.coco_gt()), out["detections"], out["proposals"])
    bbox, rpn = scores["bbox"], scores["rpn"]
    if job.detections_out is not None:  # COCO results files: python -m repro.detect score recomputes the metrics
        atomic_write_json(job.detections_out, out["detections"], indent=None)
    if job.proposals_out is not None:
        atomic_write_json(job.proposals_out, out["proposals"], indent=None)
    result = {
        "model": job.model,
        "arm": job.arm,
        "seed": job.seed,
        "units": "bbox, rpn and voc_map50 are fractions in [0, 1]; -1 means no ground truth in that size bucket",
        "bbox": bbox,
        "rpn": rpn,
        "voc_map50": scores["voc_map50"],
        "train_s": train_s,
        "infer_s_per_img": out["infer_s_per_img"],
        "iters": total,
        "batch_size": cfg["batch_size"],
        "image_size": [cfg["min_size"], cfg["max_size"]],
        "backbone": cfg["backbone"] + (f"(width={cfg['width']}, blocks={cfg['blocks']})"
                                       if cfg["backbone"] == "tiny_resnet" else ""),
        "pretrained": (f"backbone weights {job.backbone_weights}" if job.backbone_weights is not None
                       else "ImageNet" if cfg["backbone"] != "tiny_resnet" and cfg["imagenet_weights"] else False),
        "pooler": FIXED_POOLER.get(job.model, cfg["pooler"]),
        "rpn_budget": settings.rpn_budget(job.model),
        "proposals_per_image": out["proposals_per_image"],
        "canonical_scale": settings.roi_canonical_scale,
        "anchor_sizes": cfg["anchor_sizes"],
        "n_train_images": len(train_set),
        "n_val_images": out["n_images"],
        "n_detections": len(out["detections"]),
        "final_losses": final_losses,
        "device": str(device),
        "threads": job.threads,
        "provenance": provenance_record(cfg, job.seed, started=job.started, stage="detect"),
    }
    atomic_write_json(job.out, result)
    ckpt.finish()
    print(f"[detect train] {job.model} seed {job.seed}: AP {bbox['AP']:.3f} AP_s {bbox['AP_s']:.3f}"
          f" AR1k {rpn['AR1k']:.3f} train {train_s:.0f}s infer {out['infer_s_per_img']:.3f}s/img", flush=True)
    return 0
