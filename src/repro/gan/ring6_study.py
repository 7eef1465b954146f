"""Why Reg-GAN barely beats GAN on the ring of 6 at the default: 10x learning rate or the lambdas?

``python -m repro.gan.ring6_study --config config.yaml --data results/data/mixtures/ring6.npz --out DIR``
trains the ring6 experiment of the ``gan:`` section (default: 3000 steps at Adam 1e-3, lambda1 =
lambda2 = 0.005) with one factor changed at a time, over ``--seeds`` seeds:

- the paper's learning rate (MDGAN App. C: Adam 1e-4) at the default's step count and at 10x the steps
  (the same product lr x steps as the default);
- lambda1 = lambda2 raised 10x and 100x at the default's learning rate, and each lambda alone 10x.

Each variant runs GAN and Reg-GAN with the same seeds; the table printed (and ``DIR/study.json``) has
the modes covered per seed. The verdict goes into the scale note of ``gan_reggan_vs_gan_ring6``;
this study is not part of the DAG (about 6 CPU-minutes at 3 seeds, most of it the 10x-steps variant).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from repro.gan.cli import main as gan_main

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper_lr": {"lr": 1.0e-4},
    "paper_lr_10x_steps": {"lr": 1.0e-4, "steps_factor": 10},
    "lambda_x10": {"lambda_factor": 10},
    "lambda_x100": {"lambda_factor": 100},
    "lambda1_x10": {"lambda1_factor": 10},
    "lambda2_x10": {"lambda2_factor": 10},
}


def variant_config(exp: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The ring6 experiment section with one variant's change applied."""
    out = dict(exp)
    if "lr" in change:
        out["lr"] = change["lr"]
    if "steps_factor" in change:
        out["steps"] = int(exp["steps"]) * change["steps_factor"]
        out["eval_every"] = out["steps"]
    if "lambda_factor" in change:
        out["lambda1"] = float(exp["lambda1"]) * change["lambda_factor"]
        out["lambda2"] = float(exp["lambda2"]) * change["lambda_factor"]
    if "lambda1_factor" in change:
        out["lambda1"] = float(exp["lambda1"]) * change["lambda1_factor"]
    if "lambda2_factor" in change:
        out["lambda2"] = float(exp["lambda2"]) * change["lambda2_factor"]
    out["checkpoint_every"] = 0
    return out


def run(cfg: dict[str, Any], data: Path, out: Path, seeds: int, variants: list[str], arms: list[str]) -> dict[str, Any]:
    """Train every (variant, arm, seed); returns ``{variant: {arm: [modes covered per seed]}}``."""
    gan = dict(cfg)
    exp = {**gan["experiments"]["ring6"], "arms": arms}
    table: dict[str, Any] = {}
    for name in variants:
        vcfg = json.dumps({**gan, "run": ["ring6"], "experiments": {"ring6": variant_config(exp, VARIANTS[name])}})
        table[name] = {}
        for arm in arms:
            covered = []
            for seed in range(seeds):
                d = out / name / arm
                d.mkdir(parents=True, exist_ok=True)
                code = gan_main(["train", "--config", vcfg, "--seed", str(seed), "--experiment", "ring6", "--arm", arm,
                                 "--in", str(data), "--out", str(d / f"s{seed}.json"), "--samples", str(d / f"s{seed}.npz"),
                                 "--weights", str(d / f"s{seed}.pt"), "--metrics-csv", str(d / f"s{seed}.csv")])
                if code:
                    raise SystemExit(f"{name}/{arm}/s{seed} failed with exit code {code}")
                covered.append(json.loads((d / f"s{seed}.json").read_text())["final"]["modes_covered"])
            table[name][arm] = covered
            print(f"{name:20s} {arm:8s} modes covered {covered} mean {sum(covered) / len(covered):.2f}", file=sys.stderr, flush=True)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="a config file with a gan: section")
    p.add_argument("--data", type=Path, required=True, help="ring6.npz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--arms", nargs="+", default=["gan", "reggan"])
    args = p.parse_args(argv)
    cfg = yaml.safe_load(args.config.read_text())["gan"]
    table = run(cfg, args.data, args.out, args.seeds, args.variants, args.arms)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
