"""FPN's added rows: running time (Sec. 5.2.1, FPN / C4 inference s/image, timed side by side), RoIAlign vs
RoIPool (Mask R-CNN Sec. 3) arms, P2-only vs C4 (Table 1 f-a), and the COCO test-dev results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from repro.common.claims import read_claims
from repro.common.paper_values import paper_value
from repro.detect.backbone import tiny_resnet
from repro.detect.claims import FPN_CLAIMS, POOLER_CLAIM_ID, claim_rows, pooler_claim, timing_row
from repro.detect.cli import main
from repro.detect.metrics import BBOX_STATS, RPN_KEYS
from repro.detect.models import DetectorSettings, FastMultiScaleRoIAlign, MultiScaleRoIPool, build_detector
from repro.detect.testdev import results_file_name
from repro.detect.timing import time_models, timing_summary

TINY = {"device": "cpu", "width": 4, "min_size": 64, "max_size": 64, "fpn_channels": 8,
        "anchor_sizes": [8, 16, 32, 64, 128], "representation_size": 16, "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 100, "box_proposals_test": 20, "eval_batch_size": 2,
        "single_map_rpn": {"pre_nms_top_n_test": 300, "post_nms_top_n_test": 100},
        "timing_images": 3, "timing_rounds": 2, "box_score_thresh": 0.0}
SETTINGS = DetectorSettings.from_config(TINY)


def _detector(model: str, settings: DetectorSettings = SETTINGS, num_classes: int = 3):
    torch.manual_seed(0)
    return build_detector(model, body=tiny_resnet(width=4), num_classes=num_classes, settings=settings)


@pytest.mark.parametrize("pooler", ["roi_align", "roi_pool"])
def test_pooler_arms_fix_their_pooler_whatever_the_config(pooler: str) -> None:
    settings = DetectorSettings.from_config({**TINY, "pooler": pooler})
    align = _detector("fpn_roi_align", settings).roi_heads.box_roi_pool
    pool = _detector("fpn_roi_pool", settings).roi_heads.box_roi_pool
    assert type(align) is FastMultiScaleRoIAlign and type(pool) is MultiScaleRoIPool
    # everything else is fpn's: same modules and parameter shapes
    fpn = _detector("fpn", settings).state_dict()
    assert {k: v.shape for k, v in _detector("fpn_roi_pool", settings).state_dict().items()} == \
        {k: v.shape for k, v in fpn.items()}


def test_pooler_claim_pairs_the_two_arms() -> None:
    assert pooler_claim(["fpn", "c4", "fpn_roi_pool"], "roi_align").models == {"fpn", "fpn_roi_pool"}
    assert pooler_claim(["fpn", "fpn_roi_align"], "roi_pool").models == {"fpn_roi_align", "fpn"}
    assert pooler_claim(["fpn_roi_align", "fpn_roi_pool"], "roi_align").models == {"fpn_roi_align", "fpn_roi_pool"}
    assert pooler_claim(["fpn", "c4"], "roi_align") is None
    runs = {"fpn": {0: {"bbox.AP": 0.30}, 1: {"bbox.AP": 0.32}, 2: {"bbox.AP": 0.31}},
            "fpn_roi_pool": {0: {"bbox.AP": 0.27}, 1: {"bbox.AP": 0.28}, 2: {"bbox.AP": 0.28}}}
    (row,) = claim_rows([pooler_claim(list(runs), "roi_align")], runs, paper="Mask R-CNN (arXiv 1703.06870)",
                        scale_note="note.")
    assert row.claim_id == POOLER_CLAIM_ID and row.paper_value is None and row.n_seeds == 3
    assert row.verdict == "holds" and "gives no number" in row.scale_note


def test_p2_only_vs_c4_row_is_table1_f_minus_a() -> None:
    (claim,) = [c for c in FPN_CLAIMS if c.claim_id == "fpn_claim_ar1k_p2_only_minus_c4"]
    assert claim.models == {"fpn_p2_only", "c4"}
    v = lambda k: paper_value(k)["value"]  # noqa: E731
    assert v(claim.claim_id) == pytest.approx(v("fpn_t1f_ar1k") - v("fpn_t1a_ar1k"))


def test_timing_row_is_the_ratio_below_one() -> None:
    assert paper_value("fpn_claim_time_fpn_over_c4")["value"] == pytest.approx(
        paper_value("fpn_time_fpn")["value"] / paper_value("fpn_time_c4")["value"], abs=1e-4)
    fast = timing_row({0: 0.40, 1: 0.45, 2: 0.42}, paper="FPN (arXiv 1612.03144)", scale_note="n.")
    slow = timing_row({0: 1.40, 1: 1.45, 2: 1.42}, paper="FPN (arXiv 1612.03144)", scale_note="n.")
    one = timing_row({0: 0.4}, paper="FPN (arXiv 1612.03144)", scale_note="n.")
    assert (fast.verdict, slow.verdict, one.verdict) == ("holds", "fails", "inconclusive")
    assert fast.paper_value == pytest.approx(0.4625) and fast.ours_mean == pytest.approx(0.4233, abs=1e-4)


def test_time_models_interleaves_every_model_on_the_same_images() -> None:
    models = {m: _detector(m).eval() for m in ("fpn", "c4")}
    images = [torch.rand(3, 64, 64) for _ in range(3)]
    times = time_models(models, images, rounds=3, batch_size=2, box_proposals=20, device=torch.device("cpu"))
    assert set(times) == {"fpn", "c4"} and all(len(v) == 3 and min(v) > 0 for v in times.values())
    summary = timing_summary({0: times, 1: {m: [2 * t for t in v] for m, v in times.items()}})
    med = summary["per_seed_s_per_image"][0]
    assert summary["fpn_over_c4"][0] == pytest.approx(med["fpn"] / med["c4"])
    assert summary["fpn_over_c4"][1] == pytest.approx(summary["fpn_over_c4"][0])
    assert summary["s_per_image"]["c4"] == pytest.approx(1.5 * med["c4"])


def _image(path: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    Image.fromarray(torch.randint(0, 255, (64, 64, 3), generator=g, dtype=torch.uint8).numpy()).save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic-layout detection set (2 categories, COCO ids 1 and 3) with 3 val images."""
    root = tmp_path_factory.mktemp("detdata")
    for split, n in (("train", 2), ("val", 3)):
        (root / "images" / split).mkdir(parents=True)
        images = [{"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(n)]
        for i in range(n):
            _image(root / "images" / split / f"{i}.png", i)
        anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [8, 8, 20, 20], "area": 400,
                 "iscrowd": 0} for i in range(n)]
        (root / f"{split}.json").write_text(json.dumps({
            "info": {"image_root": f"images/{split}"}, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]}))
    return root


