"""The detection backbones' contract: VGG16 cut into stem + C2..C5 (TI's full-scale backbone) inside the
FPN and C4 detectors, at a tiny image size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import vgg16

from repro.detect.backbone import STAGES, build_body, freeze_layers, load_backbone_weights, vgg16_body
from repro.detect.models import DetectorSettings, build_detector

TINY = DetectorSettings(min_size=64, max_size=64, fpn_channels=8, anchor_sizes=(8, 16, 32, 64, 128),
                        representation_size=16, rpn_post_nms_top_n_test=50, box_batch_size_per_image=8)


def test_vgg16_body_gives_c2_to_c5_after_each_pool() -> None:
    torch.manual_seed(0)
    body = vgg16_body()
    assert body.channels == (128, 256, 512, 512)
    x = torch.randn(1, 3, 64, 64)
    shapes = []
    with torch.no_grad():
        h = body.stem(x)
        for name in STAGES:
            h = getattr(body, name)(h)
            shapes.append(tuple(h.shape[1:]))
        assert torch.equal(body(x), h)
    assert shapes == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]  # strides 4, 8, 16, 32
    # the same layers as torchvision's features, in order: 13 convs, 5 pools
    assert sum(isinstance(m, torch.nn.Conv2d) for m in body.modules()) == 13
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in body.modules()) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg16_body(batch_norm=True).modules()) == 13


def test_vgg16_body_loads_torchvision_imagenet_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    features = vgg16(weights=None).features.state_dict()
    # a torchvision-format checkpoint (the classifier is dropped: a small stand-in keeps the file small)
    torch.save({**{f"features.{k}": v for k, v in features.items()}, "classifier.6.bias": torch.zeros(3)},
               tmp_path / "vgg16.pth")
    body = build_body(name="vgg16", imagenet_weights=str(tmp_path / "vgg16.pth"))
    assert torch.equal(body.stem[0].weight, features["0.weight"])  # conv1_1
    assert torch.equal(body.layer4[4].weight, features["28.weight"])  # conv5_3
    # a pretraining stage's save round-trips through the transfer loader
    torch.save(body.state_dict(), tmp_path / "body.pt")
    load_backbone_weights(vgg16_body(), tmp_path / "body.pt")
    with pytest.raises(FileNotFoundError, match="detect.imagenet_weights"):
        vgg16_body(imagenet_weights=tmp_path / "missing.pth")


@pytest.mark.parametrize("model", ["fpn", "c4"])
def test_vgg16_detectors_train_and_infer_at_a_tiny_size(model: str) -> None:
    torch.manual_seed(0)
    body = vgg16_body()
    freeze_layers(body, 2)  # conv4_x, conv5_x trainable
    assert not any(p.requires_grad for p in body.stem.parameters())
    assert all(p.requires_grad for p in body.layer4.parameters())
    det = build_detector(model, body=body, num_classes=3, settings=TINY)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 48)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[10.0, 8.0, 30.0, 60.0]]), "labels": torch.tensor([2])}]
    det.train()
    losses = det(images, targets)
    sum(losses.values()).backward()
    assert body.layer4[0].weight.grad is not None and body.stem[0].weight.grad is None
    det.eval()
    with torch.no_grad():
        out = det(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4
