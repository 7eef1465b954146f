"""Detection stage end to end: train/evaluate CLI, kill-and-resume, backbone transfer, aggregation.

Paper: FPN, arXiv 1612.03144 (Tables 1 and 3); TI transfer, 1708.02901 (Tables 1 and 4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import repro.common.checkpoint as checkpoint_module
from repro.common.claims import read_claims
from repro.detect.backbone import tiny_resnet
from repro.detect.cli import main

TINY = {
    "seeds": [0], "device": "cpu", "width": 4, "min_size": 64, "max_size": 64, "fpn_channels": 8,
    "anchor_sizes": [8, 16, 32, 64, 128], "representation_size": 16,
    "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 8, "box_proposals_test": 20,
    "batch_size": 2, "iterations": 4, "warmup_iters": 1, "checkpoint_every": 2, "eval_batch_size": 2,
}


def _write_split(root: Path, split: str, n: int, rng: np.random.Generator) -> None:
    images, anns = [], []
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = torch.full((3, 64, 64), 60, dtype=torch.uint8)
        for _ in range(0 if i == n - 1 else int(rng.integers(1, 3))):  # the last image has no objects
            w, h = (int(v) for v in rng.integers(6, 30, 2))
            x, y = int(rng.integers(0, 64 - w)), int(rng.integers(0, 64 - h))
            cat = int(rng.choice([1, 3]))  # non-contiguous COCO ids
            img[:, y:y + h, x:x + w] = torch.tensor([220, 40, 40] if cat == 1 else [40, 40, 220])[:, None, None]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "images" / split / f"{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": 64, "height": 64})
    coco = {"info": {"image_root": f"images/{split}"}, "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "red"}, {"id": 3, "name": "blue"}]}
    (root / f"{split}.json").write_text(json.dumps(coco))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detdata")
    rng = np.random.default_rng(0)
    _write_split(root, "train", 6, rng)
    _write_split(root, "val", 3, rng)
    return root


def _train(data: Path, out: Path, *, model: str = "fpn", cfg: dict | None = None, extra: list[str] = ()) -> int:
    out.mkdir(parents=True, exist_ok=True)
    return main(["train", "--model", model, "--config", json.dumps({**TINY, **(cfg or {})}), "--seed", "0",
                 "--threads", "1", "--in", str(data), "--out", str(out / "metrics.json"),
                 "--weights-out", str(out / "model.pt"), "--metrics-csv", str(out / "steps.csv"),
                 "--checkpoint-dir", str(out / "ckpt"), *extra])


@pytest.mark.parametrize("model", ["fpn", "c4", "c5"])
def test_train_and_evaluate_writes_coco_metrics(data: Path, tmp_path: Path, model: str) -> None:
    assert _train(data, tmp_path, model=model) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["model"] == model and m["iters"] == 4 and m["image_size"] == [64, 64] and m["pretrained"] is False
    assert list(m["bbox"]) == ["AP", "AP50", "AP75", "AP_s", "AP_m", "AP_l", "AR1", "AR10", "AR100", "AR_s",
                               "AR_m", "AR_l"]
    assert list(m["rpn"]) == ["AR100", "AR1k", "AR1k_s", "AR1k_m", "AR1k_l"]
    assert all(-1.0 <= v <= 1.0 for v in [*m["bbox"].values(), *m["rpn"].values()])
    assert m["n_val_images"] == 3 and m["train_s"] > 0 and m["provenance"]["seed"] == 0
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert any(k.startswith("backbone.") for k in state)
    rows = (tmp_path / "steps.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,") and len(rows) == 5


def test_kill_and_resume_gives_the_same_weights(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    assert _train(data, tmp_path / "straight") == 0
    straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)

    real_save = checkpoint_module.RunCheckpoint.save

    def save_then_die(self, state):
        real_save(self, state)
        if state["step"] == 2:
            raise KeyboardInterrupt("killed after the step-2 checkpoint")

    monkeypatch.setattr(checkpoint_module.RunCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(data, tmp_path / "killed")
    monkeypatch.setattr(checkpoint_module.RunCheckpoint, "save", real_save)
    assert not (tmp_path / "killed" / "steps.csv").exists()  # the per-step log lives in the checkpoint
    capsys.readouterr()
    assert _train(data, tmp_path / "killed") == 0
    assert "resumed from step 2" in capsys.readouterr().out
    resumed = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    for k, v in straight.items():
        assert torch.allclose(v.float(), resumed[k].float(), atol=1e-6), k
    steps = (tmp_path / "killed" / "steps.csv").read_text()
    assert steps == (tmp_path / "straight" / "steps.csv").read_text()  # the whole log, file for file
    assert [r.split(",")[0] for r in steps.splitlines()[1:]] == ["1", "2", "3", "4"]
    assert not (tmp_path / "killed" / "ckpt" / "latest.pt").exists()  # a finished job's checkpoint is deleted


def test_transfer_from_backbone_weights(data: Path, tmp_path: Path) -> None:
    """The pretraining stage's file (a tiny_resnet state_dict) starts the detector; transfer overrides apply."""
    src = tiny_resnet(width=4)
    torch.save(src.state_dict(), tmp_path / "backbone.pt")
    cfg = {"transfer": {"iterations": 2, "lr": 0.01, "warmup_iters": 0, "trainable_layers": 5}}
    code = _train(data, tmp_path / "run", cfg=cfg,
                  extra=["--transfer", "--arm", "transitive", "--backbone-weights", str(tmp_path / "backbone.pt")])
    assert code == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["arm"] == "transitive" and m["iters"] == 2 and "backbone.pt" in m["pretrained"]
    assert 0.0 <= m["voc_map50"] <= 1.0 or m["voc_map50"] != m["voc_map50"]
    torch.save(tiny_resnet(width=8).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="shape mismatch"):
        _train(data, tmp_path / "bad", extra=["--backbone-weights", str(tmp_path / "wide.pt")])


