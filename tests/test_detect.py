"""Detection stage, pure parts: FPN equations and level rule, anchors, builders, COCO metrics, claims.

Paper: FPN, arXiv 1612.03144 (Sec. 3 pyramid, Sec. 4.1 anchors, Eq. 1 RoI level, Tables 1 and 3).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_pool

from repro.common.config import section_defaults
from repro.common.paper_values import all_paper_values
from repro.detect.backbone import STAGES, load_backbone_weights, tiny_resnet
from repro.detect.claims import FPN_CLAIMS, TRANSFER_FAMILIES, claim_rows, per_seed_values, transfer_claims
from repro.detect.config import resolve_config
from repro.detect.data import StepBatchSampler, hflip_sample
from repro.detect.engine import lr_at
from repro.detect.metrics import (
    coco_from_dict,
    detections_to_coco,
    evaluate_bbox,
    evaluate_proposals,
    proposals_to_coco,
    voc07_map50,
)
from repro.detect.models import (
    AblationPyramid,
    DetectorSettings,
    MultiScaleRoIPool,
    build_detector,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = DetectorSettings(min_size=128, max_size=128, fpn_channels=16, anchor_sizes=(8, 16, 32, 64, 128),
                         representation_size=32, rpn_post_nms_top_n_test=200, box_batch_size_per_image=16)


def _xyxy(*boxes: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float32)


# ---------------------------------------------------------------- Eq. 1: RoI -> pyramid level
def _levels(settings: DetectorSettings, boxes: torch.Tensor) -> list[int]:
    """Pyramid level (2 = P2 ... 5 = P5) the FPN detector's pooler assigns to each box (x1, y1, x2, y2)."""
    det = build_detector("fpn", body=tiny_resnet(width=4), num_classes=2, settings=settings)
    pooler = det.roi_heads.box_roi_pool
    size = settings.min_size
    feats = {k: torch.zeros(1, 1, size // s, size // s) for k, s in zip("0123", (4, 8, 16, 32))}
    pooler(feats, [boxes[:1]], [(size, size)])  # sets up the scales and the level mapper
    return (pooler.map_levels([boxes]) + 2).tolist()


@pytest.mark.parametrize("pooler", ["roi_align", "roi_pool"])
def test_roi_level_eq1_hand_made_boxes(pooler: str) -> None:
    """k = floor(4 + log2(sqrt(wh)/224)) clamped to P2..P5 at 800 px: 112 px -> P3, 448 -> P5 (Sec. 4.2)."""
    sides = [224, 112, 448, 56, 10, 2000, 223, 300, 447]
    boxes = _xyxy(*[(10.0, 20.0, 10.0 + s, 20.0 + s) for s in sides])
    settings = DetectorSettings(min_size=800, max_size=800, pooler=pooler)
    assert settings.roi_canonical_scale == 224
    assert _levels(settings, boxes) == [4, 3, 5, 2, 2, 5, 3, 4, 4]
    assert _levels(settings, _xyxy((0, 0, 448, 112))) == [4]  # only sqrt(wh) matters


def test_roi_level_eq1_canonical_scale_follows_image_size() -> None:
    settings = DetectorSettings(min_size=256, max_size=256, fpn_channels=8, anchor_sizes=(16, 32, 64, 128, 256))
    s0 = settings.roi_canonical_scale
    assert s0 == pytest.approx(224 * 256 / 800)
    boxes = _xyxy((0, 0, s0, s0), (0, 0, s0 / 2, s0 / 2), (0, 0, 2 * s0, 2 * s0), (0, 0, 8, 4), (0, 0, 64, 64))
    assert _levels(settings, boxes) == [4, 3, 5, 2, 3]
    fixed = DetectorSettings(min_size=256, max_size=256, canonical_scale=64, fpn_channels=8)
    assert _levels(fixed, _xyxy((0, 0, 64, 64))) == [4]


# ---------------------------------------------------------------- Sec. 4.1 anchors
def test_fpn_anchors_one_size_per_level_three_ratios__sec4_1() -> None:
    model = build_detector("fpn", body=tiny_resnet(width=8), num_classes=3, settings=SMALL).eval()
    images = ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)])
    feats = model.backbone(images.tensors)
    anchors = model.rpn.anchor_generator(images, list(feats.values()))[0]  # A x 4
    assert model.rpn.anchor_generator.num_anchors_per_location() == [3] * 5
    start = 0
    for (name, f), size in zip(feats.items(), SMALL.anchor_sizes):
        n = f.shape[-2] * f.shape[-1] * 3
        level = anchors[start:start + n]
        start += n
        w, h = level[:, 2] - level[:, 0], level[:, 3] - level[:, 1]
        # anchor area is size^2 for every ratio (rounded to integer px by torchvision)
        assert torch.allclose((w * h).sqrt(), torch.full_like(w, float(size)), rtol=0.1), name
        assert sorted(set((h / w).tolist())) == pytest.approx([0.5, 1.0, 2.0], rel=0.1)
        stride = 128 // f.shape[-1]
        centres = (level[:, :2] + level[:, 2:]) / 2
        assert set(torch.unique(centres[:, 0]).tolist()) == {float(stride * i) for i in range(f.shape[-1])}
    assert start == anchors.shape[0]


