"""Multi-process training (DDP): 2 gloo ranks on CPU train what 1 process trains.

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
import re
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

pytestmark = pytest.mark.slow  # 1-vs-2-process runs under torchrun: `make test`, not `make test-fast`


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(module: str, args: list[str], *, nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    """``module`` on ``nproc`` ranks; each finished checkpoint is kept as ``finished.pt`` to be read."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).with_name("keep_finished.py")), module, *args]
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
    assert (tmp_path / "ck" / "finished.pt").is_file()  # rank 0 wrote the checkpoint


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
                "--metrics-csv", str(out / "steps.csv"), "--checkpoint-dir", str(out / "ck")]

    assert main(args(tmp_path / "one")) == 0
    _torchrun("repro.detect", args(tmp_path / "two"))
    w1, w2 = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("one", "two"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1)
    # the detectors run channels-last: a batch of 2 per rank and one of 4 pick different conv kernels, whose
    # float32 sums differ in order (about 3e-5 after 4 steps); a wrong gradient average would be ~1e-2
    assert worst < 10 * WEIGHT_ATOL, worst
    ck = torch.load(tmp_path / "two" / "ck" / "finished.pt", weights_only=True)  # written by rank 0 alone
    assert ck["step"] == 4 and all(torch.equal(ck["model"][k], w2[k]) for k in w2)
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert m1["bbox"] == pytest.approx(m2["bbox"]) and m1["rpn"] == pytest.approx(m2["rpn"])
    assert m2["final_losses"] == pytest.approx(m1["final_losses"], rel=RTOL)
    rows1, rows2 = (np.loadtxt(tmp_path / n / "steps.csv", delimiter=",", skiprows=1) for n in ("one", "two"))
    assert rows1.shape == rows2.shape == (4, 7)
    np.testing.assert_allclose(rows2, rows1, rtol=1e-4)  # the CSV keeps 6 significant digits


# ------------------------------------------------------------------ autograd all-gather (pretrain's global batch)
def _gather_loss(g: torch.Tensor) -> torch.Tensor:
    """A loss that couples every row of the gathered batch (as the distractors of Sec. 4 do)."""
    from repro.pretrain.losses import pairwise_cosine_distance

    weights = torch.arange(len(g) ** 2).view(len(g), len(g)).sin()  # [n, n] fixed, unequal pair weights
    return (pairwise_cosine_distance(g, g) * weights).sum() + g.pow(3).mean()


def _gather_rank(rank: int, world: int, rdv: str, x: torch.Tensor, out: str) -> None:
    from repro.common.distributed import all_gather_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = nn.Linear(3, 4)
    g = all_gather_rows(net(x[rank::world]), DistInfo(rank, world, rank), len(x))  # [n, 4] in global order
    _gather_loss(g).backward()
    for p in net.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world  # DDP's average
    if rank == 0:
        torch.save({"g": g.detach(), "grads": [p.grad for p in net.parameters()]}, out)
    dist.destroy_process_group()


