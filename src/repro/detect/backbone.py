"""Bottom-up backbones C2..C5 (FPN, arXiv 1612.03144, Sec. 3 "Bottom-up pathway").

The public contract with the pretraining stage (Transitive Invariance) is
:func:`tiny_resnet`: that stage imports it, trains it and saves ``module.state_dict()``; this stage
loads the file unchanged (``weights_only=True``, ``strict=True``) with :func:`load_backbone_weights`
before building a detector, so every layer of the pretrained net starts the detector.

``tiny_resnet(width=w)`` has exactly these children, in this order (torchvision-ResNet-like, so
``torchvision.models._utils.IntermediateLayerGetter`` returns C2..C5 from ``layer1..layer4``):

=========  ==================================================  ========  ========
child      what                                                stride    channels
=========  ==================================================  ========  ========
stem       ``conv`` 3x3/2, ``bn``, ``relu``, ``pool`` 3x3/2      4         w
layer1     BasicBlock(w -> w)          output C2               4         w
layer2     BasicBlock(w -> 2w, /2)     output C3               8         2w
layer3     BasicBlock(2w -> 4w, /2)    output C4               16        4w
layer4     BasicBlock(4w -> 8w, /2)    output C5               32        8w
=========  ==================================================  ========  ========

State-dict keys (``blocks=(1, 1, 1, 1)``; ``layerN.K`` for K < blocks[N-1] with more blocks)::

    stem.conv.weight
    stem.bn.{weight,bias,running_mean,running_var,num_batches_tracked}
    layerN.0.conv1.weight   layerN.0.bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layerN.0.conv2.weight   layerN.0.bn2.{...}
    layerN.0.downsample.0.weight   layerN.0.downsample.1.{...}     (N = 2, 3, 4; N = 1 has none)

Nothing else: no classifier, so ``forward`` returns C5 ([B, 8w, H/32, W/32]). A pretraining net
adds its own pooling and fc layers *around* this module and saves only this module's state_dict.
``module.channels`` (a plain attribute, not in the state_dict) is ``(w, 2w, 4w, 8w)``.

Input convention: the detector feeds RGB in [0, 1] normalised with torchvision's ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (``GeneralizedRCNNTransform``). A pretraining
stage should feed its patches the same way, so the transferred first layers see the same statistics.

The stem is a 3x3 stride-2 conv (not ResNet's 7x7) because the default scale uses 256-px images and
32-px patches (a small ResNet: TinyResNet).  :func:`resnet50` is the paper's
ResNet-50 for full scale (torchvision's, ImageNet-initialised from a local file).  :func:`vgg16_body`
is torchvision's VGG16 cut into the same five children (the backbone of Transitive Invariance's
full-scale towers and detectors; FPN itself uses ResNets).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.resnet import resnet50 as _tv_resnet50
from torchvision.models.vgg import vgg16 as _tv_vgg16
from torchvision.models.vgg import vgg16_bn as _tv_vgg16_bn
from torchvision.ops.misc import FrozenBatchNorm2d

STAGES = ("layer1", "layer2", "layer3", "layer4")  # C2, C3, C4, C5


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
        )
    layers = [BasicBlock(in_ch, out_ch, stride=stride, downsample=downsample)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class TinyResNet(nn.Module):
    """A small ResNet (BasicBlocks, BatchNorm) exposing ``stem`` and ``layer1..layer4`` (C2..C5)."""

    def __init__(self, width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1)) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"tiny_resnet: width must be >= 1, got {width}")
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"tiny_resnet: blocks must be four counts >= 1, got {tuple(blocks)}")
        self.channels = (width, 2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )
        ins = (width,) + self.channels[:-1]
        for i, (name, cin, cout, nb) in enumerate(zip(STAGES, ins, self.channels, blocks)):
            setattr(self, name, _stage(cin, cout, nb, stride=1 if i == 0 else 2))
        for m in self.modules():  # torchvision ResNet's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> C5 [B, 8w, H/32, W/32]."""
        x = self.stem(x)
        for name in STAGES:
            x = getattr(self, name)(x)
        return x


def tiny_resnet(*, width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1)) -> TinyResNet:
    """The default-scale backbone shared with the pretraining stage (state-dict keys: module doc).

    ``width`` is the C2 width (C3..C5 double it each stage); ``blocks`` the BasicBlocks per stage.
    Both sides of a weight transfer must use the same two values (the detection config's
    ``detect.width`` and ``detect.blocks``).
    """
    return TinyResNet(width=width, blocks=tuple(int(b) for b in blocks))