@pytest.mark.parametrize("model", ["c4", "c5", "fpn_p2_only"])
def test_single_map_models_put_all_15_anchors_on_one_map(model: str) -> None:
    det = build_detector(model, body=tiny_resnet(width=8), num_classes=3, settings=SMALL)
    assert det.rpn.anchor_generator.num_anchors_per_location() == [15]
    assert det.rpn.head.cls_logits.out_channels == 15


# ---------------------------------------------------------------- Sec. 3: builders and pyramids
@pytest.mark.parametrize(
    "model, maps",
    [
        ("fpn", {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}),
        ("fpn_no_topdown", {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}),
        ("fpn_no_lateral", {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}),
        ("fpn_p2_only", {"0": 4}),
        ("c4", {"0": 16}),
        ("c5", {"0": 32}),
    ],
)
def test_builders_produce_the_stated_feature_maps(model: str, maps: dict[str, int]) -> None:
    width = 8
    det = build_detector(model, body=tiny_resnet(width=width), num_classes=4, settings=SMALL).eval()
    with torch.no_grad():
        feats = det.backbone(torch.rand(2, 3, 128, 128))
    assert {k: 128 // v.shape[-1] for k, v in feats.items()} == maps
    channels = {"c4": 4 * width, "c5": 8 * width}.get(model, SMALL.fpn_channels)
    assert {v.shape[1] for v in feats.values()} == {channels} == {det.backbone.out_channels}
    if "pool" in feats:  # P6 is a stride-2 subsample of P5 (Sec. 4.1), not a conv
        assert torch.equal(feats["pool"], feats["3"][..., ::2, ::2])
    pooled = 14 if model == "c4" else 7
    assert det.roi_heads.box_roi_pool.output_size == (pooled, pooled)
    levels = det.roi_heads.box_roi_pool.featmap_names
    assert levels == (["0", "1", "2", "3"] if len(maps) == 5 else ["0"])  # P6 never pools RoIs
    # the detector runs end to end and returns boxes in image pixels
    with torch.no_grad():
        out = det([torch.rand(3, 128, 128)])
    assert out[0]["boxes"].shape[1] == 4


def test_c4_head_is_the_conv5_stage() -> None:
    body = tiny_resnet(width=8)
    det = build_detector("c4", body=body, num_classes=3, settings=SMALL)
    assert det.roi_heads.box_head.conv5 is body.layer4
    assert det.roi_heads.box_predictor.cls_score.in_features == 64
    assert "layer4" not in dict(det.backbone.named_modules()).get("features", det.backbone)._modules


def test_fpn_top_down_and_lateral_equations__sec3() -> None:
    """P5 = 3x3(1x1(C5)); P4 = 3x3(up2(M5) + 1x1(C4)) in torchvision's FPN as built here; no ReLU."""
    det = build_detector("fpn", body=tiny_resnet(width=8), num_classes=3, settings=SMALL).eval()
    bb = det.backbone
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        c = bb.body(x)
        p = bb.fpn(c)
        inner, layer = bb.fpn.inner_blocks, bb.fpn.layer_blocks
        m5 = inner[3](c["3"])
        m4 = torch.nn.functional.interpolate(m5, scale_factor=2, mode="nearest") + inner[2](c["2"])
        assert torch.allclose(p["3"], layer[3](m5), atol=1e-5)
        assert torch.allclose(p["2"], layer[2](m4), atol=1e-5)
        assert (p["2"] < 0).any()  # linear: no ReLU after the 3x3


def test_ablation_pyramids_table1_d_e() -> None:
    torch.manual_seed(0)
    c = {str(i): torch.rand(1, ch, s, s) for i, (ch, s) in enumerate([(4, 16), (8, 8), (16, 4), (32, 2)])}
    d = AblationPyramid([4, 8, 16, 32], 6, lateral=True, top_down=False)
    e = AblationPyramid([4, 8, 16, 32], 6, lateral=False, top_down=True)
    with torch.no_grad():
        pd, pe = d(c), e(c)
        # (d) bottom-up: P_k = 3x3(1x1(C_k)), independent of the coarser levels
        assert torch.allclose(pd["0"], d.layer[0](d.inner[0](c["0"])))
        # (e) top-down without laterals: M5 = 1x1(C5), M2 = up8(M5): P2 sees only C5
        m2 = torch.nn.functional.interpolate(e.inner[0](c["3"]), size=(16, 16), mode="nearest")
        assert torch.allclose(pe["0"], e.layer[0](m2), atol=1e-6)
    assert list(pd) == list(pe) == ["0", "1", "2", "3", "pool"]
    with pytest.raises(ValueError):
        AblationPyramid([4, 8], 6, lateral=True, top_down=True)


def test_roipool_pooler_uses_eq1_levels_and_max_pooling() -> None:
    feats = {"0": torch.rand(1, 2, 64, 64), "1": torch.rand(1, 2, 32, 32), "2": torch.rand(1, 2, 16, 16),
             "3": torch.rand(1, 2, 8, 8)}
    pooler = MultiScaleRoIPool(["0", "1", "2", "3"], 7, 0, canonical_scale=64, canonical_level=4)
    boxes = _xyxy((0, 0, 16, 16), (10, 10, 74, 74), (0, 0, 200, 200))  # levels 2, 4, 5
    out = pooler(feats, [boxes], [(256, 256)])
    rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
    for i, (name, scale) in enumerate([("0", 1 / 4), ("2", 1 / 16), ("3", 1 / 32)]):
        assert torch.equal(out[i], roi_pool(feats[name], rois[i:i + 1], 7, scale)[0])


def test_unknown_model_and_pooler_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown detection model 'c6'"):
        build_detector("c6", body=tiny_resnet(width=8), num_classes=3, settings=SMALL)
    bad = DetectorSettings(pooler="roi_warp")
    with pytest.raises(ValueError, match="detect.pooler"):
        build_detector("c5", body=tiny_resnet(width=8), num_classes=3, settings=bad)


# ---------------------------------------------------------------- backbone contract with pretraining
def test_tiny_resnet_contract_c2_to_c5_and_state_dict_keys() -> None:
    net = tiny_resnet(width=8)
    assert [n for n, _ in net.named_children()] == ["stem", *STAGES]
    feats = IntermediateLayerGetter(net, dict(zip(STAGES, "2345")))(torch.rand(1, 3, 64, 64))
    assert {k: (v.shape[1], 64 // v.shape[-1]) for k, v in feats.items()} == {
        "2": (8, 4), "3": (16, 8), "4": (32, 16), "5": (64, 32)}
    keys = set(net.state_dict())
    assert {"stem.conv.weight", "stem.bn.running_mean", "layer1.0.conv1.weight", "layer4.0.downsample.0.weight",
            "layer4.0.bn2.num_batches_tracked"} <= keys
    assert not any(k.startswith(("fc", "avgpool")) for k in keys)


def test_backbone_weights_load_strict_into_detector(tmp_path: Path) -> None:
    src = tiny_resnet(width=8)
    with torch.no_grad():
        src.stem.conv.weight.fill_(0.5)
    path = tmp_path / "backbone.pt"
    torch.save(src.state_dict(), path)
    body = tiny_resnet(width=8)
    load_backbone_weights(body, path)
    det = build_detector("fpn", body=body, num_classes=3, settings=SMALL)
    assert torch.equal(det.backbone.body.stem.conv.weight, src.stem.conv.weight)
    # a different width, an extra key, a missing file: each a clear error
    torch.save(tiny_resnet(width=16).state_dict(), tmp_path / "w16.pt")
    with pytest.raises(ValueError, match="shape mismatch for stem.conv.weight"):
        load_backbone_weights(tiny_resnet(width=8), tmp_path / "w16.pt")
    torch.save({**src.state_dict(), "fc.weight": torch.zeros(2, 2)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="unexpected keys \\['fc.weight'\\]"):
        load_backbone_weights(tiny_resnet(width=8), tmp_path / "extra.pt")
    with pytest.raises(FileNotFoundError, match="--backbone-weights"):
        load_backbone_weights(tiny_resnet(width=8), tmp_path / "nope.pt")


def test_resnet50_without_imagenet_weights_fails_clearly(tmp_path: Path) -> None:
    from repro.detect.backbone import build_body

    with pytest.raises(ValueError, match="imagenet_weights is null"):
        build_body(name="resnet50")
    with pytest.raises(FileNotFoundError, match="detect.imagenet_weights"):
        build_body(name="resnet50", imagenet_weights=str(tmp_path / "resnet50.pth"))


# ---------------------------------------------------------------- COCO evaluation (pycocotools)
def _gt(boxes_per_image: list[list[tuple[float, float, float, float, int]]]) -> dict:
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 300, "height": 300})
        for x, y, w, h, cat in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 5, "name": "b"}]}