def test_all_gather_rows_gradient_equals_the_one_process_gradient(tmp_path: Path) -> None:
    """all_gather_rows over 2 ranks (7 rows: uneven shards, padded for gloo) gives the 1-process rows in
    global order, and its SUM backward + DDP's average give the 1-process gradient of a coupled loss."""
    from repro.common.distributed import all_gather_rows

    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    ref = nn.Linear(3, 4)
    y = ref(x)
    assert all_gather_rows(y, DistInfo(), len(x)) is y  # one process: the rows themselves
    _gather_loss(y).backward()
    mp.spawn(_gather_rank, args=(2, str(tmp_path / "rdv"), x, str(tmp_path / "out.pt")), nprocs=2)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    torch.testing.assert_close(got["g"], y.detach(), rtol=1e-6, atol=1e-6)
    for g, p in zip(got["grads"], ref.parameters()):
        assert p.grad.abs().max() > 1e-2  # a real gradient, not rounding noise
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ Triplet-Siamese pretraining
def test_pretrain_train_two_ranks_match_one_process(tmp_path: Path) -> None:
    """tiny_resnet (width 8, BatchNorm) on 16x16 patches, global batch 4 pairs (8 patches, all of them the
    distractor pool of Sec. 4), 4 SGD steps: the same per-step losses and final weights from 1 process
    and 2 ranks; rank 0's checkpoint (unwrapped keys) resumes a 1-process run to the same weights."""
    import shutil

    from repro.pretrain.cli import main

    from test_pretrain import CFG as PRETRAIN_CFG
    from test_pretrain import _write_inputs

    patches, pairs, _ = _write_inputs(tmp_path, n_nodes=32, size=16)  # 12 transitive pairs, 5 parents
    cfg = json.dumps({**PRETRAIN_CFG, "width": 8, "steps": 4, "batch": 4, "checkpoint_every": 2})

    def args(name: str, ckpt: str | None = None) -> list[str]:
        d = tmp_path / name
        return ["train", "--config", cfg, "--seed", "0", "--threads", "1", "--arm", "transitive", "--patches",
                str(patches), "--pairs", str(pairs), "--out-backbone", str(d / "backbone.pt"), "--out-net",
                str(d / "net.pt"), "--out-metrics", str(d / "metrics.csv"), "--out-summary", str(d / "train.json"),
                "--checkpoint-dir", str(tmp_path / (ckpt or name) / "ck")]

    assert main(args("one")) == 0
    _torchrun("repro.pretrain", args("two"))
    w1, w2 = (torch.load(tmp_path / n / "net.pt", weights_only=True) for n in ("one", "two"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1)
    assert worst < WEIGHT_ATOL, worst
    assert max((w1[k].double() - torch.load(tmp_path / "two" / "ck" / "finished.pt", weights_only=True)["model"][k]
                .double()).abs().max().item() for k in w1) > 1e-3  # the step-2 checkpoint is not the final net
    rows1, rows2 = (np.loadtxt(tmp_path / n / "metrics.csv", delimiter=",", skiprows=1)[:, :-1] for n in ("one", "two"))
    assert rows1.shape == rows2.shape == (4, 8) and (rows1[:, 7] == 4).all()  # every anchor found a distractor
    np.testing.assert_allclose(rows2[:, 3], rows1[:, 3], rtol=RTOL)  # per-step ranking loss (6 significant digits)
    np.testing.assert_allclose(rows2, rows1, rtol=1e-4)
    s1, s2 = (json.loads((tmp_path / n / "train.json").read_text()) for n in ("one", "two"))
    assert (s1["world_size"], s2["world_size"]) == (1, 2)
    assert s2["first_loss"] == pytest.approx(s1["first_loss"], rel=RTOL)
    assert s2["final_loss"] == pytest.approx(s1["final_loss"], rel=RTOL)
    (tmp_path / "resumed" / "ck").mkdir(parents=True)  # the 2-rank run's step-2 checkpoint -> 1 process
    shutil.copy(tmp_path / "two" / "ck" / "finished.pt", tmp_path / "resumed" / "ck" / "latest.pt")
    assert main(args("resumed")) == 0
    w3 = torch.load(tmp_path / "resumed" / "net.pt", weights_only=True)
    assert max((w1[k].double() - w3[k].double()).abs().max().item() for k in w1) < WEIGHT_ATOL


# ------------------------------------------------------------------ GANs
GAN_LR = 1e-3


def _gan_exp(**kw) -> dict:
    return {"steps": 6, "eval_every": 3, "checkpoint_every": 3, "batch_size": 16, "z_dim": 8, "g_hidden": 16,
            "d_hidden": 16, "n_generators": 4, "lr": GAN_LR, "init_std": 0.2, **kw}


def _pre_bn_free(net: nn.Module) -> set[str]:
    """Biases feeding straight into a BatchNorm, and that BatchNorm's running mean: the bias's gradient is
    analytically 0 (BN subtracts the batch mean), so Adam's g / (sqrt(v) + eps) turns float32 rounding noise
    into steps of up to ~lr there, in a 1-process run as much as across ranks; nothing else depends on it."""
    free, prev = set(), None
    for name, m in net.named_modules():
        if list(m.children()):
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and getattr(prev and prev[1], "bias", None) is not None:
            free |= {f"{prev[0]}.bias", f"{name}.running_mean"}
        prev = (name, m)
    return free


def _gan_rank(rank: int, world: int, rdv: str, arms: list[str], out: str) -> None:
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config
    from repro.gan.engine import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    weights = {arm: _gan_engine_run(arm, DistInfo(rank, world, rank), build_arm, experiment_config, train)
               for arm in arms}
    if rank == 0:
        torch.save(weights, out)
    dist.destroy_process_group()


def _gan_engine_run(arm: str, info: DistInfo, build_arm, experiment_config, train) -> dict:
    """Train one MLP arm for 6 steps on a fixed 2-D point cloud; final weights and loss history."""
    real = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    cfg = experiment_config({"experiments": {"ring8": _gan_exp()}}, "ring8")
    torch.manual_seed(0)
    setup = build_arm(arm, cfg, data_shape=(2,), device="cpu", dist=info)
    hist = train(setup, sample_real=lambda n: real[torch.randint(len(real), (n,))], steps=6, batch_size=16,
                 device=torch.device("cpu"), evaluate=lambda s: {}, eval_every=3, dist=info, log=lambda m: None)
    losses = torch.tensor([[v for k, v in row.items() if k.startswith("loss")] for row in hist], dtype=torch.float64)
    return {"nets": {k: net.state_dict() for k, net in setup.nets.items()}, "losses": losses}


def test_gan_arms_step_patterns_two_ranks_match_one_process(tmp_path: Path) -> None:
    """DDP's reducer under every arm's pattern: D forwarded for the D and the G step (gan), G forwarded
    twice before one backward (reggan: G(z), G(E(x))), a no_grad forward and two discriminators (mdgan),
    a zero-weight classifier term (mgan_beta0): 2 ranks x 8 reals train what 1 process x 16 trains."""
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config
    from repro.gan.engine import train

    arms = ["gan", "reggan", "mdgan", "mgan_beta0"]
    mp.spawn(_gan_rank, args=(2, str(tmp_path / "rdv"), arms, str(tmp_path / "out.pt")), nprocs=2)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    for arm in arms:
        ref = _gan_engine_run(arm, DistInfo(), build_arm, experiment_config, train)
        torch.testing.assert_close(got[arm]["losses"], ref["losses"], rtol=RTOL, atol=0)
        for net, state in ref["nets"].items():
            for k, v in state.items():
                assert (got[arm]["nets"][net][k].double() - v.double()).abs().max() < WEIGHT_ATOL, (arm, net, k)


def test_gan_batch_not_divisible_by_the_ranks_names_the_key() -> None:
    from repro.gan.arms import build_arm, check_world_size
    from repro.gan.config import experiment_config

    cfg = experiment_config({"experiments": {"ring8": _gan_exp(batch_size=12, n_generators=4)}}, "ring8")
    setup = build_arm("mgan", cfg, data_shape=(2,), device="cpu")  # 3 fakes per generator
    check_world_size(setup, 12, 1, "gan.experiments.ring8")
    check_world_size(setup, 12, 3, "gan.experiments.ring8")
    with pytest.raises(ValueError, match=r"'gan.experiments.ring8.batch_size' = 12 is not divisible by the 5 ranks"):
        check_world_size(setup, 12, 5, "gan.experiments.ring8")
    with pytest.raises(ValueError, match=r"3 fakes per generator .*'gan.experiments.ring8.fakes_per_generator'"):
        check_world_size(setup, 12, 2, "gan.experiments.ring8")


def _gan_image_data(root: Path, exp: dict) -> list[str]:
    """A tiny MNIST-format set (random 28x28 digits in idx files, padded to 32x32) and its scorer."""
    from repro.gan.cli import main

    from test_gan_pipeline import _idx

    rng = np.random.default_rng(0)
    (root / "mnist").mkdir(parents=True)
    for split, n in (("train", 32), ("t10k", 10)):
        _idx(root / "mnist" / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz=False)
        _idx(root / "mnist" / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, gz=False)
    cfg = json.dumps({"seeds": 1, "plot_samples": 16, "metrics": {"eval_samples": 20}, "experiments": {"mnist": exp}})
    assert main(["scorer", "--config", cfg, "--seed", "0", "--threads", "1", "--experiment", "mnist", "--in",
                 str(root / "mnist"), "--out", str(root / "scorer.pt"), "--metrics", str(root / "scorer.json")]) == 0
    return ["--config", cfg, "--in", str(root / "mnist"), "--scorer", str(root / "scorer.pt")]


@pytest.mark.parametrize("case", ["mgan_ring8_mlp", "gan_mnist_dcgan"])
def test_gan_train_two_ranks_match_one_process(tmp_path: Path, case: str) -> None:
    """``python -m repro.gan train`` as 1 process and as 2 torchrun ranks: MGAN (K=4 generators, MLP, 2 of
    each generator's 4 fakes per rank) on ring8, and the GAN arm's DCGAN nets (BatchNorm, synchronised;
    D sees real and fake batches separately) on 32x32 images: the same per-evaluation losses and metrics,
    and the same final weights (for biases right before a BatchNorm see :func:`_pre_bn_free`)."""
    from repro.gan.cli import main

    arm, experiment = case.split("_")[:2]
    if experiment == "ring8":
        from repro.data.mixtures import write_mixtures

        write_mixtures(tmp_path / "mixtures", {"n_samples": 500}, 0)
        cfg = json.dumps({"seeds": 1, "plot_samples": 64, "metrics": {"eval_samples": 200, "w1_samples": 50},
                          "experiments": {"ring8": _gan_exp(arms=["mgan"])}})
        common = ["--config", cfg, "--in", str(tmp_path / "mixtures" / "ring8.npz")]
    else:
        common = _gan_image_data(tmp_path / "data", _gan_exp(
            arms=["gan"], model="dcgan", width=4, z_dist="uniform11", batch_size=8, scorer_epochs=1,
            scorer_batch_size=16))

    def args(name: str) -> list[str]:
        d = tmp_path / name
        return ["train", *common, "--seed", "0", "--threads", "1", "--experiment", experiment, "--arm", arm,
                "--out", str(d / "r.json"), "--samples", str(d / "s.npz"), "--weights", str(d / "w.pt"),
                "--metrics-csv", str(d / "m.csv"), "--checkpoint-dir", str(d / "ck")]

    assert main(args("one")) == 0
    _torchrun("repro.gan", args("two"))
    r1, r2 = (json.loads((tmp_path / n / "r.json").read_text()) for n in ("one", "two"))
    assert (r1["world_size"], r2["world_size"]) == (1, 2)
    assert [row["step"] for row in r2["history"]] == [row["step"] for row in r1["history"]] == [3, 6]
    for a, b in zip(r1["history"], r2["history"]):
        assert a.keys() == b.keys()
        for k in a:
            if k != "train_s":
                assert b[k] == pytest.approx(a[k], rel=RTOL, abs=1e-9), k  # losses and metrics
    w1, w2 = (torch.load(tmp_path / n / "w.pt", weights_only=True) for n in ("one", "two"))
    ck = torch.load(tmp_path / "two" / "ck" / "finished.pt", weights_only=True)  # rank 0's, unwrapped keys
    assert ck["step"] == 6 and w1.keys() == w2.keys() == ck["nets"].keys()
    free_seen = 0
    for net in w1:
        assert w1[net].keys() == w2[net].keys() == ck["nets"][net].keys()
        free = _pre_bn_free(_net_module(arm, experiment, net))
        for k, v in w1[net].items():
            diff = (w2[net][k].double() - v.double()).abs().max().item()
            free_seen += k in free
            assert diff < (2 * GAN_LR * 6 if k in free else WEIGHT_ATOL), (net, k, diff)
    # DCGAN: incl. the bias and running mean of the BatchNorm after D's first conv
    assert free_seen == (0 if experiment == "ring8" else 12)


def _net_module(arm: str, experiment: str, net: str) -> nn.Module:
    """The plain module of one net of the tests' GAN configs (for its layer order)."""
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config

    if experiment == "ring8":
        return build_arm(arm, experiment_config({"experiments": {"ring8": _gan_exp()}}, "ring8"), data_shape=(2,),
                         device="cpu").nets[net]
    cfg = experiment_config({"experiments": {"mnist": _gan_exp(model="dcgan", width=4, batch_size=8)}}, "mnist")
    return build_arm(arm, cfg, data_shape=(1, 32, 32), device="cpu").nets[net]


# ------------------------------------------------------------------ through the pipeline (config gpus_per_job)
DDP_RULES = {"lars_cell", "detect_train", "detect_transfer", "pretrain_train", "gan_train", "gan_train_seeds"}
TORCHRUN_2 = "torchrun --standalone --nproc_per_node=2 -m repro."


def _dry_run_jobs(workdir: Path, gpus_per_job: int) -> dict[tuple[str, str], tuple[str, dict[str, str], int]]:
    """``snakemake -n -p`` of the smoke DAG: (rule, outputs) -> (shell command, resources, threads) of each job."""
    from conftest import SMOKE, run_snakemake

    # digits at its own seed count: one gan_train job per seed beside ring8's gan_train_seeds jobs
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "digits_seeds.yaml").write_text("gan: {experiments: {digits: {seeds: 1}}}\n")
    proc = run_snakemake(["-n", "-p", "--configfile", str(SMOKE), str(workdir / "digits_seeds.yaml"),
                          "--config", f"gpus_per_job={gpus_per_job}"], workdir, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    jobs = {}
    text = proc.stdout + proc.stderr
    for name, body in re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\s*$|\Z)", text, flags=re.M | re.S):
        res = re.search(r"^\s+resources: (.*)$", body, flags=re.M)
        res = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        threads = re.search(r"^\s+threads: (\d+)$", body, flags=re.M)
        shell = re.search(r"^Shell command: (.*)$", body, flags=re.M)
        output = re.search(r"^\s+output: (.*)$", body, flags=re.M)
        if shell and shell.group(1) != "None":  # rule all has no command
            jobs[(name, output.group(1))] = (shell.group(1), res, int(threads.group(1)) if threads else 1)
    return jobs


