"""The scorer network p(y|x) behind the inception score: an in-pipeline classifier, or Inception-v3.

- ``digits``: MLP 64-256-256-10 on 8x8 digits in [-1, 1];
- ``mnist``: a 4-layer CNN (two conv, two linear; 1612.02136 §4.1 uses "a 4-layer CNN") on 32x32;
- ``cifar10``: a small CNN (3 conv blocks + linear), trained in the pipeline. Its IS is *not*
  comparable with published CIFAR-10 numbers, which use the TF Inception network;
- ``inception_v3``: torchvision's Inception-v3 (1000 ImageNet classes) from a weights file given in
  the config (``gan.inception_weights``). The pipeline never downloads it; without the file it stops
  with a message naming the key. Even with weights, torchvision's port differs from the TF graph of
  Salimans et al. 2016, so scores compare only within one implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.common.io import atomic_torch_save
from repro.gan.optim import Adam

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def digits_mlp(*, n_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n_classes)
    )


def mnist_cnn(*, n_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x16
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, n_classes),
    )


def cifar_cnn(*, n_classes: int = 10) -> nn.Module:
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 64), *block(64, 128), *block(128, 256), nn.Flatten(), nn.Dropout(0.3), nn.Linear(256 * 4 * 4, n_classes))


CLASSIFIERS = {"digits": digits_mlp, "mnist": mnist_cnn, "cifar10": cifar_cnn}


def build_classifier(dataset: str, *, n_classes: int = 10) -> nn.Module:
    if dataset not in CLASSIFIERS:
        raise ValueError(f"no in-pipeline classifier for dataset {dataset!r} (have {sorted(CLASSIFIERS)})")
    return CLASSIFIERS[dataset](n_classes=n_classes)


def fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Adam + cross-entropy; ``x`` float in [-1, 1] (on any device). Returns the mean loss per epoch."""
    model.to(device).train()
    opt = Adam(model.parameters(), lr=lr)
    losses = []
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(x.device)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if not np.isfinite(total):
            raise FloatingPointError("classifier loss is NaN/inf")
        losses.append(total / n)
    return losses


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000, device: torch.device | str = "cpu") -> np.ndarray:
    """Softmax probabilities [N, C] for inputs in [-1, 1]."""
    model.to(device).eval()
    out = [torch.softmax(model(x[i : i + batch_size].to(device)).float(), 1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


class InceptionNet(nn.Module):
    """torchvision Inception-v3 as p(y|x): [-1, 1] images (1 or 3 channels, any size) are
    resized to 299x299 (bilinear), normalised with ImageNet statistics, and classified."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)  # N x 1000 logits


def load_inception(weights: str | Path | None) -> InceptionNet:
    """Inception-v3 from a local weights file (a state dict, e.g. torchvision's
    ``inception_v3_google-0cc3c7bd.pth``). Fails with a clear message if the file is absent."""
    if not weights or not Path(weights).is_file():
        raise FileNotFoundError(
            f"config key 'gan.inception_weights' = {weights!r}: no such weights file. The Inception-network "
            "score needs torchvision's inception_v3 ImageNet weights on local disk (this pipeline never "
            "downloads them); set gan.inception_weights to the .pth file, or set the experiment's "
            "scorer to 'classifier' to use the in-pipeline classifier."
        )
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{weights}: not an inception_v3 state dict ({str(exc).splitlines()[-1].strip()})") from exc
    real_missing = [k for k in missing if not k.startswith("AuxLogits")]
    if real_missing or unexpected:
        raise ValueError(f"{weights}: not an inception_v3 state dict (missing {real_missing[:5]}, unexpected {list(unexpected)[:5]})")
    return InceptionNet(net).eval()


def save_scorer(path: str | Path, model: nn.Module | None, info: dict[str, Any]) -> None:
    """One file: ``{"kind", "dataset", "state_dict" (None for Inception), "train_marginal", …}``."""
    atomic_torch_save(path, {**info, "state_dict": None if model is None else model.state_dict()})


def load_scorer(path: str | Path, *, inception_weights: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The scorer network and its info dict (``train_marginal`` etc.) from :func:`save_scorer`'s file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scorer: no such file {str(path)!r}")
    info = torch.load(path, map_location="cpu", weights_only=True)
    if info["kind"] == "inception_v3":
        model: nn.Module = load_inception(inception_weights or info.get("weights"))
    else:
        model = build_classifier(info["dataset"], n_classes=int(info["n_classes"]))
        model.load_state_dict(info["state_dict"])
    return model.eval(), info
