"""Resume after kill: each long training rule's CLI (lars cell, detect train, quant run,
gan train, pretrain train) is started as a process with a checkpoint folder, SIGKILLed mid-training (once a checkpoint of an unfinished run exists), and rerun
with the same command. The rerun must say "resumed from step N" with 0 < N < total (so only the
remaining steps run; where the stage prints a progress bar, it starts at N) and its final weights and
metrics must equal an uninterrupted run's on CPU with the same seed *exactly* (timings and provenance
aside): the data order, augmentation and sampling are keyed by (seed, step) and the checkpoints hold
model, optimizer, scheduler and loss-tracking state.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from repro.common.checkpoint import RunCheckpoint  # noqa: E402

from test_detect_cli import TINY as DETECT_TINY  # noqa: E402
from test_detect_cli import _write_split  # noqa: E402
from test_lars_study import CFG as LARS_CFG  # noqa: E402
from test_lars_study import _arrays  # noqa: E402
from test_quant_pipeline import _fake_digits, _tiny_config  # noqa: E402

# keys whose values are wall-clock measurements or provenance, not results (and any key ending in "_s")
VOLATILE = {"provenance", "timings", "seconds", "cpu_seconds", "train_seconds", "infer_s_per_img", "threads"}

pytestmark = pytest.mark.slow  # processes killed and rerun: `make test`, not `make test-fast`


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _strip(obj: Any) -> Any:
    """``obj`` without the volatile keys (recursively)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _ckpt(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


def kill_mid_training(cmd: list[str], ckpt: Path, unfinished: Callable[[dict], bool], log: Path,
                      *, timeout: float = 120) -> dict:
    """Start ``cmd``; SIGKILL it as soon as ``ckpt`` holds a checkpoint of an unfinished run. Returns it."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + timeout
    try:
        while True:
            state = _ckpt(ckpt) if ckpt.exists() else None
            if state is not None and unfinished(state):
                os.kill(proc.pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before a mid-training checkpoint could be"
                            f" caught; make it longer:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    return state


def rerun(cmd: list[str], log: Path) -> tuple[str, int]:
    """Run ``cmd`` to the end; return its log and the step it says it resumed from."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    text = proc.stdout + proc.stderr
    log.write_text(text)
    assert proc.returncode == 0, text[-4000:]
    found = re.findall(r"resumed from step (\d+)", text)
    assert found, f"the rerun did not resume:\n{text[-3000:]}"
    return text, int(found[0])


def _assert_bar_starts_at(text: str, step: int, total: int) -> None:
    """tqdm's first line of the rerun shows ``step/total`` (and never ``0/total``): only the rest ran."""
    assert f" 0/{total} " not in text and f"| {step}/{total} " in text, text[-2000:]


# ------------------------------------------------------------------ LARS cell
def test_lars_cell_killed_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    from repro.lars.cli import main

    np.savez(tmp_path / "cls.npz", **_arrays(n_train=400, n_test=40, size=16))  # 320 train images
    cfg = {**LARS_CFG, "conv": [16, 32, 32], "fc": 32, "seeds": 1, "micro_batch": 16, "checkpoint_every": 2,
           "lars": {**LARS_CFG["lars"], "lrs": {"alexnet_bn": [5.0]}}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    epochs = 12
    total = epochs * 320 // 16

    def cmd(name: str) -> list[str]:
        return ["cell", "--config", str(tmp_path / "cfg.json"), "--seed", "0", "--threads", "1",
                "--in", str(tmp_path / "cls.npz"), "--model", "alexnet_bn", "--arm", "lars", "--batch", "16",
                "--epochs", str(epochs), "--out", str(tmp_path / f"{name}.json"), "--checkpoint-dir", str(tmp_path / name)]

    assert main(cmd("clean")) == 0
    killed = [sys.executable, "-m", "repro.lars", *cmd("killed")]
    state = kill_mid_training(killed, tmp_path / "killed" / "latest.pt",
                              lambda s: s["current"] is not None and s["current"]["state"]["step"] < total,
                              tmp_path / "killed.log")
    assert not (tmp_path / "killed.json").exists()  # no output from a killed job
    text, step = rerun(killed, tmp_path / "rerun.log")
    assert state["current"]["state"]["step"] <= step < total  # (it may write one more before the kill lands)
    _assert_bar_starts_at(text, step, total)
    clean, resumed = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("clean", "killed"))
    assert resumed["runs"][0]["steps"] == total
    assert _strip(resumed) == _strip(clean) | {"data": resumed["data"]}  # data.path differs only by folder
    assert _strip(resumed)["runs"] == _strip(clean)["runs"]  # test_loss, accuracies, losses: bit-equal


# ------------------------------------------------------------------ detection
def test_detect_train_killed_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    from repro.detect.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _write_split(data, "train", 8, rng)
    _write_split(data, "val", 3, rng)
    total = 16
    cfg = json.dumps({**DETECT_TINY, "iterations": total, "checkpoint_every": 2, "warmup_iters": 2})

    def cmd(name: str) -> list[str]:
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        return ["train", "--model", "fpn", "--config", cfg, "--seed", "0", "--threads", "1", "--in", str(data),
                "--out", str(out / "metrics.json"), "--weights-out", str(out / "model.pt"),
                "--metrics-csv", str(out / "steps.csv"), "--checkpoint-dir", str(out / "ck")]

    assert main(cmd("clean")) == 0
    killed = [sys.executable, "-m", "repro.detect", *cmd("killed")]
    # killed in the last 10 steps' window, so the final losses (means of the last 10 steps) span the kill
    state = kill_mid_training(killed, tmp_path / "killed" / "ck" / "latest.pt", lambda s: 8 <= s["step"] < total,
                              tmp_path / "killed.log")
    assert not (tmp_path / "killed" / "metrics.json").exists() and not (tmp_path / "killed" / "model.pt").exists()
    text, step = rerun(killed, tmp_path / "rerun.log")
    assert state["step"] <= step < total
    _assert_bar_starts_at(text, step, total)
    w_clean, w_resumed = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("clean", "killed"))
    assert w_clean.keys() == w_resumed.keys() and all(torch.equal(w_clean[k], w_resumed[k]) for k in w_clean)
    m_clean, m_resumed = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("clean", "killed"))
    assert _strip(m_resumed) == _strip(m_clean)  # COCO metrics, final losses (mean of the last 10 steps)
    assert (tmp_path / "killed" / "steps.csv").read_text() == (tmp_path / "clean" / "steps.csv").read_text()


