"""The networks quantized in Choi et al. (1612.01543, Sec. 5), one keyword-only builder each.

* :func:`mlp`: the embedded default, a ReLU MLP on 8x8 digits (64-128-64-10: 17,226 parameters).
* :func:`lenet5`: Caffe's LeNet for MNIST (conv 20@5x5, max-pool, conv 50@5x5, max-pool, fc 500,
  fc 10): 431,080 parameters, the count in the paper's Sec. 5.1.
* :func:`resnet32`: He et al.'s CIFAR-10 ResNet-32 (3 stages of 5 basic blocks, 16/32/64 channels,
  parameter-free option-A shortcuts): 464,154 parameters, the count in the paper's Sec. 5.2.
AlexNet/ImageNet is named in the full config only (no ImageNet download is pinned).

All are piecewise linear in each single parameter (ReLU, max-pooling, BatchNorm in eval mode),
which makes :func:`repro.quant.hessian.ggn_diagonal` the exact Hessian diagonal.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MODELS = ("mlp", "lenet5", "resnet32", "alexnet")


def mlp(*, in_features: int = 64, hidden: tuple[int, ...] = (128, 64), num_classes: int = 10) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    layers.append(nn.Linear(prev, num_classes))
    return nn.Sequential(*layers)


def lenet5(*, in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Caffe LeNet (examples/mnist/lenet_train_test.prototxt) for 28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),  # [B, 20, 12, 12]
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),  # [B, 50, 4, 4]
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
        nn.Linear(500, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:  # option A: subsample and zero-pad the channels
            short = x[:, :, :: self.stride, :: self.stride]
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNetCifar(nn.Module):
    def __init__(self, *, depth: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_BasicBlock(c_in, c_out, 2 if (stage > 0 and i == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))  # [B, 64, 8, 8]
        return self.fc(out.mean(dim=(2, 3)))


def resnet32(*, num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(depth=32, num_classes=num_classes)


def build_model(name: str, *, hidden: tuple[int, ...] = (128, 64), in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The builder for ``name`` (one of :data:`MODELS`) for inputs of shape ``in_shape`` (no batch)."""
    if name == "mlp":
        n_in = 1
        for s in in_shape:
            n_in *= int(s)
        return mlp(in_features=n_in, hidden=tuple(hidden), num_classes=num_classes)
    if name == "lenet5":
        return lenet5(in_channels=int(in_shape[0]), num_classes=num_classes)
    if name == "resnet32":
        return resnet32(num_classes=num_classes)
    if name == "alexnet":
        raise ValueError("AlexNet/ImageNet is named in the full config only: no ImageNet download is pinned")
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