GT = _gt([[(10, 10, 20, 20, 1), (50, 50, 60, 60, 5), (150, 40, 120, 130, 1)], [(5, 5, 10, 12, 5)]])


def _as_results(gt: dict, keep=lambda a: True, score=0.9) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": score}
            for a in gt["annotations"] if keep(a)]


def test_ground_truth_fed_back_scores_ap_1() -> None:
    coco = coco_from_dict(GT)
    stats = evaluate_bbox(coco, _as_results(GT))
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AP_s"] == stats["AP_m"] == stats["AP_l"] == pytest.approx(1.0)
    assert voc07_map50(coco, _as_results(GT)) == pytest.approx(1.0)


def test_perturbed_detections_give_the_known_lower_ap() -> None:
    """One category, 4 GT; 2 exact hits above 2 misses: precision 1 up to recall 0.5, then nothing.

    COCO's 101-point AP = 51/101 at every IoU threshold; VOC07's 11-point AP = 6/11.
    """
    gt = _gt([[(10, 10, 40, 40, 1), (100, 100, 40, 40, 1), (10, 150, 40, 40, 1), (150, 10, 40, 40, 1)]])
    gt["categories"] = gt["categories"][:1]
    dets = _as_results(gt, keep=lambda a: a["id"] <= 2)
    dets += [{"image_id": 1, "category_id": 1, "bbox": [250, 250, 30, 30], "score": 0.5},
             {"image_id": 1, "category_id": 1, "bbox": [200, 200, 20, 20], "score": 0.4}]
    coco = coco_from_dict(gt)
    stats = evaluate_bbox(coco, dets)
    assert stats["AP"] == pytest.approx(51 / 101) and stats["AP50"] == pytest.approx(51 / 101)
    assert stats["AR100"] == pytest.approx(0.5)
    assert voc07_map50(coco, dets) == pytest.approx(6 / 11)


