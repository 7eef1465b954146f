"""Multi-process training (DDP, issue 10 part 2): 2 gloo ranks on CPU train what 1 process trains.

Each training entry point is run once as 1 process and once under ``torchrun --standalone
--nproc_per_node=2`` on the same *global* batch and seed; final weights / metrics must agree within
float32 summation-order noise (tolerances below; observed differences are ~1e-7). BatchNorm: the
models keep their BatchNorm layers, which DDP runs synchronised (``GlooSyncBatchNorm`` on CPU,
``torch.nn.SyncBatchNorm`` on GPUs), so batch statistics are those of the whole (micro-)batch as in
the 1-process run; the first test checks that layer against BatchNorm on the concatenated batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from repro.common.distributed import DistInfo, GlooSyncBatchNorm, dist_env, shard

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from test_detect_cli import TINY as DETECT_TINY  # noqa: E402
from test_detect_cli import _write_split  # noqa: E402
from test_lars_study import CFG as LARS_CFG  # noqa: E402
from test_lars_study import _arrays  # noqa: E402

RTOL = 1e-5  # relative tolerance on losses/metrics between 1 and 2 ranks (float32 reduction order)
WEIGHT_ATOL = 1e-5  # absolute tolerance on final weights (observed <= 5e-7 after 4 detector steps)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(module: str, args: list[str], *, nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", module, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


# ------------------------------------------------------------------ the helper module itself
def test_dist_env_reads_torchrun_then_srun_step_else_one_process(monkeypatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID",
              "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    assert dist_env() == DistInfo()
    monkeypatch.setenv("SLURM_NTASKS", "4")  # a batch script with 4 tasks but one python: no world of 4
    assert dist_env() == DistInfo()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")  # srun -n 4: one task of a 4-task step
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert dist_env() == DistInfo(rank=2, world_size=4, local_rank=0)
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's variables win
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_env() == DistInfo(rank=1, world_size=2, local_rank=1)


def test_shard_is_strided_covers_the_batch_and_refuses_an_empty_rank() -> None:
    idx = torch.arange(7)
    parts = [shard(idx, DistInfo(r, 3, r)) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard(idx, DistInfo()) is idx
    with pytest.raises(ValueError, match="cannot be split over 3 ranks"):
        shard(torch.arange(2), DistInfo(0, 3, 0))


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                         nn.BatchNorm1d(3))


def _bn_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error to a fixed random target (a plain sum of y^2 after BatchNorm is ~constant)."""
    return (y - target).pow(2).sum()


