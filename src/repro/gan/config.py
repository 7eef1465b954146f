"""The stage's config section and one experiment's settings, defaults from the pipeline's schema.

The schema (``workflow/schemas/config.schema.yaml``, through :mod:`repro.common.config`) is the one source of
defaults, so the CLI called directly with a partial section gets what the pipeline would give it.
"""

from __future__ import annotations

import copy
from typing import Any

from repro.common.config import stage_config as load_stage_config
from repro.gan.arms import ARMS
from repro.gan.data import IMAGE_DATASETS, MIXTURE_DATASETS

EXPERIMENTS = MIXTURE_DATASETS + IMAGE_DATASETS


def stage_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``gan:`` section checked against the schema, its defaults filled in (a copy)."""
    return load_stage_config(copy.deepcopy(cfg), "gan")


def experiment_config(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """One experiment's settings with defaults filled in; errors name the bad key."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r} (expected one of {EXPERIMENTS})")
    exps = cfg.get("experiments", {})
    if name not in exps:
        raise ValueError(f"config key 'gan.experiments.{name}' is missing")
    out = load_stage_config(copy.deepcopy(exps[name]), f"gan.experiments.{name}")
    bad = [a for a in out["arms"] if a not in ARMS]
    if bad:
        raise ValueError(f"config key 'gan.experiments.{name}.arms': unknown arm {bad[0]!r} (expected {ARMS})")
    return out
