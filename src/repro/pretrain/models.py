"""The Triplet-Siamese network of Transitive Invariance (arXiv 1708.02901, Sec. 4 "Network").

The paper runs three towers with shared weights: VGG16's convolutions -> fc 4096 -> fc 1024, and puts
the ranking loss on the 1024-d output. Here a tower is

    backbone (repro.detect.backbone.tiny_resnet, or ResNet-50 at full scale)
      -> global average pool  [B, C5]
      -> fc(C5 -> hidden) -> ReLU -> fc(hidden -> embed)      [B, embed]

Weight sharing is literal: one module embeds the anchor, positive and negative images (a tower is
applied to each in one batched call). No L2 normalisation layer: the loss uses the cosine distance,
which normalises. The backbone is the detection stage's public builder with the detection config's
``width``/``blocks``, so ``net.backbone.state_dict()`` loads unchanged into the detector (TI transfer).

Inputs are RGB in [0, 1] normalised with the ImageNet mean/std, the detector's convention
(``repro.detect.backbone`` module docstring): :func:`normalize` does it on uint8 patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TripletNet", "c5_map", "normalize", "pooled_features", "triplet_net"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's GeneralizedRCNNTransform defaults
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] RGB -> float [B,3,H,W], (x/255 - mean) / std as the detector feeds images."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std  # [B,3,H,W]


def c5_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """C5 map [B, C5, h, w]: tiny_resnet's forward, or torchvision ResNet's trunk (its forward flattens)."""
    if hasattr(backbone, "stem"):
        return backbone(x)
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))


def _channels(backbone: nn.Module) -> int:
    if not hasattr(backbone, "channels"):
        raise ValueError("backbone must expose .channels (C2..C5 widths), as repro.detect.backbone's do")
    return int(backbone.channels[-1])


class TripletNet(nn.Module):
    """One tower of the Triplet-Siamese net (the three towers share it): backbone -> pool -> fc -> fc."""

    def __init__(self, backbone: nn.Module, *, hidden: int, embed: int) -> None:
        super().__init__()
        self.backbone = backbone
        c5 = _channels(backbone)
        self.head = nn.Sequential(nn.Linear(c5, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embed))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled C5 of normalised images: [B,3,H,W] -> [B, C5] (what the probe evaluates)."""
        return c5_map(self.backbone, x).mean(dim=(2, 3))  # [B, C5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding F(x) of normalised images: [B,3,H,W] -> [B, embed] (the ranking loss's input)."""
        return self.head(self.features(x))  # [B, embed]


def triplet_net(*, backbone: str = "tiny_resnet", width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1),
                hidden: int = 256, embed: int = 128) -> TripletNet:
    """Builder: the detection stage's backbone (same ``width``/``blocks``) plus the fc -> ReLU -> fc head.

    ``backbone``: ``tiny_resnet`` (default scale), ``resnet50`` (torchvision's, trainable BatchNorm) or
    ``vgg16`` (the paper's tower, Sec. 4: VGG16's convolutions; ``repro.detect.backbone.vgg16_body``),
    randomly initialised: the paper's arms start without ImageNet labels. The head pools C5 globally
    (the paper's fc 4096 reads the flattened pool5; decided here for every backbone alike).
    """
    from repro.detect import backbone as det

    if backbone == "tiny_resnet":
        body = det.tiny_resnet(width=width, blocks=blocks)
    elif backbone == "resnet50":
        body = det.resnet50(frozen_bn=False)
    elif backbone == "vgg16":
        body = det.vgg16_body()
    else:
        raise ValueError(f"pretrain.backbone: unknown backbone {backbone!r} (tiny_resnet | resnet50 | vgg16)")
    return TripletNet(body, hidden=hidden, embed=embed)


@torch.no_grad()
def pooled_features(net: TripletNet, patches: torch.Tensor, *, batch_size: int = 512,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Frozen pooled C5 features of uint8 patches [N,3,S,S] in eval mode (BN running stats) -> [N, C5]."""
    was = net.training
    net.eval()
    out = []
    for start in range(0, len(patches), batch_size):
        x = normalize(patches[start : start + batch_size].to(device))
        out.append(net.features(x).float().cpu())
    net.train(was)
    return torch.cat(out) if out else torch.zeros(0, _channels(net.backbone))
