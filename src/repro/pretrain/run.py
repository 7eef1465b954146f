"""The pretraining stage's jobs: train one arm (ranking loss, or the context task), evaluate every arm of a seed.

``python -m repro.pretrain train|eval`` (:mod:`repro.pretrain.cli`) only parses the job and calls
:func:`train_arm` (on every rank of the run: one process, or N under DDP) or :func:`evaluate_arms`.
Initialisation and the output contract with the detection stage: :mod:`repro.pretrain.cli`.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.common.amp import from_config
from repro.common.checkpoint import RunCheckpoint, run_identity
from repro.common.config import borrowed
from repro.common.device import resolve_device
from repro.common.distributed import DistInfo, wrap_model
from repro.common.io import atomic_torch_save, atomic_write_bytes, atomic_write_json
from repro.common.provenance import provenance_record, write_provenance
from repro.graph.engine import train_context
from repro.graph.features import sample_context_batch
from repro.pretrain.context import ContextPredictor
from repro.pretrain.data import (
    PairSet,
    PatchBank,
    check_arm,
    detection_crops,
    load_nodes,
    load_pairs,
    load_patches,
    mined_crops,
    select_pairs,
    starts_from_context,
    voc_crops,
)
from repro.pretrain.engine import COLUMNS, TrainConfig, TrainState, make_optimizer, train
from repro.pretrain.metrics import evaluate_features
from repro.pretrain.models import pooled_features, triplet_net

# Config keys that change how a run is carried out but not its numbers (not in a checkpoint's identity).
NOT_SHAPING_RUN = ("checkpoint_every", "device", "preload_gb", "runtime_min", "threads", "arms", "seeds", "eval",
                   "amp")


@dataclass(frozen=True)
class TrainJob:
    """One ``train`` command: the arm, its seed, its inputs and the four output files (from the rule)."""

    arm: str
    seed: int
    out_backbone: Path
    out_net: Path
    out_metrics: Path
    out_summary: Path
    started: str
    patches: Path | None = None
    pairs: Path | None = None
    init_backbone: Path | None = None
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class EvalJob:
    """One ``eval`` command: the arms of one seed, their backbones, the crop sources and the output file."""

    arms: list[str]
    backbones: list[Path]
    seed: int
    out: Path
    started: str
    patches: Path | None = None
    nodes: Path | None = None
    detection: Path | None = None
    voc: Path | None = None


def untrained_reason(pairs: PairSet, arm: str, source: Path | None) -> str | None:
    """Why an arm cannot be trained on ``pairs`` (None: it can): no pairs, or a single parent cluster, so no
    mini-batch has an other-parent distractor (Sec. 4). Tiny graphs (smoke scale) keep the DAG going: the
    arm saves its initial weights and says so everywhere."""
    if len(pairs) == 0:
        return f"{source} has no pairs for arm {arm!r}"
    if len(np.unique(pairs.parent)) < 2:
        return (f"all {len(pairs)} pairs of arm {arm!r} in {source} share one parent cluster, so no"
                " mini-batch has an other-parent distractor")
    return None


def build_net(cfg: dict[str, Any], seed: int) -> torch.nn.Module:
    """The tower with the seed's shared initial weights (module docstring)."""
    net = {**cfg, **borrowed(cfg, "detect", ("backbone", "width", "blocks"))}  # the detector's backbone
    torch.manual_seed(seed)
    return triplet_net(backbone=net["backbone"], width=int(net["width"]), blocks=tuple(net["blocks"]),
                       hidden=int(net["hidden"]), embed=int(net["embed"]))


def train_config(cfg: dict[str, Any]) -> TrainConfig:
    """The ranking loss's training settings from the ``pretrain`` section."""
    opt = cfg["optimizer"]
    return TrainConfig(steps=int(cfg["steps"]), batch=int(cfg["batch"]),
                       margin=float(cfg["margin"]), negatives=cfg["negatives"],
                       hard_fraction=float(cfg["hard_fraction"]), flip=bool(cfg["flip"]),
                       lr=float(opt["lr"]), schedule=cfg["schedule"],
                       warmup_steps=int(cfg["warmup_steps"]), poly_power=float(cfg["poly_power"]))


