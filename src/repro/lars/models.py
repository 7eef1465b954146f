"""Small AlexNet-like CNNs for the large-batch study (1708.03888 Sec. 4-5: AlexNet and AlexNet-BN).

Both keep AlexNet's shape at small-image scale: 3x3 convs (AlexNet's 11x11 first kernel is 5% of its
224 px input; 3 px is already 19% of our 16 px), three max-poolings, and two fully connected layers
before the classifier (AlexNet: 5 convs and fc6/fc7/fc8). ``alexnet`` uses
local response normalisation after the first two convs, as the original (the paper's "AlexNet"
baseline) would use local response normalisation; we leave LRN out (it doubles the cost of a step on
CPU and normalises nothing the large-batch effect depends on), so ``alexnet`` has no normalisation
layer at all. ``alexnet_bn`` puts BatchNorm after every conv and hidden fc (the paper's "AlexNet-BN",
which replaces LRN by BN). Weights use He (Kaiming) normal initialisation and biases start at zero,
so a 6-layer plain ReLU net trains from scratch (PyTorch's default init leaves it stuck at chance). Dropout is left out: our runs are a few epochs long and the
paper's large-batch effect is under-training, not over-fitting (its Fig. 1).
At ImageNet size (``image_size`` >= 64, e.g. the paper's 224 px) the convs are AlexNet's own
(Krizhevsky et al.; torchvision's ``alexnet``): 11x11 stride 4, 5x5, then three 3x3, with 3x3/2
max-pooling after conv1, conv2 and conv5, so 224 px gives the 6x6 map fc6 reads in the paper's net
(with ``conv: [64, 192, 384, 256, 256]`` and ``fc: 4096`` it has AlexNet's 61.1M parameters).
Input: [N, 3, H, W] with H = W (divisible by 8 below 64 px); output logits [N, num_classes].
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

IMAGENET_MIN_SIZE = 64  # from this input size on, the convs are AlexNet's (module docstring)

__all__ = ["MODELS", "alexnet_bn_small", "alexnet_small", "build_model", "count_parameters"]


def _features(in_ch: int, conv: Sequence[int], norm: Callable[[int, int], list[nn.Module]],
              image_size: int) -> nn.Sequential:
    big = image_size >= IMAGENET_MIN_SIZE
    layers: list[nn.Module] = []
    for i, out_ch in enumerate(conv):
        if big:  # AlexNet: 11x11/4 (pad 2), 5x5 (pad 2), 3x3 (pad 1); pool1, pool2, pool5 3x3/2
            kernel, stride, pad = ((11, 4, 2), (5, 1, 2))[i] if i < 2 else (3, 1, 1)
            layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad), *norm(i, out_ch),
                       nn.ReLU(inplace=True)]
            if i in (0, 1, len(conv) - 1):
                layers.append(nn.MaxPool2d(3, 2))
        else:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), *norm(i, out_ch), nn.ReLU(inplace=True)]
            if i < 3:  # three 2x poolings, as AlexNet's pool1/pool2/pool5
                layers.append(nn.MaxPool2d(2))
        in_ch = out_ch
    return nn.Sequential(*layers)


def _flat_size(features: nn.Module, image_size: int) -> int:
    """Features per image after ``features`` (what fc6 reads)."""
    with torch.no_grad():
        return int(features(torch.zeros(1, 3, image_size, image_size)).numel())


def _classifier(in_features: int, fc: int, num_classes: int, bn: bool) -> nn.Sequential:
    hidden: list[nn.Module] = []
    for i in range(2):  # fc6, fc7
        hidden += [nn.Linear(in_features if i == 0 else fc, fc)]
        hidden += [nn.BatchNorm1d(fc)] if bn else []
        hidden += [nn.ReLU(inplace=True)]
    return nn.Sequential(nn.Flatten(), *hidden, nn.Linear(fc, num_classes))  # fc8


def _no_norm(i: int, ch: int) -> list[nn.Module]:
    return []


def _bn(i: int, ch: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(ch)]


def alexnet_small(*, num_classes: int, image_size: int, conv: Sequence[int] = (16, 32, 32), fc: int = 64) -> nn.Module:
    """AlexNet-like CNN without normalisation layers (the paper's "AlexNet", LRN left out)."""
    _check(image_size, conv)
    feats = _features(3, conv, _no_norm, image_size)
    return _init(nn.Sequential(feats, _classifier(_flat_size(feats, image_size), fc, num_classes, bn=False)))


def alexnet_bn_small(*, num_classes: int, image_size: int, conv: Sequence[int] = (16, 32, 32), fc: int = 64) -> nn.Module:
    """AlexNet-BN-like CNN: BatchNorm after every conv and hidden fc, no LRN."""
    _check(image_size, conv)
    feats = _features(3, conv, _bn, image_size)
    feats.eval()  # the size probe must not touch the BatchNorm running statistics
    size = _flat_size(feats, image_size)
    feats.train()
    return _init(nn.Sequential(feats, _classifier(size, fc, num_classes, bn=True)))


def _init(model: nn.Module) -> nn.Module:
    """He-normal weights (fan-in, ReLU gain), zero biases; BatchNorm keeps scale 1, shift 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def _check(image_size: int, conv: Sequence[int]) -> None:
    if image_size < IMAGENET_MIN_SIZE and (image_size % 8 or image_size < 8):
        raise ValueError(f"image_size must be a positive multiple of 8 (three 2x poolings), got {image_size}")
    if len(conv) < 3:
        raise ValueError(f"need at least 3 conv layers, got {list(conv)}")
    if image_size >= IMAGENET_MIN_SIZE and len(conv) != 5:
        raise ValueError(f"AlexNet at {image_size} px has 5 conv layers, got {list(conv)}")


MODELS: dict[str, Callable[..., nn.Module]] = {"alexnet": alexnet_small, "alexnet_bn": alexnet_bn_small}


def build_model(name: str, *, num_classes: int, image_size: int, conv: Sequence[int], fc: int) -> nn.Module:
    """One of :data:`MODELS` by name (ValueError naming the choices otherwise)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes, image_size=image_size, conv=conv, fc=fc)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

