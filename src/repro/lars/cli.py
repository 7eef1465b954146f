"""``python -m repro.lars <cmd>``: the large-batch study of LARS (1708.03888).

- ``cell``: one model x arm x batch x epochs cell of the study (LR search on the first seed, then the
  other seeds at the chosen LR), resumable from ``--checkpoint-dir``; writes the cell's JSON.
  Runs as one process or under ``torchrun --nproc_per_node=N`` / ``srun`` (DDP; ``--batch`` is the
  global batch, rank 0 writes the checkpoint and the JSON).
- ``aggregate``: all cells -> the study JSON (accuracy per arm x batch x LR x seed, chosen LRs,
  means and CIs), the figure (accuracy vs batch size, ours beside the paper's) and the claims file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from repro.common.claims import write_claims
from repro.common.cli import add_common_args, start
from repro.common.io import atomic_write_json, read_json
from repro.common.provenance import now_iso, provenance_record, write_provenance


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.lars", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    cell = add_common_args(sub.add_parser("cell", help="train one cell of the study"))
    cell.add_argument("--in", dest="inp", type=Path, required=True,
                      help="classification data: the synthetic .npz, a CIFAR-10 folder or an unpacked ImageNet folder")
    cell.add_argument("--out", type=Path, required=True, help="the cell's result JSON")
    cell.add_argument("--checkpoint-dir", type=Path, default=None, help="resume/checkpoint folder")
    cell.add_argument("--model", required=True, help="alexnet | alexnet_bn")
    cell.add_argument("--arm", required=True, choices=["sgd", "lars"])
    cell.add_argument("--batch", type=int, required=True)
    cell.add_argument("--epochs", type=int, required=True)
    agg = add_common_args(sub.add_parser("aggregate", help="study JSON, figure and claims from the cells"))
    agg.add_argument("--in", dest="inp", type=Path, nargs="+", required=True, help="the cells' JSON files")
    agg.add_argument("--out", type=Path, required=True, help="the study's result JSON")
    agg.add_argument("--figure", type=Path, required=True, help="accuracy vs batch size figure (png/svg/pdf)")
    agg.add_argument("--claims", type=Path, required=True, help="results/claims/lars.json")
    return parser


def _cell(args: argparse.Namespace) -> int:
    from repro.common.checkpoint import RunCheckpoint, run_identity
    from repro.common.distributed import barrier, distributed
    from repro.lars.data import load_classification, prepare
    from repro.lars.study import NOT_SHAPING_RUN

    cfg = args.config
    if args.batch < 1 or args.epochs < 1:
        raise ValueError(f"lars cell: --batch and --epochs must be >= 1, got {args.batch}, {args.epochs}")
    started = now_iso()
    arrays = load_classification(args.inp)
    with distributed(cfg["device"], key="lars.device") as (info, device):
        ckpt = RunCheckpoint(args.checkpoint_dir, run_identity(
            stage="lars.cell", config=cfg, seed=args.seed, ignore=NOT_SHAPING_RUN, inputs={"data": args.inp},
            model=args.model, arm=args.arm, batch=args.batch, epochs=args.epochs), is_main=info.is_main)
        data = prepare(arrays, val_fraction=cfg["val_fraction"], device=device, image_size=cfg.get("image_size"),
                       workers=args.threads)  # ImageNet: crop size, DataLoader processes
        result = _cell_result(args, cfg, data, device, info, started, ckpt)
        if info.is_main:
            atomic_write_json(args.out, result)
            ckpt.finish()  # the cell's outputs are written: a later rerun starts fresh
        barrier(info)
    return 0


def _cell_result(args: argparse.Namespace, cfg: dict[str, Any], data: Any, device: Any, info: Any,
                 started: str, ckpt: Any) -> dict[str, Any]:
    from repro.lars.data import source_of
    from repro.lars.study import run_cell

    seeds = [args.seed + i for i in range(cfg["seeds"])]
    print(
        f"lars cell {args.model}/{args.arm} B={args.batch} E={args.epochs} on {device}"
        f"{f' (rank {info.rank} of {info.world_size})' if info.enabled else ''}: "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images "
        f"{data.image_size}x{data.image_size}, seeds {seeds}",
        file=sys.stderr,
    )
    result = run_cell(data, cfg, model_name=args.model, arm=args.arm, batch=args.batch, epochs=args.epochs,
                      seeds=seeds, ckpt=ckpt, dist=info)
    return {
        "model": args.model,
        "arm": args.arm,
        "batch": args.batch,
        "epochs": args.epochs,
        "seeds": seeds,
        "data": {"path": str(args.inp), "source": source_of(args.inp), "n_train": len(data.train), "n_val": len(data.val),
                 "n_test": len(data.test), "image_size": data.image_size, "num_classes": data.num_classes},
        **result,
        "world_size": info.world_size,
        "provenance": provenance_record(cfg, args.seed, started=started, stage="lars.cell"),
    }


def _scale_note(cfg: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """What differs from the paper's protocol (ImageNet, 100 epochs, 512 -> 8K / 32K), for every row."""
    from repro.lars.data import dataset_name

    d = cells[0]["data"] if cells else {}
    batches = sorted(cfg["batches"])
    wide = cfg["wide"]
    steps_hi = -(-int(d.get("n_train", 0)) // batches[-1]) * int(cfg["epochs"])
    src = dataset_name(d.get("path", ""), d.get("source"))
    wide_note = (f"; {wide['model']}/{wide['arm']} also at {wide['batches']} for the paper's 64x span"
                 if wide["batches"] else "")
    sgd, lars = cfg["sgd"], cfg["lars"]
    return (
        f"Ours: {src}, {d.get('n_train')} train / {d.get('n_test')} test images of {d.get('image_size')} px, "
        f"small AlexNet-like CNNs (no LRN, no dropout), {cfg['epochs']} epochs, batches {batches}{wide_note} "
        f"(paper: ImageNet, AlexNet with LRN and AlexNet-BN, 100 epochs, 512 to 8K = 16x and 32K = 64x); each row "
        f"compares batches at the span of the paper number beside it. Our largest batch takes {steps_hi} optimizer "
        f"steps in all, the paper's 15.6K (8K) and 3.9K (32K), so our large-batch runs are far more step-starved. "
        f"Micro-batch {cfg['micro_batch']} with gradient accumulation (BN statistics per micro-batch). "
        f"SGD: momentum {cfg['momentum']}, LR grid {sgd['lrs']} x B/{sgd['ref_batch']} x {sgd['lr_factors']} "
        f"(linear scaling and below it), warm-up {sgd['warmup_epochs']} epochs; LARS: eta "
        f"{lars['trust_coefficient']}, gamma_0 grid {lars['lrs']} x {lars['scaling']}(B/{lars['ref_batch']}) "
        f"x {lars['lr_factors']}, warm-up {lars['warmup_epochs']} epochs (paper: LARS 2 AlexNet / 5 AlexNet-BN of "
        f"100, AlexNet-BN baseline without warm-up); poly(2) decay for both. Best LR per cell by validation "
        f"accuracy of seed {cells[0]['seeds'][0] if cells else '?'} among the runs that did not diverge, then "
        f"{cfg['seeds']} seeds at it; diverged runs are counted, not scored. "
        "LARS uses lambda = eta where ||w|| = 0 (zero-initialised biases and BN shifts would otherwise never move)."
    )


def _aggregate(args: argparse.Namespace) -> int:
    from repro.lars.claims import build_claims, paper_curves, summarize_cells
    from repro.lars.data import dataset_name
    from repro.lars.figures import plot_study

    cfg = args.config
    started = now_iso()
    missing = [str(p) for p in args.inp if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"lars aggregate: missing cell results {missing}")
    cells = [read_json(p) for p in args.inp]
    for path, cell in zip(args.inp, cells):
        for key in ("model", "arm", "batch", "epochs", "runs", "chosen_lr_ref", "seeds"):
            if key not in cell:
                raise ValueError(f"lars aggregate: {path} lacks {key!r} (not a cell result?)")
    summary = summarize_cells(cells)
    note = _scale_note(cfg, cells)
    rows = build_claims(summary, cfg, scale_note=note)
    write_claims(args.claims, rows)
    dataset = dataset_name(cells[0]["data"]["path"], cells[0]["data"].get("source"))
    plot_study(summary, cfg, paper_curves(), args.figure, dataset=dataset)
    write_provenance(args.figure, cfg, args.seed, started=started, stage="lars.aggregate")
    runs = [
        {k: cell[k] for k in ("model", "arm", "batch", "epochs")} | {k: v for k, v in r.items() if k not in ("epoch_train_loss", "layer_ratios")}
        for cell in cells
        for r in cell["runs"]
    ]
    atomic_write_json(
        args.out,
        {
            # per cell: LR grid, chosen LR (and its ratio to linear scaling), divergence count, accuracy
            "cells": [summary[k] for k in sorted(summary)],
            "runs": runs,
            "scale_note": note,
            "provenance": provenance_record(cfg, args.seed, started=started, stage="lars.aggregate"),
        },
    )
    for key in sorted(summary):
        c = summary[key]
        lr = f"{c['chosen_lr']:.3g}" if c["chosen_lr"] is not None else "none"
        acc = f"{c['test_acc_mean']:.1f}%" if c["test_acc_mean"] is not None else "n/a"
        print(f"{'/'.join(map(str, key))}: LR {lr} of {c['lr_grid']}, {c['n_diverged']} diverged, test {acc}",
              file=sys.stderr)
    for row in rows:
        ci = f"[{row.ours_ci95[0]:+.1f}, {row.ours_ci95[1]:+.1f}]" if row.ours_ci95 else "n/a"
        mean = f"{row.ours_mean:+.1f}" if row.ours_mean is not None else "n/a"
        print(f"{row.claim_id}: paper {row.paper_value:+.1f}, ours {mean} CI {ci} -> {row.verdict}",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, "lars")  # before any work: a bad config value is named
    return {"cell": _cell, "aggregate": _aggregate}[args.cmd](args)
