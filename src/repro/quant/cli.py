"""``python -m repro.quant <run|aggregate>``: network quantization (Choi et al., 1612.01543).

* ``run`` (one job per net and seed): train the net with Adam, compute the Hessian diagonal (exact,
  over ``hessian.n_samples`` training samples) and Adam's second moment, quantize all parameters
  together with every method over the sweep, code with fixed-length and Huffman codes, optionally
  fine-tune the shared values; then (optionally) magnitude-prune, retrain with Adam and sweep again
  for the compression-ratio table. Writes one JSON and the trained weights.
* ``aggregate``: reads every ``run`` JSON, writes the summary, the claims file, the figure (paper
  Fig. 1) and the compression-ratio table (paper Table 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.common.cli import add_common_args, job_from_args, start
from repro.common.device import resolve_device
from repro.common.provenance import now_iso


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.quant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = add_common_args(sub.add_parser("run", help="train one net, compute Hessians, run the quantization sweep"))
    run.add_argument("--net", required=True, help="name of the net in the config's quant.nets")
    run.add_argument("--in", dest="inp", type=Path, required=True, help="dataset file/folder of the net's dataset")
    run.add_argument("--out", type=Path, required=True, help="result JSON")
    run.add_argument("--weights", type=Path, required=True, help="trained weights (.pt, loadable with weights_only=True)")
    run.add_argument("--checkpoint-dir", type=Path, default=None, help="checkpoints (training resumes from here)")
    agg = add_common_args(sub.add_parser("aggregate", help="claims, figure and table from the run JSONs"), seed=False)
    agg.add_argument("--in", dest="inp", nargs="+", required=True, help="run JSONs (all nets and seeds)")
    agg.add_argument("--summary", required=True, help="summary JSON")
    agg.add_argument("--claims", required=True, help="claims JSON (results/claims/quant.json)")
    agg.add_argument("--figure", nargs="+", required=True, help="one figure per enabled net, in config order")
    agg.add_argument("--table", required=True, help="compression-ratio table (CSV)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from repro.quant.run import RunJob, run_net

    job = job_from_args(RunJob, args)
    run_net(job, args.config, resolve_device(args.config["device"], key="quant.device"))
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from repro.quant.summary import aggregate

    aggregate(args.config, [Path(p) for p in args.inp], summary=Path(args.summary), claims=Path(args.claims),
              figures=[Path(p) for p in args.figure], table=Path(args.table), started=now_iso())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, "quant")  # before any work: a bad config value is named
    return cmd_run(args) if args.cmd == "run" else cmd_aggregate(args)
