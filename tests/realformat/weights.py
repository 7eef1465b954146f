"""A stand-in for the ImageNet-initialised ResNet-50 that the user copies in by hand.

torchvision's ``resnet50`` state_dict (``fc.*`` included, as in ``resnet50-0676ba61.pth``), randomly
initialised: the same keys, shapes and file format, so the loading code path is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import resnet50


def build(out: Path, name: str = "resnet50-standin.pth") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    path = out / name
    torch.save(resnet50(weights=None).state_dict(), path)
    return path