def test_time_command_and_the_aggregate_row(data: Path, tmp_path: Path) -> None:
    metrics, weights = [], []
    for model in ("fpn", "c4"):
        for seed in (0, 1):
            metrics.append(tmp_path / f"{model}_{seed}.json")
            metrics[-1].write_text(json.dumps({"model": model, "seed": seed}))
            weights.append(tmp_path / f"{model}_{seed}.pt")
            torch.save(_detector(model).state_dict(), weights[-1])
    cfg = json.dumps(TINY)
    assert main(["time", "--config", cfg, "--in", str(data), "--metrics", *map(str, metrics),
                 "--weights", *map(str, weights), "--out", str(tmp_path / "timing.json")]) == 0
    t = json.loads((tmp_path / "timing.json").read_text())
    assert t["n_images"] == 3 and t["rounds"] == 2 and t["threads"] == 1 and t["clock"] == "process CPU time"
    assert set(t["fpn_over_c4"]) == {"0", "1"} and set(t["s_per_image"]) == {"fpn", "c4"}
    # the aggregate turns it into the running-time row
    runs = []
    for model in ("fpn", "c4"):
        for seed in (0, 1):
            runs.append(tmp_path / f"m_{model}_{seed}.json")
            runs[-1].write_text(json.dumps({
                "model": model, "seed": seed, "bbox": dict.fromkeys(BBOX_STATS, 0.3),
                "rpn": dict.fromkeys(RPN_KEYS, 0.4), "voc_map50": 0.5, "train_s": 1.0,
                "infer_s_per_img": 0.1, "canonical_scale": 20.0}))
    assert main(["aggregate", "--config", cfg, "--in", *map(str, runs), "--timing", str(tmp_path / "timing.json"),
                 "--out", str(tmp_path / "fpn_coco.json"), "--claims", str(tmp_path / "claims.json")]) == 0
    rows = {r["claim_id"]: r for r in read_claims(tmp_path / "claims.json")}
    row = rows["fpn_claim_time_fpn_over_c4"]
    assert row["n_seeds"] == 2 and row["paper_value"] == pytest.approx(0.4625)
    assert row["ours_mean"] == pytest.approx(sum(t["fpn_over_c4"].values()) / 2)
    assert "interleaved" in row["scale_note"]
    assert json.loads((tmp_path / "fpn_coco.json").read_text())["timing"]["fpn_over_c4"] == t["fpn_over_c4"]


def test_test_dev_results_file_for_the_evaluation_server(tmp_path: Path) -> None:
    """A tiny fake test-dev: the info file lists 2 of the 3 images in test2017/ (no annotations)."""
    root = tmp_path / "coco2017_test"
    (root / "annotations").mkdir(parents=True)
    (root / "test2017").mkdir()
    for i in range(3):
        _image(root / "test2017" / f"{i:012d}.jpg", 10 + i)
    info = {"images": [{"id": 7, "file_name": f"{0:012d}.jpg", "width": 64, "height": 64},
                       {"id": 9, "file_name": f"{2:012d}.jpg", "width": 64, "height": 64}],
            "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]}
    (root / "annotations" / "image_info_test-dev2017.json").write_text(json.dumps(info))
    torch.save(_detector("fpn").state_dict(), tmp_path / "model.pt")
    out = tmp_path / results_file_name("fpn")
    assert out.name == "detections_test-dev2017_fpn_results.json"
    assert main(["test-dev", "--config", json.dumps(TINY), "--model", "fpn", "--in", str(root),
                 "--weights", str(tmp_path / "model.pt"), "--out", str(out)]) == 0
    dets = json.loads(out.read_text())
    assert dets and {d["image_id"] for d in dets} <= {7, 9} and {d["category_id"] for d in dets} <= {1, 3}
    for d in dets:
        assert set(d) == {"image_id", "category_id", "bbox", "score"} and len(d["bbox"]) == 4
        x, y, w, h = d["bbox"]
        assert w >= 0 and h >= 0 and 0 <= x <= 64 and 0 <= y <= 64 and 0 <= d["score"] <= 1
    (root / "annotations" / "image_info_test-dev2017.json").unlink()
    with pytest.raises(FileNotFoundError, match="image_info_test-dev2017.json"):
        main(["test-dev", "--config", json.dumps(TINY), "--model", "fpn", "--in", str(root),
              "--weights", str(tmp_path / "model.pt"), "--out", str(out)])