def test_image_without_objects_counts_false_positives() -> None:
    """A detection on an image with no objects outranks the one true hit: precision 1/2 at recall 1."""
    gt = _gt([[(10, 10, 40, 40, 1)], []])
    gt["categories"] = gt["categories"][:1]
    dets = [{"image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.95}] + _as_results(gt)
    assert evaluate_bbox(coco_from_dict(gt), dets)["AP"] == pytest.approx(0.5)


def test_empty_detection_list_is_guarded() -> None:
    """pycocotools' loadRes fails on []: we return COCOeval's values for 'no detections' (0, or -1)."""
    gt = _gt([[(10, 10, 20, 20, 1), (50, 50, 60, 60, 5)], []])  # small and medium only, no large
    stats = evaluate_bbox(coco_from_dict(gt), [])
    assert stats["AP"] == 0.0 and stats["AP_s"] == 0.0 and stats["AP_m"] == 0.0 and stats["AP_l"] == -1.0
    assert stats["AR100"] == 0.0 and stats["AR_l"] == -1.0
    rpn = evaluate_proposals(coco_from_dict(gt), [])
    assert rpn == {"AR100": 0.0, "AR1k": 0.0, "AR1k_s": 0.0, "AR1k_m": 0.0, "AR1k_l": -1.0}
    assert voc07_map50(coco_from_dict(gt), []) == 0.0
    # the same as what COCOeval gives for a single useless detection
    far = [{"image_id": 2, "category_id": 1, "bbox": [200, 200, 5, 5], "score": 0.1}]
    assert list(evaluate_bbox(coco_from_dict(gt), far).values()) == list(stats.values())


def test_proposal_recall_is_class_agnostic_at_100_and_1000() -> None:
    coco = coco_from_dict(GT)
    props = []
    for img in (1, 2):
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in GT["annotations"] if a["image_id"] == img]
        junk = [[0.0, 0.0, 3.0, 3.0]] * 150  # ranked above the true boxes: pushes them past rank 100
        props += proposals_to_coco(img, torch.tensor(junk + boxes).numpy(), category_id=1)
    rpn = evaluate_proposals(coco, props)  # all proposals carry category 1; GT has categories 1 and 5
    assert rpn["AR1k"] == pytest.approx(1.0) and rpn["AR1k_s"] == pytest.approx(1.0)
    assert rpn["AR100"] == pytest.approx(0.0)


def test_scores_equal_pycocotools_cocoeval_on_random_detections_and_proposals() -> None:
    """Our evaluation (C++ matching) gives pycocotools' numbers: the 12 bbox stats, the VOC07 mAP read
    from its precision array, and the RPN recall over 1000 ranked proposals per image."""
    from pycocotools.cocoeval import COCOeval

    from repro.detect.metrics import score_results

    rng = np.random.default_rng(0)
    boxes = [[(*rng.uniform(0, 200, 2), *rng.uniform(4, 100, 2), int(rng.choice([1, 5])))
              for _ in range(rng.integers(0, 6))] for _ in range(12)]
    gt = _gt(boxes)
    gt["annotations"][0]["iscrowd"] = 1
    dets, props = [], []
    for img in range(1, 13):
        xy = rng.uniform(0, 250, (40, 2))
        wh = rng.uniform(4, 100, (40, 2))
        dets += detections_to_coco(img, np.hstack([xy, xy + wh]), rng.uniform(0, 1, 40), rng.integers(1, 3, 40), [0, 1, 5])
        xy = rng.uniform(0, 250, (1000, 2))
        props += proposals_to_coco(img, np.hstack([xy, xy + rng.uniform(4, 120, (1000, 2))]), category_id=1)

    def reference(results: list[dict], use_cats: bool, max_dets: list[int]) -> COCOeval:
        coco = coco_from_dict(gt)
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco, coco.loadRes(results), "bbox")
            ev.params.useCats, ev.params.maxDets = int(use_cats), max_dets
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    ours = score_results(coco_from_dict(gt), dets, props)
    ref_bbox, ref_rpn = reference(dets, True, [1, 10, 100]), reference(props, False, [10, 100, 1000])
    assert list(ours["bbox"].values()) == pytest.approx(list(ref_bbox.stats[:12]), abs=1e-12)
    assert list(ours["rpn"].values()) == pytest.approx(list(ref_rpn.stats[7:12]), abs=1e-12)
    prec = ref_bbox.eval["precision"][0, [int(np.argmin(np.abs(ref_bbox.params.recThrs - r)))
                                          for r in np.linspace(0, 1, 11)], :, 0, -1]
    assert ours["voc_map50"] == pytest.approx(prec[:, (prec > -1).all(axis=0)].mean(), abs=1e-12)
    assert 0 < ours["bbox"]["AR100"] < 1 and 0 < ours["rpn"]["AR1k"] < 1  # the data exercise the matching