def _write_csv(path: Path, rows: list[list[float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([int(r[0]), int(r[1]), *(f"{v:.6g}" for v in r[2:7]), int(r[7]), f"{r[8]:.3f}"])
    atomic_write_bytes(path, buf.getvalue().encode())


def train_arm(job: TrainJob, cfg: dict[str, Any], dist_info: DistInfo, device: torch.device) -> dict[str, Any]:
    """Train one arm on every rank (one process: the only one), write the outputs on rank 0; its summary."""
    arm = check_arm(job.arm)
    net = build_net(cfg, job.seed).to(device)
    if arm == "context":
        return _train_context_arm(job, cfg, net, dist_info, device)
    if starts_from_context(arm, cfg["init"]):
        if job.init_backbone is None:
            raise ValueError(f"train: arm {arm!r} starts from the context arm (pretrain.init: context): give --init-backbone")
        net.backbone.load_state_dict(torch.load(job.init_backbone, map_location=device, weights_only=True), strict=True)
    elif job.init_backbone is not None:
        raise ValueError(f"train: arm {arm!r} starts from random weights (pretrain.init: {cfg['init']}), not --init-backbone")
    tcfg = train_config(cfg)
    if arm == "transitive_mixed":  # the ablation arm: [61]'s mix of hard and random distractors
        tcfg = replace(tcfg, negatives="mixed")
    state = TrainState()
    info: dict = {"arm": arm, "seed": job.seed, "device": str(device), "n_pairs": 0, "steps": 0,
                  "negatives": tcfg.negatives, "init": str(job.init_backbone or "random"),
                  "world_size": dist_info.world_size}
    trainable = arm != "scratch"
    if trainable:
        if job.pairs is None:
            raise ValueError(f"train: arm {arm!r} needs --pairs")
        patches_np = load_patches(job.patches)
        pairs = select_pairs(load_pairs(job.pairs, len(patches_np)), arm)
        reason = untrained_reason(pairs, arm, job.pairs)
        if reason is not None:  # tiny graphs (smoke scale): keep the DAG going, say so everywhere
            print(f"WARNING: {reason}; the arm is NOT trained and saves its initial weights", file=sys.stderr)
            info.update(untrained=reason, n_pairs=len(pairs))
            trainable = False
    if trainable:
        bank = PatchBank(patches_np, np.concatenate([pairs.a, pairs.b]), device,
                         preload_bytes=float(cfg["preload_gb"]) * 1e9)
        precision = from_config(cfg, device, section="pretrain")  # mixed precision on CUDA (repro.common.amp)
        # N ranks: DDP + synced BatchNorm; net stays the plain module
        ddp = wrap_model(precision.prepare(net), dist_info, device)
        opt = make_optimizer(net.parameters(), cfg["optimizer"])
        ckpt = RunCheckpoint(job.checkpoint_dir, run_identity(
            stage="pretrain.train", config=cfg, seed=job.seed, arm=arm, ignore=NOT_SHAPING_RUN,
            inputs={"patches": job.patches, "pairs": job.pairs, "init": job.init_backbone}), is_main=dist_info.is_main)
        saved = ckpt.resume()
        if saved is not None:
            net.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            precision.restore(saved)
            state = TrainState(step=int(saved["step"]), rows=saved["rows"].tolist())
            print(f"resumed from step {state.step}", file=sys.stderr)

        def checkpoint(st: TrainState) -> None:
            ckpt.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": st.step,
                       "rows": torch.tensor(st.rows, dtype=torch.float64), **precision.checkpoint_state()})

        t0 = time.perf_counter()
        state = train(ddp, opt, bank, torch.from_numpy(bank.rows_of(pairs.a)), torch.from_numpy(bank.rows_of(pairs.b)),
                      torch.from_numpy(pairs.parent), tcfg, seed=job.seed, state=state,
                      checkpoint=checkpoint if job.checkpoint_dir else None,
                      checkpoint_every=int(cfg["checkpoint_every"]), desc=f"pretrain {arm} s{job.seed}",
                      dist=dist_info, precision=precision)
        last = np.array(state.rows[-min(len(state.rows), 20):], dtype=float)
        info.update(n_pairs=len(pairs), steps=state.step, train_seconds=time.perf_counter() - t0,
                    final_loss=float(np.nanmean(last[:, 3])), final_active=float(np.nanmean(last[:, 4])),
                    first_loss=float(state.rows[0][3]), epochs=float(state.step * tcfg.batch / len(pairs)))
    if not dist_info.is_main:
        return {}
    net = net.cpu()
    atomic_torch_save(job.out_backbone, net.backbone.state_dict())
    atomic_torch_save(job.out_net, net.state_dict())
    _write_csv(job.out_metrics, state.rows)
    for p in (job.out_backbone, job.out_net, job.out_metrics):
        write_provenance(p, cfg, job.seed, started=job.started, stage="pretrain.train")
    info["provenance"] = provenance_record(cfg, job.seed, started=job.started, stage="pretrain.train")
    atomic_write_json(job.out_summary, info)
    if trainable:
        ckpt.finish()
    return {k: v for k, v in info.items() if k != "provenance"}


def _train_context_arm(job: TrainJob, cfg: dict[str, Any], net: torch.nn.Module, dist_info: DistInfo,
                       device: torch.device) -> dict[str, Any]:
    """The ``context`` arm: the tower's backbone trained on the 8-way context task (repro.pretrain.context)."""
    if job.patches is None:
        raise ValueError("train: arm 'context' needs --patches")
    patches = load_patches(job.patches)
    model = ContextPredictor(net.backbone, hidden=int(cfg["hidden"]), size=patches.shape[-1]).to(device)
    opt = make_optimizer(model.parameters(), cfg["optimizer"])
    ckpt = RunCheckpoint(job.checkpoint_dir, run_identity(
        stage="pretrain.train", config=cfg, seed=job.seed, arm="context", ignore=NOT_SHAPING_RUN,
        inputs={"patches": job.patches}), is_main=dist_info.is_main) if job.checkpoint_dir else None
    t0 = time.perf_counter()
    history = train_context(model, opt, lambda rng: sample_context_batch(patches, int(cfg["batch"]), rng),
                            steps=int(cfg["steps"]), seed=job.seed, device=device, ckpt=ckpt,
                            ckpt_every=int(cfg["checkpoint_every"]))
    rows = [[h["step"], h["loss"], h["acc"]] for h in history]
    last = np.array(rows[-min(len(rows), 20):], dtype=float)
    info = {"arm": "context", "seed": job.seed, "device": str(device), "init": "random", "n_pairs": 0,
            "steps": len(rows), "train_seconds": time.perf_counter() - t0, "final_loss": float(last[:, 1].mean()),
            "final_accuracy": float(last[:, 2].mean()), "chance_accuracy": 1.0 / 8,
            "world_size": dist_info.world_size}
    if not dist_info.is_main:
        return {}
    net = net.cpu()
    atomic_torch_save(job.out_backbone, net.backbone.state_dict())
    atomic_torch_save(job.out_net, net.state_dict())
    lines = ["step,loss,accuracy"] + [f"{int(r[0])},{r[1]:.6g},{r[2]:.4f}" for r in rows]
    atomic_write_bytes(job.out_metrics, ("\n".join(lines) + "\n").encode())
    for p in (job.out_backbone, job.out_net, job.out_metrics):
        write_provenance(p, cfg, job.seed, started=job.started, stage="pretrain.train")
    info["provenance"] = provenance_record(cfg, job.seed, started=job.started, stage="pretrain.train")
    atomic_write_json(job.out_summary, info)
    if ckpt is not None:
        ckpt.finish()
    return {k: v for k, v in info.items() if k != "provenance"}


def _eval_sets(job: EvalJob, cfg: dict[str, Any]) -> list:
    """The labelled crop sets of ``eval.sources``, each from its own input (repro.pretrain.data)."""
    ecfg = cfg["eval"]
    size = int(ecfg["crop_size"])
    out = []
    for source in ecfg["sources"]:
        if source == "mined":
            if job.patches is None or job.nodes is None:
                raise ValueError("eval: source 'mined' needs --patches and --nodes")
            patches = load_patches(job.patches)
            out.append(mined_crops(patches, load_nodes(job.nodes, len(patches))))
        elif source == "detection":
            if job.detection is None:
                raise ValueError("eval: source 'detection' needs --detection")
            out.append(detection_crops(job.detection, size))
        elif source == "voc2007":
            if job.voc is None:
                raise ValueError("eval: source 'voc2007' needs --voc")
            out.append(voc_crops(job.voc, size, max_per_split=int(ecfg["max_per_split"]), seed=0))
        else:
            raise ValueError(f"pretrain.eval.sources: unknown source {source!r} (mined | detection | voc2007)")
    if not out:
        raise ValueError("pretrain.eval.sources is empty")
    return out


def evaluate_arms(job: EvalJob, cfg: dict[str, Any]) -> dict[str, Any]:
    """Linear probe and kNN accuracy of every arm's frozen pooled features on each labelled crop set."""
    if len(job.arms) != len(job.backbones):
        raise ValueError(f"eval: {len(job.arms)} arms but {len(job.backbones)} backbone files")
    ecfg = cfg["eval"]
    sets = _eval_sets(job, cfg)
    device = resolve_device(cfg["device"], key="pretrain.device")
    kw = dict(n_folds=int(ecfg["folds"]), knn_k=int(ecfg["knn_k"]),
              probe_C=float(ecfg["probe_C"]), probe_max_iter=int(ecfg["probe_max_iter"]),
              seed=job.seed)
    nets = {}
    for arm, path in zip(job.arms, job.backbones):
        if not Path(path).is_file():
            raise FileNotFoundError(f"eval: missing backbone weights {path}")
        net = build_net(cfg, job.seed)
        net.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        nets[arm] = net.to(device)
    out: dict = {"seed": job.seed, "sets": {}}
    for data in sets:
        x = torch.from_numpy(np.ascontiguousarray(data.x))
        counts = np.bincount(data.y)
        res: dict = {"n_crops": int(len(data.y)), "n_groups": int(len(np.unique(data.group))),
                     "n_classes": int((counts > 0).sum()), "class_counts": counts.tolist(),
                     "classes": list(data.classes), "grouped_folds": data.split is None,
                     "majority": 100.0 * float(counts.max() / len(data.y)), "arms": {}}
        small = torch.nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1).numpy()  # [M, 3*8*8]
        res["pixels"] = evaluate_features(small, data.y, data.group, data.split, **kw)  # reference, not an arm
        for arm, net in nets.items():
            feats = pooled_features(net, x, batch_size=int(ecfg["batch"]), device=device).numpy()
            if not np.isfinite(feats).all():
                raise FloatingPointError(f"eval: non-finite features of arm {arm!r} on the {data.source} crops")
            res["arms"][arm] = evaluate_features(feats, data.y, data.group, data.split, **kw)
        out["sets"][data.source] = res
    out["provenance"] = provenance_record(cfg, job.seed, started=job.started, stage="pretrain.eval")
    atomic_write_json(job.out, out)
    return {src: {a: [round(m["probe"], 1), round(m["knn"], 1)] for a, m in r["arms"].items()}
            for src, r in out["sets"].items()}