def test_nan_loss_exits_nonzero_with_a_message(data: Path, tmp_path: Path, capsys) -> None:
    code = _train(data, tmp_path, cfg={"lr": 1e12, "grad_clip": None, "warmup_iters": 0, "iterations": 6})
    assert code != 0
    assert "non-finite training loss" in capsys.readouterr().err


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no detection data found"):
        _train(tmp_path, tmp_path / "out")


def _fake_metrics(path: Path, key: str, name: str, seed: int, ap: float, aps: float, ar1k: float) -> Path:
    bbox = dict.fromkeys(["AP", "AP50", "AP75", "AP_s", "AP_m", "AP_l", "AR1", "AR10", "AR100", "AR_s", "AR_m",
                          "AR_l"], ap)
    bbox.update(AP_s=aps, AP_l=0.5)
    rpn = {"AR100": ar1k, "AR1k": ar1k, "AR1k_s": ar1k, "AR1k_m": ar1k, "AR1k_l": 0.6}
    m = {key: name, "model": name if key == "model" else "fpn", "arm": name if key == "arm" else None,
         "seed": seed, "bbox": bbox, "rpn": rpn, "voc_map50": ap + 0.1, "train_s": 10.0, "infer_s_per_img": 0.1,
         "iters": 400, "batch_size": 4, "image_size": [256, 256], "backbone": "tiny_resnet(width=16)",
         "pretrained": False, "pooler": "roi_align", "canonical_scale": 71.68, "anchor_sizes": [16, 32],
         "n_train_images": 400, "n_val_images": 100}
    path.write_text(json.dumps(m))
    return path