def test_detections_to_coco_maps_labels_and_boxes() -> None:
    rows = detections_to_coco(7, torch.tensor([[1.0, 2.0, 11.0, 32.0]]).numpy(), [0.25], [2], [0, 1, 5])
    assert rows == [{"image_id": 7, "category_id": 5, "bbox": [1.0, 2.0, 10.0, 30.0], "score": 0.25}]


# ---------------------------------------------------------------- training helpers
def test_lr_schedule_warmup_then_step_decay__sec4_2() -> None:
    kw = dict(base_lr=0.02, warmup_iters=10, warmup_factor=0.001, steps=[60], gamma=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.02 * 0.001)
    assert lr_at(5, **kw) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert lr_at(10, **kw) == lr_at(59, **kw) == pytest.approx(0.02)
    assert lr_at(60, **kw) == lr_at(79, **kw) == pytest.approx(0.002)


def test_step_batch_sampler_is_resumable() -> None:
    full = list(StepBatchSampler(10, 4, seed=3, start=0, total=9))
    resumed = list(StepBatchSampler(10, 4, seed=3, start=5, total=9))
    assert resumed == full[5:]
    flat = [i for b in full[:5] for i in b]  # 20 = two epochs: each a permutation of 0..9
    assert sorted(flat[:10]) == sorted(flat[10:20]) == list(range(10))


def test_hflip_mirrors_boxes() -> None:
    img = torch.zeros(3, 10, 20)
    img[:, :, :5] = 1
    out, t = hflip_sample(img, {"boxes": torch.tensor([[0.0, 1.0, 5.0, 4.0]]), "labels": torch.tensor([1])})
    assert out[:, :, 15:].eq(1).all()
    assert t["boxes"].tolist() == [[15.0, 1.0, 20.0, 4.0]]


