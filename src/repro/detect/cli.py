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
* ``time --in DATA --metrics m.json... --weights model.pt... --out timing.json``: inference seconds
  per image of every trained detector (the metrics files name model and seed, in the weights' order),
  the models interleaved in one process on the same val images (``repro.detect.timing``).
* ``test-dev --in DATA --model M --weights model.pt --out detections_test-dev2017_M_results.json``: the
  COCO evaluation server's results file for the test-dev images (``repro.detect.testdev``).
* ``score --gt DATA --dt detections.json [--proposals proposals.json]``: recompute a run's bbox AP, VOC07
  mAP@0.5 and RPN recall from the COCO results files ``train`` writes (``--detections-out``,
  ``--proposals-out``), e.g. after editing them or with another pycocotools.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repro.common.cli import add_common_args, job_from_args, start
from repro.detect.config import RULE_KEYS, resolve_config


def _train(args: argparse.Namespace) -> int:
    from repro.common.distributed import barrier, distributed
    from repro.detect.run import TrainJob, train_and_evaluate

    cfg = resolve_config(args.config, transfer=args.transfer)
    job = job_from_args(TrainJob, args)
    with distributed(cfg["device"], key="detect.device") as (info, device):
        code = train_and_evaluate(job, cfg, info, device)
        barrier(info)  # the other ranks wait while rank 0 evaluates and writes
    return code


def _aggregate(args: argparse.Namespace, *, transfer: bool) -> int:
    """FPN (``aggregate``) or TI transfer (``transfer-aggregate``): summary JSON, claims, optional figure."""
    from repro.common.claims import write_claims
    from repro.common.io import atomic_write_json
    from repro.common.provenance import now_iso
    from repro.detect.figures import plot_fpn
    from repro.detect.summary import fpn_summary, transfer_summary

    inputs = [Path(p) for p in args.inputs]
    if transfer:
        summary, rows = transfer_summary(inputs, args.config, started=now_iso())
    else:
        summary, rows = fpn_summary(inputs, args.config, started=now_iso(), timing=args.timing)
    atomic_write_json(args.out, summary)
    write_claims(args.claims, rows)
    if getattr(args, "figure", None) is not None:
        plot_fpn(summary, args.figure)
    for r in rows:
        print(f"{r.claim_id}: ours {r.ours_mean} CI {r.ours_ci95} paper {r.paper_value} -> {r.verdict}")
    return 0


def _time(args: argparse.Namespace) -> int:
    from repro.detect.timing import timing_job

    timing_job(args.data, args.metrics, args.weights, args.out, resolve_config(args.config), threads=args.threads,
               started=args.started)
    return 0


def _test_dev(args: argparse.Namespace) -> int:
    from repro.detect.testdev import run_test_dev

    run_test_dev(args.data, args.model, args.weights, args.out, resolve_config(args.config))
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
    t = add_common_args(sub.add_parser("time", help="inference s/image of trained detectors, interleaved"),
                        seed=False)
    t.add_argument("--in", dest="data", type=Path, required=True, help="detection dataset folder (val images)")
    t.add_argument("--metrics", nargs="+", type=Path, required=True, help="the runs' metrics JSON (model, seed)")
    t.add_argument("--weights", nargs="+", type=Path, required=True, help="the runs' model.pt, same order")
    t.add_argument("--out", type=Path, required=True, help="timing JSON")
    td = add_common_args(sub.add_parser("test-dev", help="COCO test-dev results file of a trained detector"),
                         seed=False)
    td.add_argument("--in", dest="data", type=Path, required=True, help="folder with test2017/ and annotations/")
    td.add_argument("--model", required=True, help="the trained model's name (as train --model)")
    td.add_argument("--weights", type=Path, required=True, help="its model.pt")
    td.add_argument("--out", type=Path, required=True, help="detections_test-dev2017_<alg>_results.json")
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
            a.add_argument("--timing", type=Path, help="the time command's JSON: the running-time row")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, "detect", ignore=RULE_KEYS)  # before any work: a bad config value is named
    if args.command == "train":
        return _train(args)
    if args.command == "score":
        return _score(args)
    if args.command == "time":
        return _time(args)
    if args.command == "test-dev":
        return _test_dev(args)
    return _aggregate(args, transfer=args.command == "transfer-aggregate")
