"""What the GAN stage runs for a config: which experiments are scored by which classifier, and what each reads.

Pure Python (no torch), so the workflow's rules build the DAG from it: stacked sets are composed from a base
set at load time and scored by the base set's classifier; 2-D mixtures need no scorer.
"""

from __future__ import annotations

import os
from typing import Any

from repro.gan.data import MIXTURE_DATASETS, STACKED_BASE

# Half-hour runs at full scale (2-D mixtures, 8x8 digits): the SLURM profile may bundle their jobs.
SMALL_EXPERIMENTS = MIXTURE_DATASETS + ("digits", "stacked")


def scorer_of(run: list[str]) -> dict[str, str]:
    """Experiment -> the experiment whose scorer it reads (itself, or a stacked set's base); mixtures: none."""
    out = {}
    for exp in run:
        if exp in STACKED_BASE:
            out[exp] = STACKED_BASE[exp]
        elif exp not in MIXTURE_DATASETS:
            out[exp] = exp
    return out


def source_of(experiment: str) -> str:
    """What an experiment trains on: ``mixtures`` (the 2-D sets' folder), ``digits`` or a downloaded dataset."""
    if experiment in MIXTURE_DATASETS:
        return "mixtures"
    return STACKED_BASE.get(experiment, experiment)


def planned(cfg: dict[str, Any]) -> list[str]:
    """The experiments of ``gan.run`` and the base sets their scorers come from, each checked against the config.

    A listed experiment without settings, or an inception_v3 scorer without its weights on local disk (they
    are never downloaded), is a ValueError naming the config key, before any job runs.
    """
    scored = sorted(set(scorer_of(cfg["run"]).values()))
    exps = list(cfg["run"]) + [e for e in scored if e not in cfg["run"]]
    for exp in exps:
        if exp not in cfg["experiments"]:
            raise ValueError(f"config key 'gan.run' lists {exp!r} (or a stacked set based on it) but"
                             f" 'gan.experiments.{exp}' is missing")
        if cfg["experiments"][exp]["scorer"] == "inception_v3":
            weights = cfg["inception_weights"]
            if not weights or not os.path.isfile(weights):
                raise ValueError(f"config key 'gan.inception_weights' = {weights!r}: no such file, but"
                                 f" 'gan.experiments.{exp}.scorer' is inception_v3. Put torchvision's inception_v3"
                                 " ImageNet weights (.pth) on local disk and point the key at them (they are never"
                                 " downloaded), or set the scorer to 'classifier'.")
    return exps