# ------------------------------------------------------------------ quantization (train + prune-retrain)
def test_quant_run_killed_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    from repro.quant.cli import main

    data = _fake_digits(tmp_path / "digits.npz", n_train=400)
    cfg = _tiny_config()
    cfg["nets"]["mlp_digits"].update(epochs=40, hidden=[64])  # 40 x ceil(400/64) = 280 Adam steps
    cfg.update(checkpoint_every=5)
    total = 40 * 7

    def cmd(name: str) -> list[str]:
        return ["run", "--config", json.dumps(cfg), "--seed", "0", "--threads", "1", "--net", "mlp_digits",
                "--in", str(data), "--out", str(tmp_path / f"{name}.json"), "--weights", str(tmp_path / f"{name}.pt"),
                "--checkpoint-dir", str(tmp_path / name)]

    assert main(cmd("clean")) == 0
    killed = [sys.executable, "-m", "repro.quant", *cmd("killed")]
    state = kill_mid_training(killed, tmp_path / "killed" / "dense" / "latest.pt",
                              lambda s: 5 * 7 <= s["step"] < total,  # killed after the 5th epoch
                              tmp_path / "killed.log")
    text, step = rerun(killed, tmp_path / "rerun.log")
    assert state["step"] <= step < total
    w_clean, w_resumed = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("clean", "killed"))
    for part in ("dense", "pruned"):
        assert all(torch.equal(w_clean[part][k], w_resumed[part][k]) for k in w_clean[part]), part
    r_clean, r_resumed = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("clean", "killed"))
    assert r_resumed["train"] == r_clean["train"]  # incl. the final train loss (mean of the last epoch)
    assert _strip(r_resumed) == _strip(r_clean)  # every quantization result of the sweep