# ---------------------------------------------------------------- config, paper values, claims
def test_config_defaults_come_from_the_schema() -> None:
    default = yaml.safe_load((REPO / "config.yaml").read_text())["detect"]
    resolved, schema = resolve_config(default), section_defaults("detect")
    assert "threads" not in resolved and set(resolved) == set(schema) - {"threads"}
    for key, value in resolved.items():  # config.yaml's value where it sets one, else the schema's default
        if key != "transfer":
            assert value == default.get(key, schema[key]), key
    assert resolved["transfer"] == {**schema["transfer"], **default["transfer"]}
    partial = resolve_config({"iterations": 7})
    assert partial["iterations"] == 7 and partial["transfer"]["iterations"] == 150  # the schema's defaults
    assert resolve_config({"transfer": {"iterations": 9}}, transfer=True)["iterations"] == 9
    with pytest.raises(ValueError, match="'detect.iteratoins': unknown key"):
        resolve_config({"iteratoins": 3})


def test_paper_claim_values_equal_the_table_differences() -> None:
    v = {k: e["value"] for k, e in all_paper_values().items()}
    t = lambda key: v[f"fpn_{key}"]  # noqa: E731
    assert v["fpn_claim_ap_fpn_minus_c4"] == pytest.approx(t("t3c_ap") - t("t3a_ap"))
    assert v["fpn_claim_ap_fpn_minus_c5"] == pytest.approx(t("t3c_ap") - t("t3b_ap"))
    assert v["fpn_claim_ap_c4_minus_c5"] == pytest.approx(t("t3a_ap") - t("t3b_ap"))
    assert v["fpn_claim_ap50_fpn_minus_c4"] == pytest.approx(t("t3c_ap50") - t("t3a_ap50"))
    assert v["fpn_claim_ar100_fpn_minus_c4"] == pytest.approx(t("t1c_ar100") - t("t1a_ar100"))
    assert v["fpn_claim_ar1k_c4_minus_c5"] == pytest.approx(t("t1a_ar1k") - t("t1b_ar1k"))
    assert v["fpn_claim_aps_fpn_minus_c4"] == pytest.approx(t("t3c_ap_s") - t("t3a_ap_s"))
    assert v["fpn_claim_aps_fpn_minus_c5"] == pytest.approx(t("t3c_ap_s") - t("t3b_ap_s"))
    for base, row in (("c4", "a"), ("c5", "b")):
        small = t("t3c_ap_s") - t(f"t3{row}_ap_s") - (t("t3c_ap_l") - t(f"t3{row}_ap_l"))
        assert v[f"fpn_claim_small_gain_vs_{base}"] == pytest.approx(small)
        small_ar = t("t1c_ar1k_s") - t(f"t1{row}_ar1k_s") - (t("t1c_ar1k_l") - t(f"t1{row}_ar1k_l"))
        assert v[f"fpn_claim_small_ar_gain_vs_{base}"] == pytest.approx(small_ar)
        assert v[f"fpn_claim_ar1k_fpn_minus_{base}"] == pytest.approx(t("t1c_ar1k") - t(f"t1{row}_ar1k"))
        assert v[f"fpn_claim_ar1ks_fpn_minus_{base}"] == pytest.approx(t("t1c_ar1k_s") - t(f"t1{row}_ar1k_s"))
    for name, row in (("no_topdown", "d"), ("no_lateral", "e"), ("p2_only", "f")):
        assert v[f"fpn_claim_ar1k_fpn_minus_{name}"] == pytest.approx(t("t1c_ar1k") - t(f"t1{row}_ar1k"))
    ti = lambda key: v[f"ti_transfer_{key}"]  # noqa: E731
    pairs = (("transitive_minus_intra", "transitive", "tracking"), ("intra_minus_scratch", "tracking", "scratch"),
             ("transitive_minus_scratch", "transitive", "scratch"), ("transitive_minus_context", "transitive", "context"))
    for family, table in (("claim_voc", "t1_voc"), ("coco_t4", "t4_coco"), ("synth", "t4_coco"), ("voc07_t3", "t3_voc")):
        for name, hi, lo in pairs[:3] if family == "claim_voc" else pairs:
            if family == "voc07_t3" and lo == "scratch":  # Table 3 has no Scratch row
                assert v[f"ti_transfer_{family}_{name}"] is None
                continue
            assert ti(f"{family}_{name}") == pytest.approx(ti(f"{table}_{hi}") - ti(f"{table}_{lo}"))
    close = ti("t4_coco_transitive") - 0.75 * ti("t4_coco_imagenet") - 0.25 * ti("t4_coco_scratch")
    assert ti("coco_t4_transitive_close_to_imagenet") == pytest.approx(close)
    arms = ["scratch", "intra", "transitive", "context", "imagenet"]
    assert all(c.claim_id in v for c in FPN_CLAIMS + sum((transfer_claims(arms, d) for d in TRANSFER_FAMILIES), ()))