def test_gpus_per_job_launches_the_training_rules_with_torchrun(tmp_path: Path) -> None:
    """Dry runs (-n -p) of the smoke DAG: with gpus_per_job=2 the six DDP training rules start
    ``torchrun --standalone --nproc_per_node=2 -m repro.<stage>`` and declare gpu=2 and
    cpus_per_task=2 x threads; every other job, and every job with gpus_per_job=1, is ``python -m``
    as before the key existed; apart from the launcher the two runs' commands are identical (the
    batch sizes etc. stay those of the config: global batches)."""
    one = _dry_run_jobs(tmp_path / "one", 1)
    two = _dry_run_jobs(tmp_path / "two", 2)
    assert DDP_RULES <= {name for name, _ in two}, "the smoke DAG should have a job of every DDP training rule"
    assert one.keys() == two.keys()
    for (name, _), (cmd, res, threads) in one.items():
        assert cmd.startswith("python -m repro."), (name, cmd[:120])
        assert res.get("gpu", "0") == ("1" if name in DDP_RULES else "0"), (name, res)
        if name in DDP_RULES:
            assert res.get("cpus_per_task") == str(threads), (name, threads, res)
    for (name, outputs), (cmd2, res, threads) in two.items():
        cmd1 = one[(name, outputs)][0]
        if name in DDP_RULES:
            assert cmd2.startswith(TORCHRUN_2), (name, cmd2[:120])
            assert cmd2 == cmd1.replace("python -m repro.", TORCHRUN_2, 1), name
            assert (res.get("gpu"), res.get("cpus_per_task")) == ("2", str(2 * threads)), (name, threads, res)
        else:
            assert cmd2 == cmd1 and cmd2.startswith("python -m repro."), (name, cmd2[:120])
            assert res.get("gpu", "0") == "0" and "cpus_per_task" not in res, (name, res)


