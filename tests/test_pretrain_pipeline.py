"""Pretraining stage in the smoke DAG (arXiv 1708.02901 Sec. 4): outputs of the rules, the backbone
contract with the detection stage at the configured width, the claims file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
import yaml

from repro.common.claims import read_claims
from repro.common.paper_values import all_paper_values

from conftest import REPO, SMOKE, run_snakemake


def _smoke_config() -> dict:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    smoke = yaml.safe_load(SMOKE.read_text())
    return {k: (base.get(k, {}) | v) if isinstance(v, dict) else v for k, v in smoke.items()} | \
        {k: v for k, v in base.items() if k not in smoke}


def test_backbones_load_into_the_detectors_backbone(smoke_run: Path) -> None:
    """results/pretrain/{arm}/s{seed}/backbone.pt = tiny_resnet(width=detect.width, blocks=detect.blocks)
    state_dict, loaded strict with weights_only=True as the detection stage's transfer rule does."""
    from repro.detect.backbone import load_backbone_weights, tiny_resnet

    cfg = _smoke_config()
    width, blocks = cfg["detect"]["width"], cfg["detect"].get("blocks", [1, 1, 1, 1])
    arms, seeds = cfg["pretrain"]["arms"], cfg["pretrain"]["seeds"]
    assert {"scratch", "intra", "transitive"} <= set(arms)
    for arm in arms:
        for seed in seeds:
            path = smoke_run / f"results/pretrain/{arm}/s{seed}/backbone.pt"
            body = tiny_resnet(width=width, blocks=blocks)
            body.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
            load_backbone_weights(tiny_resnet(width=width, blocks=blocks), path)
            assert (path.parent / "backbone.pt.provenance.json").exists()
    init = torch.load(smoke_run / f"results/pretrain/scratch/s{seeds[0]}/backbone.pt", weights_only=True)
    trained = torch.load(smoke_run / f"results/pretrain/intra/s{seeds[0]}/backbone.pt", weights_only=True)
    assert not torch.equal(init["stem.conv.weight"], trained["stem.conv.weight"])  # intra really trained
    rows = list(csv.DictReader(open(smoke_run / f"results/pretrain/intra/s{seeds[0]}/metrics.csv")))
    assert len(rows) == cfg["pretrain"]["steps"] and all(float(r["loss"]) >= 0 for r in rows)


def test_claims_and_evaluation(smoke_run: Path) -> None:
    rows = read_claims(smoke_run / "results/claims/pretrain.json")
    refs = all_paper_values()
    ids = {r["claim_id"] for r in rows}
    assert {"ti_pretrain_probe_ordering", "ti_pretrain_knn_intra_minus_scratch", "ti_pretrain_det_probe_ordering"} <= ids
    assert ids <= set(refs)  # every claim has its reference entry
    for r in rows:
        assert r["n_seeds"] == 1 and r["verdict"] == "inconclusive"  # one smoke seed: no CI, no verdict
        assert "smoke scale" in r["scale_note"]
    ev = json.loads((smoke_run / "results/pretrain/eval/s0.json").read_text())
    for source, res in ev["sets"].items():
        assert set(res["arms"]) == set(_smoke_config()["pretrain"]["arms"])
        for m in res["arms"].values():
            assert 0 <= m["probe"] <= 100 and 0 <= m["knn"] <= 100
    assert ev["sets"]["mined"]["grouped_folds"] and not ev["sets"]["detection"]["grouped_folds"]
    summary = json.loads((smoke_run / "results/pretrain/summary.json").read_text())
    assert summary["seeds"] == [0] and "provenance" in summary
    assert (smoke_run / "results/pretrain/probe_knn.png").stat().st_size > 10_000


def test_full_scale_dag_uses_voc_crops_and_the_resnet50_backbone(tmp_path: Path) -> None:
    proc = run_snakemake(["-n", "-p", "results/claims/pretrain.json", "--configfile",
                          str(REPO / "workflow/configs/full.yaml")], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--voc results/data/raw/voc2007" in proc.stdout
    assert '"backbone":"resnet50"' in proc.stdout
    assert "--arm transitive_short" in proc.stdout and "results/graph/short/s0/pairs.npz" in proc.stdout
