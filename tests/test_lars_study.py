"""The large-batch study: gradient accumulation, resume, divergence, data loaders, CLI and claims."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import repro.lars.study as study
from repro.common.checkpoint import RunCheckpoint
from repro.common.claims import read_claims
from repro.lars.claims import summarize_cells
from repro.lars.cli import main
from repro.lars.data import Split, load_cifar10, load_classification, prepare
from repro.lars.engine import Diverged, train
from repro.lars.models import build_model
from repro.lars.optim import LARS, warmup_poly_schedule

CFG = {
    "models": ["alexnet", "alexnet_bn"],
    "conv": [4, 4, 4],
    "fc": 8,
    "batches": [8, 32],
    "micro_batch": 16,
    "epochs": 1,
    "seeds": 2,
    "val_fraction": 0.2,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "poly_power": 2.0,
    "sgd": {"lrs": {"alexnet": [0.05], "alexnet_bn": [0.05]}, "lr_factors": [1.0], "ref_batch": 8,
            "scaling": "linear", "warmup_epochs": 0.5, "warmup_start": 0.0, "edge_steps": 0},
    "lars": {"lrs": {"alexnet": [2.0, 5.0], "alexnet_bn": [5.0]}, "lr_factors": [1.0], "ref_batch": 8,
             "scaling": "sqrt", "warmup_epochs": 0.5, "warmup_start": 0.0, "trust_coefficient": 1e-3,
             "exclude_bias_and_norm": False, "edge_steps": 0},
    "wide": {"model": "alexnet_bn", "arm": "lars", "batches": []},
    "longer": {"model": "alexnet_bn", "arm": "lars", "epochs": [2]},
    "claims": {"hold_tolerance_pp": 1.0, "ratio_spread_min": 10.0},
    "on_divergence": "record",
    "device": "cpu",
    "threads": 1,
    "eval_batch": 64,
    "checkpoint_every": 2,
    "runtime_min": 5,
}


def _arrays(n_train: int = 80, n_test: int = 40, size: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_tr, y_te = np.arange(n_train) % 4, np.arange(n_test) % 4
    # class = which quadrant is bright: learnable by a tiny CNN
    def images(y: np.ndarray) -> np.ndarray:
        x = rng.integers(0, 60, (len(y), 3, size, size)).astype(np.uint8)
        h = size // 2
        for i, c in enumerate(y):
            x[i, :, (c // 2) * h : (c // 2 + 1) * h, (c % 2) * h : (c % 2 + 1) * h] += 150
        return x

    return {"x_train": images(y_tr), "y_train": y_tr.astype(np.int64), "x_test": images(y_te),
            "y_test": y_te.astype(np.int64)}


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    path = tmp_path / "classification.npz"
    np.savez(path, **_arrays())
    return path


def test_gradient_accumulation_equals_the_full_batch_gradient() -> None:
    """Micro-batches of 8 summed with weights b/B give the B=32 gradient exactly (no BatchNorm)."""
    torch.manual_seed(0)
    data = Split(torch.randn(32, 3, 8, 8), torch.arange(32) % 4)
    grads = []
    for micro in (32, 8):
        torch.manual_seed(1)
        model = build_model("alexnet", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step keeps the weights
        train(model, opt, warmup_poly_schedule(opt, 1), data, batch_size=32, micro_batch=micro, epochs=1, seed=0)
        grads.append([p.grad.clone() for p in model.parameters()])
    for full, acc in zip(*grads):
        assert torch.allclose(full, acc, atol=1e-6)


def test_interrupted_cell_resumes_to_the_same_result(tmp_path: Path, monkeypatch, capsys) -> None:
    data = prepare(_arrays(), val_fraction=0.2)
    kwargs = dict(model_name="alexnet_bn", arm="lars", batch=8, epochs=1, seeds=[0, 1])
    clean = study.run_cell(data, CFG, ckpt=RunCheckpoint(tmp_path / "clean", {"cell": 1}), **kwargs)

    real_save = RunCheckpoint.save
    calls = {"n": 0}

    def crash_after_third_save(self, state):  # dies mid-run, after a mid-run checkpoint
        real_save(self, state)
        calls["n"] += 1
        if calls["n"] == 3 and state["current"] is not None:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunCheckpoint, "save", crash_after_third_save)
    with pytest.raises(KeyboardInterrupt):
        study.run_cell(data, CFG, ckpt=RunCheckpoint(tmp_path / "crash", {"cell": 1}), **kwargs)
    monkeypatch.setattr(RunCheckpoint, "save", real_save)
    resumed = study.run_cell(data, CFG, ckpt=RunCheckpoint(tmp_path / "crash", {"cell": 1}), **kwargs)
    assert "resumed from step" in capsys.readouterr().err
    assert resumed["chosen_lr_ref"] == clean["chosen_lr_ref"]
    for a, b in zip(clean["runs"], resumed["runs"]):
        assert (a["lr_ref"], a["seed"]) == (b["lr_ref"], b["seed"])
        assert a["test_acc"] == pytest.approx(b["test_acc"]) and a["train_loss"] == pytest.approx(b["train_loss"])


def test_lr_search_uses_first_seed_then_other_seeds_at_best_lr() -> None:
    data = prepare(_arrays(), val_fraction=0.2)
    out = study.run_cell(data, CFG, model_name="alexnet", arm="lars", batch=8, epochs=1, seeds=[3, 4])
    keys = [(r["lr_ref"], r["seed"]) for r in out["runs"]]
    assert keys[:2] == [(2.0, 3), (5.0, 3)] and keys[2:] == [(out["chosen_lr_ref"], 4)]
    best = max(out["runs"][:2], key=lambda r: (r["val_acc"], -r["lr_ref"]))
    assert out["chosen_lr_ref"] == best["lr_ref"]
    # LARS's gamma_0 follows sqrt scaling from ref_batch: at B = ref it is the grid value
    assert out["runs"][0]["lr"] == pytest.approx(2.0)
    assert study.scaled_lr(2.0, 32, 8, "sqrt") == pytest.approx(4.0)
    assert study.scaled_lr(0.1, 32, 8, "linear") == pytest.approx(0.4)


def test_search_continues_past_the_grid_edge_while_the_best_lr_is_the_edge() -> None:
    assert study.beyond_edge([0.1, 0.2, 0.4], 0.1) == pytest.approx(0.05)  # the grid's own step, downwards
    assert study.beyond_edge([0.1, 0.2, 0.4], 0.4) == pytest.approx(0.8)
    assert study.beyond_edge([10.0, 30.0, 100.0], 10.0) == pytest.approx(3.33333)
    assert study.beyond_edge([0.1, 0.2, 0.4], 0.2) is None and study.beyond_edge([0.1], 0.1) is None
    assert study.beyond_edge([0.1, 0.2], None) is None  # every LR diverged: nothing to continue from
    data = prepare(_arrays(), val_fraction=0.2)
    cfg = {**CFG, "sgd": {**CFG["sgd"], "lrs": {"alexnet": [1e-4, 2e-4]}, "edge_steps": 2}}
    out = study.run_cell(data, cfg, model_name="alexnet", arm="sgd", batch=8, epochs=1, seeds=[0, 1])
    search = [r["lr_ref"] for r in out["runs"] if r["seed"] == 0]
    assert search[:2] == [1e-4, 2e-4] and len(search) in (3, 4)  # at most edge_steps past the grid
    assert set(search[2:]) <= {5e-5, 2.5e-5, 4e-4, 8e-4}
    best = max((r for r in out["runs"] if r["seed"] == 0), key=lambda r: (r["val_acc"], -r["lr_ref"]))
    assert out["chosen_lr_ref"] == best["lr_ref"] and out["lr_grid"] == [1e-4, 2e-4]
    assert [r["lr_ref"] for r in out["runs"] if r["seed"] == 1] == [out["chosen_lr_ref"]]


def test_divergence_is_counted_not_scored_and_the_best_finite_lr_is_chosen() -> None:
    """A diverged LR has no accuracy (not chance), is skipped by the LR choice, and is counted."""
    data = prepare(_arrays(), val_fraction=0.2)
    cfg = {**CFG, "sgd": {**CFG["sgd"], "lrs": {"alexnet": [0.05, 1e6]}, "warmup_epochs": 0.0}}
    out = study.run_cell(data, cfg, model_name="alexnet", arm="sgd", batch=8, epochs=1, seeds=[0, 1])
    search = [r for r in out["runs"] if r["seed"] == 0]
    bad = next(r for r in search if r["lr_ref"] == 1e6)
    assert bad["diverged"] and bad["test_acc"] is None and bad["val_acc"] is None
    assert out["chosen_lr_ref"] == 0.05 and [r["lr_ref"] for r in out["runs"] if r["seed"] == 1] == [0.05]
    cell = {"model": "alexnet", "arm": "sgd", "batch": 8, "epochs": 1, "seeds": [0, 1], **out}
    summary = summarize_cells([cell])[("alexnet", "sgd", 8, 1)]
    assert summary["n_diverged"] == 1 and summary["diverged_lrs"] == [1e6]
    assert summary["n_seeds"] == 2 and None not in summary["test_acc_by_seed"].values()
    # every LR diverged: no LR is chosen, no other seed is trained, the cell has no accuracy
    cfg = {**CFG, "sgd": {**CFG["sgd"], "lrs": {"alexnet": [1e6]}, "warmup_epochs": 0.0}}
    out = study.run_cell(data, cfg, model_name="alexnet", arm="sgd", batch=8, epochs=1, seeds=[0, 1])
    assert out["chosen_lr_ref"] is None and len(out["runs"]) == 1
    summary = summarize_cells([{"model": "alexnet", "arm": "sgd", "batch": 8, "epochs": 1, "seeds": [0, 1], **out}])
    only = summary[("alexnet", "sgd", 8, 1)]
    assert only["test_acc_mean"] is None and only["n_diverged"] == 1 and only["n_seeds"] == 0
    with pytest.raises(Diverged, match="diverged"):
        study.run_cell(data, {**cfg, "on_divergence": "fail"}, model_name="alexnet", arm="sgd", batch=8,
                       epochs=1, seeds=[0])


def test_lars_trains_a_plain_net_at_zero_initialised_biases() -> None:
    """With lambda = eta at ||w|| = 0 the zero-initialised biases move (the literal formula freezes them)."""
    torch.manual_seed(0)
    model = build_model("alexnet", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(float(b.detach().norm()) == 0 for b in biases)
    opt = LARS(model.parameters(), lr=5.0)
    data = Split(torch.randn(16, 3, 8, 8), torch.arange(16) % 4)
    train(model, opt, warmup_poly_schedule(opt, 2), data, batch_size=8, micro_batch=8, epochs=1, seed=0)
    assert all(float(b.detach().norm()) > 0 for b in biases)


def test_cifar10_loader_reads_the_python_batches(tmp_path: Path) -> None:
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        (root / name).write_bytes(pickle.dumps(batch))
    out = load_classification(tmp_path / "cifar10")
    assert out["x_train"].shape == (20, 3, 32, 32) and out["x_test"].shape == (4, 3, 32, 32)
    assert out["x_train"].dtype == np.uint8 and out["y_test"].tolist() == [0, 1, 2, 9]
    first = pickle.loads((root / "data_batch_1").read_bytes())[b"data"][0]
    assert np.array_equal(out["x_train"][0, 0].ravel(), first[:1024])  # channel-major rows (R, G, B)
    (root / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10(tmp_path / "cifar10")


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_classification(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    arr = _arrays()
    np.savez(bad, **{**arr, "x_train": arr["x_train"][:, :1]})
    with pytest.raises(ValueError, match=r"\[N, 3, H, H\]"):
        load_classification(bad)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)


def test_cli_cells_and_aggregate_write_study_figure_and_claims(tmp_path: Path, npz: Path) -> None:
    cfg = {**CFG, "batches": [4, 32]}  # 8x: the paper's 512 -> 4K, so every accuracy row has a paper value
    cells = []
    grid = [(m, a, b, 1) for m in cfg["models"] for a in ("sgd", "lars") for b in cfg["batches"]]
    for model, arm, batch, epochs in grid + [("alexnet_bn", "lars", 32, 2)]:
        out = tmp_path / "cells" / model / arm / f"b{batch}_e{epochs}.json"
        rc = main(["cell", "--config", json.dumps(cfg), "--seed", "0", "--threads", "1", "--in", str(npz),
                   "--out", str(out), "--checkpoint-dir", str(tmp_path / "ckpt" / f"{model}_{arm}_{batch}_{epochs}"),
                   "--model", model, "--arm", arm, "--batch", str(batch), "--epochs", str(epochs)])
        assert rc == 0
        cell = json.loads(out.read_text())
        assert cell["provenance"]["stage"] == "lars.cell" and len({r["seed"] for r in cell["runs"]}) == 2
        cells.append(str(out))
    study_json, fig, claims = tmp_path / "study.json", tmp_path / "fig.png", tmp_path / "claims" / "lars.json"
    rc = main(["aggregate", "--config", json.dumps(cfg), "--seed", "0", "--in", *cells, "--out", str(study_json),
               "--figure", str(fig), "--claims", str(claims)])
    assert rc == 0
    rows = read_claims(claims)
    assert {r["claim_id"] for r in rows} == {
        "lars_alexnet_sgd_drop_8x", "lars_alexnet_lars_holds_8x", "lars_alexnet_lars_vs_sgd_8x",
        "lars_alexnet_bn_sgd_drop_8x", "lars_alexnet_bn_lars_holds_8x", "lars_alexnet_bn_lars_vs_sgd_8x",
        "lars_alexnet_bn_ratio_spread",
    }  # no Table 5 row: 32 / 64 is no batch, the paper has Table 5 at 64x only
    by_id = {r["claim_id"]: r for r in rows}
    assert by_id["lars_alexnet_sgd_drop_8x"]["paper_value"] == pytest.approx(53.1 - 58.0)
    assert all(r["n_seeds"] == 2 and r["ours_ci95"] is not None for r in rows)
    result = json.loads(study_json.read_text())
    # accuracy per arm x batch x LR x seed, and one summary per cell with its chosen LR and divergence count
    assert len(result["cells"]) == 9 and all({"lr_ref", "seed", "test_acc"} <= set(r) for r in result["runs"])
    assert all({"chosen_lr", "lr_grid", "n_diverged", "diverged_lrs"} <= set(c) for c in result["cells"])
    assert fig.stat().st_size > 10_000 and (tmp_path / "fig.png.provenance.json").exists()
    with pytest.raises(FileNotFoundError, match="missing cell results"):
        main(["aggregate", "--config", json.dumps(cfg), "--in", str(tmp_path / "none.json"), "--out",
              str(study_json), "--figure", str(fig), "--claims", str(claims)])


def test_smoke_pipeline_outputs(smoke_run: Path) -> None:
    res = smoke_run / "results"
    rows = read_claims(res / "claims" / "lars.json")
    assert {r["claim_id"] for r in rows} == {  # smoke: 16 -> 128 is 8x, AlexNet-BN/LARS 2 -> 128 is 64x
        "lars_alexnet_sgd_drop_8x", "lars_alexnet_lars_holds_8x", "lars_alexnet_lars_vs_sgd_8x",
        "lars_alexnet_bn_sgd_drop_8x", "lars_alexnet_bn_lars_holds_8x", "lars_alexnet_bn_lars_holds",
        "lars_alexnet_bn_lars_vs_sgd_8x", "lars_longer_training_recovers", "lars_alexnet_bn_ratio_spread",
    }
    assert all(r["scale_note"] for r in rows)
    assert (res / "lars" / "accuracy_vs_batch.png").stat().st_size > 10_000
    study_json = json.loads((res / "lars" / "lars_study.json").read_text())
    assert study_json["provenance"]["config"]["batches"] and study_json["cells"]
    for cell in study_json["cells"]:
        assert cell["n_seeds"] + cell["n_diverged_at_chosen_lr"] >= 2 or cell["chosen_lr"] is None
        assert cell["test_acc_mean"] is None or 0.0 <= cell["test_acc_mean"] <= 100.0


def test_no_batchnorm_batch_of_one_at_epoch_or_micro_batch_ends() -> None:
    """33 images at B=16: the lone 33rd image is dropped; B=32 in micro-batches of 31: 31 + 1 -> one of 32."""
    from repro.lars.engine import _micro_batches, steps_per_epoch

    assert steps_per_epoch(33, 16) == 2 and steps_per_epoch(34, 16) == 3 and steps_per_epoch(10, 16) == 1
    assert [len(c) for c in _micro_batches(torch.arange(32), 31)] == [32]
    assert [len(c) for c in _micro_batches(torch.arange(31), 10)] == [10, 10, 11]
    model = build_model("alexnet_bn", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)
    opt = LARS(model.parameters(), lr=1.0)
    data = Split(torch.randn(33, 3, 8, 8), torch.arange(33) % 4)
    state = train(model, opt, warmup_poly_schedule(opt, 2), data, batch_size=16, micro_batch=15, epochs=1, seed=0)
    assert state.step == 2
