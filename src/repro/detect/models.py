"""Faster R-CNN with a Feature Pyramid Network and the paper's single-scale baselines.

FPN, arXiv 1612.03144. Sec. 3 builds the pyramid, Sec. 4.1 the RPN, Sec. 4.2 the Fast R-CNN head,
and Tables 1 and 3 define the baselines and ablations. There is one keyword-only builder per variant
(:data:`BUILDERS`), and all of them share private helpers:

* ``fpn``: P2..P5 from torchvision's ``FeaturePyramidNetwork``: M5 = 1x1(C5),
  M_k = up2(M_{k+1}) + 1x1(C_k), P_k = 3x3(M_k), with d channels and no non-linearity.
  P6 is a stride-2 subsample of P5 (``LastLevelMaxPool``, kernel 1) and is used by the RPN only.
  Each level has one anchor size and 3 ratios, and the RPN head is shared across levels.
  RoIs go to level k = floor(k0 + log2(sqrt(wh) / s0)) (Eq. 1) on P2..P5; the head is 2-fc.
* ``c4``: Table 3(a), the ResNet-C4 baseline. RPN and RoI pooling run on C4, with all 15 anchors on
  the one map. RoIs are pooled at 14x14 and the head is the conv5 stage plus average pooling.
* ``c5``: Table 3(b). RPN and RoI pooling run on C5, with all 15 anchors, 7x7 pooling and a 2-fc head.
* ``fpn_no_topdown``: Table 1(d), a bottom-up pyramid with P_k = 3x3(1x1(C_k)) and no top-down path.
* ``fpn_no_lateral``: Table 1(e), a top-down pyramid without the 1x1 laterals:
  M5 = 1x1(C5), M_k = up2(M_{k+1}), P_k = 3x3(M_k).
* ``fpn_p2_only``: Table 1(f). The FPN is built in full, but the RPN (all 15 anchors) and the RoI
  pooling use P2 only.
* ``fpn_roi_align`` / ``fpn_roi_pool``: ``fpn`` with the pooler fixed to RoIAlign / RoIPool whatever
  ``detect.pooler`` says: the two arms of Mask R-CNN's (arXiv 1703.06870, Sec. 3) RoIAlign-vs-RoIPool
  comparison on the FPN detector, everything else equal (one of them is ``fpn`` itself).

Decisions the paper leaves open (recorded in ``fpn_coco.json`` and the claims' scale_note):

* Pooler. The paper uses RoIPool (Sec. 4.2) and ``pooler: roi_pool`` reproduces it with
  :class:`MultiScaleRoIPool`. ``pooler: roi_align`` uses RoIAlign, the Mask R-CNN pooler:
  :class:`FastMultiScaleRoIAlign` is torchvision's ``MultiScaleRoIAlign`` (same outputs) with the
  separable CPU backward of :mod:`repro.detect.roi_align`.
* Canonical size. Eq. 1's 224 is in pixels of an 800-px image. It is scaled with the input:
  s0 = 224 * min_size / 800, unless ``canonical_scale`` is set.
* Training. RPN and head are trained jointly with shared features (torchvision). This is closer to
  Table 5 "shared" than to Table 3's unshared 4-step training.
* NMS and top-k values are torchvision's defaults. The paper does not give them. The RPN's NMS stops
  once the post-NMS budget is kept (:mod:`repro.detect.rpn`): torchvision's proposals (equal scores in index order).
* Sampling. The RPN's 256 anchors and the head's RoIs per image (Sec. 4.1-4.2) are drawn by
  :class:`KeyedSampler` from a random stream of their own per image, keyed by (seed, step, slot in
  the global batch) when the training loop sets keys: the draw does not depend on which images share
  a process, so DDP over N ranks and a resumed run sample exactly what one uninterrupted process does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, roi_pool
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

from repro.detect.backbone import STAGES
from repro.detect.roi_align import roi_align
from repro.detect.rpn import TopKRegionProposalNetwork

PYRAMID_LEVELS = ("0", "1", "2", "3")  # P2..P5 feature names; "pool" is P6 (RPN only)
PAPER_IMAGE_SIZE = 800  # the shorter side the paper's pixel constants (224, anchors) refer to
PAPER_CANONICAL_SCALE = 224.0  # Eq. 1
PAPER_CANONICAL_LEVEL = 4  # k0 in Eq. 1


@dataclass(frozen=True)
class DetectorSettings:
    """Everything a builder needs besides the backbone: defaults are the paper's / torchvision's."""

    min_size: int = 800
    max_size: int = 1333
    fpn_channels: int = 256  # d, Sec. 3
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # P2..P6, Sec. 4.1
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    canonical_scale: float | None = None  # None: 224 * min_size / 800
    pooler: str = "roi_pool"  # Sec. 4.2 "RoI pooling"; or roi_align
    sampling_ratio: int = 2  # RoIAlign only
    representation_size: int = 1024  # 2-fc head width, Sec. 4.2
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000  # Sec. 4.2: 1000 proposals at test
    # The single-map RPNs' budget (c4, c5, fpn_p2_only). torchvision applies rpn_pre_nms_top_n_* per
    # feature map, so FPN ranks 5x the candidates of a single map with the same numbers; the paper's
    # codebase (Detectron) gave single-scale RPNs 12000 / 6000 candidates before NMS and 2000 / 1000
    # proposals after it (train / test), against FPN's 2000 / 1000 per level.
    single_pre_nms_top_n_train: int = 12000
    single_post_nms_top_n_train: int = 2000
    single_pre_nms_top_n_test: int = 6000
    single_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256  # Sec. 4.1
    box_batch_size_per_image: int = 512  # Sec. 4.2: 512 RoIs per image
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DetectorSettings:
        """Pick this dataclass's fields out of the stage config (lists become tuples)."""
        flat = {**cfg, **{f"single_{k}": v for k, v in cfg.get("single_map_rpn", {}).items()}}
        kwargs = {}
        for f in fields(cls):
            if f.name in flat:
                v = flat[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    def single_map(self) -> DetectorSettings:
        """These settings with the single-map RPN budget in place of FPN's per-level one."""
        return replace(self, rpn_pre_nms_top_n_train=self.single_pre_nms_top_n_train,
                       rpn_post_nms_top_n_train=self.single_post_nms_top_n_train,
                       rpn_pre_nms_top_n_test=self.single_pre_nms_top_n_test,
                       rpn_post_nms_top_n_test=self.single_post_nms_top_n_test)

    def rpn_budget(self, model: str) -> dict[str, Any]:
        """The proposal budget ``model`` runs with (recorded in its metrics and the claims' notes)."""
        s = self.single_map() if model in SINGLE_MAP_MODELS else self
        return {"pre_nms_top_n_train": s.rpn_pre_nms_top_n_train, "post_nms_top_n_train": s.rpn_post_nms_top_n_train,
                "pre_nms_top_n_test": s.rpn_pre_nms_top_n_test, "post_nms_top_n_test": s.rpn_post_nms_top_n_test,
                "pre_nms_per": "image" if model in SINGLE_MAP_MODELS else "pyramid level"}

    @property
    def roi_canonical_scale(self) -> float:
        """s0 of Eq. 1 at this input size: 224 px at 800 px, scaled linearly (Sec. 5 pitfall 2)."""
        if self.canonical_scale is not None:
            return float(self.canonical_scale)
        return PAPER_CANONICAL_SCALE * self.min_size / PAPER_IMAGE_SIZE


class FastMultiScaleRoIAlign(MultiScaleRoIAlign):
    """RoIAlign (Mask R-CNN) with the FPN level rule (Eq. 1): torchvision's ``MultiScaleRoIAlign``.

    The forward is torchvision's ``_multiscale_roi_align`` with the per-level op in :meth:`pool`: one
    map pools every RoI; several maps pool each RoI on its Eq. 1 level and scatter the results back in
    RoI order. Same forward numbers; the CPU backward is the separable one of
    :func:`repro.detect.roi_align.roi_align` (torchvision's scalar CPU kernel is the C4 step's slowest op; bench/detect_throughput.py).
    Under mixed precision the maps are pooled in fp32 (as torchvision's autocast wrappers of its RoI ops do;
    its CPU RoI pooling has no bf16 kernel); in fp32 runs the cast is a no-op.
    """

    def pool(self, feat: Tensor, rois: Tensor, scale: float) -> Tensor:
        """R x C x h x w pooled features of ``rois`` (batch index, x1, y1, x2, y2) on one map."""
        return roi_align(feat, rois, self.output_size, scale, self.sampling_ratio)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = [f.float() for f in _filter_input(x, self.featmap_names)]  # fp32 pooling under autocast
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                feats, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)  # R x 5 (batch index, x1, y1, x2, y2)
        if len(feats) == 1:
            return self.pool(feats[0], rois, self.scales[0])
        levels = self.map_levels(boxes)  # R, index into feats
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1]) + self.output_size)  # R x C x h x w
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            out[idx] = self.pool(feat, rois[idx], scale).to(out.dtype)
        return out


