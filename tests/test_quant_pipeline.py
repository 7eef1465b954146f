"""Network quantization stage end to end: CLI run/aggregate, resume, loaders, errors, smoke outputs."""

from __future__ import annotations

import copy
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from repro.common.claims import read_claims
from repro.common.cli import run_cli
from repro.quant.cli import main
from repro.quant.data import load_cifar10, load_digits_npz, load_mnist

from conftest import REPO


def _tiny_config() -> dict:
    cfg = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text())["quant"])
    cfg["nets"]["mlp_digits"].update(epochs=3, hidden=[16], prune_epochs=1)
    cfg.update(rates=[1.0, 2.0], seeds=[0, 1], checkpoint_every=5)
    cfg["kmeans"].update(ks=[2, 4], inits=2, every_k_max=4)
    cfg["hessian"].update(n_samples=50, small_samples=10)
    cfg["finetune"].update(epochs=1)
    cfg["claims"].update(fixed_bits=[1, 2], huffman_rates=[1.5])
    return cfg


def _fake_digits(path: Path, *, n_train: int = 200, n_test: int = 80, nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    protos = rng.random((10, 8, 8)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = np.clip(protos[y] + 0.2 * rng.normal(size=(n, 8, 8)), 0, 1).astype(np.float32)
        return x, y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    if nan:
        xtr[:] = np.nan
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def _run(tmp: Path, data: Path, seed: int, cfg: dict, ckpt: Path | None = None) -> int:
    args = ["run", "--config", json.dumps(cfg), "--seed", str(seed), "--threads", "1", "--net", "mlp_digits",
            "--in", str(data), "--out", str(tmp / f"s{seed}.json"), "--weights", str(tmp / f"s{seed}.pt")]
    if ckpt is not None:
        args += ["--checkpoint-dir", str(ckpt)]
    return run_cli(main, args)


def test_run_resume_and_aggregate(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    cfg = _tiny_config()
    data = _fake_digits(tmp_path / "digits.npz")
    ckpt = tmp_path / "ckpt"
    assert _run(tmp_path, data, 0, cfg, ckpt) == 0
    res = json.loads((tmp_path / "s0.json").read_text())
    methods = {r["method"] for r in res["sweeps"]["dense"]}
    assert methods == set(cfg["methods"])
    rec = res["sweeps"]["dense"][0]
    for key in ("k", "entropy", "bits_fixed", "bits_huffman", "cr_fixed", "cr_huffman", "acc", "ce", "acc_ft", "ce_ft"):
        assert key in rec, key
    for r in res["sweeps"]["dense"]:
        assert r["entropy"] <= r["bits_huffman"] + 1e-9 < r["entropy"] + 1 and r["bits_huffman"] <= r["bits_fixed"] + 1e-9
        assert r["cr_huffman"] >= r["cr_fixed"] - 1e-9
    assert res["pruned"]["cr_pruned_only"] > 1 and res["sweeps"]["pruned"]
    assert res["provenance"]["seed"] == 0 and res["provenance"]["stage"] == "quant"
    weights = torch.load(tmp_path / "s0.pt", weights_only=True)
    assert set(weights) == {"dense", "pruned"}
    # a finished job keeps no checkpoint: a rerun (e.g. --forcerun) trains afresh, to the same numbers
    assert not list(ckpt.rglob("*.pt"))
    capfd.readouterr()
    assert _run(tmp_path, data, 0, cfg, ckpt) == 0
    assert "resumed from step" not in capfd.readouterr().err
    again = json.loads((tmp_path / "s0.json").read_text())
    def numbers(result: dict) -> list:
        return [{k: v for k, v in r.items() if not k.endswith(("_s", "seconds"))}
                for sweep in result["sweeps"].values() for r in sweep]

    assert numbers(again) == numbers(res) and again["train"] == res["train"]

    assert _run(tmp_path, data, 1, cfg) == 0
    out = tmp_path / "agg"
    code = main(["aggregate", "--config", json.dumps(cfg), "--threads", "1",
                 "--in", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"),
                 "--summary", str(out / "summary.json"), "--claims", str(out / "quant.json"),
                 "--figure", str(out / "fig1.svg"), "--table", str(out / "table1.csv")])
    assert code == 0
    rows = read_claims(out / "quant.json")
    ids = {r["claim_id"] for r in rows}
    assert {"quant_fixed_hw_beats_kmeans", "quant_huffman_uniform_beats_kmeans", "quant_adam_hessian_equivalent",
            "quant_small_hessian_equivalent", "quant_huffman_uniform_beats_kmeans_ft", "quant_table1_uniform_vs_ecsq"} <= ids
    dense = res["sweeps"]["dense"]
    assert {r["target"] for r in dense if r["method"] == "kmeans"} == {2, 3, 4}  # every k up to every_k_max
    assert {r["target"] for r in dense if r["method"] == "hw_kmeans_adam"} == {2, 4}
    assert all(r["gap_to_optimum"] == 0.0 for r in dense if "gap_to_optimum" in r)  # init exact: the optimum
    assert {r["method"] for r in res["sweeps"]["pruned"]} == {"kmeans", "hw_kmeans", "uniform", "ecsq"}
    assert all(r["n_seeds"] == 2 for r in rows if r["claim_id"] == "quant_fixed_hw_beats_kmeans")
    assert (out / "fig1.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    table = (out / "table1.csv").read_text().splitlines()
    assert table[0].startswith("row,source") and table[1].startswith("mlp_digits") and "51.25" in "".join(table)


def test_bad_inputs_fail_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _tiny_config()
    assert _run(tmp_path, tmp_path / "missing.npz", 0, cfg) == 2
    assert "missing.npz" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 64), np.float32), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 64), np.float32), y_test=np.zeros(2, np.int64))
    assert _run(tmp_path, bad, 0, cfg) == 2
    assert "expected [n, H, W]" in capsys.readouterr().err
    nan = _fake_digits(tmp_path / "nan.npz", nan=True)
    assert _run(tmp_path, nan, 0, cfg) == 3  # a diverged run, not bad input
    assert "non-finite training loss" in capsys.readouterr().err


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_loader(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)
    split = load_mnist(tmp_path)
    assert split.x_train.shape == (12, 1, 28, 28) and split.x_test.shape == (5, 1, 28, 28)
    assert float(split.x_train.max()) < 1.0 and split.y_train.dtype == torch.int64
    (tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if gz else ""))).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_cifar10_pickle_loader(tmp_path: Path) -> None:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        (base / name).write_bytes(pickle.dumps(batch))
    split = load_cifar10(tmp_path)
    assert split.x_train.shape == (20, 3, 32, 32) and split.x_test.shape == (4, 3, 32, 32)
    assert torch.allclose(split.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    (base / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_cifar10(tmp_path)


def test_digits_loader_shapes(tmp_path: Path) -> None:
    split = load_digits_npz(_fake_digits(tmp_path / "d.npz"))
    assert split.x_train.shape == (200, 1, 8, 8) and split.num_classes == 10


def test_smoke_pipeline_quant_outputs(smoke_run: Path) -> None:
    res = smoke_run / "results"
    rows = read_claims(res / "claims" / "quant.json")
    assert {r["verdict"] for r in rows} <= {"holds", "fails", "inconclusive"}
    assert any(r["claim_id"] == "quant_fixed_hw_beats_kmeans" for r in rows)
    summary = json.loads((res / "quant" / "summary.json").read_text())
    assert summary["nets"]["mlp_digits"]["seeds"] == [0, 1]
    assert (res / "quant" / "mlp_digits" / "fig1.svg").stat().st_size > 1000
    assert "mlp_digits" in (res / "quant" / "table1.csv").read_text()
    assert list((res / "benchmarks" / "quant").glob("*.tsv"))


def test_weights_only_hutchinson_no_prune_no_finetune(tmp_path: Path) -> None:
    """Options off the default path: weight tensors only (biases stay 32-bit), Hutchinson Hessian."""
    cfg = _tiny_config()
    cfg.update(quantize="weights", methods=["kmeans", "hw_kmeans", "uniform"])
    cfg["hessian"].update(method="hutchinson", probes=4)
    cfg["prune"]["enabled"] = False
    cfg["finetune"]["enabled"] = False
    data = _fake_digits(tmp_path / "digits.npz")
    assert _run(tmp_path, data, 0, cfg) == 0
    res = json.loads((tmp_path / "s0.json").read_text())
    assert res["dense"]["n_unquantized"] == 16 + 10 and "pruned" not in res
    assert all("acc_ft" not in r for r in res["sweeps"]["dense"])
    out = tmp_path / "agg"
    assert main(["aggregate", "--config", json.dumps(cfg), "--in", str(tmp_path / "s0.json"),
                 "--summary", str(out / "s.json"), "--claims", str(out / "c.json"),
                 "--figure", str(out / "f.svg"), "--table", str(out / "t.csv")]) == 0
    ids = {r["claim_id"] for r in read_claims(out / "c.json")}
    assert "quant_fixed_hw_beats_kmeans" in ids and "quant_fixed_hw_beats_kmeans_ft" not in ids


def test_aggregate_without_pruning_with_more_seedings_than_finetuned(tmp_path: Path) -> None:
    """Pruning off and kmeans.inits > finetune.inits: Table 1 reads the fine-tuned seedings only (no crash);
    a seeded k-means records its gap to the exact optimum."""
    cfg = _tiny_config()
    cfg["prune"]["enabled"] = False
    cfg["kmeans"].update(init="kmeans++", inits=2)
    cfg["finetune"]["inits"] = 1
    data = _fake_digits(tmp_path / "digits.npz")
    assert _run(tmp_path, data, 0, cfg) == 0
    dense = json.loads((tmp_path / "s0.json").read_text())["sweeps"]["dense"]
    assert {r["init"] for r in dense if r["method"] == "kmeans"} == {0, 1}
    assert any("acc_ft" not in r for r in dense if r["method"] == "kmeans")
    assert all(r["gap_to_optimum"] >= -1e-9 for r in dense if r["method"] in ("kmeans", "hw_kmeans"))
    out = tmp_path / "agg"
    assert main(["aggregate", "--config", json.dumps(cfg), "--in", str(tmp_path / "s0.json"),
                 "--summary", str(out / "s.json"), "--claims", str(out / "c.json"),
                 "--figure", str(out / "f.svg"), "--table", str(out / "t.csv")]) == 0
    for row in read_claims(out / "c.json"):
        if row["claim_id"].startswith("quant_table1"):  # the paper's Table 1 is pruned: no value beside ours
            assert row["paper_value"] is None and "no pruning" in row["scale_note"]
