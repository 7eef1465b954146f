"""One quantization job: train a net, quantize it with every method, prune and quantize again.

``python -m repro.quant run`` (:mod:`repro.quant.cli`) only parses the job and calls :func:`run_net`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro.common.amp import from_config
from repro.common.checkpoint import RunCheckpoint, run_identity
from repro.common.cli import log
from repro.common.io import atomic_torch_save, atomic_write_json
from repro.common.provenance import provenance_record, write_provenance
from repro.common.rng import PRUNED_OFFSET
from repro.quant.data import augment_crop_flip, load_dataset
from repro.quant.engine import TrainSpec, magnitude_masks, train
from repro.quant.models import build_model
from repro.quant.sweep import sweep_net


@dataclass(frozen=True)
class RunJob:
    """One ``run`` command: the net (a key of ``quant.nets``), its seed, data and output files."""

    net: str
    seed: int
    inp: Path
    out: Path
    weights: Path
    started: str
    checkpoint_dir: Path | None = None


def run_net(job: RunJob, cfg: dict[str, Any], device: torch.device) -> None:
    """Train the net, sweep it dense, then (``prune.enabled``) prune, retrain and sweep again; write the outputs."""
    if job.net not in cfg["nets"]:
        raise ValueError(f"--net {job.net!r} is not in the config's quant.nets ({sorted(cfg['nets'])})")
    net_cfg = cfg["nets"][job.net]

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_dataset(net_cfg["dataset"], job.inp).to(device)
    model = build_model(net_cfg["model"], hidden=tuple(net_cfg.get("hidden", (128, 64))),
                        in_shape=tuple(data.x_train.shape[1:]), num_classes=data.num_classes).to(device)
    spec = TrainSpec(epochs=int(net_cfg["epochs"]), batch_size=int(net_cfg["batch_size"]), lr=float(net_cfg["lr"]),
                     weight_decay=float(net_cfg["weight_decay"]), schedule=net_cfg["schedule"], augment=bool(net_cfg["augment"]))
    precision = from_config(cfg, device, section="quant")  # mixed precision on CUDA (repro.common.amp)
    precision.prepare(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    ckpt_root = Path(job.checkpoint_dir) if job.checkpoint_dir else None

    def checkpoint(phase: str) -> RunCheckpoint:
        """The checkpoint of one training phase of this net (dense training, retraining after pruning)."""
        return RunCheckpoint(ckpt_root / phase if ckpt_root else None, run_identity(
            stage="quant.run", config={"net": net_cfg}, seed=job.seed, inputs={"data": job.inp},
            net=job.net, phase=phase), log=log)

    dense_ckpt = checkpoint("dense")
    augment = augment_crop_flip if spec.augment else None
    log(f"net {job.net}: {net_cfg['model']} on {net_cfg['dataset']} ({data.x_train.shape[0]} train, "
        f"{data.x_test.shape[0]} test) on {device}")
    train_info = train(model, optimizer, data.x_train, data.y_train, spec, seed=job.seed,
                       ckpt=dense_ckpt, ckpt_every=int(cfg["checkpoint_every"]), augment=augment, desc="train",
                       precision=precision)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dense_meta, dense_records = sweep_net(model, optimizer, data, cfg, None, seed=job.seed, tag="dense",
                                           inits=int(cfg["kmeans"]["inits"]), log=log)
    timings["dense_sweep_s"] = time.perf_counter() - t0
    result = {"net": job.net, "seed": job.seed, "dataset": net_cfg["dataset"], "model": net_cfg["model"],
              "device": str(device), "train": train_info, "dense": dense_meta, "sweeps": {"dense": dense_records}}
    weights = {"dense": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

    pc = cfg["prune"]
    pruned_ckpt = checkpoint("pruned")
    if pc["enabled"]:
        t0 = time.perf_counter()
        pruned = copy.deepcopy(model)
        masks = magnitude_masks(pruned, float(net_cfg["prune_fraction"]))
        popt = torch.optim.Adam(pruned.parameters(), lr=float(net_cfg["prune_lr"]), weight_decay=spec.weight_decay)
        pspec = TrainSpec(epochs=int(net_cfg["prune_epochs"]), batch_size=spec.batch_size, lr=float(net_cfg["prune_lr"]),
                          weight_decay=spec.weight_decay, schedule=spec.schedule, augment=spec.augment)
        result["prune_train"] = train(pruned, popt, data.x_train, data.y_train, pspec, seed=job.seed + PRUNED_OFFSET,
                                      ckpt=pruned_ckpt, ckpt_every=int(cfg["checkpoint_every"]), masks=masks,
                                      augment=augment, desc="prune-retrain", precision=precision)
        timings["prune_train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta, records = sweep_net(pruned, popt, data, cfg, masks, seed=job.seed, tag="pruned",
                                   inits=int(pc["inits"]), log=log)
        meta["fraction"] = float(net_cfg["prune_fraction"])
        result["pruned"] = meta
        result["sweeps"]["pruned"] = records
        weights["pruned"] = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
        timings["pruned_sweep_s"] = time.perf_counter() - t0

    result["timings"] = timings
    result["provenance"] = provenance_record(cfg, job.seed, started=job.started, stage="quant")
    atomic_torch_save(job.weights, weights)
    write_provenance(job.weights, cfg, job.seed, started=job.started, stage="quant")
    atomic_write_json(job.out, result)
    dense_ckpt.finish()
    pruned_ckpt.finish()
    log("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
