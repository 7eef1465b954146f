"""Seconds per training iteration of the full-scale models, through the stages' own training loops.

Each case builds one model at the sizes of ``workflow/configs/full.yaml`` (merged over ``config.yaml``)
and returns a ``run(n)`` that trains it for ``n`` iterations with the stage's engine on synthetic data
of the real shapes; :func:`seconds_per_iteration` times it after a warm-up. ``tiny=True`` shrinks every
size (images, widths, batches) so the same code runs on a CPU in seconds (the suite's self-test).

* ``detect_fpn`` / ``detect_c4``: Faster R-CNN on ResNet-50 (FPN / C4, 1612.03144) at 800 x 1333 px,
  ``images_per_gpu`` images per iteration (the paper: 2 per GPU on 8 GPUs), random weights with each
  bottleneck's last frozen-BN scale zeroed (every residual block starts as the identity, so random
  weights do not overflow half precision), :func:`repro.detect.engine.train`;
* ``detect_tv_reference``: torchvision's ``fasterrcnn_resnet50_fpn`` as built with a pretrained backbone
  (frozen BN, 3 trainable stages; the same zeroed scales) trained by the step of pytorch/vision
  ``references/detection/engine.py::train_one_epoch`` (autocast + ``GradScaler`` in fp16 with ``--amp``,
  as the references do), on the same images;
* ``pretrain_resnet50``: the Triplet-Siamese ResNet-50 tower (1708.02901 Sec. 4; fc 4096 -> 1024) on
  ``pretrain.batch`` pairs of 96 px patches per step, :func:`repro.pretrain.engine.train`;
* ``lars_alexnet_bn``: AlexNet-BN (1708.03888) on 32 px CIFAR at one micro-batch per step,
  :func:`repro.lars.engine.train` with LARS;
* ``quant_resnet32``: ResNet-32 on CIFAR-10 (1612.01543) at its batch, :func:`repro.quant.engine.train`;
* ``gan_cifar10_gan`` / ``gan_cifar10_mgan`` / ``gan_mnist_gan``: the DCGAN nets (MGAN's CIFAR-10 setting,
  K = 10 generators, 12 fakes each), :func:`repro.gan.engine.train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from repro.common.amp import Precision

REPO = Path(__file__).resolve().parents[1]
CASES = ("detect_fpn", "detect_c4", "detect_tv_reference", "pretrain_resnet50", "lars_alexnet_bn", "quant_resnet32",
         "gan_cifar10_gan", "gan_cifar10_mgan", "gan_mnist_gan")
Runner = Callable[[int], None]


def full_config() -> dict[str, Any]:
    """``config.yaml`` with ``workflow/configs/full.yaml`` merged over it (what a full run sees)."""
    from repro.common.config import merged_config

    return merged_config(REPO / "config.yaml", REPO / "workflow" / "configs" / "full.yaml")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_iteration(run: Runner, device: torch.device, *, steps: int, warmup: int) -> float:
    """Mean wall seconds of one iteration over ``steps`` after ``warmup`` untimed ones (cuDNN autotuning,
    allocator growth)."""
    if warmup:
        run(warmup)
    _sync(device)
    t0 = time.perf_counter()
    run(steps)
    _sync(device)
    return (time.perf_counter() - t0) / steps


# ------------------------------------------------------------------ detection
def _zero_last_bn(body: torch.nn.Module) -> None:
    from torchvision.models.resnet import Bottleneck

    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, Bottleneck):
                m.bn3.weight.zero_()


def _detection_batch(n: int, size: tuple[int, int], num_classes: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        k = 6
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 16 + torch.rand(k, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, num_classes, (k,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def _detect_sizes(cfg: dict[str, Any], tiny: bool, images_per_gpu: int) -> tuple[tuple[int, int], int]:
    if tiny:
        return (64, 80), 1
    return (int(cfg["min_size"]), int(round(cfg["min_size"] * 4 / 3))), images_per_gpu  # COCO's 4:3, 800 x 1067


def detect_case(model_name: str, full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool,
                images_per_gpu: int = 2) -> Runner:
    """Our detector (``fpn`` | ``c4``) trained by :func:`repro.detect.engine.train`."""
    from repro.detect.backbone import build_body, freeze_layers
    from repro.detect.config import resolve_config
    from repro.detect.engine import train
    from repro.detect.models import DetectorSettings, build_detector

    cfg = resolve_config({k: v for k, v in full["detect"].items() if k != "imagenet_weights"})
    if tiny:
        cfg.update(backbone="tiny_resnet", width=8, min_size=64, max_size=80, fpn_channels=16, representation_size=32,
                   anchor_sizes=[8, 16, 32, 64, 128], rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                   box_batch_size_per_image=32, single_map_rpn={**cfg["single_map_rpn"], "pre_nms_top_n_train": 200,
                                                                "post_nms_top_n_train": 50})
    size, n_img = _detect_sizes(cfg, tiny, images_per_gpu)
    torch.manual_seed(0)
    body = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"], imagenet_init=False)
    _zero_last_bn(body)
    freeze_layers(body, cfg["trainable_layers"])
    num_classes = 81  # COCO's 80 + background
    model = precision.prepare(build_detector(model_name, body=body, num_classes=num_classes,
                                             settings=DetectorSettings.from_config(cfg)).to(device))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    images, targets = _detection_batch(n_img, size, num_classes, device)

    def batches(n: int):
        for step in range(n):
            keys = [{**t, "sample_key": torch.tensor([0, step, i])} for i, t in enumerate(targets)]
            yield images, keys

    def run(n: int) -> None:
        train(model, opt, batches(n), device=device, start_step=0, total_steps=n, lr_fn=lambda s: 1e-3,
              grad_clip=cfg["grad_clip"], checkpoint_every=10**9, save_checkpoint=lambda *a: None,
              log_every=10**9, precision=precision)

    return run


def torchvision_reference_case(full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool,
                               images_per_gpu: int = 2) -> Runner:
    """torchvision's Faster R-CNN R50-FPN and the step of its detection references (``train_one_epoch``):
    autocast + fp16 ``GradScaler`` when ``precision`` is enabled (the references' ``--amp``), else fp32."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    cfg = full["detect"]
    size, n_img = _detect_sizes(cfg, tiny, images_per_gpu)
    torch.manual_seed(0)
    # what fasterrcnn_resnet50_fpn(weights_backbone=...) builds: frozen BN, 3 trainable stages
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3)
    _zero_last_bn(backbone.body)
    extra = dict(min_size=64, max_size=80, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                 box_batch_size_per_image=32) if tiny else {}
    model = FasterRCNN(backbone, num_classes=91, **extra).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if precision.enabled else None
    images, targets = _detection_batch(n_img, size, 91, device)
    model.train()

    def run(n: int) -> None:
        for _ in range(n):
            with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                                enabled=scaler is not None):
                loss_dict = model(images, targets)
                losses = sum(loss for loss in loss_dict.values())
            float(losses.item())  # the references' logger reads every step's loss
            opt.zero_grad()
            if scaler is not None:
                scaler.scale(losses).backward()
                scaler.step(opt)
                scaler.update()
            else:
                losses.backward()
                opt.step()

    return run