def _runs(values: dict[str, list[float]], key: str = "bbox.AP") -> dict:
    return {m: {s: {key: x, "bbox.AP_s": x, "bbox.AP_l": 0.5, "rpn.AR1k": x, "rpn.AR1k_s": x, "rpn.AR1k_l": 0.6}
                for s, x in enumerate(xs)} for m, xs in values.items()}


def test_claim_verdicts_from_paired_seed_differences() -> None:
    runs = _runs({"fpn": [0.60, 0.62, 0.61], "c4": [0.40, 0.41, 0.40], "c5": [0.45, 0.35, 0.60]})
    claim = next(c for c in FPN_CLAIMS if c.claim_id == "fpn_claim_ap_fpn_minus_c4")
    assert per_seed_values(claim, runs) == pytest.approx([0.20, 0.21, 0.21])
    rows = {r.claim_id: r for r in claim_rows(FPN_CLAIMS, runs, paper="FPN", scale_note="test")}
    assert rows["fpn_claim_ap_fpn_minus_c4"].verdict == "holds"
    assert rows["fpn_claim_ap_fpn_minus_c4"].paper_value == pytest.approx(0.023)
    assert rows["fpn_claim_ap_c4_minus_c5"].verdict == "inconclusive"  # -0.05, +0.06, -0.20: CI straddles 0
    not_run = rows["fpn_claim_ar1k_fpn_minus_p2_only"]  # ablation not run: a note naming the missing model
    assert (not_run.n_seeds, not_run.ours_mean, not_run.test) == (0, None, "none")
    assert "no fpn_p2_only runs (add to detect.models" in not_run.scale_note
    runs_fail = _runs({"fpn": [0.1, 0.11], "c4": [0.3, 0.3], "c5": [0.0, 0.0]})
    rows = {r.claim_id: r for r in claim_rows(FPN_CLAIMS, runs_fail, paper="FPN", scale_note="t")}
    assert rows["fpn_claim_ap_fpn_minus_c4"].verdict == "fails"
    one = {r.claim_id: r for r in claim_rows(FPN_CLAIMS, _runs({"fpn": [0.5], "c4": [0.1], "c5": [0.0]}),
                                             paper="FPN", scale_note="t")}
    assert one["fpn_claim_ap_fpn_minus_c4"].verdict == "inconclusive" and one["fpn_claim_ap_fpn_minus_c4"].n_seeds == 1


def test_missing_size_bucket_is_skipped_not_counted_as_zero() -> None:
    runs = _runs({"fpn": [0.6, 0.6], "c4": [0.4, 0.4]})
    runs["fpn"][1]["bbox.AP_s"] = -1.0
    claim = next(c for c in FPN_CLAIMS if c.claim_id == "fpn_claim_aps_fpn_minus_c4")
    assert per_seed_values(claim, runs) == pytest.approx([0.2])
    assert not math.isnan(per_seed_values(claim, runs)[0])


def test_transfer_claims_follow_arm_names_and_data_set() -> None:
    ids = {c.claim_id for c in transfer_claims(["scratch", "intra_only", "transitive", "context"], "coco2017")}
    assert ids == {f"ti_transfer_coco_t4_{p}" for p in ("transitive_minus_intra", "intra_minus_scratch",
                                                        "transitive_minus_scratch", "transitive_minus_context")}
    # every ordering is a claim whatever was run; an arm not run keeps its config name, so its row is a note
    only_scratch = {c.claim_id: c.models for c in transfer_claims(["scratch"], "voc2007")}
    assert only_scratch["ti_transfer_voc07_t3_transitive_minus_intra"] == {"transitive", "intra"}
    assert only_scratch["ti_transfer_voc07_t3_transitive_minus_context"] == {"transitive", "context"}
    rows = claim_rows(transfer_claims(["scratch", "intra", "transitive"], "synthetic"),
                      {a: {0: {"bbox.AP": 0.1}, 1: {"bbox.AP": 0.2}} for a in ("scratch", "intra", "transitive")},
                      paper="TI", scale_note="test", config_key="detect.transfer.arms")
    context = next(r for r in rows if r.claim_id == "ti_transfer_synth_transitive_minus_context")
    assert context.n_seeds == 0 and "no context runs (add to detect.transfer.arms" in context.scale_note
    assert all(r.n_seeds == 2 for r in rows if r is not context)
    close = {c.claim_id for c in transfer_claims(["scratch", "transitive", "imagenet"], "coco2017")}
    assert "ti_transfer_coco_t4_transitive_close_to_imagenet" in close
    assert not any("imagenet" in c.claim_id for c in transfer_claims(["scratch", "transitive", "imagenet"], "voc2007"))


