"""Mixed precision (``repro.common.amp``): off on the CPU with the numbers of the fp32 path, the config key
checked, runs resume across the switch, and the GradScaler's state round-trips through checkpoints.

The CUDA path itself (bf16 / fp16 autocast) runs in ``python -m bench.gpu``; its CPU self-test
(``tests/test_bench_gpu.py``) runs every engine under bf16 autocast on the CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from repro.common.amp import SCALER_KEY, Precision, full_precision, precision
from repro.common.checkpoint import RunCheckpoint, run_identity
from repro.common.config import check_config
from repro.common.errors import ConfigError

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from test_bad_input import interrupt_after_first_checkpoint  # noqa: E402
from test_quant_pipeline import _fake_digits, _tiny_config  # noqa: E402

STAGES = ("detect", "lars", "pretrain", "gan", "quant")


def test_auto_on_the_cpu_is_the_fp32_path() -> None:
    for mode in ("auto", "off", False):
        p = precision(mode, "cpu")
        assert not p.enabled and p.scaler is None and not p.channels_last and p.checkpoint_state() == {}
        net = nn.Conv2d(3, 4, 3)
        assert p.prepare(net).weight.is_contiguous()  # layout untouched
        with p.autocast():
            assert not torch.is_autocast_enabled("cpu")
    assert precision("auto", "cpu").describe() == "fp32 (amp off)"


def _lars_weights(prec: Precision | None) -> dict[str, torch.Tensor]:
    from repro.lars.data import Split
    from repro.lars.engine import train
    from repro.lars.models import build_model
    from repro.lars.optim import LARS, warmup_poly_schedule

    g = torch.Generator().manual_seed(0)
    data = Split(torch.randn(48, 3, 16, 16, generator=g), torch.randint(0, 4, (48,), generator=g))
    torch.manual_seed(0)
    model = build_model("alexnet_bn", num_classes=4, image_size=16, conv=[4, 4, 4], fc=8)
    model = (prec or Precision()).prepare(model)
    opt = LARS(model.parameters(), lr=1.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=1e-3)
    train(model, opt, warmup_poly_schedule(opt, 6, 0), data, batch_size=16, micro_batch=8, epochs=2, seed=0,
          precision=prec)
    return model.state_dict()


def _gan_weights(prec: Precision | None) -> dict[str, torch.Tensor]:
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config
    from repro.gan.engine import train

    exp = experiment_config({"experiments": {"ring8": {"steps": 4, "batch_size": 16, "z_dim": 4, "n_generators": 2,
                                                       "eval_every": 4, "checkpoint_every": 4}}}, "ring8")
    torch.manual_seed(0)
    setup = build_arm("mgan", exp, data_shape=(2,), device="cpu", precision=prec)
    real = torch.randn(64, 2)
    train(setup, sample_real=lambda n: real[torch.randint(64, (n,))], steps=4, batch_size=16,
          device=torch.device("cpu"), evaluate=lambda step: {}, eval_every=4, log=lambda msg: None)
    return {f"{k}.{n}": v for k, net in setup.nets.items() for n, v in net.state_dict().items()}


@pytest.mark.parametrize("weights", [_lars_weights, _gan_weights])
def test_amp_auto_on_the_cpu_gives_bit_identical_weights(weights) -> None:
    plain, auto = weights(None), weights(precision("auto", "cpu"))
    assert plain.keys() == auto.keys()
    assert all(torch.equal(plain[k], auto[k]) for k in plain)


@pytest.mark.parametrize("stage", STAGES)
def test_config_key_is_checked_and_named(stage: str) -> None:
    section = {"detect": "detect"}.get(stage, stage)
    for ok in ("auto", "off", False):  # YAML reads a bare `off` as false
        check_config({"amp": ok}, section)
    with pytest.raises(ConfigError, match=rf"config key '{stage}\.amp'"):
        check_config({"amp": "bf16"}, section)
    with pytest.raises(ConfigError, match=rf"config key '{stage}\.amp': 'on' is not one of"):
        precision("on", "cpu", key=f"{stage}.amp")


def test_default_is_auto_in_every_stage_section() -> None:
    from repro.common.config import section_defaults
    from repro.detect.config import resolve_config
    from repro.gan.config import stage_config

    assert all(section_defaults(s)["amp"] == "auto" for s in STAGES)
    assert resolve_config({})["amp"] == stage_config({})["amp"] == "auto"  # what a direct CLI call gets


@pytest.mark.parametrize("stage", ["detect", "lars", "pretrain"])
def test_amp_is_not_part_of_a_runs_identity(stage: str, tmp_path: Path) -> None:
    """A checkpoint written with amp off is this run's under amp auto, and the other way round."""
    from repro.detect.run import NOT_SHAPING_RUN as DETECT
    from repro.lars.study import NOT_SHAPING_RUN as LARS
    from repro.pretrain.cli import NOT_SHAPING_RUN as PRETRAIN

    ignore = {"detect": DETECT, "lars": LARS, "pretrain": PRETRAIN}[stage]
    (tmp_path / "in").write_text("x")

    def ckpt(amp: str) -> RunCheckpoint:
        return RunCheckpoint(tmp_path / "ck", run_identity(stage=stage, config={"lr": 0.1, "amp": amp}, seed=0,
                                                           inputs={"data": tmp_path / "in"}, ignore=ignore))

    for first, second in (("off", "auto"), ("auto", "off")):
        ckpt(first).save({"step": 3})
        assert ckpt(second).resume()["step"] == 3
    other = RunCheckpoint(tmp_path / "ck", run_identity(stage=stage, config={"lr": 0.2, "amp": "off"}, seed=0,
                                                        inputs={"data": tmp_path / "in"}, ignore=ignore))
    assert other.resume() is None  # a key that shapes the run still makes another run