def test_gpus_per_job_2_runs_a_lars_cell_as_two_gloo_ranks_through_snakemake(tmp_path: Path) -> None:
    """A real run of one smoke lars cell (and its data) through Snakemake with gpus_per_job=2: torchrun
    starts 2 ranks (gloo on CPU), the cell completes and records world_size 2 (~10 s on 2 cores)."""
    from conftest import SMOKE, run_snakemake

    target = "results/lars/cells/alexnet_bn/lars/b32_e1.json"  # a cell of the smoke config
    proc = run_snakemake([target, "--cores", "2", "--configfile", str(SMOKE), "--config", "gpus_per_job=2"],
                         tmp_path, timeout=300)
    log = tmp_path / "results" / "logs" / "lars" / "cell_alexnet_bn_lars_b32_e1.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    assert f"Shell command: {TORCHRUN_2}lars cell" in proc.stdout + proc.stderr
    result = json.loads((tmp_path / target).read_text())
    assert result["world_size"] == 2
    assert {"(rank 0 of 2)", "(rank 1 of 2)"} <= set(re.findall(r"\(rank \d of \d\)", log.read_text()))


def test_gpus_per_job_below_1_fails_before_any_job_naming_the_key(tmp_path: Path) -> None:
    from conftest import SMOKE, run_snakemake

    proc = run_snakemake(["-n", "--configfile", str(SMOKE), "--config", "gpus_per_job=0"], tmp_path, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config key 'gpus_per_job'" in out and "minimum" in out, out[-2000:]