def _bn_rank(rank: int, world: int, rdv: str, x: torch.Tensor, target: torch.Tensor, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    net = GlooSyncBatchNorm.convert(_bn_net())
    y = net(x[rank::world])
    (_bn_loss(y, target[rank::world]) * world / len(x)).backward()  # this rank's share of the global mean
    for p in net.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world  # DDP's average
    if rank == 0:
        torch.save({"y": y.detach(), "grads": [p.grad for p in net.parameters()], "state": net.state_dict()}, out)
    dist.destroy_process_group()


def test_gloo_sync_batchnorm_equals_batchnorm_over_the_whole_batch(tmp_path: Path) -> None:
    """Forward, gradients and running statistics of 2 ranks x 4 samples = BatchNorm over the 8."""
    gen = torch.Generator().manual_seed(1)
    x, target = torch.randn(8, 3, 8, 8, generator=gen), torch.randn(8, 3, generator=gen)
    ref = _bn_net()
    y = ref(x)
    (_bn_loss(y, target) / len(x)).backward()
    mp.spawn(_bn_rank, args=(2, str(tmp_path / "rdv"), x, target, str(tmp_path / "out.pt")), nprocs=2)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    torch.testing.assert_close(got["y"], y[0::2].detach(), rtol=1e-5, atol=1e-5)
    for g, p in zip(got["grads"], ref.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    # real gradients, not rounding noise (a bias right before a BatchNorm has none)
    assert min(p.grad.abs().max() for n, p in ref.named_parameters() if n not in ("0.bias", "4.bias")) > 1e-3
    for k, v in ref.state_dict().items():  # same keys: checkpoints load into plain BatchNorm
        torch.testing.assert_close(got["state"][k], v, rtol=1e-5, atol=1e-6)
    # control: a per-rank (unsynchronised) BatchNorm sees other statistics
    local = _bn_net()(x[0::2])
    assert (local - y[0::2]).abs().max() > 1e-2


# ------------------------------------------------------------------ LARS study cell
def test_lars_cell_two_ranks_match_one_process(tmp_path: Path) -> None:
    """alexnet_bn + LARS, global batch 32 in micro-batches of 16 (no_sync accumulation, synced BN),
    83 training images so the last batch (19 = 16 + 3) splits unevenly over the ranks."""
    from repro.lars.cli import main

    np.savez(tmp_path / "cls.npz", **_arrays(n_train=104, n_test=40, size=8))
    cfg = {**LARS_CFG, "seeds": 1, "micro_batch": 16, "checkpoint_every": 2,
           "lars": {**LARS_CFG["lars"], "lrs": {"alexnet_bn": [5.0]}}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    common = ["cell", "--config", str(tmp_path / "cfg.json"), "--seed", "0", "--threads", "1",
              "--in", str(tmp_path / "cls.npz"), "--model", "alexnet_bn", "--arm", "lars", "--batch", "32",
              "--epochs", "2"]
    assert main([*common, "--out", str(tmp_path / "one.json")]) == 0
    _torchrun("repro.lars", [*common, "--out", str(tmp_path / "two.json"), "--checkpoint-dir", str(tmp_path / "ck")])
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["world_size"] == 1 and two["world_size"] == 2 and one["data"]["n_train"] == 83
    (a,), (b,) = one["runs"], two["runs"]
    assert a["steps"] == b["steps"] == 6 and not a["diverged"] and not b["diverged"]
    assert a["val_acc"] == b["val_acc"] and a["test_acc"] == b["test_acc"]
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=RTOL)
    assert b["epoch_train_loss"] == pytest.approx(a["epoch_train_loss"], rel=RTOL)
    assert (tmp_path / "ck" / "latest.pt").is_file()  # rank 0 wrote the checkpoint


# ------------------------------------------------------------------ detection
def test_detect_train_two_ranks_match_one_process(tmp_path: Path) -> None:
    """FPN Faster R-CNN (tiny ResNet with BatchNorm), global batch 4, 4 SGD steps: same weights,
    per-step losses and COCO metrics from 1 process and from 2 ranks of 2 images."""
    from repro.detect.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _write_split(data, "train", 8, rng)
    _write_split(data, "val", 3, rng)
    cfg = json.dumps({**DETECT_TINY, "batch_size": 4, "iterations": 4, "checkpoint_every": 2})

    def args(out: Path) -> list[str]:
        out.mkdir()
        return ["train", "--model", "fpn", "--config", cfg, "--seed", "0", "--threads", "1", "--in", str(data),
                "--out", str(out / "metrics.json"), "--weights-out", str(out / "model.pt"),
                "--metrics-csv", str(out / "steps.csv"), "--checkpoint-dir", str(out / "ck"), "--device", "cpu"]

    assert main(args(tmp_path / "one")) == 0
    _torchrun("repro.detect", args(tmp_path / "two"))
    w1, w2 = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("one", "two"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1)
    assert worst < WEIGHT_ATOL, worst
    ck = torch.load(tmp_path / "two" / "ck" / "latest.pt", weights_only=True)  # written by rank 0 alone
    assert ck["step"] == 4 and all(torch.equal(ck["model"][k], w2[k]) for k in w2)
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert m1["bbox"] == pytest.approx(m2["bbox"]) and m1["rpn"] == pytest.approx(m2["rpn"])
    assert m2["final_losses"] == pytest.approx(m1["final_losses"], rel=RTOL)
    rows1, rows2 = (np.loadtxt(tmp_path / n / "steps.csv", delimiter=",", skiprows=1) for n in ("one", "two"))
    assert rows1.shape == rows2.shape == (4, 7)
    np.testing.assert_allclose(rows2, rows1, rtol=1e-4)  # the CSV keeps 6 significant digits
