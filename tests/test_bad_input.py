"""Bad input, nothing lost, for the training stages' CLIs.

For each stage: a missing input, a truncated/corrupt input file, a wrong-shaped array and a bad
config value fail with an error that names the bad thing, *before* training starts (no checkpoint
and no output appear); and a failing rerun over finished results leaves them untouched (outputs and
checkpoint byte-identical, no temporary files), after which a good rerun resumes from the checkpoint.
The config schema errors (misspelt key, out-of-range value, before any job) are in test_workflow.py;
the download/archive checks in test_download.py; the corrupt video in test_graph_mining.py.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from repro.common.checkpoint import RunCheckpoint  # noqa: E402

from test_detect_cli import TINY as DETECT_TINY  # noqa: E402
from test_detect_cli import _write_split  # noqa: E402
from test_lars_study import CFG as LARS_CFG  # noqa: E402
from test_lars_study import _arrays  # noqa: E402
from test_quant_pipeline import _fake_digits, _tiny_config  # noqa: E402
from test_resume import _strip  # noqa: E402


def fails_naming(call: Callable[[], int], capsys: pytest.CaptureFixture, *names: str) -> str:
    """``call()`` must fail (raise, exit, or return non-zero) with a message containing every one of ``names``."""
    try:
        rc = call()
        msg = capsys.readouterr().err
        assert rc not in (0, None), f"expected a failure, got rc {rc}"
    except SystemExit as exc:
        msg = f"{exc.code} {capsys.readouterr().err}"
        assert exc.code not in (0, None)
    except Exception as exc:  # noqa: BLE001 - any exception type, as long as its message is clear
        msg = f"{type(exc).__name__}: {exc}"
    for name in names:
        assert name in msg, f"{name!r} not named in: {msg[-1500:]}"
    return msg


def interrupt_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch, call: Callable[[], int]) -> None:
    """Run ``call()`` until its first checkpoint is written, then interrupt it (as a kill would)."""
    real = RunCheckpoint.save

    def save_then_die(self: RunCheckpoint, state: dict) -> None:
        real(self, state)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(RunCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        call()
    monkeypatch.setattr(RunCheckpoint, "save", real)


def same_results(a: Path, b: Path) -> bool:
    """Two result JSONs agree on every number (timings and provenance aside)."""
    return _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ LARS cell
@pytest.fixture
def lars(tmp_path: Path):
    from repro.lars.cli import main

    np.savez(tmp_path / "cls.npz", **_arrays(n_train=60, n_test=20, size=8))
    cfg = {**LARS_CFG, "seeds": 1, "lars": {**LARS_CFG["lars"], "lrs": {"alexnet": [2.0]}}}

    def run(inp: Path | None = None, cfg_over: dict | None = None, batch: int = 8, out: str = "out") -> int:
        return main(["cell", "--config", json.dumps({**cfg, **(cfg_over or {})}), "--seed", "0", "--threads", "1",
                     "--in", str(inp or tmp_path / "cls.npz"), "--model", "alexnet", "--arm", "lars",
                     "--batch", str(batch), "--epochs", "1", "--out", str(tmp_path / out / "cell.json"),
                     "--checkpoint-dir", str(tmp_path / out / "ck")])

    return tmp_path, run


def _lars_bad_shape(tmp: Path) -> Path:
    a = _arrays(n_train=20, n_test=10, size=8)
    np.savez(tmp / "flat.npz", **{**a, "x_train": a["x_train"][:, 0]})  # [N, H, W]: the channel axis is gone
    return tmp / "flat.npz"


def _lars_short_labels(tmp: Path) -> Path:
    a = _arrays(n_train=20, n_test=10, size=8)
    np.savez(tmp / "short.npz", **{**a, "y_train": a["y_train"][:-3]})
    return tmp / "short.npz"


@pytest.mark.parametrize("case", ["missing", "truncated", "garbage", "wrong_shape", "short_labels", "val_fraction",
                                  "no_lr_grid", "batch_zero"])
def test_lars_cell_bad_input_named_before_training(lars, case: str, capsys) -> None:
    tmp, run = lars
    calls: dict[str, tuple[Callable[[], int], tuple[str, ...]]] = {
        "missing": (lambda: run(tmp / "nope.npz"), ("nope.npz",)),
        "truncated": (lambda: run(_truncate(tmp / "cls.npz", tmp / "cut.npz")), ("cut.npz", "not a readable .npz")),
        "garbage": (lambda: run(_garbage(tmp / "junk.npz")), ("junk.npz", "not a readable .npz")),
        "wrong_shape": (lambda: run(_lars_bad_shape(tmp)), ("flat.npz", "[N, 3, H, H]", "(20, 8, 8)")),
        "short_labels": (lambda: run(_lars_short_labels(tmp)), ("short.npz", "labels must be [N]")),
        "val_fraction": (lambda: run(cfg_over={"val_fraction": 1.5}), ("val_fraction", "1.5")),
        "no_lr_grid": (lambda: run(cfg_over={"lars": {**LARS_CFG["lars"], "lrs": {"alexnet_bn": [1.0]}}}),
                       ("lars.lars.lrs.alexnet",)),
        "batch_zero": (lambda: run(batch=0), ("--batch",)),
    }
    call, names = calls[case]
    fails_naming(call, capsys, *names)
    assert not (tmp / "out").exists()  # nothing was trained, checkpointed or written


def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 this is not an archive" * 10)
    return path


def test_lars_failed_rerun_keeps_results(lars, capsys) -> None:
    tmp, run = lars
    assert run() == 0
    before = _snapshot(tmp / "out")
    assert set(before) == {"cell.json"}  # a finished job's checkpoint is deleted
    fails_naming(lambda: run(_truncate(tmp / "cls.npz", tmp / "cut.npz")), capsys, "cut.npz")
    assert _snapshot(tmp / "out") == before  # same files, same bytes, no temporaries
    capsys.readouterr()
    assert run() == 0  # a rerun Snakemake asks for (e.g. --forcerun) trains afresh, to the same numbers
    assert "resumed" not in capsys.readouterr().err
    old, new = json.loads(before["cell.json"]), json.loads((tmp / "out" / "cell.json").read_text())
    assert _strip(new["runs"]) == _strip(old["runs"])


def test_lars_interrupted_cell_with_an_edited_config_starts_fresh(lars, monkeypatch, capsys) -> None:
    tmp, run = lars
    interrupt_after_first_checkpoint(monkeypatch, run)
    capsys.readouterr()
    assert run(cfg_over={"weight_decay": 1e-3}) == 0
    err = capsys.readouterr().err
    assert "belongs to another run (config.weight_decay: 0.0005 -> 0.001)" in err and "starting fresh" in err
    assert (tmp / "out" / "ck" / "latest.stale.pt").exists() and "resumed" not in err
    assert run(cfg_over={"weight_decay": 1e-3}, out="clean") == 0
    assert same_results(tmp / "out" / "cell.json", tmp / "clean" / "cell.json")


# ------------------------------------------------------------------ detection
@pytest.fixture
def detect(tmp_path: Path):
    from repro.detect.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _write_split(data, "train", 4, rng)
    _write_split(data, "val", 2, rng)

    def run(root: Path = data, cfg_over: dict | None = None, model: str = "fpn", out: str = "out") -> int:
        o = tmp_path / out
        return main(["train", "--model", model, "--config", json.dumps({**DETECT_TINY, **(cfg_over or {})}),
                     "--seed", "0", "--threads", "1", "--in", str(root), "--out", str(o / "metrics.json"),
                     "--weights-out", str(o / "model.pt"), "--checkpoint-dir", str(o / "ck")])

    return tmp_path, data, run


def _copy_data(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _detect_case(tmp: Path, data: Path, case: str) -> Path:
    bad = _copy_data(data, tmp / f"bad_{case}")
    if case == "truncated_json":
        _truncate(bad / "train.json", bad / "train.json")
    elif case == "corrupt_image":
        (bad / "images" / "train" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    elif case == "missing_image":
        (bad / "images" / "val" / "001.png").unlink()
    elif case == "bad_bbox":
        coco = json.loads((bad / "train.json").read_text())
        coco["annotations"][1]["bbox"] = coco["annotations"][1]["bbox"][:3]
        (bad / "train.json").write_text(json.dumps(coco))
    return bad


@pytest.mark.parametrize("case, names", [
    ("missing", ("nowhere", "does not exist")),
    ("truncated_json", ("train.json", "not valid JSON")),
    ("corrupt_image", ("002.png",)),
    ("missing_image", ("001.png", "is missing")),
    ("bad_bbox", ("train.json", "annotation 2", "bbox")),
    ("unknown_key", ("itrations",)),
    ("out_of_range", ("trainable_layers", "9")),
])
def test_detect_train_bad_input_named_before_training(detect, case: str, names: tuple[str, ...], capsys) -> None:
    tmp, data, run = detect
    if case == "missing":
        call = lambda: run(tmp / "nowhere")  # noqa: E731
    elif case == "unknown_key":
        call = lambda: run(cfg_over={"itrations": 3})  # noqa: E731
    elif case == "out_of_range":
        call = lambda: run(cfg_over={"trainable_layers": 9})  # noqa: E731
    else:
        bad = _detect_case(tmp, data, case)
        call = lambda: run(bad)  # noqa: E731
    fails_naming(call, capsys, *names)
    assert not (tmp / "out").exists()


def test_detect_failed_rerun_keeps_results(detect, capsys) -> None:
    tmp, data, run = detect
    assert run() == 0
    before = _snapshot(tmp / "out")
    assert set(before) == {"metrics.json", "model.pt"}  # a finished job's checkpoint is deleted
    fails_naming(lambda: run(_detect_case(tmp, data, "corrupt_image")), capsys, "002.png")
    assert _snapshot(tmp / "out") == before
    capsys.readouterr()
    assert run() == 0  # a rerun trains afresh, to the same weights
    assert "resumed" not in capsys.readouterr().out
    assert (tmp / "out" / "model.pt").read_bytes() == before["model.pt"]


def test_detect_interrupted_run_after_a_data_change_starts_fresh(detect, monkeypatch, capsys) -> None:
    """The upstream data changed while a job was interrupted: its checkpoint is of other data."""
    tmp, data, run = detect
    interrupt_after_first_checkpoint(monkeypatch, run)
    _write_split(data, "train", 5, np.random.default_rng(1))  # e.g. data.detection.n_train changed
    capsys.readouterr()
    assert run() == 0
    err = capsys.readouterr().err
    assert "belongs to another run (input 'data' changed)" in err and "starting fresh" in err
    assert run(out="clean") == 0
    assert (tmp / "out" / "model.pt").read_bytes() == (tmp / "clean" / "model.pt").read_bytes()


def test_detect_truncated_checkpoint_is_set_aside(detect, monkeypatch, capsys) -> None:
    tmp, data, run = detect
    interrupt_after_first_checkpoint(monkeypatch, run)
    ckpt = tmp / "out" / "ck" / "latest.pt"
    _truncate(ckpt, ckpt)
    capsys.readouterr()
    assert run() == 0
    err = capsys.readouterr().err
    assert f"WARNING: checkpoint {ckpt} cannot be read" in err and "latest.corrupt.pt" in err
    assert run(out="clean") == 0
    assert (tmp / "out" / "model.pt").read_bytes() == (tmp / "clean" / "model.pt").read_bytes()


# ------------------------------------------------------------------ quantization
@pytest.fixture
def quant(tmp_path: Path):
    from repro.quant.cli import main

    data = _fake_digits(tmp_path / "digits.npz")
    cfg = _tiny_config()

    def run(inp: Path = data, cfg_over: Callable[[dict], None] | None = None, net: str = "mlp_digits",
            out: str = "out") -> int:
        c = json.loads(json.dumps(cfg))
        if cfg_over:
            cfg_over(c)
        o = tmp_path / out
        return main(["run", "--config", json.dumps(c), "--seed", "0", "--threads", "1", "--net", net,
                     "--in", str(inp), "--out", str(o / "run.json"), "--weights", str(o / "run.pt"),
                     "--checkpoint-dir", str(o / "ck")])

    return tmp_path, data, run


def _quant_wrong_shape(tmp: Path) -> Path:
    np.savez(tmp / "flat.npz", x_train=np.zeros((4, 64), np.float32), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 8, 8), np.float32), y_test=np.zeros(2, np.int64))
    return tmp / "flat.npz"


@pytest.mark.parametrize("case", ["missing", "truncated", "wrong_shape", "unknown_net", "bad_schedule"])
def test_quant_run_bad_input_named_before_training(quant, case: str, capsys) -> None:
    tmp, data, run = quant

    def bad_schedule(c: dict) -> None:
        c["nets"]["mlp_digits"]["schedule"] = "cosinus"

    calls = {
        "missing": (lambda: run(tmp / "nope.npz"), ("nope.npz",)),
        "truncated": (lambda: run(_truncate(data, tmp / "cut.npz")), ("cut.npz", "not a readable .npz")),
        "wrong_shape": (lambda: run(_quant_wrong_shape(tmp)), ("flat.npz", "x_train", "expected [n, H, W]")),
        "unknown_net": (lambda: run(net="resnet_imagenet"), ("resnet_imagenet",)),
        "bad_schedule": (lambda: run(cfg_over=bad_schedule), ("cosinus",)),
    }
    call, names = calls[case]
    fails_naming(call, capsys, *names)
    assert not (tmp / "out" / "run.json").exists() and not (tmp / "out" / "ck" / "dense" / "latest.pt").exists()


def test_quant_failed_rerun_keeps_results(quant, capsys) -> None:
    tmp, data, run = quant
    assert run() == 0
    before = _snapshot(tmp / "out")
    assert {"run.json", "run.pt"} <= set(before) and not any(k.startswith("ck/") for k in before)  # deleted
    fails_naming(lambda: run(_truncate(data, tmp / "cut.npz")), capsys, "cut.npz")
    assert _snapshot(tmp / "out") == before


def test_quant_interrupted_run_with_an_edited_config_starts_fresh(quant, monkeypatch, capsys) -> None:
    tmp, data, run = quant

    def lower_lr(c: dict) -> None:
        c["nets"]["mlp_digits"]["lr"] = 0.002

    interrupt_after_first_checkpoint(monkeypatch, run)
    capsys.readouterr()
    assert run(cfg_over=lower_lr) == 0
    err = capsys.readouterr().err
    assert "belongs to another run (config.net.lr: 0.001 -> 0.002)" in err and "resumed" not in err
    assert run(cfg_over=lower_lr, out="clean") == 0
    assert same_results(tmp / "out" / "run.json", tmp / "clean" / "run.json")


# ------------------------------------------------------------------ weights are loaded safely everywhere
def test_every_torch_load_in_the_package_uses_weights_only() -> None:
    """``torch.load`` unpickles arbitrary objects unless ``weights_only=True``: every call must say so."""
    unsafe = []
    for path in sorted((REPO / "src" / "repro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


# ------------------------------------------------------------------ GANs and pretraining
# truncated / corrupt inputs are named by gan.data._load_npz and pretrain.data._npz/load_patches.


@pytest.fixture
def gan(tmp_path: Path):
    from repro.data.mixtures import write_mixtures
    from repro.gan.cli import main

    write_mixtures(tmp_path / "mixtures", {"n_samples": 500}, 0)
    exp = {"steps": 20, "eval_every": 10, "checkpoint_every": 10, "batch_size": 16, "z_dim": 8, "g_hidden": 16,
           "d_hidden": 16, "arms": ["gan"], "n_generators": 4}
    cfg = {"seeds": 1, "plot_samples": 64, "metrics": {"eval_samples": 200, "w1_samples": 50},
           "experiments": {"ring8": exp}}

    def run(inp: Path | None = None, exp_over: dict | None = None, out: str = "out") -> int:
        o = tmp_path / out
        c = {**cfg, "experiments": {"ring8": {**exp, **(exp_over or {})}}}
        return main(["train", "--config", json.dumps(c), "--seed", "0", "--threads", "1", "--experiment", "ring8",
                     "--arm", "gan", "--in", str(inp or tmp_path / "mixtures" / "ring8.npz"),
                     "--out", str(o / "r.json"), "--samples", str(o / "s.npz"), "--weights", str(o / "w.pt"),
                     "--metrics-csv", str(o / "m.csv"), "--checkpoint-dir", str(o / "ck")])

    return tmp_path, run


def test_gan_truncated_mixture_is_named(gan, capsys) -> None:
    tmp, run = gan
    fails_naming(lambda: run(_truncate(tmp / "mixtures" / "ring8.npz", tmp / "cut.npz")), capsys, "cut.npz")
    assert not (tmp / "out").exists()


def test_gan_failed_rerun_keeps_results(gan, capsys) -> None:
    tmp, run = gan
    assert run() == 0
    before = _snapshot(tmp / "out")
    assert {"r.json", "s.npz", "w.pt", "m.csv"} <= set(before) and "ck/latest.pt" not in before
    fails_naming(lambda: run(tmp / "nope.npz"), capsys, "nope.npz")
    fails_naming(lambda: run(exp_over={"stepz": 3}), capsys, "gan.experiments.ring8.stepz")
    assert _snapshot(tmp / "out") == before


def test_gan_interrupted_run_with_an_edited_config_starts_fresh(gan, monkeypatch, capsys) -> None:
    tmp, run = gan
    interrupt_after_first_checkpoint(monkeypatch, run)
    capsys.readouterr()
    assert run(exp_over={"lr": 5e-4}) == 0
    err = capsys.readouterr().err
    assert "belongs to another run (config.experiment.lr:" in err and "resumed" not in err
    assert run(exp_over={"lr": 5e-4}, out="clean") == 0
    assert same_results(tmp / "out" / "r.json", tmp / "clean" / "r.json")  # the metric history included


@pytest.fixture
def pretrain(tmp_path: Path):
    from repro.pretrain.cli import main

    from test_pretrain import CFG as PRETRAIN_CFG
    from test_pretrain import _write_inputs

    patches, pairs, _ = _write_inputs(tmp_path)

    def run(patches: Path = patches, pairs: Path = pairs, out: str = "out", cfg_over: dict | None = None) -> int:
        d = tmp_path / out
        return main(["train", "--config", json.dumps({**PRETRAIN_CFG, **(cfg_over or {})}), "--seed", "0",
                     "--threads", "1",
                     "--arm", "intra", "--patches", str(patches), "--pairs", str(pairs),
                     "--out-backbone", str(d / "backbone.pt"), "--out-net", str(d / "net.pt"),
                     "--out-metrics", str(d / "metrics.csv"), "--out-summary", str(d / "train.json"),
                     "--checkpoint-dir", str(d / "ck")])

    return tmp_path, patches, pairs, run


@pytest.mark.parametrize("which", ["patches", "pairs"])
def test_pretrain_truncated_input_is_named(pretrain, which: str, capsys) -> None:
    tmp, patches, pairs, run = pretrain
    if which == "patches":
        call = lambda: run(patches=_truncate(patches, tmp / "cut.npy"))  # noqa: E731
    else:
        call = lambda: run(pairs=_garbage(tmp / "cut.npz"))  # noqa: E731
    fails_naming(call, capsys, "cut.np")
    assert not (tmp / "out").exists()


def test_pretrain_failed_rerun_keeps_results(pretrain, capsys) -> None:
    tmp, patches, pairs, run = pretrain
    assert run() == 0
    before = _snapshot(tmp / "out")
    assert {"backbone.pt", "net.pt", "metrics.csv", "train.json"} <= set(before) and "ck/latest.pt" not in before
    fails_naming(lambda: run(pairs=tmp / "nope.npz"), capsys, "nope.npz")
    np.save(tmp / "flat.npy", np.zeros((64, 32, 32), np.uint8))
    fails_naming(lambda: run(patches=tmp / "flat.npy"), capsys, "flat.npy", "expected uint8 [N,3,S,S]")
    assert _snapshot(tmp / "out") == before


def test_pretrain_interrupted_run_with_an_edited_config_starts_fresh(pretrain, monkeypatch, capsys) -> None:
    tmp, patches, pairs, run = pretrain
    interrupt_after_first_checkpoint(monkeypatch, run)
    capsys.readouterr()
    assert run(cfg_over={"margin": 0.3}) == 0
    err = capsys.readouterr().err
    assert "belongs to another run (config.margin: " in err and "-> 0.3)" in err and "resumed" not in err
    assert run(cfg_over={"margin": 0.3}, out="clean") == 0
    def log(d: str) -> list[list[str]]:  # the per-step log without its last column (wall seconds)
        return [r.split(",")[:-1] for r in (tmp / d / "metrics.csv").read_text().splitlines()]

    assert log("out") == log("clean")
    assert (tmp / "out" / "net.pt").read_bytes() == (tmp / "clean" / "net.pt").read_bytes()
