"""ImageNet (ILSVRC2012) for the LARS study, on a miniature release built in the real archives' layout:
checksum verification, torchvision's parsing, the streaming LARS path and its resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.datasets import imagenet as tv_imagenet

from realformat.ilsvrc import archive_meta, build_ilsvrc2012
from repro.common.cli import run_cli
from repro.data.imagenet import ImageNetArchiveError, open_imagenet, prepare_imagenet, verify_archives
from repro.lars.data import ImageSplit, load_classification

from conftest import FULL, run_snakemake
from test_lars_study import CFG as LARS_CFG

REAL_MD5 = dict(tv_imagenet.ARCHIVE_META)  # torchvision's published values, before any test patches them


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory):
    return build_ilsvrc2012(tmp_path_factory.mktemp("ilsvrc") / "tars")


@pytest.fixture
def accept_mini(mini, monkeypatch: pytest.MonkeyPatch):
    """Expect the miniature's md5s wherever torchvision's ARCHIVE_META is read (ours and its parsers)."""
    for key, value in archive_meta(mini).items():
        monkeypatch.setitem(tv_imagenet.ARCHIVE_META, key, value)
    return mini


@pytest.fixture(scope="module")
def unpacked(mini, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imagenet") / "imagenet"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in archive_meta(mini).items():
            mp.setitem(tv_imagenet.ARCHIVE_META, key, value)
        prepare_imagenet(mini.folder, out)
    return out


def _copy_tars(mini, dest: Path) -> Path:
    shutil.copytree(mini.folder, dest)
    return dest


# ------------------------------------------------------------------ verification and parsing
def test_miniature_verifies_and_parses_to_its_classes_and_labels(accept_mini, tmp_path: Path) -> None:
    mini = accept_mini
    summary = prepare_imagenet(mini.folder, tmp_path / "imagenet")
    assert summary["classes"] == 3 and summary["train"] == mini.n_train and summary["val"] == len(mini.val_wnids)
    assert {k: r["md5"] for k, r in summary["archives"].items()} == mini.md5
    train, val = open_imagenet(tmp_path / "imagenet", "train"), open_imagenet(tmp_path / "imagenet", "val")
    assert train.wnids == mini.wnids and val.wnids == mini.wnids  # the non-leaf synset is dropped
    assert train.classes[1] == ("goldfish", "Carassius auratus")
    for path, label in train.samples:
        assert Path(path).name.startswith(mini.wnids[label])
    for path, label in val.samples:  # ground truth line i belongs to ILSVRC2012_val_<i>.JPEG
        i = int(Path(path).stem.rsplit("_", 1)[1]) - 1
        assert mini.wnids[label] == mini.val_wnids[i]


def test_expected_md5s_are_torchvisions_published_ones(mini) -> None:
    assert REAL_MD5["train"] == ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e")
    with pytest.raises(ImageNetArchiveError, match="1d675b47d978889d74fa0da5fadfb00e|fa75699e90414af021442c21a62c3abf"):
        verify_archives(mini.folder)  # the miniature is not the real release
    full = FULL.read_text()
    for name, md5 in REAL_MD5.values():
        assert md5 in full, f"full.yaml does not show {name}'s md5"


def test_missing_tar_is_named_with_its_md5_before_anything_is_unpacked(accept_mini, tmp_path: Path) -> None:
    tars = _copy_tars(accept_mini, tmp_path / "tars")
    (tars / "ILSVRC2012_img_val.tar").unlink()
    with pytest.raises(ImageNetArchiveError, match=rf"ILSVRC2012_img_val.tar \(md5 {accept_mini.md5['val']}\)"):
        prepare_imagenet(tars, tmp_path / "imagenet")
    assert not (tmp_path / "imagenet").exists() and [p.name for p in tmp_path.iterdir()] == ["tars"]


def test_corrupt_tar_fails_naming_the_file_and_the_expected_md5(accept_mini, tmp_path: Path, capsys) -> None:
    from repro.data.cli import main

    tars = _copy_tars(accept_mini, tmp_path / "tars")
    data = bytearray((tars / "ILSVRC2012_img_train.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tars / "ILSVRC2012_img_train.tar").write_bytes(bytes(data))
    code = run_cli(main, ["imagenet", "--in", str(tars), "--out", str(tmp_path / "imagenet")], prog="repro.data")
    err = capsys.readouterr().err
    assert code == 2  # bad input: one line, no traceback
    assert "ILSVRC2012_img_train.tar" in err and accept_mini.md5["train"] in err and "Traceback" not in err
    assert not (tmp_path / "imagenet").exists()


def test_data_cli_unpacks_the_tars(accept_mini, tmp_path: Path) -> None:
    from repro.data.cli import main

    assert main(["imagenet", "--in", str(accept_mini.folder), "--out", str(tmp_path / "imagenet")]) == 0
    assert len(open_imagenet(tmp_path / "imagenet", "val")) == len(accept_mini.val_wnids)


def test_configured_md5s_unpack_a_miniature_and_leave_torchvisions_in_place(mini, tmp_path: Path, capsys) -> None:
    """data.classification.imagenet_md5 (the rehearsal's): the miniature verifies and unpacks without any
    patching, torchvision's published md5s are back afterwards, and a wrong configured md5 is named."""
    from repro.data.cli import main

    cfg = json.dumps({"imagenet_md5": mini.md5})
    assert main(["imagenet", "--config", cfg, "--in", str(mini.folder), "--out", str(tmp_path / "imagenet")]) == 0
    assert len(open_imagenet(tmp_path / "imagenet", "train")) == mini.n_train
    assert dict(tv_imagenet.ARCHIVE_META) == REAL_MD5
    wrong = json.dumps({"imagenet_md5": {**mini.md5, "val": "0" * 32}})
    code = run_cli(main, ["imagenet", "--config", wrong, "--in", str(mini.folder), "--out", str(tmp_path / "x")],
                   prog="repro.data")
    err = capsys.readouterr().err
    assert code == 2 and "configured md5 00000000000000000000000000000000" in err and "ILSVRC2012_img_val.tar" in err
    code = run_cli(main, ["imagenet", "--config", json.dumps({"imagenet_md5": {"test": "0" * 32}}),
                          "--in", str(mini.folder), "--out", str(tmp_path / "x")], prog="repro.data")
    assert code == 2 and "imagenet_md5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ the streaming LARS path
def test_streamed_batches_depend_on_seed_epoch_and_image_not_on_loader_processes(unpacked: Path) -> None:
    source = load_classification(unpacked)
    files, labels = [f for f, _ in source.train], [c for _, c in source.train]
    chunks = [torch.tensor([3, 0, 7]), torch.tensor([5, 1])]

    def batches(workers: int, epoch: int) -> list[torch.Tensor]:
        split = ImageSplit(files, labels, image_size=16, device="cpu", workers=workers)
        return [x for x, _ in split.batches(chunks, seed=1, epoch=epoch)]

    inline, two = batches(0, 0), batches(2, 0)
    assert [x.shape for x in inline] == [(3, 3, 16, 16), (2, 3, 16, 16)]
    assert all(torch.equal(a, b) for a, b in zip(inline, two))
    assert not torch.equal(inline[0], batches(0, 1)[0])  # another epoch, other crops
    split = ImageSplit(files, labels, image_size=16, device="cpu", workers=0)
    evals = list(split.eval_batches(4))
    assert sum(len(y) for _, y in evals) == len(files) and torch.equal(split.x[torch.arange(4)], evals[0][0])


def _cell_cfg(tmp_path: Path, **extra) -> Path:
    cfg = {**LARS_CFG, "conv": [4, 4, 4], "fc": 8, "seeds": 1, "micro_batch": 4, "val_fraction": 0.2,
           "checkpoint_every": 1, "image_size": 16,
           "lars": {**LARS_CFG["lars"], "lrs": {"alexnet_bn": [5.0]}, "ref_batch": 6}, **extra}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return path


def _cell_args(tmp_path: Path, data: Path, name: str, cfg: Path) -> list[str]:
    return ["cell", "--config", str(cfg), "--seed", "0", "--threads", "1", "--in", str(data), "--model", "alexnet_bn",
            "--arm", "lars", "--batch", "6", "--epochs", "2", "--out", str(tmp_path / f"{name}.json"),
            "--checkpoint-dir", str(tmp_path / name)]


def test_lars_cell_trains_on_imagenet_and_writes_its_result(unpacked: Path, tmp_path: Path) -> None:
    from repro.lars.cli import main

    assert main(_cell_args(tmp_path, unpacked, "cell", _cell_cfg(tmp_path))) == 0
    out = json.loads((tmp_path / "cell.json").read_text())
    assert out["data"] | {"path": None} == {"path": None, "source": "imagenet", "n_train": 14, "n_val": 4, "n_test": 6,
                                            "image_size": 16, "num_classes": 3}
    (run,) = out["runs"]
    assert run["steps"] == 2 * 3 and not run["diverged"] and 0 <= run["test_acc"] <= 100
    assert len(run["epoch_train_loss"]) == 2
    assert run["layer_ratios"] and all(r["g_norm"] > 0 for r in run["layer_ratios"] if r["layer"].endswith(".w"))


def test_imagenet_without_image_size_is_named(unpacked: Path, tmp_path: Path) -> None:
    from repro.lars.cli import main

    cfg = json.loads(_cell_cfg(tmp_path).read_text())
    del cfg["image_size"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="lars.image_size"):
        main(_cell_args(tmp_path, unpacked, "cell", tmp_path / "cfg.json"))


def test_lars_cell_resumes_mid_epoch_on_the_streaming_path(unpacked: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Interrupted after its 4th optimizer step (mid-epoch 2), the rerun resumes there and writes the
    uninterrupted run's result, bit for bit."""
    from repro.common.checkpoint import RunCheckpoint
    from repro.lars.cli import main

    cfg = _cell_cfg(tmp_path)
    assert main(_cell_args(tmp_path, unpacked, "clean", cfg)) == 0
    save = RunCheckpoint.save

    def save_then_stop(self, state) -> None:
        save(self, state)
        current = state.get("current")
        if current is not None and current["state"]["step"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunCheckpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main(_cell_args(tmp_path, unpacked, "killed", cfg))
    monkeypatch.setattr(RunCheckpoint, "save", save)
    assert not (tmp_path / "killed.json").exists()
    capsys.readouterr()
    assert main(_cell_args(tmp_path, unpacked, "killed", cfg)) == 0
    assert "resumed from step 4" in capsys.readouterr().err
    clean, resumed = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("clean", "killed"))

    def strip(runs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in runs]

    assert strip(resumed["runs"]) == strip(clean["runs"])


# ------------------------------------------------------------------ the workflow
@pytest.mark.slow
def test_imagenet_source_in_the_dag_and_a_missing_tar_stops_it(accept_mini, tmp_path: Path) -> None:
    cfg = yaml.safe_load(FULL.read_text())
    cfg["data"]["classification"] |= {"source": "imagenet", "imagenet_tars": str(accept_mini.folder)}
    cfg["lars"]["image_size"] = 224
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(cfg))
    args = ["results/lars/lars_study.json", "-n", "--cores", "2", "--configfile", str(tmp_path / "imagenet.yaml")]
    proc = run_snakemake(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule imagenet:" in proc.stdout and "results/data/raw/cifar10" not in proc.stdout
    cfg["data"]["classification"]["imagenet_tars"] = str(tmp_path / "nowhere")
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(args, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "ILSVRC2012_img_val.tar (md5 29b22e2961454d5413ddabcf34fc5622)" in out, out[-3000:]


def test_imagenet_size_nets_are_alexnet() -> None:
    """At 224 px the study's nets have AlexNet's convs and pools: torchvision's alexnet's parameter count."""
    import torch
    import torchvision

    from repro.lars.models import build_model, count_parameters

    net = build_model("alexnet", num_classes=1000, image_size=224, conv=[64, 192, 384, 256, 256], fc=4096)
    assert count_parameters(net) == sum(p.numel() for p in torchvision.models.alexnet().parameters())
    bn = build_model("alexnet_bn", num_classes=10, image_size=224, conv=[64, 192, 384, 256, 256], fc=64)
    assert bn(torch.zeros(2, 3, 224, 224)).shape == (2, 10)
    assert all(float(m.running_mean.abs().sum()) == 0 for m in bn.modules() if isinstance(m, torch.nn.BatchNorm2d))
