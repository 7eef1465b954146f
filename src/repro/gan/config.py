"""The stage's config section with its defaults (the same values as workflow/schemas/config.schema.yaml,
which a test keeps in step), so the CLI also runs when called directly without Snakemake's validation.
"""

from __future__ import annotations

import copy
from typing import Any

from repro.gan.arms import ARMS
from repro.gan.data import IMAGE_DATASETS, MIXTURE_DATASETS

EXPERIMENTS = MIXTURE_DATASETS + IMAGE_DATASETS

# MGAN §5 defaults (Adam 2e-4, beta1 0.5; 2-D nets: G 2x128 ReLU, D one hidden layer of 128).
EXPERIMENT_DEFAULTS: dict[str, Any] = {
    "arms": ["gan", "mgan"],
    "steps": 1000,
    "batch_size": 128,
    "lr": 2.0e-4,
    "beta1": 0.5,
    "beta2": 0.999,
    "model": "mlp",
    "z_dim": 256,
    "z_dist": "normal",
    "g_hidden": 128,
    "g_layers": 2,
    "d_hidden": 128,
    "d_layers": 1,
    "leaky": False,
    "init_std": 0.02,
    "width": 128,
    "n_generators": 8,
    "fakes_per_generator": None,  # None: ceil(batch_size / K); MGAN's CIFAR-10 code: 12
    "same_z": True,  # MGAN's code: one z batch replicated to all K generators
    "beta": 0.125,
    "lambda1": 0.005,
    "lambda2": 0.005,
    "mdgan_lambda": 1.0,
    "eval_every": 250,
    "eval_samples": None,  # None: gan.metrics.eval_samples (the paper's IS uses 50,000)
    "checkpoint_every": 500,
    "scorer": "classifier",
    "scorer_epochs": 20,
    "scorer_batch_size": 64,
    "scorer_lr": 1.0e-3,
}

METRIC_DEFAULTS: dict[str, Any] = {
    "eval_samples": 10000,
    "n_sigma": 3.0,
    "min_mode_fraction": 0.01,
    "hist_bins": 50,
    "hist_margin": 1.0,
    "hist_eps": 1.0e-6,
    "w1_samples": 1000,
    "under_ratio": 0.5,
    "is_splits": 1,
}

STAGE_DEFAULTS: dict[str, Any] = {
    "seeds": 5,
    "run": ["ring8", "ring6", "digits", "stacked"],
    "threads": 1,  # read by the rules (threads per job); the CLI takes --threads
    "device": "auto",
    "amp": "auto",  # mixed precision on CUDA (repro.common.amp); not part of a run's identity
    "inception_weights": None,
    "plot_samples": 512,
    "metrics": METRIC_DEFAULTS,
    "experiments": {},
}


def stage_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``gan:`` section with defaults filled in (a deep copy)."""
    out = copy.deepcopy(STAGE_DEFAULTS)
    for key, value in cfg.items():
        if key not in out:
            raise ValueError(f"config key 'gan.{key}' is unknown (known: {sorted(out)})")
        out[key] = copy.deepcopy(value)
    out["metrics"] = {**METRIC_DEFAULTS, **cfg.get("metrics", {})}
    unknown = set(out["metrics"]) - set(METRIC_DEFAULTS)
    if unknown:
        raise ValueError(f"config keys 'gan.metrics.{sorted(unknown)[0]}' unknown")
    return out


def experiment_config(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """One experiment's settings with defaults filled in; errors name the bad key."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r} (expected one of {EXPERIMENTS})")
    exps = cfg.get("experiments", {})
    if name not in exps:
        raise ValueError(f"config key 'gan.experiments.{name}' is missing")
    out = {**EXPERIMENT_DEFAULTS, **exps[name]}
    unknown = set(out) - set(EXPERIMENT_DEFAULTS)
    if unknown:
        raise ValueError(f"config key 'gan.experiments.{name}.{sorted(unknown)[0]}' is unknown")
    bad = [a for a in out["arms"] if a not in ARMS]
    if bad:
        raise ValueError(f"config key 'gan.experiments.{name}.arms': unknown arm {bad[0]!r} (expected {ARMS})")
    return out