def test_quant_checkpoint_of_another_net_is_set_aside(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    """A checkpoint folder holding another model's training state is set aside with a warning naming the
    difference, and the run starts fresh: never a crash, a refusal or a mix."""
    from repro.quant.cli import main

    from test_bad_input import interrupt_after_first_checkpoint

    data = _fake_digits(tmp_path / "digits.npz")
    cfg = _tiny_config()
    args = ["run", "--config", json.dumps(cfg), "--seed", "0", "--threads", "1", "--net", "mlp_digits",
            "--in", str(data), "--out", str(tmp_path / "a.json"), "--weights", str(tmp_path / "a.pt"),
            "--checkpoint-dir", str(tmp_path / "ck")]
    interrupt_after_first_checkpoint(monkeypatch, lambda: main(args))
    other = copy.deepcopy(cfg)
    other["nets"]["mlp_digits"]["hidden"] = [8]
    args[args.index("--config") + 1] = json.dumps(other)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"WARNING: checkpoint {tmp_path / 'ck' / 'dense' / 'latest.pt'} belongs to another run" in err
    assert "config.net.hidden: [16] -> [8]" in err and "starting fresh" in err and "resumed" not in err
    assert (tmp_path / "ck" / "dense" / "latest.stale.pt").exists()


def test_quant_resume_in_the_last_epoch_keeps_the_final_train_loss(tmp_path: Path, monkeypatch) -> None:
    """Regression: the final train loss is the last epoch's mean; a run resumed inside that epoch must
    not average only the steps after the resume (the checkpoint carries the epoch's losses)."""
    from repro.quant.engine import TrainSpec, train
    from repro.quant.models import build_model

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8, generator=gen), torch.randint(0, 10, (96,), generator=gen)
    spec = TrainSpec(epochs=3, batch_size=16, lr=1e-2)  # 6 steps per epoch, 18 in all

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = build_model("mlp", hidden=(16,), in_shape=(1, 8, 8), num_classes=10)
        return model, torch.optim.Adam(model.parameters(), lr=spec.lr)

    def ckpt(name: str) -> RunCheckpoint:
        return RunCheckpoint(tmp_path / name, {"run": "quant"})

    clean = train(*fresh(), x, y, spec, seed=0, ckpt=ckpt("clean"), ckpt_every=1)
    save = RunCheckpoint.save

    def save_then_die(self: RunCheckpoint, state: dict) -> None:
        save(self, state)
        if state["step"] == 16:  # inside the last epoch (steps 13..18)
            raise KeyboardInterrupt("killed after the step-16 checkpoint")

    monkeypatch.setattr(RunCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(*fresh(), x, y, spec, seed=0, ckpt=ckpt("killed"), ckpt_every=1)
    monkeypatch.setattr(RunCheckpoint, "save", save)
    model, opt = fresh()
    resumed = train(model, opt, x, y, spec, seed=0, ckpt=ckpt("killed"), ckpt_every=1)
    assert resumed == clean


# ------------------------------------------------------------------ GANs (ring of 8 Gaussians)
def test_gan_train_killed_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    """The GAN checkpoint restores nets, optimizers, metric history and the global RNG state (real-batch
    and noise draws); ``checkpoint_every`` is a multiple of ``eval_every`` as in every shipped config."""
    from repro.data.mixtures import write_mixtures
    from repro.gan.cli import main

    write_mixtures(tmp_path / "mixtures", {"n_samples": 2000}, 0)
    total = 1500
    exp = {"steps": total, "eval_every": 250, "checkpoint_every": 250, "batch_size": 64, "z_dim": 8, "g_hidden": 32,
           "d_hidden": 32, "arms": ["mgan"], "n_generators": 4}
    cfg = json.dumps({"seeds": 1, "plot_samples": 64, "metrics": {"eval_samples": 400, "w1_samples": 50},
                      "experiments": {"ring8": exp}})

    def cmd(name: str) -> list[str]:
        out = tmp_path / name
        return ["train", "--config", cfg, "--seed", "0", "--threads", "1", "--experiment", "ring8", "--arm", "mgan",
                "--in", str(tmp_path / "mixtures" / "ring8.npz"), "--out", str(out / "r.json"),
                "--samples", str(out / "s.npz"), "--weights", str(out / "w.pt"), "--metrics-csv", str(out / "m.csv"),
                "--checkpoint-dir", str(out / "ck")]

    assert main(cmd("clean")) == 0
    killed = [sys.executable, "-m", "repro.gan", *cmd("killed")]
    state = kill_mid_training(killed, tmp_path / "killed" / "ck" / "latest.pt", lambda s: s["step"] < total,
                              tmp_path / "killed.log")
    _, step = rerun(killed, tmp_path / "rerun.log")
    assert state["step"] <= step < total
    w_clean, w_resumed = (torch.load(tmp_path / n / "w.pt", weights_only=True) for n in ("clean", "killed"))
    for net in w_clean:
        assert all(torch.equal(w_clean[net][k], w_resumed[net][k]) for k in w_clean[net]), net
    r_clean, r_resumed = (json.loads((tmp_path / n / "r.json").read_text()) for n in ("clean", "killed"))
    assert _strip(r_resumed) == _strip(r_clean)  # every evaluation row: modes covered, quality, losses
    with np.load(tmp_path / "clean" / "s.npz") as a, np.load(tmp_path / "killed" / "s.npz") as b:
        assert np.array_equal(a["samples"], b["samples"])



def test_gan_resume_between_evaluations_keeps_the_loss_means(tmp_path: Path, monkeypatch) -> None:
    """Regression: with ``checkpoint_every`` (7) not a multiple of ``eval_every`` (5) the checkpoint at
    step 14 falls inside an evaluation window (steps 11..15); the step-15 row's loss means must still
    average all five steps, not only step 15 (the checkpoint carries the running sums and count)."""
    import repro.gan.engine as engine
    from repro.data.mixtures import sample_mixture
    from repro.gan.arms import build_arm
    from repro.gan.config import experiment_config

    real = torch.from_numpy(sample_mixture("ring8", 500, np.random.default_rng(0))[0].astype(np.float32))
    cfg = experiment_config({"experiments": {"ring8": {"batch_size": 16, "z_dim": 4, "g_hidden": 16, "d_hidden": 16,
                                                       "n_generators": 2, "lr": 1e-3}}}, "ring8")

    def setup():
        torch.manual_seed(0)
        return build_arm("mgan", cfg, data_shape=(2,), device="cpu")

    def run(ckpt: Path) -> list[dict]:
        s = setup()
        return engine.train(s, sample_real=lambda n: real[torch.randint(len(real), (n,))], steps=20, batch_size=16,
                            device=torch.device("cpu"), evaluate=lambda step: {"m": float(step)}, eval_every=5,
                            ckpt=RunCheckpoint(ckpt, {"run": "gan"}), checkpoint_every=7, log=lambda m: None)

    clean = run(tmp_path / "clean")
    save = RunCheckpoint.save

    def save_then_die(self: RunCheckpoint, state: dict) -> None:
        save(self, state)
        if state["step"] == 14:
            raise KeyboardInterrupt("killed after the step-14 checkpoint")

    monkeypatch.setattr(RunCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed")
    monkeypatch.setattr(RunCheckpoint, "save", save)
    resumed = run(tmp_path / "killed")
    assert [r["step"] for r in resumed] == [5, 10, 15, 20]
    drop = {"train_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in drop} for r in clean]

# ------------------------------------------------------------------ Triplet-Siamese pretraining
def test_pretrain_train_killed_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    from repro.pretrain.cli import main

    from test_pretrain import CFG as PRETRAIN_CFG
    from test_pretrain import _write_inputs

    patches, pairs, _ = _write_inputs(tmp_path)
    total = 120
    cfg = json.dumps({**PRETRAIN_CFG, "steps": total, "checkpoint_every": 4})

    def cmd(name: str) -> list[str]:
        d = tmp_path / name
        return ["train", "--config", cfg, "--seed", "0", "--threads", "1", "--arm", "transitive",
                "--patches", str(patches), "--pairs", str(pairs), "--out-backbone", str(d / "backbone.pt"),
                "--out-net", str(d / "net.pt"), "--out-metrics", str(d / "metrics.csv"),
                "--out-summary", str(d / "train.json"), "--checkpoint-dir", str(d / "ck")]

    assert main(cmd("clean")) == 0
    killed = [sys.executable, "-m", "repro.pretrain", *cmd("killed")]
    state = kill_mid_training(killed, tmp_path / "killed" / "ck" / "latest.pt", lambda s: s["step"] < total,
                              tmp_path / "killed.log")
    assert not (tmp_path / "killed" / "net.pt").exists()
    _, step = rerun(killed, tmp_path / "rerun.log")
    assert state["step"] <= step < total
    w_clean, w_resumed = (torch.load(tmp_path / n / "net.pt", weights_only=True) for n in ("clean", "killed"))
    assert w_clean.keys() == w_resumed.keys() and all(torch.equal(w_clean[k], w_resumed[k]) for k in w_clean)
    rows = [[r.split(",")[:-1] for r in (tmp_path / n / "metrics.csv").read_text().splitlines()]
            for n in ("clean", "killed")]
    assert len(rows[0]) == total + 1 and rows[0] == rows[1]  # every step's loss etc. (all but wall seconds)
    s_clean, s_resumed = (json.loads((tmp_path / n / "train.json").read_text()) for n in ("clean", "killed"))
    assert _strip(s_resumed) == _strip(s_clean)
