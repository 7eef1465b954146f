"""repro.common: atomic I/O, provenance, claims contract, checkpoints, seeding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.common import ClaimRow, ci95, verdict_from_ci, write_claims
from repro.common.checkpoint import RunCheckpoint, rng_state, run_identity, set_rng_state
from repro.common.claims import CLAIM_KEYS, read_claims
from repro.common.io import atomic_write_json, read_json
from repro.common.provenance import sidecar_path, write_provenance
from repro.common.runtime import seed_everything


def test_atomic_json_roundtrip_with_numpy(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a" / "b.json", {"x": np.float32(1.5), "y": np.arange(3)})
    assert read_json(path) == {"x": 1.5, "y": [0, 1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temp file left behind


def test_read_json_names_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(bad)


def test_provenance_has_config_seed_commit_packages(tmp_path: Path) -> None:
    out = tmp_path / "result.npz"
    out.write_bytes(b"x")
    write_provenance(out, {"lr": 0.1}, 7, started="2026-01-01T00:00:00+00:00", stage="t")
    rec = read_json(sidecar_path(out))
    assert rec["config"] == {"lr": 0.1} and rec["seed"] == 7
    assert rec["git_commit"] and rec["packages"]["torch"] == torch.__version__.split("+")[0]
    assert rec["started"] and rec["finished"] and rec["host"]
    folder = tmp_path / "folder"
    folder.mkdir()
    assert sidecar_path(folder) == folder / "provenance.json"


def test_ci95_matches_student_t() -> None:
    mean, ci = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert ci == pytest.approx([2.0 - half, 2.0 + half])
    assert ci95([5.0]) == (5.0, None)
    assert ci95([]) == (None, None)


@pytest.mark.parametrize(
    "ci, higher, expected",
    [([0.1, 0.3], True, "holds"), ([-0.3, -0.1], True, "fails"), ([-0.1, 0.2], True, "inconclusive"),
     (None, True, "inconclusive"), ([-0.3, -0.1], False, "holds")],
)
def test_verdict_from_ci(ci, higher, expected) -> None:
    assert verdict_from_ci(ci, higher_is_better=higher) == expected


def _row(**kw) -> dict:
    row = dict(paper="1612.03144", claim_id="fpn_ap", claim="FPN beats C4.", metric="AP", paper_value=33.9,
               ours_mean=0.5, ours_ci95=[0.4, 0.6], n_seeds=2, verdict="holds", scale_note="tiny")
    row.update(kw)
    return row


def test_claims_contract_roundtrip_and_rejections(tmp_path: Path) -> None:
    path = tmp_path / "claims" / "x.json"
    write_claims(path, [ClaimRow(**_row()), _row(claim_id="b", ours_mean=None, ours_ci95=None, verdict="inconclusive")])
    rows = read_claims(path)
    assert [tuple(r) for r in rows] == [CLAIM_KEYS, CLAIM_KEYS]
    assert json.loads(path.read_text())[1]["ours_mean"] is None
    with pytest.raises(ValueError, match="verdict"):
        write_claims(path, [_row(verdict="maybe")])
    extra = _row()
    extra["extra"] = 1
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        write_claims(path, [extra])


def _identity(tmp_path: Path, **config) -> dict:
    return run_identity(stage="t", config={"lr": 0.1, "threads": 2, **config}, seed=0, ignore=("threads",),
                        inputs={"data": tmp_path / "data.npz"}, model="fpn")


def test_checkpoint_roundtrip_weights_only_and_rng(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_bytes(b"x")
    ckpt = RunCheckpoint(tmp_path / "ck", _identity(tmp_path))
    assert ckpt.resume() is None
    seed_everything(3)
    model = torch.nn.Linear(2, 2)
    ckpt.save({"model": model.state_dict(), "step": 5, "rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3))
    state = RunCheckpoint(tmp_path / "ck", _identity(tmp_path, threads=8)).resume()  # threads: not the run's shape
    assert state["step"] == 5
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    ckpt.finish()
    assert not (tmp_path / "ck").exists()  # a finished job's checkpoint (and its emptied folder) is deleted
    assert RunCheckpoint(tmp_path / "ck", _identity(tmp_path)).resume() is None  # a finished run is never resumed


@pytest.mark.parametrize("change, reason", [
    ("config", "config.lr: 0.1 -> 0.2"),
    ("seed", "seed: 0 -> 1"),
    ("input", "input 'data' changed"),
])
def test_checkpoint_of_another_run_is_set_aside(tmp_path: Path, change: str, reason: str) -> None:
    """One policy for every stage: the checkpoint of another config, seed or input is moved aside with a
    WARNING naming the difference, and the run starts fresh (resume() is None)."""
    data = tmp_path / "data.npz"
    data.write_bytes(b"x")
    RunCheckpoint(tmp_path / "ck", _identity(tmp_path)).save({"step": 3})
    new = _identity(tmp_path)
    if change == "config":
        new = _identity(tmp_path, lr=0.2)
    elif change == "seed":
        new["seed"] = 1
    else:
        data.write_bytes(b"xy")  # e.g. the upstream job reran with another n_train
        new = _identity(tmp_path)
    logs: list[str] = []
    assert RunCheckpoint(tmp_path / "ck", new, log=logs.append).resume() is None
    assert len(logs) == 1 and f"belongs to another run ({reason})" in logs[0] and "starting fresh" in logs[0]
    assert (tmp_path / "ck" / "latest.stale.pt").exists() and not (tmp_path / "ck" / "latest.pt").exists()


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 garbage", None])
def test_corrupt_checkpoint_is_named_and_set_aside(tmp_path: Path, damage: bytes | None) -> None:
    (tmp_path / "data.npz").write_bytes(b"x")
    ckpt = RunCheckpoint(tmp_path / "ck", _identity(tmp_path))
    ckpt.save({"model": torch.nn.Linear(30, 30).state_dict(), "step": 1})
    path = tmp_path / "ck" / "latest.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage is None else damage)  # None: truncated
    logs: list[str] = []
    assert RunCheckpoint(tmp_path / "ck", _identity(tmp_path), log=logs.append).resume() is None
    assert logs[0].startswith(f"WARNING: checkpoint {path} cannot be read") and "latest.corrupt.pt" in logs[0]
    assert (tmp_path / "ck" / "latest.corrupt.pt").exists() and not path.exists()


def test_identity_of_a_folder_covers_every_file(tmp_path: Path) -> None:
    from repro.common.checkpoint import file_identity

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "a.png").write_bytes(b"1")
    before = file_identity(tmp_path / "d")
    assert before["files"] == 1 and file_identity(tmp_path / "d") == before
    (tmp_path / "d" / "b.json").write_text("{}")
    assert file_identity(tmp_path / "d") != before
    with pytest.raises(FileNotFoundError, match="nope"):
        file_identity(tmp_path / "nope")


def test_check_config_accepts_every_shipped_config_and_names_nested_keys() -> None:
    """The stage CLIs' config check (repro.common.config) follows the schema's internal $refs: every
    shipped config passes whole and by section, and a bad nested value is named by its full key."""
    import yaml

    from repro.common.config import check_config
    from repro.common.errors import ConfigError

    def merge(a: dict, b: dict) -> dict:  # as Snakemake merges --configfile over config.yaml
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "config.yaml").read_text())
    for extra in ("smoke.yaml", "full.yaml"):
        check_config(merge(base, yaml.safe_load((root / "workflow" / "configs" / extra).read_text())), "")
    check_config(base["lars"], "lars")
    with pytest.raises(ConfigError, match="config key 'lars.lars.scaling': 'cubic' is not one of"):
        check_config({"lars": {**base["lars"], "lars": {**base["lars"]["lars"], "scaling": "cubic"}}}, "")
    with pytest.raises(ConfigError, match="config key 'graph.features.lrr': unknown key"):
        check_config({"lrr": 1}, ("graph.features", "graph"))
    with pytest.raises(ConfigError, match="config key 'detect.iterations': -3 is less than the minimum of 1"):
        check_config({"iterations": -3}, "detect")