class MultiScaleRoIPool(FastMultiScaleRoIAlign):
    """RoI max pooling (Fast R-CNN, the pooler of FPN Sec. 4.2) with the FPN level rule (Eq. 1).

    The same as torchvision's ``MultiScaleRoIAlign`` but with ``torchvision.ops.roi_pool``
    (quantised bins, max). ``sampling_ratio`` is ignored.
    """

    def pool(self, feat: Tensor, rois: Tensor, scale: float) -> Tensor:
        return roi_pool(feat, rois, self.output_size, scale)


def _pooler(settings: DetectorSettings, names: Sequence[str], output_size: int) -> MultiScaleRoIAlign:
    kwargs = dict(canonical_scale=settings.roi_canonical_scale, canonical_level=PAPER_CANONICAL_LEVEL)
    if settings.pooler == "roi_align":
        return FastMultiScaleRoIAlign(list(names), output_size, settings.sampling_ratio, **kwargs)
    if settings.pooler == "roi_pool":
        return MultiScaleRoIPool(list(names), output_size, 0, **kwargs)
    raise ValueError(f"detect.pooler: unknown pooler {settings.pooler!r} (roi_align | roi_pool)")


class KeyedSampler(BalancedPositiveNegativeSampler):
    """torchvision's balanced positive/negative sampler with one random stream per image.

    ``keys`` (one integer tuple per image of the batch, set by :func:`set_sampling_keys` before each
    training forward) seed a CPU generator per image, mixed with ``salt`` (RPN vs RoI head). Without
    keys it is torchvision's sampler (global RNG). Same counts as torchvision: up to
    ``positive_fraction`` positives, the rest negatives.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, *, salt: int) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.salt = salt
        self.keys: list[tuple[int, ...]] | None = None

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if self.keys is None:
            return super().__call__(matched_idxs)
        if len(self.keys) != len(matched_idxs):
            raise RuntimeError(f"KeyedSampler: {len(self.keys)} keys for a batch of {len(matched_idxs)} images")
        pos_idx, neg_idx = [], []
        for key, matched in zip(self.keys, matched_idxs):
            gen = torch.Generator().manual_seed(_stream_seed(*key, self.salt))
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), generator=gen)[:num_pos].to(positive.device)
            perm2 = torch.randperm(negative.numel(), generator=gen)[:num_neg].to(negative.device)
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[perm1]] = 1
            neg_mask[negative[perm2]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx


def _stream_seed(*key: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    import numpy as np

    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0] >> 1)


def set_sampling_keys(model: FasterRCNN, keys: list[tuple[int, ...]] | None) -> None:
    """Key the RPN's and RoI head's sampling of the next forward, one key per image (None: global RNG)."""
    for sampler in (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler):
        if isinstance(sampler, KeyedSampler):
            sampler.keys = keys


class FP32RPNHead(RPNHead):
    """torchvision's RPN head with fp32 outputs under mixed precision (a no-op in fp32 runs).

    torchvision decodes the proposals in the dtype of the predicted deltas (``BoxCoder.decode``); in bf16
    (8 mantissa bits) a coordinate of an 800 x 1333 px image would be rounded to 4-8 px. Same parameters
    and state_dict keys as ``RPNHead``.
    """

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


def _faster_rcnn(backbone: nn.Module, settings: DetectorSettings, *, num_classes: int,
                 anchors: AnchorGenerator, pooler: nn.Module, head: nn.Module, head_out: int) -> FasterRCNN:
    """Assemble torchvision's FasterRCNN with the settings' sizes, sampling and NMS values."""
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    model = FasterRCNN(
        backbone,
        num_classes=None,
        min_size=settings.min_size,
        max_size=settings.max_size,
        rpn_anchor_generator=anchors,
        rpn_head=FP32RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=settings.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=settings.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=settings.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=settings.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=settings.rpn_batch_size_per_image,
        box_roi_pool=pooler,
        box_head=head,
        box_predictor=FastRCNNPredictor(head_out, num_classes),
        box_batch_size_per_image=settings.box_batch_size_per_image,
        box_detections_per_img=settings.box_detections_per_img,
        box_score_thresh=settings.box_score_thresh,
    )
    model.rpn = TopKRegionProposalNetwork.from_rpn(model.rpn)  # NMS stops at the post-NMS budget
    for head, salt in ((model.rpn, 1), (model.roi_heads, 2)):
        old = head.fg_bg_sampler
        head.fg_bg_sampler = KeyedSampler(old.batch_size_per_image, old.positive_fraction, salt=salt)
    # channels-last weights: every convolution then runs channels-last (CPU: FPN and C5 steps ~10% faster);
    # the same arithmetic up to float rounding
    return model.to(memory_format=torch.channels_last)


def _per_level_anchors(settings: DetectorSettings, n_levels: int) -> AnchorGenerator:
    """One anchor size per pyramid level, 3 ratios each (Sec. 4.1)."""
    if len(settings.anchor_sizes) != n_levels:
        raise ValueError(f"detect.anchor_sizes needs one size per level ({n_levels}), got {settings.anchor_sizes}")
    return AnchorGenerator(tuple((s,) for s in settings.anchor_sizes), (tuple(settings.aspect_ratios),) * n_levels)


def _single_map_anchors(settings: DetectorSettings) -> AnchorGenerator:
    """All sizes x all ratios (15 anchors) on one feature map: the baselines of Table 1(a,b,f)."""
    return AnchorGenerator((tuple(settings.anchor_sizes),), (tuple(settings.aspect_ratios),))


class _SingleMap(nn.Module):
    """A backbone returning one named feature map (C4, C5, or one pyramid level) as ``{"0": map}``."""

    def __init__(self, features: nn.Module, out_channels: int, key: str | None = None) -> None:
        super().__init__()
        self.features = features
        self.out_channels = out_channels
        self.key = key

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = self.features(x)
        return OrderedDict([("0", out[self.key] if self.key is not None else next(iter(out.values())))])


class AblationPyramid(nn.Module):
    """The pyramids of Table 1(d) and 1(e), with the same module layout as FeaturePyramidNetwork.

    ``lateral=True, top_down=False``: (d) bottom-up pyramid, P_k = 3x3(1x1(C_k)).
    ``lateral=False, top_down=True``: (e) top-down without laterals: M5 = 1x1(C5), M_k = up2(M_{k+1}),
    P_k = 3x3(M_k). Both add P6 = subsample(P5), and neither has a non-linearity (Sec. 3).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, *, lateral: bool, top_down: bool) -> None:
        super().__init__()
        if lateral == top_down:
            raise ValueError("AblationPyramid is for (d) lateral-only or (e) top-down-only; use the FPN for both")
        self.lateral, self.top_down = lateral, top_down
        # laterals for every level (d), or only the 1x1 on C5 that sets the width (e)
        ins = in_channels if lateral else in_channels[-1:]
        self.inner = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in ins)
        self.layer = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra = LastLevelMaxPool()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        names, xs = list(feats), list(feats.values())  # C2..C5
        if self.lateral:  # (d)
            ms = [conv(x) for conv, x in zip(self.inner, xs)]
        else:  # (e)
            ms = [self.inner[0](xs[-1])]
            for x in reversed(xs[:-1]):
                ms.insert(0, F.interpolate(ms[0], size=x.shape[-2:], mode="nearest"))
        ps = [conv(m) for conv, m in zip(self.layer, ms)]
        ps, names = self.extra(ps, xs, names)
        return OrderedDict(zip(names, ps))