def test_aggregate_writes_fpn_coco_json_and_claims(tmp_path: Path) -> None:
    table = {"fpn": (0.16, 0.12, 0.57), "c4": (0.08, 0.01, 0.38), "c5": (0.06, 0.003, 0.29)}
    inputs = [_fake_metrics(tmp_path / f"{m}{s}.json", "model", m, s, ap + 0.002 * s, aps, ar)
              for m, (ap, aps, ar) in table.items() for s in (0, 1)]
    out, claims = tmp_path / "fpn_coco.json", tmp_path / "claims" / "fpn.json"
    assert main(["aggregate", "--config", "{}", "--in", *map(str, inputs), "--out", str(out),
                 "--claims", str(claims), "--figure", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 1000
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"fpn", "c4", "c5"}
    assert res["models"]["fpn"]["bbox"]["AP"] == pytest.approx(0.161)
    assert res["models"]["fpn"]["seeds"] == [0, 1] and res["models"]["c4"]["paper_row"] == "a"
    assert res["deltas"]["fpn_minus_c4"]["AP"]["mean"] == pytest.approx(0.08)
    assert res["deltas"]["fpn_minus_c5"]["AR1k_s"]["per_seed"] == pytest.approx([0.28, 0.28])
    assert res["paper_reference"]["table3_faster_rcnn"]["c"] == {
        "model": "fpn", "AP50": 56.9, "AP": 33.9, "AP_s": 17.8, "AP_m": 37.7, "AP_l": 45.8}
    assert res["paper_reference"]["table1_rpn"]["a"]["AR1k"] == 48.3
    assert "fractions" in res["units"]
    rows = {r["claim_id"]: r for r in read_claims(claims)}
    assert rows["fpn_claim_ap_fpn_minus_c4"]["verdict"] == "holds"  # +0.08 on both seeds
    assert rows["fpn_claim_ap_fpn_minus_c4"]["n_seeds"] == 2
    topdown = rows["fpn_claim_ar1k_fpn_minus_no_topdown"]  # not run: a note, no measurement
    assert topdown["n_seeds"] == 0 and topdown["ours_mean"] is None and "fpn_no_topdown" in topdown["scale_note"]
    pooler = rows["fpn_claim_ap_roialign_minus_roipool"]  # one pooler only: the Mask R-CNN row is a note
    assert pooler["n_seeds"] == 0 and "fpn_roi_pool" in pooler["scale_note"]


def test_transfer_aggregate_writes_ti_transfer_json_and_claims(tmp_path: Path) -> None:
    """Rows are labelled with the data set they were measured on and sit beside that protocol's table:
    synthetic beside Table 4 (COCO-style AP), VOC 2007 beside Table 3 (Faster R-CNN), never Table 1."""
    arms = {"scratch": 0.10, "intra": 0.14, "transitive": 0.15, "context": 0.12}
    inputs = [_fake_metrics(tmp_path / f"{a}{s}.json", "arm", a, s, ap + 0.001 * s, 0.1, 0.5)
              for a, ap in arms.items() for s in (0, 1, 2)]
    out, claims = tmp_path / "ti_transfer.json", tmp_path / "ti.json"
    cfg = json.dumps({"transfer": {"data_source": "synthetic"}})
    assert main(["transfer-aggregate", "--config", cfg, "--in", *map(str, inputs), "--out", str(out),
                 "--claims", str(claims)]) == 0
    res = json.loads(out.read_text())
    assert res["dataset"] == "synthetic" and res["arms"]["intra"]["paper_row"] == "tracking"
    assert res["paper_reference"]["voc07_map50_faster_rcnn_table3"]["transitive"] == 65.0
    assert res["paper_reference"]["coco_ap"]["scratch"] == 20.5
    rows = {r["claim_id"]: r for r in read_claims(claims)}
    assert set(rows) == {f"ti_transfer_synth_{p}" for p in ("transitive_minus_intra", "intra_minus_scratch",
                                                            "transitive_minus_scratch", "transitive_minus_context")}
    assert rows["ti_transfer_synth_transitive_minus_context"]["verdict"] == "holds"
    assert rows["ti_transfer_synth_transitive_minus_intra"]["paper_value"] == pytest.approx(0.009)  # Table 4
    assert "Data: synthetic" in rows["ti_transfer_synth_intra_minus_scratch"]["scale_note"]
    voc = tmp_path / "voc.json"
    assert main(["transfer-aggregate", "--config", json.dumps({"transfer": {"data_source": "voc2007"}}), "--in",
                 *map(str, inputs), "--out", str(tmp_path / "v.json"), "--claims", str(voc)]) == 0
    rows = {r["claim_id"]: r for r in read_claims(voc)}
    assert rows["ti_transfer_voc07_t3_transitive_minus_intra"]["paper_value"] == pytest.approx(0.028)  # Table 3
    assert rows["ti_transfer_voc07_t3_intra_minus_scratch"]["paper_value"] is None  # Table 3 has no Scratch
    assert rows["ti_transfer_voc07_t3_intra_minus_scratch"]["metric"].startswith("VOC 2007 test mAP@0.5")


def test_transferred_resnet50_normalises_with_batch_statistics() -> None:
    """A transferred ResNet-50 (no ImageNet init) gets trainable BatchNorm: frozen at the initial statistics
    the scratch arm's C5 would be an order of magnitude off the unit scale that batch statistics give."""
    from repro.detect.backbone import build_body, resnet50
    from repro.pretrain.models import c5_map

    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    frozen = resnet50(frozen_bn=True).train()
    torch.manual_seed(0)
    transfer = build_body(name="resnet50", imagenet_init=False).train()
    with torch.no_grad():
        std_frozen, std = c5_map(frozen, x).std().item(), c5_map(transfer, x).std().item()
    assert 0.3 < std < 3.0
    assert std_frozen > 5 * std
    assert any(p.requires_grad for n, p in transfer.named_parameters() if n.startswith("bn1"))


def test_smoke_pipeline_builds_fpn_coco(smoke_run: Path) -> None:
    res = json.loads((smoke_run / "results" / "fpn_coco.json").read_text())
    assert set(res["models"]) == {"fpn", "c4", "c5"}
    for entry in res["models"].values():
        assert len(entry["bbox"]) == 12 and len(entry["rpn"]) == 5 and entry["iters"] == 6
    assert res["paper_reference"]["table3_faster_rcnn"]["b"]["AP_s"] == 9.6
    rows = read_claims(smoke_run / "results" / "claims" / "fpn.json")
    assert {r["claim_id"] for r in rows} >= {"fpn_claim_ap_fpn_minus_c4", "fpn_claim_aps_fpn_minus_c5"}
    assert (smoke_run / "results" / "detect" / "fpn" / "s0" / "model.pt").exists()


def test_detections_rescore_to_the_same_numbers(data: Path, tmp_path: Path, capsys) -> None:
    """Every evaluation writes its detections and proposals as COCO results; `score` recomputes its metrics."""
    out = tmp_path / "run"
    assert _train(data, out, extra=["--detections-out", str(out / "dt.json"), "--proposals-out",
                                    str(out / "props.json")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["rpn_budget"]["pre_nms_per"] == "pyramid level" and 0 < m["proposals_per_image"]["min"]
    dets = json.loads((out / "dt.json").read_text())
    assert isinstance(dets, list) and {"image_id", "category_id", "bbox", "score"} <= set(dets[0])
    assert main(["score", "--config", json.dumps(TINY), "--gt", str(data), "--dt", str(out / "dt.json"),
                 "--proposals", str(out / "props.json"), "--out", str(out / "scores.json")]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["bbox"] == m["bbox"] and scores["rpn"] == m["rpn"]
    assert scores["voc_map50"] == m["voc_map50"] or (scores["voc_map50"] != scores["voc_map50"]
                                                      and m["voc_map50"] != m["voc_map50"])
