"""``python -m repro.detect <command>``: train/evaluate one detector, and aggregate runs into results.

Commands:

* ``train --model M --seed S --in DATA --out metrics.json --weights-out model.pt``: trains one
  Faster R-CNN variant (see ``repro.detect.models``) on the dataset folder's train split and evaluates
  it on the val split with pycocotools. Checkpoints go to ``--checkpoint-dir`` and resume
  automatically. Runs as one process or under ``torchrun --nproc_per_node=N`` / ``srun`` (DDP:
  ``batch_size`` is the global batch; BatchNorm synchronised; rank 0 writes checkpoints, weights
  and metrics and evaluates while the other ranks wait). ``--backbone-weights PATH`` starts the backbone from a state_dict of
  ``repro.detect.backbone.tiny_resnet`` (or resnet50) for TI transfer. ``--transfer`` applies
  the config's ``transfer`` overrides, and ``--arm`` labels the run.
* ``aggregate --in metrics... --out fpn_coco.json --claims fpn.json``: FPN Tables 1 and 3.
* ``transfer-aggregate --in metrics... --out ti_transfer.json --claims ti_transfer.json``: TI transfer.
* ``score --gt DATA --dt detections.json [--proposals proposals.json]``: recompute a run's bbox AP, VOC07
  mAP@0.5 and RPN recall from the COCO results files ``train`` writes (``--detections-out``,
  ``--proposals-out``), e.g. after editing them or with another pycocotools.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from repro.common.cli import add_common_args
from repro.common.config import check_config
from repro.detect.config import RULE_KEYS, resolve_config

# Config keys that change how a run is carried out but not its numbers: a checkpoint made under other
# values of these is still this run's.
NOT_SHAPING_RUN = ("checkpoint_every", "num_workers", "cache_images", "eval_batch_size", "models", "seeds",
                   "transfer", "amp")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_weights(path: Path, state: dict) -> None:
    import torch

    from repro.common.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _train(args: argparse.Namespace) -> int:
    from repro.common.distributed import barrier, distributed
    from repro.common.provenance import now_iso
    from repro.common.runtime import seed_everything

    seed_everything(args.seed)
    started = now_iso()
    cfg = resolve_config(args.config, transfer=args.transfer)
    _device(args.device)  # a clear error for a device that is not there, before anything else
    with distributed(args.device) as (info, device):
        code = _train_ranked(args, cfg, started, info, device)
        barrier(info)  # the other ranks wait while rank 0 evaluates and writes
    return code


def _train_ranked(args: argparse.Namespace, cfg: dict, started: str, info, device) -> int:
    """Train (every rank), then evaluate and write the outputs (rank 0)."""
    import torch

    from repro.common.amp import from_config
    from repro.common.checkpoint import RunCheckpoint, rng_state, run_identity, set_rng_state
    from repro.common.distributed import unwrap, wrap_model
    from repro.common.io import atomic_write_json
    from repro.common.provenance import provenance_record
    from repro.detect.backbone import build_body, freeze_layers, load_backbone_weights
    from repro.detect.data import CocoDetection, eval_loader, find_splits, train_loader
    from repro.detect.engine import NonFiniteLossError, evaluate_model, lr_at, train, write_train_log
    from repro.detect.metrics import coco_from_dict, score_results
    from repro.detect.models import DetectorSettings, build_detector

    rank = f" rank={info.rank}/{info.world_size}" if info.enabled else ""
    print(f"[detect train] model={args.model} seed={args.seed} device={device} arm={args.arm}{rank}", flush=True)

    train_split, val_split = find_splits(args.data)
    train_set = CocoDetection(train_split, skip_empty=cfg["skip_empty_train"], cache=cfg["cache_images"])
    val_set = CocoDetection(val_split, max_images=cfg["max_val_images"], cache=cfg["cache_images"])
    if train_set.cat_ids != val_set.cat_ids:
        raise ValueError(f"{args.data}: train and val splits have different categories")

    body = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"],
                      imagenet_weights=cfg["imagenet_weights"], imagenet_init=args.backbone_weights is None)
    if args.backbone_weights is not None:
        load_backbone_weights(body, args.backbone_weights)
        print(f"[detect train] backbone initialised from {args.backbone_weights}", flush=True)
    freeze_layers(body, cfg["trainable_layers"])
    settings = DetectorSettings.from_config(cfg)
    precision = from_config(cfg, device, section="detect")  # mixed precision on CUDA (repro.common.amp)
    model = precision.prepare(build_detector(args.model, body=body, num_classes=train_set.num_classes,
                                             settings=settings).to(device))
    # DDP with several ranks (BatchNorm synchronised); fpn_p2_only leaves P3-P5's 3x3 convs unused
    net = wrap_model(model, info, device, find_unused_parameters=args.model == "fpn_p2_only")
    model = unwrap(net)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])

    total = int(cfg["iterations"])
    start, train_s_before, recent, log_rows = 0, 0.0, None, None
    ckpt = RunCheckpoint(args.checkpoint_dir, run_identity(
        stage="detect.train", config=cfg, seed=args.seed, ignore=NOT_SHAPING_RUN,
        inputs={"data": args.data, "backbone": args.backbone_weights}, model=args.model, transfer=args.transfer,
    ), is_main=info.is_main)
    state = ckpt.resume()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        precision.restore(state)
        set_rng_state(state["rng"])
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
    loader = train_loader(train_set, batch_size=cfg["batch_size"], seed=args.seed, start=start, total=total,
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
    if args.metrics_csv is not None:
        write_train_log(args.metrics_csv, log_rows)
    if args.weights_out is not None:
        _save_weights(args.weights_out, model.state_dict())

    label_to_cat = [0] + val_set.cat_ids
    out = evaluate_model(model, eval_loader(val_set, batch_size=cfg["eval_batch_size"], num_workers=cfg["num_workers"]),
                         device=device, box_proposals=cfg["box_proposals_test"], label_to_cat=label_to_cat)
    scores = score_results(coco_from_dict(val_set.coco_gt()), out["detections"], out["proposals"])
    bbox, rpn = scores["bbox"], scores["rpn"]
    if args.detections_out is not None:  # COCO results files: python -m repro.detect score recomputes the metrics
        atomic_write_json(args.detections_out, out["detections"], indent=None)
    if args.proposals_out is not None:
        atomic_write_json(args.proposals_out, out["proposals"], indent=None)
    result = {
        "model": args.model,
        "arm": args.arm,
        "seed": args.seed,
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
        "pretrained": (f"backbone weights {args.backbone_weights}" if args.backbone_weights is not None
                       else "ImageNet" if cfg["backbone"] == "resnet50" else False),
        "pooler": cfg["pooler"],
        "rpn_budget": settings.rpn_budget(args.model),
        "proposals_per_image": out["proposals_per_image"],
        "canonical_scale": settings.roi_canonical_scale,
        "anchor_sizes": cfg["anchor_sizes"],
        "n_train_images": len(train_set),
        "n_val_images": out["n_images"],
        "n_detections": len(out["detections"]),
        "final_losses": final_losses,
        "device": str(device),
        "threads": args.threads,
        "provenance": provenance_record(cfg, args.seed, started=started, stage="detect"),
    }
    atomic_write_json(args.out, result)
    ckpt.finish()
    print(f"[detect train] {args.model} seed {args.seed}: AP {bbox['AP']:.3f} AP_s {bbox['AP_s']:.3f}"
          f" AR1k {rpn['AR1k']:.3f} train {train_s:.0f}s infer {out['infer_s_per_img']:.3f}s/img", flush=True)
    return 0


def _aggregate(args: argparse.Namespace, *, transfer: bool) -> int:
    """FPN (``aggregate``) or TI transfer (``transfer-aggregate``): summary JSON, claims, optional figure."""
    from repro.common.claims import write_claims
    from repro.common.io import atomic_write_json
    from repro.common.provenance import now_iso
    from repro.detect.report import fpn_summary, plot_fpn, transfer_summary

    summarise = transfer_summary if transfer else fpn_summary
    summary, rows = summarise([Path(p) for p in args.inputs], args.config, started=now_iso())
    atomic_write_json(args.out, summary)
    write_claims(args.claims, rows)
    if getattr(args, "figure", None) is not None:
        plot_fpn(summary, args.figure)
    for r in rows:
        print(f"{r.claim_id}: ours {r.ours_mean} CI {r.ours_ci95} paper {r.paper_value} -> {r.verdict}")
    return 0


def _score(args: argparse.Namespace) -> int:
    """Recompute a run's metrics from its COCO results files and the dataset's val ground truth."""
    from repro.common.io import atomic_write_json, read_json
    from repro.detect.data import CocoDetection, find_splits
    from repro.detect.metrics import coco_from_dict, score_results

    cfg = resolve_config(args.config)
    _, val_split = find_splits(args.gt)
    gt = coco_from_dict(CocoDetection(val_split, max_images=cfg["max_val_images"], cache=False).coco_gt())
    detections = read_json(args.dt)
    proposals = read_json(args.proposals) if args.proposals is not None else None
    for path, results in ((args.dt, detections), (args.proposals, proposals)):
        if results is not None and not isinstance(results, list):
            raise ValueError(f"{path}: not a COCO results file (a JSON list of detections)")
    scores = score_results(gt, detections, proposals)
    if args.out is not None:
        atomic_write_json(args.out, scores)
    print(json.dumps(scores, indent=2))
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = add_common_args(sub.add_parser("train", help="train and evaluate one detector"))
    p.add_argument("--model", required=True, help="fpn | c4 | c5 | fpn_no_topdown | fpn_no_lateral | fpn_p2_only")
    p.add_argument("--in", dest="data", type=Path, required=True, help="detection dataset folder")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON")
    p.add_argument("--weights-out", type=Path, help="final model state_dict (.pt)")
    p.add_argument("--metrics-csv", type=Path, help="per-step losses CSV")
    p.add_argument("--detections-out", type=Path, help="the val detections as COCO results JSON (re-scorable)")
    p.add_argument("--proposals-out", type=Path, help="the val RPN proposals as COCO results JSON (ranked)")
    p.add_argument("--checkpoint-dir", type=Path, help="checkpoints; resumed from automatically")
    p.add_argument("--backbone-weights", type=Path, help="state_dict of the backbone module (TI transfer)")
    p.add_argument("--transfer", action="store_true", help="apply the config's transfer overrides")
    p.add_argument("--arm", default=None, help="pretraining arm label recorded in the metrics")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    sc = add_common_args(sub.add_parser("score", help="recompute a run's metrics from its COCO results files"),
                         seed=False)
    sc.add_argument("--gt", type=Path, required=True, help="the detection dataset folder whose val split was evaluated")
    sc.add_argument("--dt", type=Path, required=True, help="detections (COCO results JSON)")
    sc.add_argument("--proposals", type=Path, help="RPN proposals (COCO results JSON): adds the recall")
    sc.add_argument("--out", type=Path, help="write the scores here as JSON too")
    for name, helptext in (("aggregate", "FPN Tables 1/3 summary + claims"),
                           ("transfer-aggregate", "TI transfer summary + claims")):
        a = add_common_args(sub.add_parser(name, help=helptext), seed=False)
        a.add_argument("--in", dest="inputs", nargs="+", required=True, help="metrics JSON files of the runs")
        a.add_argument("--out", type=Path, required=True, help="summary JSON")
        a.add_argument("--claims", type=Path, required=True, help="claims JSON")
        if name == "aggregate":
            a.add_argument("--figure", type=Path, help="Tables 1/3 bar chart (PNG/SVG)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from repro.common.runtime import configure_threads

    configure_threads(args.threads)
    check_config(args.config, "detect", ignore=RULE_KEYS)  # before any work: a bad value is named
    check_config(resolve_config(args.config), "detect")
    if args.command == "train":
        return _train(args)  # seeds everything first
    if args.command == "score":
        return _score(args)
    return _aggregate(args, transfer=args.command == "transfer-aggregate")
