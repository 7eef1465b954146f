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
from pathlib import Path

from repro.common.cli import add_common_args, job_from_args, start


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
    from repro.lars.run import CellJob, run_cell_job

    run_cell_job(job_from_args(CellJob, args), args.config)
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    from repro.lars.summary import aggregate

    aggregate(args.config, args.inp, out=args.out, figure=args.figure, claims=args.claims, started=args.started)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, "lars")  # before any work: a bad config value is named
    return {"cell": _cell, "aggregate": _aggregate}[args.cmd](args)