def resnet50(*, frozen_bn: bool = True) -> ResNet:
    """torchvision's ResNet-50 (C2..C5 = layer1..layer4, 256/512/1024/2048 ch), no classifier.

    ``frozen_bn`` uses FrozenBatchNorm2d (ImageNet statistics kept fixed, the standard choice for
    batch-2-per-GPU detection training); ``fc`` and ``avgpool`` are removed so the state_dict holds
    only the conv trunk.
    """
    model = _tv_resnet50(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    model.fc = nn.Identity()
    model.avgpool = nn.Identity()
    model.channels = (256, 512, 1024, 2048)
    return model


class VGG16Body(nn.Module):
    """torchvision's VGG16 ``features`` cut after each max-pool: ``stem`` (conv1_x, pool1) and
    ``layer1..layer4`` (conv2_x..conv5_x, each ending in its pool) give C2..C5 at strides 4..32."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        cuts = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        if len(cuts) != 5:
            raise ValueError(f"vgg16_body: expected 5 max-pools in VGG16's features, found {len(cuts)}")
        for name, lo, hi in zip(("stem", *STAGES), [0, *cuts[:-1]], cuts):
            setattr(self, name, nn.Sequential(*features[lo:hi]))
        self.channels = tuple(_out_channels(getattr(self, n)) for n in STAGES)  # (128, 256, 512, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> C5 = pool5 [B, 512, H/32, W/32]."""
        x = self.stem(x)
        for name in STAGES:
            x = getattr(self, name)(x)
        return x


def _out_channels(stage: nn.Sequential) -> int:
    return [m for m in stage if isinstance(m, nn.Conv2d)][-1].out_channels


def vgg16_body(*, batch_norm: bool = False, imagenet_weights: str | os.PathLike | None = None) -> VGG16Body:
    """VGG16's conv trunk (Simonyan & Zisserman, configuration D; torchvision's builder), no classifier.

    Children ``stem`` (conv1_1-conv1_2, pool1), ``layer1`` (conv2_x, pool2: C2, 128 ch, stride 4),
    ``layer2`` (conv3_x, pool3: C3, 256, /8), ``layer3`` (conv4_x, pool4: C4, 512, /16) and ``layer4``
    (conv5_x, pool5: C5, 512, /32), so ``forward`` returns pool5 and the detection builders take
    C2..C5 from ``layer1..layer4`` as for the ResNets. ``batch_norm`` uses ``vgg16_bn`` (a BatchNorm
    after every conv; the paper's VGG16 has none). ``imagenet_weights`` is a local torchvision
    checkpoint of the same variant (``vgg16-397923af.pth`` / ``vgg16_bn-6c64b313.pth``); its
    ``features.*`` are loaded strictly, the classifier is dropped. State-dict keys are
    ``stem.K.*`` and ``layerN.K.*`` (K: index within the child).
    """
    net = (_tv_vgg16_bn if batch_norm else _tv_vgg16)(weights=None)
    if imagenet_weights is not None:
        path = Path(imagenet_weights)
        if not path.is_file():
            raise FileNotFoundError(f"detect.imagenet_weights: no such file {os.fspath(path)!r} (VGG16 state_dict)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                      if k.startswith("features.")}, strict=True)
    return VGG16Body(net.features)


def build_body(*, name: str, width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1),
               imagenet_weights: str | None = None, imagenet_init: bool = True) -> nn.Module:
    """The backbone named in the config.

    ResNet-50 is initialised from its ImageNet weights file (paper Sec. 4.1) unless ``imagenet_init`` is
    False (TI transfer: the pretraining arm's weights are loaded instead).  Only ImageNet weights come
    with statistics worth freezing; a transferred ResNet-50 gets trainable BatchNorm on batch statistics,
    as its pretraining net had.  Frozen at the initial statistics (mean 0, var 1) the ``scratch`` arm
    would have no normalisation at all: its C5 activations come out about 36x the scale that batch
    statistics give, and every "arm - scratch" difference would carry that artefact.  VGG16 loads
    ImageNet weights when ``imagenet_weights`` is given and ``imagenet_init`` is True, and otherwise
    starts from torchvision's random initialisation.
    """
    if name == "tiny_resnet":
        return tiny_resnet(width=width, blocks=blocks)
    if name == "vgg16":
        return vgg16_body(imagenet_weights=imagenet_weights if imagenet_init else None)
    if name == "resnet50":
        body = resnet50(frozen_bn=imagenet_init)
        if not imagenet_init:
            return body
        if imagenet_weights is None:
            raise ValueError(
                "detect.backbone is resnet50 but detect.imagenet_weights is null: the paper initialises"
                " ResNet-50 from ImageNet; set it to a local torchvision checkpoint (e.g."
                " resnet50-0676ba61.pth) - it cannot be downloaded by the pipeline"
            )
        path = Path(imagenet_weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"detect.imagenet_weights: no such file {os.fspath(path)!r} (ImageNet ResNet-50 state_dict;"
                " copy torchvision's resnet50-0676ba61.pth there on the cluster)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        body.load_state_dict(state, strict=True)
        return body
    raise ValueError(f"detect.backbone: unknown backbone {name!r} (tiny_resnet | resnet50 | vgg16)")


def load_backbone_weights(body: nn.Module, path: str | os.PathLike) -> None:
    """Load a state_dict saved from exactly this backbone module (strict; names missing/extra keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--backbone-weights: no such file {os.fspath(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--backbone-weights {os.fspath(path)!r}: expected a state_dict (name -> tensor)")
    expected = body.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if isinstance(body, nn.Module) and any(isinstance(m, FrozenBatchNorm2d) for m in body.modules()):
        extra = [k for k in extra if not k.endswith("num_batches_tracked")]
    if missing or extra:
        raise ValueError(
            f"--backbone-weights {os.fspath(path)!r} does not fit the detection backbone:"
            f" missing keys {missing[:8]}{'...' if len(missing) > 8 else ''},"
            f" unexpected keys {extra[:8]}{'...' if len(extra) > 8 else ''}"
        )
    bad = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if bad:
        k = bad[0]
        raise ValueError(
            f"--backbone-weights {os.fspath(path)!r}: shape mismatch for {k}: file {tuple(state[k].shape)}"
            f" vs backbone {tuple(expected[k].shape)} (was it saved with another detect.width?)"
        )
    body.load_state_dict(state, strict=True)


def freeze_layers(body: nn.Module, trainable_layers: int) -> None:
    """Train only the last ``trainable_layers`` of (stem/conv1, layer1..layer4); 5 trains all."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"detect.trainable_layers must be in 0..5, got {trainable_layers}")
    order = ["layer4", "layer3", "layer2", "layer1", "stem" if hasattr(body, "stem") else "conv1"]
    trainable = set(order[:trainable_layers])
    if "conv1" in trainable:
        trainable.add("bn1")
    for name, param in body.named_parameters():
        if name.split(".")[0] not in trainable:
            param.requires_grad_(False)