class _BackboneWithPyramid(nn.Module):
    def __init__(self, body: nn.Module, pyramid: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = IntermediateLayerGetter(body, return_layers=dict(zip(STAGES, PYRAMID_LEVELS)))
        self.fpn = pyramid
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.fpn(self.body(x))


def _channels(body: nn.Module) -> tuple[int, int, int, int]:
    if not hasattr(body, "channels") or len(body.channels) != 4:
        raise ValueError("the backbone body needs a `channels` attribute (C2..C5 widths), as tiny_resnet/resnet50 set")
    return tuple(body.channels)


def _two_fc(in_channels: int, settings: DetectorSettings) -> TwoMLPHead:
    """The 2-fc head (Sec. 4.2): 7x7 pooled features -> fc -> ReLU -> fc -> ReLU."""
    return TwoMLPHead(in_channels * 7 * 7, settings.representation_size)


def _pyramid_detector(backbone: nn.Module, settings: DetectorSettings, num_classes: int) -> FasterRCNN:
    """RPN on P2..P6 with one anchor size per level; RoIs pooled from P2..P5 by Eq. 1; 2-fc head."""
    d = settings.fpn_channels
    return _faster_rcnn(
        backbone, settings, num_classes=num_classes,
        anchors=_per_level_anchors(settings, 5),
        pooler=_pooler(settings, PYRAMID_LEVELS, 7),
        head=_two_fc(d, settings), head_out=settings.representation_size,
    )


def fpn_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 3(c): Faster R-CNN on the Feature Pyramid Network (Sec. 3, 4.1, 4.2)."""
    backbone = BackboneWithFPN(
        body, dict(zip(STAGES, PYRAMID_LEVELS)), list(_channels(body)), settings.fpn_channels, LastLevelMaxPool()
    )
    return _pyramid_detector(backbone, settings, num_classes)


def fpn_no_topdown_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 1(d): bottom-up pyramid (laterals + 3x3 on C2..C5, no top-down pathway)."""
    pyramid = AblationPyramid(_channels(body), settings.fpn_channels, lateral=True, top_down=False)
    return _pyramid_detector(_BackboneWithPyramid(body, pyramid, settings.fpn_channels), settings, num_classes)


def fpn_no_lateral_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 1(e): top-down pyramid without the 1x1 lateral connections."""
    pyramid = AblationPyramid(_channels(body), settings.fpn_channels, lateral=False, top_down=True)
    return _pyramid_detector(_BackboneWithPyramid(body, pyramid, settings.fpn_channels), settings, num_classes)


def fpn_p2_only_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 1(f): the full FPN, but RPN (all 15 anchors) and RoI pooling only on P2."""
    fpn = BackboneWithFPN(body, dict(zip(STAGES, PYRAMID_LEVELS)), list(_channels(body)), settings.fpn_channels)
    backbone = _SingleMap(fpn, settings.fpn_channels, key="0")
    return _faster_rcnn(
        backbone, settings.single_map(), num_classes=num_classes,
        anchors=_single_map_anchors(settings),
        pooler=_pooler(settings, ["0"], 7),
        head=_two_fc(settings.fpn_channels, settings), head_out=settings.representation_size,
    )


def c5_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 3(b): RPN and RoI pooling on C5 (stride 32), all 15 anchors, 7x7 pooling, 2-fc head."""
    c5 = _channels(body)[3]
    backbone = _SingleMap(IntermediateLayerGetter(body, return_layers={"layer4": "0"}), c5)
    return _faster_rcnn(
        backbone, settings.single_map(), num_classes=num_classes,
        anchors=_single_map_anchors(settings),
        pooler=_pooler(settings, ["0"], 7),
        head=_two_fc(c5, settings), head_out=settings.representation_size,
    )


class _Conv5Head(nn.Module):
    """The C4 baseline's head: the whole conv5 stage on 14x14 RoIs, then global average pooling.

    The pooled RoIs enter channels-last, as the detector's weights are (:func:`_faster_rcnn`): on a CPU
    the stage's convolutions are ~25% faster that way, the same arithmetic up to float rounding.
    """

    def __init__(self, conv5: nn.Module) -> None:
        super().__init__()
        self.conv5 = conv5

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.conv5(x).mean(dim=(2, 3))  # R x C5 x 7 x 7 -> R x C5


def c4_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 3(a): RPN and RoI pooling on C4 (stride 16), 14x14 pooling, conv5 stage as the head."""
    c4, c5 = _channels(body)[2:]
    backbone = _SingleMap(IntermediateLayerGetter(body, return_layers={"layer3": "0"}), c4)
    return _faster_rcnn(
        backbone, settings.single_map(), num_classes=num_classes,
        anchors=_single_map_anchors(settings),
        pooler=_pooler(settings, ["0"], 14),
        head=_Conv5Head(body.layer4), head_out=c5,
    )


def fpn_roi_align_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 3(c) with RoIAlign (Mask R-CNN, arXiv 1703.06870 Sec. 3) whatever ``detect.pooler`` says."""
    return fpn_faster_rcnn(body=body, num_classes=num_classes, settings=replace(settings, pooler="roi_align"))


def fpn_roi_pool_faster_rcnn(*, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Table 3(c) with RoIPool (FPN Sec. 4.2, quantised max pooling) whatever ``detect.pooler`` says."""
    return fpn_faster_rcnn(body=body, num_classes=num_classes, settings=replace(settings, pooler="roi_pool"))


SINGLE_MAP_MODELS = ("c4", "c5", "fpn_p2_only")  # one feature map for the RPN: the single-map budget
Builder = Callable[..., FasterRCNN]
BUILDERS: dict[str, Builder] = {  # one per name of repro.detect.config.MODELS (a test checks)
    "fpn": fpn_faster_rcnn,
    "c4": c4_faster_rcnn,
    "c5": c5_faster_rcnn,
    "fpn_no_topdown": fpn_no_topdown_faster_rcnn,
    "fpn_no_lateral": fpn_no_lateral_faster_rcnn,
    "fpn_p2_only": fpn_p2_only_faster_rcnn,
    "fpn_roi_align": fpn_roi_align_faster_rcnn,
    "fpn_roi_pool": fpn_roi_pool_faster_rcnn,
}
# The arms whose pooler is fixed, whatever the config's ``pooler`` (RoIAlign vs RoIPool).
FIXED_POOLER = {"fpn_roi_align": "roi_align", "fpn_roi_pool": "roi_pool"}


def build_detector(model: str, *, body: nn.Module, num_classes: int, settings: DetectorSettings) -> FasterRCNN:
    """Look the builder up by config name (a clear error for an unknown one)."""
    if model not in BUILDERS:
        raise ValueError(f"unknown detection model {model!r}; choose from {sorted(BUILDERS)}")
    return BUILDERS[model](body=body, num_classes=num_classes, settings=settings)
