"""Pretraining stage (Transitive Invariance, arXiv 1708.02901 Sec. 4): ranking loss, distractors,
arms, resume, the backbone contract with the detection stage, and the evaluation folds."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.common.cli import run_cli
from repro.common.config import section_defaults, with_defaults
from repro.pretrain import cli, engine, losses
from repro.pretrain.claims import build_claims, summarize
from repro.pretrain.data import ARMS, select_pairs
from repro.pretrain.metrics import evaluate_features, folds

WIDTH = 4  # a tiny backbone keeps these tests fast; the smoke test checks the configured width


# ----------------------------------------------------------------------------- Eq. 1-2: the loss
def test_cosine_distance__eq1() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    y = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    d = losses.cosine_distance(x, y)
    assert d.tolist() == pytest.approx([0.0, 1.0, 2.0, 1.0 - 1.0 / math.sqrt(2.0)], abs=1e-6)
    assert losses.pairwise_cosine_distance(x, y)[3, 3].item() == pytest.approx(d[3].item(), abs=1e-6)


def test_ranking_loss_on_hand_made_embeddings__eq2() -> None:
    # anchor e1; positive e1 (D+ = 0) and negative e2 (D- = 1): max(0, 0 - 1 + 0.5) = 0
    # anchor e1; positive e2 (D+ = 1) and negative e1 (D- = 0): max(0, 1 - 0 + 0.5) = 1.5
    # anchor e1; positive (1,1) (D+ = 1 - 1/sqrt2) and negative (1,2) (D- = 1 - 1/sqrt5)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [5.0, 0.0], [1.0, 2.0]])
    dp, dn = losses.cosine_distance(a, p), losses.cosine_distance(a, n)
    want = [0.0, 1.5, max(0.0, (1 - 1 / math.sqrt(2)) - (1 - 1 / math.sqrt(5)) + 0.5)]
    assert losses.ranking_loss(dp, dn, 0.5).tolist() == pytest.approx(want, abs=1e-6)
    assert losses.ranking_loss(dp, dn, 0.0).tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_batch_loss_uses_the_hardest_other_parent_distractor__eq2() -> None:
    # pairs (a_i, b_i); pair 0 and 1 share parent 7, pair 2 has parent 9
    emb_a = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    emb_b = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.2, 1.0]])
    parent = torch.tensor([7, 7, 9])
    loss, stats = losses.triplet_step_loss(emb_a, emb_b, parent, margin=0.5, mode="hard")
    cand = torch.cat([emb_a, emb_b])
    # anchors 0, 1 may only use pair 2's patches (rows 2, 5); anchor 2 only rows 0, 1, 3, 4
    want = []
    for i, ok in ((0, [2, 5]), (1, [2, 5]), (2, [0, 1, 3, 4])):
        dn = min(losses.cosine_distance(emb_a[i : i + 1], cand[j : j + 1]).item() for j in ok)
        dp = losses.cosine_distance(emb_a[i : i + 1], emb_b[i : i + 1]).item()
        want.append(max(0.0, dp - dn + 0.5))
    assert loss.item() == pytest.approx(float(np.mean(want)), abs=1e-6)
    assert stats["triplets"] == 3


@pytest.mark.parametrize("mode", losses.NEGATIVE_MODES)
def test_a_negative_never_shares_the_anchors_parent(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(50):
        B = 12
        anchor_parent = torch.randint(-1, 3, (B,), generator=gen)
        cand_parent = torch.cat([anchor_parent, anchor_parent])
        dist = torch.rand(B, 2 * B, generator=gen)
        neg = losses.pick_negatives(dist, anchor_parent, cand_parent, mode=mode, generator=gen)
        for i in range(B):
            others = (cand_parent != anchor_parent[i]).any().item()
            if others:
                assert neg[i] >= 0 and cand_parent[neg[i]] != anchor_parent[i], (trial, i)
            else:
                assert neg[i] == -1
    one = torch.zeros(4, dtype=torch.long)  # a single parent: nobody has a distractor, the loss is 0
    loss, stats = losses.triplet_step_loss(torch.randn(4, 3), torch.randn(4, 3), one)
    assert loss.item() == 0.0 and stats["triplets"] == 0


def test_mixed_negatives_are_hard_or_random_by_fraction() -> None:
    dist = torch.rand(64, 128, generator=torch.Generator().manual_seed(1))
    ap = torch.arange(64) % 4
    cp = torch.cat([ap, ap])
    hard = losses.pick_negatives(dist, ap, cp, mode="hard")
    all_hard = losses.pick_negatives(dist, ap, cp, mode="mixed", hard_fraction=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(hard, all_hard)
    rand = losses.pick_negatives(dist, ap, cp, mode="mixed", hard_fraction=0.0, generator=torch.Generator().manual_seed(2))
    assert (rand != hard).float().mean() > 0.5
    half = losses.pick_negatives(dist, ap, cp, mode="mixed", hard_fraction=0.5, generator=torch.Generator().manual_seed(2))
    assert 0.2 < (half == hard).float().mean() < 0.8


# ----------------------------------------------------------------------------- arms and inputs
def _pairs() -> dict[str, np.ndarray]:
    return {"a": np.arange(8), "b": np.arange(8) + 8, "kind": np.array([0, 0, 1, 1, 2, 2, 0, 2], np.int8),
            "parent": np.array([0, 1, 0, 1, 0, 1, 2, 2]), "in_mix": np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)}


def test_arms_select_their_pairs() -> None:
    p = _pairs()
    assert len(select_pairs(p, "scratch")) == 0
    assert select_pairs(p, "intra").a.tolist() == [0, 1, 6]
    assert select_pairs(p, "inter").a.tolist() == [2, 3]
    assert select_pairs(p, "transitive").a.tolist() == [4, 5, 6, 7]  # the 7:2 mixture, in_mix
    assert select_pairs(p, "transitive_hog").a.tolist() == [4, 5, 6, 7]
    assert set(ARMS) >= {"scratch", "intra", "transitive"}
    with pytest.raises(ValueError, match="unknown arm"):
        select_pairs(p, "context")


def _write_inputs(root: Path, n_nodes: int = 64, size: int = 32) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (n_nodes, 3, size, size), dtype=np.uint8)
    np.save(root / "patches.npy", patches)
    half = n_nodes // 2
    kind = np.tile(np.array([0, 2, 2, 1], np.int8), half // 4)
    np.savez(root / "pairs.npz", a=np.arange(half), b=np.arange(half) + half, kind=kind,
             parent=np.arange(half) % 5, in_mix=kind != 1)
    video = np.arange(n_nodes) % 8
    np.savez(root / "nodes.npz", video=video, role=(np.arange(n_nodes) >= half).astype(np.int8),
             class_id=video % 3, labelled=np.ones(8, bool))
    return root / "patches.npy", root / "pairs.npz", root / "nodes.npz"


CFG = {"width": WIDTH, "blocks": [1, 1, 1, 1], "hidden": 16, "embed": 8, "steps": 12, "batch": 8,
       "checkpoint_every": 4, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
       "device": "cpu", "eval": {"sources": ["mined"], "folds": 3, "knn_k": 3}}


def _train(tmp: Path, arm: str, out: str, *, seed: int = 0, cfg: dict | None = None, ckpt: Path | None = None) -> int:
    patches, pairs, _ = _write_inputs(tmp) if not (tmp / "pairs.npz").exists() else (tmp / "patches.npy", tmp / "pairs.npz", None)
    d = tmp / out
    argv = ["train", "--config", json.dumps(cfg or CFG), "--seed", str(seed), "--threads", "1", "--arm", arm,
            "--out-backbone", str(d / "backbone.pt"), "--out-net", str(d / "net.pt"),
            "--out-metrics", str(d / "metrics.csv"), "--out-summary", str(d / "train.json")]
    if arm != "scratch":
        argv += ["--patches", str(patches), "--pairs", str(pairs)]
    if ckpt is not None:
        argv += ["--checkpoint-dir", str(ckpt)]
    return run_cli(cli.main, argv)


def test_every_arm_of_a_seed_starts_from_the_same_weights(tmp_path: Path) -> None:
    a = cli._build_net(CFG, 3).state_dict()
    b = cli._build_net(CFG, 3).state_dict()
    c = cli._build_net(CFG, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert _train(tmp_path, "scratch", "scratch") == 0  # scratch saves exactly the shared initial weights
    saved = torch.load(tmp_path / "scratch" / "net.pt", weights_only=True)
    init = cli._build_net(CFG, 0).state_dict()
    assert all(torch.equal(saved[k], init[k]) for k in init)


def test_kill_and_resume_gives_the_same_final_weights(tmp_path: Path, monkeypatch, capsys) -> None:
    """A run killed after its step-8 checkpoint and restarted ends bit-identical to an uninterrupted one."""
    assert _train(tmp_path, "transitive", "full") == 0
    import repro.common.checkpoint as ck

    real = ck.RunCheckpoint.save

    def save_then_die(self, state):
        real(self, state)
        if state["step"] == 8:
            raise RuntimeError("simulated kill after the step-8 checkpoint")

    monkeypatch.setattr(ck.RunCheckpoint, "save", save_then_die)
    with pytest.raises(RuntimeError, match="simulated kill"):
        _train(tmp_path, "transitive", "resumed", ckpt=tmp_path / "ckpt")
    assert not (tmp_path / "resumed" / "net.pt").exists()
    monkeypatch.setattr(ck.RunCheckpoint, "save", real)
    capsys.readouterr()
    assert _train(tmp_path, "transitive", "resumed", ckpt=tmp_path / "ckpt") == 0
    assert "resumed from step 8" in capsys.readouterr().err
    w1 = torch.load(tmp_path / "full" / "net.pt", weights_only=True)
    w2 = torch.load(tmp_path / "resumed" / "net.pt", weights_only=True)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    rows1 = list(csv.reader(open(tmp_path / "full" / "metrics.csv")))
    rows2 = list(csv.reader(open(tmp_path / "resumed" / "metrics.csv")))
    assert len(rows1) == 13 and [r[:-1] for r in rows1] == [r[:-1] for r in rows2]  # all but wall seconds
    assert rows1[0] == list(engine.COLUMNS)


def test_saved_backbone_loads_into_the_detection_backbone(tmp_path: Path) -> None:
    """backbone.pt is exactly tiny_resnet(width, blocks).state_dict(): strict, weights_only (TI transfer)."""
    from repro.detect.backbone import load_backbone_weights, tiny_resnet

    assert _train(tmp_path, "intra", "intra") == 0
    path = tmp_path / "intra" / "backbone.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    body = tiny_resnet(width=WIDTH, blocks=(1, 1, 1, 1))
    body.load_state_dict(state, strict=True)
    load_backbone_weights(tiny_resnet(width=WIDTH), path)  # the detection stage's own loader
    net = torch.load(tmp_path / "intra" / "net.pt", weights_only=True)
    assert all(torch.equal(net[f"backbone.{k}"], v) for k, v in state.items())
    assert any(k.startswith("head.") for k in net)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_backbone_weights(tiny_resnet(width=2 * WIDTH), path)
    summary = json.loads((tmp_path / "intra" / "train.json").read_text())
    assert summary["steps"] == 12 and summary["n_pairs"] == 8  # kind 0 of 32 and "provenance" in summary


def test_nan_loss_exits_nonzero(tmp_path: Path, monkeypatch, capsys) -> None:
    def nan_loss(emb_a, emb_b, parent, **kw):
        loss = emb_a.sum() * float("nan")
        return loss, {"loss": float("nan"), "active": 1.0, "d_pos": 0.0, "d_neg": 0.0, "triplets": 1}

    monkeypatch.setattr(engine, "triplet_step_loss", nan_loss)
    assert _train(tmp_path, "intra", "nan") == 3
    assert "ranking loss is nan at step 0" in capsys.readouterr().err


def test_bad_inputs_are_named(tmp_path: Path, capsys) -> None:
    _write_inputs(tmp_path)
    argv = ["train", "--config", json.dumps(CFG), "--arm", "intra", "--patches", str(tmp_path / "patches.npy"),
            "--pairs", str(tmp_path / "nope.npz"), "--out-backbone", str(tmp_path / "b.pt"), "--out-net",
            str(tmp_path / "n.pt"), "--out-metrics", str(tmp_path / "m.csv"), "--out-summary", str(tmp_path / "t.json")]
    assert run_cli(cli.main, argv) == 2 and "nope.npz" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((4, 32, 32), np.uint8))
    argv[argv.index("--patches") + 1] = str(tmp_path / "bad.npy")
    argv[argv.index("--pairs") + 1] = str(tmp_path / "pairs.npz")
    assert run_cli(cli.main, argv) == 2 and "expected uint8 [N,3,S,S]" in capsys.readouterr().err


def test_lars_and_schedules() -> None:
    from repro.lars.optim import LARS

    p = [torch.nn.Parameter(torch.ones(3))]
    opt = section_defaults("pretrain")["optimizer"]
    assert isinstance(engine.make_optimizer(p, {**opt, "name": "lars", "lr": 1.0}), LARS)
    assert isinstance(engine.make_optimizer(p, {**opt, "name": "sgd", "lr": 0.1}), torch.optim.SGD)
    cfg = engine.TrainConfig(steps=10, batch=2, schedule="poly", warmup_steps=2)
    assert engine.lr_factor(0, cfg) == pytest.approx(0.5)  # warm-up ramp (t+1)/W times (1 - 0/10)^2
    assert engine.lr_factor(5, cfg) == pytest.approx(0.25)
    assert engine.lr_factor(0, engine.TrainConfig(steps=10, batch=2, schedule="cosine")) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- evaluation and claims
def test_grouped_folds_never_share_a_video() -> None:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 11, 200)
    y = group % 3
    for tr, te in folds(y, group, None, 5):
        assert not set(group[tr]) & set(group[te])
    tr, te = folds(y, group, (np.arange(200) % 2).astype(np.int8), 5)[0]
    assert set(te) == set(range(1, 200, 2))


def test_probe_and_knn_read_class_structure() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    group = np.arange(120) % 10
    centres = rng.normal(size=(4, 16)) * 5
    good = centres[y] + rng.normal(size=(120, 16))
    res = evaluate_features(good, y, group, None, n_folds=5, knn_k=3)
    assert res["probe"] > 95 and res["knn"] > 95 and res["n_test"] == 120
    noise = rng.normal(size=(120, 16))
    res = evaluate_features(noise, y, group, None, n_folds=5, knn_k=3)
    assert res["probe"] < 50 and res["knn"] < 50


def _eval(seed: int, values: dict[str, tuple[float, float]]) -> dict:
    arms = {a: {"probe": p, "knn": k, "probe_balanced": p, "knn_balanced": k} for a, (p, k) in values.items()}
    ref = {"probe": 20.0, "knn": 20.0}
    return {"seed": seed, "sets": {"mined": {"n_crops": 100, "n_groups": 10, "n_classes": 4, "class_counts": [25] * 4,
                                              "grouped_folds": True, "majority": 25.0, "pixels": ref, "arms": arms}}}


def test_claims_verdicts_follow_the_paired_ci() -> None:
    evals = [_eval(s, {"scratch": (30 + s, 30), "intra": (40 + s, 30 + s), "transitive": (45 + s, 25 - s)})
             for s in range(3)]
    summary = summarize(evals, [{"arm": "intra", "seed": 0, "n_pairs": 10, "steps": 5}], [])
    rows = {r.claim_id: r for r in build_claims(summary, with_defaults({"steps": 5, "batch": 4}, "pretrain"))}
    assert rows["ti_pretrain_probe_transitive_minus_intra"].verdict == "holds"
    assert rows["ti_pretrain_probe_transitive_minus_intra"].ours_mean == pytest.approx(5.0)
    assert rows["ti_pretrain_probe_transitive_minus_intra"].paper_value == pytest.approx(3.0)  # 63.2 - 60.2
    assert rows["ti_pretrain_probe_intra_minus_scratch"].paper_value == pytest.approx(20.5)  # 60.2 - 39.7
    assert rows["ti_pretrain_probe_ordering"].verdict == "holds"
    assert rows["ti_pretrain_knn_transitive_minus_intra"].verdict == "fails"
    assert rows["ti_pretrain_knn_ordering"].verdict == "fails"
    assert rows["ti_pretrain_knn_intra_minus_scratch"].verdict == "inconclusive"
    assert "seeds" in rows["ti_pretrain_knn_intra_minus_scratch"].scale_note
    assert all(r.n_seeds == 3 for r in rows.values())


def test_paper_negatives_are_random_and_mixed_is_an_ablation_arm(tmp_path: Path) -> None:
    """Sec. 4-5: "a random distractor sample C' from another parent cluster" in the same mini-batch is the
    default; [61]'s hard/random mix runs as the transitive_mixed arm on the main graph."""
    from repro.pretrain.data import arm_graph_variant
    from repro.pretrain.engine import TrainConfig
    from repro.pretrain.losses import pick_negatives

    assert TrainConfig(steps=1, batch=2, margin=0.5, lr=0.1).negatives == "random"
    assert pick_negatives.__kwdefaults__["mode"] == "random"
    assert arm_graph_variant("transitive_mixed") == "main" and arm_graph_variant("transitive_hog") == "hog"
    cfg = {k: v for k, v in CFG.items() if k != "negatives"}
    for arm in ("transitive", "transitive_mixed"):
        argv_cfg = {**cfg, "steps": 2, "checkpoint_every": 0}
        assert _train(tmp_path, arm, arm, cfg=argv_cfg) == 0
    negs = {arm: json.loads((tmp_path / arm / "train.json").read_text())["negatives"]
            for arm in ("transitive", "transitive_mixed")}
    assert negs == {"transitive": "random", "transitive_mixed": "mixed"}


def test_images_are_read_as_stored() -> None:
    """VOC/COCO crops ignore EXIF orientation, like the detection stage's PIL reader (the boxes refer to it)."""
    import cv2

    from repro.pretrain import data

    assert data._READ_AS_STORED == cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
