"""``python -m repro.gan <command> --config JSON --seed N --threads T …`` — the GAN stage's entry points.

- ``scorer``: train the in-pipeline classifier p(y|x) for one image experiment (or wrap the
  Inception network), save it with the training-label marginal and its test accuracy;
- ``train``: one (experiment, arm) and one or more seeds, one run per seed in turn (each seeded as
  its own process would be, so its numbers do not depend on the company it runs in): train, evaluate
  over steps, write the results JSON, the per-evaluation metrics CSV, final samples (npz) and final
  weights (.pt); each path argument takes one path per seed, in the seeds' order. Runs as one process
  or under ``torchrun --nproc_per_node=N`` / ``srun`` (DDP, ``repro.common.distributed``: the
  experiment's ``batch_size`` is the global batch, and it and the fakes per generator must be
  divisible by N; every rank evaluates, rank 0 alone writes checkpoints and outputs);
- ``aggregate``: one experiment's jobs -> a summary JSON (mean and 95% CI over seeds) and figures;
- ``claims``: experiment summaries -> ``results/claims/gan.json``.

``--config`` is the whole ``gan:`` section. All paths come from the rule.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from repro.common.cli import add_common_args, job_from_args, log, start
from repro.common.device import resolve_device
from repro.common.io import atomic_write_json
from repro.common.provenance import provenance_record


def cmd_scorer(args: argparse.Namespace) -> int:
    from repro.gan.run import ScorerJob, fit_scorer

    fit_scorer(job_from_args(ScorerJob, args), args.config, resolve_device(args.config["device"], key="gan.device"))
    return 0


def train_jobs(args: argparse.Namespace) -> list:
    """One :class:`~repro.gan.run.TrainJob` per ``--seed``, each path argument's i-th path for the i-th seed.

    A path argument with another count than ``--seed`` is a ValueError naming it, before any training.
    """
    from repro.gan.run import TrainJob

    seeds = args.seeds
    per_seed = {"out": "--out", "samples": "--samples", "weights": "--weights", "metrics_csv": "--metrics-csv",
                "checkpoint_dir": "--checkpoint-dir"}
    for dest, flag in per_seed.items():
        paths = getattr(args, dest)
        if paths is not None and len(paths) != len(seeds):
            raise ValueError(f"{flag} got {len(paths)} path(s) for {len(seeds)} seed(s) {seeds}: give one per seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed lists a seed twice: {seeds}")
    common = {"experiment": args.experiment, "arm": args.arm, "inp": args.inp, "scorer": args.scorer}
    return [TrainJob(**common, seed=seed, started=args.started,
                     **{d: (getattr(args, d) or [None] * len(seeds))[i] for d in per_seed})
            for i, seed in enumerate(seeds)]


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from repro.common.distributed import barrier, distributed
    from repro.common.provenance import now_iso
    from repro.common.runtime import seed_everything
    from repro.gan.run import train_arm

    jobs = train_jobs(args)
    finished: list = []  # finished seeds' checkpoints, deleted once every seed is done
    with distributed(args.config["device"], key="gan.device") as (info, device):
        for job in jobs:
            seed_everything(job.seed)  # each run seeded as its own process would be
            code = train_arm(dataclasses.replace(job, started=now_iso()), args.config, info, device, finished=finished)
            barrier(info)  # the other ranks wait while rank 0 writes the outputs
            if code:
                return code
    for ckpt in finished:
        ckpt.finish()
    return 0


# --------------------------------------------------------------------------- aggregate / claims


def cmd_aggregate(args: argparse.Namespace) -> int:
    from repro.gan.config import stage_config
    from repro.gan.summary import summarize_experiment

    cfg = stage_config(args.config)
    jobs = [json.loads(Path(p).read_text()) for p in args.inp]
    summary = summarize_experiment(args.experiment, jobs)
    summary["provenance"] = provenance_record(args.config, None, started=args.started, stage="gan")
    atomic_write_json(args.out, summary)
    if args.figures:
        from repro.gan.figures import write_figures

        write_figures(args.experiment, jobs, summary, [Path(p) for p in args.samples], args.data, args.figures, cfg)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from repro.common.claims import write_claims
    from repro.gan.claims import claim_rows
    from repro.gan.config import stage_config

    cfg = stage_config(args.config)
    summaries = {}
    for p in args.inp:
        s = json.loads(Path(p).read_text())
        summaries[s["experiment"]] = s
    rows = claim_rows(summaries, cfg)
    write_claims(args.out, rows)
    for r in rows:
        log(f"{r.claim_id}: {r.verdict} (ours {r.ours_mean}, CI {r.ours_ci95}, n={r.n_seeds})")
    return 0


COMMANDS = {"scorer": cmd_scorer, "train": cmd_train, "aggregate": cmd_aggregate, "claims": cmd_claims}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.gan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = add_common_args(sub.add_parser("scorer", help="train the in-pipeline classifier for the inception score"))
    p.add_argument("--experiment", required=True)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="dataset file/folder")
    p.add_argument("--out", type=Path, required=True, help="scorer weights (.pt)")
    p.add_argument("--metrics", type=Path, required=True, help="scorer accuracy etc. (.json)")

    p = add_common_args(sub.add_parser("train", help="one (experiment, arm) for one or more seeds"), seed=False)
    p.add_argument("--seed", dest="seeds", type=int, nargs="+", default=[0], help="random seed(s), one run each")
    p.add_argument("--experiment", required=True)
    p.add_argument("--arm", required=True)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="mixture .npz or image dataset")
    p.add_argument("--scorer", type=Path, help="scorer .pt (image experiments)")
    p.add_argument("--out", type=Path, nargs="+", required=True, help="results JSON, one per seed")
    p.add_argument("--samples", type=Path, nargs="+", required=True, help="final samples (.npz), one per seed")
    p.add_argument("--weights", type=Path, nargs="+", required=True, help="final weights (.pt, weights_only), one per seed")
    p.add_argument("--metrics-csv", type=Path, nargs="+", required=True, help="metrics per evaluation step (.csv), one per seed")
    p.add_argument("--checkpoint-dir", type=Path, nargs="+", help="checkpoint folders (resumed automatically), one per seed")

    p = add_common_args(sub.add_parser("aggregate", help="one experiment's jobs -> summary and figures"), seed=False)
    p.add_argument("--experiment", required=True)
    p.add_argument("--in", dest="inp", nargs="+", required=True, help="job results JSONs")
    p.add_argument("--samples", nargs="*", default=[], help="the jobs' sample .npz files (same order)")
    p.add_argument("--data", type=Path, help="the experiment's dataset (true modes / real digits for the figures)")
    p.add_argument("--out", type=Path, required=True, help="summary JSON")
    p.add_argument("--figures", nargs="*", type=Path, default=[], help="figure paths: samples, curves")

    p = add_common_args(sub.add_parser("claims", help="experiment summaries -> claims JSON"), seed=False)
    p.add_argument("--in", dest="inp", nargs="*", default=[], help="experiment summary JSONs")
    p.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, "gan")  # before any work: a bad config value is named
    return COMMANDS[args.command](args)