# ------------------------------------------------------------------ pretraining
def pretrain_case(full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool) -> Runner:
    """The ranking-loss step on ``pretrain.batch`` positive pairs (2 x batch patches) of 96 px."""
    from repro.pretrain.engine import TrainConfig, train
    from repro.pretrain.models import triplet_net

    p = full["pretrain"]
    size, batch = (32, 4) if tiny else (int(full["graph"]["mine"]["patch_size"]), int(p["batch"]))
    torch.manual_seed(0)
    net = triplet_net(backbone="tiny_resnet" if tiny else full["detect"]["backbone"], width=8 if tiny else 16,
                      hidden=16 if tiny else int(p["hidden"]), embed=8 if tiny else int(p["embed"]))
    net = precision.prepare(net.to(device))
    opt = torch.optim.SGD(net.parameters(), lr=float(p["optimizer"]["lr"]), momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    n_pairs = 8 * batch
    patches = torch.randint(0, 256, (2 * n_pairs, 3, size, size), generator=g, dtype=torch.uint8).to(device)
    a, b = torch.arange(n_pairs), torch.arange(n_pairs, 2 * n_pairs)
    parent = torch.arange(n_pairs) % 16

    def run(n: int) -> None:
        cfg = TrainConfig(steps=n, batch=batch, lr=float(p["optimizer"]["lr"]), flip=True)
        train(net, opt, patches, a, b, parent, cfg, seed=0, precision=precision)

    return run


# ------------------------------------------------------------------ classification (LARS, quantization)
def lars_case(full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool) -> Runner:
    """AlexNet-BN at one LARS step per global micro-batch (``lars.micro_batch``), 32 px, 10 classes."""
    from repro.lars.data import Split
    from repro.lars.engine import train
    from repro.lars.models import build_model
    from repro.lars.optim import LARS, warmup_poly_schedule

    cfg = full["lars"]
    micro = 16 if tiny else int(cfg["micro_batch"])
    conv, fc = ([8, 8, 8, 8, 8], 16) if tiny else (cfg["conv"], int(cfg["fc"]))
    torch.manual_seed(0)
    model = precision.prepare(build_model("alexnet_bn", num_classes=10, image_size=32, conv=conv, fc=fc).to(device))

    def run(n: int) -> None:
        g = torch.Generator().manual_seed(n)
        data = Split(torch.randn(micro * n, 3, 32, 32, generator=g).to(device),
                     torch.randint(0, 10, (micro * n,), generator=g).to(device))
        opt = LARS(model.parameters(), lr=1.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=1e-3)
        sched = warmup_poly_schedule(opt, n, 0, power=2.0)
        train(model, opt, sched, data, batch_size=micro, micro_batch=micro, epochs=1, seed=0, precision=precision)

    return run


def quant_case(full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool) -> Runner:
    """ResNet-32 on 32 px CIFAR-10 at ``quant.nets.resnet32_cifar10.batch_size``, Adam."""
    from repro.quant.engine import TrainSpec, train
    from repro.quant.models import build_model

    net = full["quant"]["nets"]["resnet32_cifar10"]
    batch = 8 if tiny else int(net["batch_size"])
    torch.manual_seed(0)
    model = precision.prepare(build_model("resnet32", in_shape=(3, 32, 32), num_classes=10).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=float(net["lr"]))

    def run(n: int) -> None:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(batch * n, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (batch * n,), generator=g).to(device)
        train(model, opt, x, y, TrainSpec(epochs=1, batch_size=batch, lr=float(net["lr"])), seed=0,
              precision=precision)

    return run


# ------------------------------------------------------------------ GANs
def gan_case(experiment: str, arm: str, full: dict[str, Any], device: torch.device, precision: Precision, *,
             tiny: bool) -> Runner:
    """One arm of a DCGAN experiment (``cifar10``: 3 x 32 x 32; ``mnist``: 1 x 32 x 32) via the GAN engine."""
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config
    from repro.gan.engine import train

    exp = experiment_config(full["gan"], experiment)
    if tiny:
        exp.update(width=8, batch_size=8, fakes_per_generator=2, n_generators=2)
    channels = 3 if experiment == "cifar10" else 1
    torch.manual_seed(0)
    setup = build_arm(arm, exp, data_shape=(channels, 32, 32), device=device, precision=precision)
    real = torch.rand(1024 if not tiny else 64, channels, 32, 32).to(device) * 2 - 1

    def run(n: int) -> None:
        train(setup, sample_real=lambda b: real[torch.randint(len(real), (b,), device=device)], steps=n,
              batch_size=int(exp["batch_size"]), device=device, evaluate=lambda step: {}, eval_every=10**9,
              log=lambda msg: None)

    return run


def build_case(name: str, full: dict[str, Any], device: torch.device, precision: Precision, *, tiny: bool,
               images_per_gpu: int = 2) -> Runner:
    """The runner of one of :data:`CASES`."""
    if name in ("detect_fpn", "detect_c4"):
        return detect_case(name.split("_")[1], full, device, precision, tiny=tiny, images_per_gpu=images_per_gpu)
    if name == "detect_tv_reference":
        return torchvision_reference_case(full, device, precision, tiny=tiny, images_per_gpu=images_per_gpu)
    if name == "pretrain_resnet50":
        return pretrain_case(full, device, precision, tiny=tiny)
    if name == "lars_alexnet_bn":
        return lars_case(full, device, precision, tiny=tiny)
    if name == "quant_resnet32":
        return quant_case(full, device, precision, tiny=tiny)
    if name.startswith("gan_"):
        _, experiment, arm = name.split("_")
        return gan_case(experiment, arm, full, device, precision, tiny=tiny)
    raise ValueError(f"unknown case {name!r} (one of {CASES})")