@pytest.mark.parametrize("first,second", [("off", "auto"), ("auto", "off")])
def test_quant_run_resumes_across_the_switch(first: str, second: str, tmp_path: Path, monkeypatch,
                                             capsys: pytest.CaptureFixture) -> None:
    from repro.quant.cli import main

    data = _fake_digits(tmp_path / "digits.npz")
    cfg = _tiny_config()
    clean_cfg = {**cfg, "amp": second}
    clean = ["run", "--config", json.dumps(clean_cfg), "--seed", "0", "--threads", "1", "--net", "mlp_digits",
             "--in", str(data), "--out", str(tmp_path / "clean.json"), "--weights", str(tmp_path / "clean.pt")]
    assert main(clean) == 0
    args = ["run", "--config", json.dumps({**cfg, "amp": first}), "--seed", "0", "--threads", "1", "--net",
            "mlp_digits", "--in", str(data), "--out", str(tmp_path / "a.json"), "--weights", str(tmp_path / "a.pt"),
            "--checkpoint-dir", str(tmp_path / "ck")]
    interrupt_after_first_checkpoint(monkeypatch, lambda: main(args))
    args[args.index("--config") + 1] = json.dumps(clean_cfg)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "resumed from step" in err and "WARNING" not in err
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "clean"))
    assert a["train"] == b["train"]


# ------------------------------------------------------------------ the GradScaler's state
def _fp16_cpu(init_scale: float = 2.0**10) -> Precision:
    return Precision("cpu", torch.float16, torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1))


def test_scaler_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    from repro.quant.engine import TrainSpec, train
    from repro.quant.models import build_model

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(16,), in_shape=(1, 8, 8), num_classes=10)
    prec = _fp16_cpu()
    ck = RunCheckpoint(tmp_path / "ck", {"run": "amp"})
    train(model, torch.optim.Adam(model.parameters(), lr=1e-3), x, y, TrainSpec(epochs=1, batch_size=16, lr=1e-3),
          seed=0, ckpt=ck, ckpt_every=2, precision=prec)
    saved = ck.resume()
    assert saved[SCALER_KEY]["scale"] == prec.scaler.get_scale() > 2.0**10  # it grew every finite step
    fresh = _fp16_cpu()
    fresh.restore(saved)
    assert fresh.scaler.get_scale() == prec.scaler.get_scale()
    assert fresh.checkpoint_state() == prec.checkpoint_state()
    # without a scaler on either side: nothing saved, nothing restored, no error
    off = Precision()
    assert off.checkpoint_state() == {}
    off.restore(saved)
    untouched = _fp16_cpu(init_scale=8.0)
    untouched.restore({"step": 1})  # a checkpoint written without a scaler (amp off, bf16, CPU)
    assert untouched.scaler.get_scale() == 8.0


def test_scaler_step_skips_non_finite_gradients_and_unscales_before_clipping() -> None:
    from repro.gan.optim import Adam

    net = nn.Linear(3, 1)
    prec = _fp16_cpu(init_scale=4.0)
    opt = Adam(net.parameters(), lr=0.1)  # the GAN stage's own Adam: GradScaler reads its param_groups
    before = [p.detach().clone() for p in net.parameters()]
    prec.backward(net(torch.full((2, 3), float("inf"))).sum())
    prec.step(opt)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # skipped
    assert prec.scaler.get_scale() == 2.0  # backed off
    opt.zero_grad()
    prec.backward(net(torch.ones(2, 3)).sum() * 100)
    prec.step(opt, clip=(list(net.parameters()), 1.0))
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.nn.utils.get_total_norm([p.grad for p in net.parameters()]) <= 1.0 + 1e-4  # clipped unscaled


def test_lars_trust_ratios_and_hessian_run_in_fp32() -> None:
    from repro.lars.optim import LARS
    from repro.quant.hessian import hessian_diagonal

    net = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller inside autocast gets fp32 all the same
        h = hessian_diagonal(net, x, y, method="ggn", batch_size=4)
        with full_precision():
            assert not torch.is_autocast_enabled("cpu")
    assert all(v.dtype == torch.float32 for v in h.values())
    ref = hessian_diagonal(net, x, y, method="ggn", batch_size=4)
    assert all(torch.equal(h[k], ref[k]) for k in h)
    opt = LARS(net.parameters(), lr=0.1)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in net.parameters())