def test_state_dict_roundtrip_through_bytes_is_weights_only_safe() -> None:
    buf = io.BytesIO()
    torch.save(tiny_resnet(width=4).state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    tiny_resnet(width=4).load_state_dict(state, strict=True)


# ---------------------------------------------------------------- full-scale data layouts
def _png(path: Path, w: int = 20, h: int = 16) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (w, h), 128).save(path)  # grey, as some COCO images: read back as RGB


def test_coco2017_layout_with_noncontiguous_ids_and_crowd(tmp_path: Path) -> None:
    from repro.detect.data import CocoDetection, find_splits

    for split in ("train2017", "val2017"):
        _png(tmp_path / split / "000000000001.jpg")
        coco = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 20, "height": 16}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 2, 5, 6], "area": 30,
                                 "iscrowd": 0},
                                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "area": 81,
                                 "iscrowd": 1}],
                "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]}
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    train, val = find_splits(tmp_path)
    ds = CocoDetection(train)
    img, target = ds[0]
    assert img.shape == (3, 16, 20) and img.dtype == torch.float32
    assert target["boxes"].tolist() == [[1.0, 2.0, 6.0, 8.0]]  # crowd box left out of training targets
    assert target["labels"].tolist() == [2] and ds.num_classes == 3  # id 90 -> label 2
    assert len(CocoDetection(val).coco_gt()["annotations"]) == 2  # ... but kept for evaluation


def test_voc2007_layout_difficult_becomes_crowd(tmp_path: Path) -> None:
    from repro.detect.data import VOC_CLASSES, find_splits

    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, split in (("000005", "trainval"), ("000001", "test")):
        _png(voc / "JPEGImages" / f"{name}.jpg")
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(name + "\n")
        (voc / "Annotations" / f"{name}.xml").write_text(
            "<annotation><size><width>20</width><height>16</height><depth>3</depth></size>"
            "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
            "<xmax>11</xmax><ymax>8</ymax></bndbox></object>"
            "<object><name>chair</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>")
    train, test = find_splits(tmp_path)
    anns = test.coco["annotations"]
    assert anns[0]["bbox"] == [1.0, 2.0, 10.0, 6.0]  # 1-based inclusive -> 0-based x, y, w, h
    assert anns[0]["category_id"] == VOC_CLASSES.index("dog") + 1 and anns[0]["iscrowd"] == 0
    assert anns[1]["iscrowd"] == 1  # difficult: ignored by pycocotools, as VOC ignores it
    assert len(test.coco["categories"]) == 20 and test.image_root == voc / "JPEGImages"


@pytest.mark.parametrize("model", ["fpn", "c4", "c5", "fpn_p2_only"])
def test_every_model_reaches_its_post_nms_cap_with_sharp_rpn_scores(model: str) -> None:
    """Equal proposal budgets: torchvision ranks rpn_pre_nms_top_n per feature map, so a single-map RPN
    with FPN's numbers ranks 1/5 of FPN's candidates and, after NMS, returns fewer proposals than the
    cap "AR at N proposals" assumes. With the single-map budget (the paper codebase's 12000/6000 before
    NMS, scaled like FPN's) every model returns its full post-NMS cap once its objectness scores are
    sharp (distinct per anchor; box deltas zero)."""
    from repro.detect.engine import infer

    cfg = resolve_config({"width": 4, "fpn_channels": 8, "representation_size": 16, "min_size": 192,
                          "max_size": 192, "anchor_sizes": [16, 32, 64, 128, 256], "rpn_post_nms_top_n_test": 300,
                          "rpn_pre_nms_top_n_test": 300, "single_map_rpn": {"pre_nms_top_n_test": 1800,
                                                                            "post_nms_top_n_test": 300}})
    settings = DetectorSettings.from_config(cfg)
    torch.manual_seed(0)
    net = build_detector(model, body=tiny_resnet(width=4), num_classes=3, settings=settings).eval()
    with torch.no_grad():
        net.rpn.head.bbox_pred.weight.zero_()
        net.rpn.head.bbox_pred.bias.zero_()
        net.rpn.head.cls_logits.weight.normal_(0.0, 10.0)
    budget = settings.rpn_budget(model)
    assert budget["pre_nms_per"] == ("pyramid level" if model == "fpn" else "image")
    assert budget["pre_nms_top_n_test"] == (300 if model == "fpn" else 1800)
    _, proposals = infer(net, [torch.rand(3, 192, 192)])
    assert len(proposals[0]) == 300
