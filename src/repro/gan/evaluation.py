"""What a GAN job trains against and how it is scored over training: the real data and the evaluator.

:func:`load_real` reads an experiment's training set (a 2-D mixture, or images with the scorer behind
the inception score); :class:`Evaluator` draws the arm's samples at an evaluation step and scores them
with the experiment's metrics (mode coverage and KL on mixtures, Che et al. Sec. 4.1 / MGAN Sec. 5.1;
inception and MODE scores on images; missed modes and KL on stacked digits, Che et al. Table 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.gan.arms import ArmSetup, generate
from repro.gan.data import MIXTURE_DATASETS, STACKED_BASE, load_images, load_mixture
from repro.gan.metrics import image_metrics, mixture_metrics, stacked_metrics


@dataclass
class RealData:
    """An experiment's training samples on the device, and what scores generated ones against them."""

    experiment: str
    real: torch.Tensor  # n x 2 (mixtures) or n x C x H x W (uint8 or float32 images)
    shape: tuple[int, ...]
    mixture: Any = None  # the Mixture (centres, std) of a 2-D experiment
    scorer: torch.nn.Module | None = None
    scorer_info: dict[str, Any] = field(default_factory=dict)
    train_marginal: np.ndarray | None = None  # p(y) of the MODE score / the stacked modes' training share

    @property
    def kind(self) -> str:
        if self.mixture is not None:
            return "mixture"
        return "stacked" if self.experiment in STACKED_BASE else "images"

    def sample(self, n: int) -> torch.Tensor:
        """n real samples drawn with replacement (global torch RNG), images scaled to [-1, 1]."""
        batch = self.real[torch.randint(len(self.real), (n,), device=self.real.device)]
        if batch.dtype == torch.uint8:
            batch = batch.float() / 127.5 - 1.0
        return batch


def load_real(experiment: str, path: Path, *, scorer: Path | None, inception_weights: str | None,
              device: torch.device) -> RealData:
    """The experiment's training data (and, for images, its scorer); errors name the missing input."""
    if experiment in MIXTURE_DATASETS:
        mix = load_mixture(path)
        return RealData(experiment, torch.from_numpy(mix.samples).to(device), (2,), mixture=mix)
    images = load_images(experiment, path)
    if scorer is None:
        raise ValueError(f"experiment {experiment!r} needs --scorer (the classifier behind the inception score)")
    from repro.gan.classifier import load_scorer

    net, info = load_scorer(scorer, inception_weights=inception_weights)
    marginal = info["train_marginal"].numpy()
    if experiment in STACKED_BASE:  # the training share of each of the n_classes triples
        marginal = np.bincount(images.y_train, minlength=images.n_classes) / len(images.y_train)
    return RealData(experiment, torch.from_numpy(images.x_train).to(device), tuple(images.x_train.shape[1:]),
                    scorer=net.to(device), scorer_info=info, train_marginal=marginal)


class Evaluator:
    """``evaluator(step)`` -> the metrics of ``n`` fresh samples of the arm at that step (seconds kept)."""

    def __init__(self, data: RealData, setup: ArmSetup, *, n: int, metrics: dict[str, Any], seed: int,
                 device: torch.device, log: Callable[[str], None]) -> None:
        self.data, self.setup, self.n, self.m, self.seed, self.device, self.log = data, setup, n, metrics, seed, device, log
        self.seconds = 0.0

    def __call__(self, step: int) -> dict[str, Any]:
        from repro.gan.classifier import predict_probs

        t0 = time.perf_counter()
        x, _ = generate(self.setup, self.n, device=self.device)
        d, m = self.data, self.m
        if d.kind == "mixture":
            mix = d.mixture
            out = mixture_metrics(
                x.cpu().numpy(), mix.samples, mix.centers, mix.std, rng=np.random.default_rng([self.seed, step]),
                n_sigma=m["n_sigma"], min_fraction=m["min_mode_fraction"], bins=m["hist_bins"],
                margin=m["hist_margin"], eps=m["hist_eps"], w1_samples=m["w1_samples"],
            )
        elif d.kind == "stacked":
            n, c = x.shape[:2]
            probs = predict_probs(d.scorer, x.reshape(n * c, 1, *x.shape[2:]), batch_size=500, device=self.device)
            out = stacked_metrics(probs.reshape(n, c, -1), d.train_marginal)
        else:
            probs = predict_probs(d.scorer, x, batch_size=500, device=self.device)
            out = image_metrics(probs, d.train_marginal, splits=m["is_splits"], under_ratio=m["under_ratio"])
        self.seconds += time.perf_counter() - t0
        self.log(f"step {step}: { {k: round(v, 4) for k, v in out.items() if isinstance(v, (int, float))} }")
        return out
