"""repro.data.readers: the CIFAR-10 / MNIST / split-npz readers every training stage shares, their
errors (each names the bad folder, file or array), and that the stages' loaders are the readers'
arrays plus the stage's own conversion (lars: as is; quant: /256 or standardised; gan: padded)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.data.readers import read_cifar10, read_idx, read_mnist, read_npz_splits

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False, magic: bytes | None = None) -> Path:
    """LeCun's idx format: 0x0000, type 0x08 (uint8), ndim, big-endian uint32 sizes, data."""
    head = magic if magic is not None else bytes([0, 0, 0x08, arr.ndim])
    raw = head + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 3, *, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28)), "y_train": rng.integers(0, 10, n_train),
              "x_test": rng.integers(0, 256, (n_test, 28, 28)), "y_test": rng.integers(0, 10, n_test)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", arrays[f"x_{split}"], gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", arrays[f"y_{split}"], gz=gz)
    return arrays


def write_cifar(root: Path, n: int = 4, seed: int = 0) -> dict[str, dict]:
    """Six python batches of ``n`` images each, in CIFAR's pickled-dict format."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in CIFAR_NAMES:
        batches[name] = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (root / name).write_bytes(pickle.dumps(batches[name]))
    return batches


# ------------------------------------------------------------------ MNIST
@pytest.mark.parametrize("gz", [False, True])
def test_read_mnist_raw_or_gzipped(tmp_path: Path, gz: bool) -> None:
    want = write_mnist(tmp_path, gz=gz)
    got = read_mnist(tmp_path)
    assert got["x_train"].shape == (6, 28, 28) and got["x_test"].shape == (3, 28, 28)
    assert got["x_train"].dtype == np.uint8 and got["y_train"].dtype == np.int64
    for key, arr in want.items():
        assert np.array_equal(got[key], arr), key


def test_read_mnist_finds_files_below_the_folder_and_prefers_the_unpacked_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "sub" / "train-images-idx3-ubyte", rng.integers(0, 256, (6, 28, 28)), gz=True)
    write_idx(tmp_path / "sub" / "train-labels-idx1-ubyte", np.arange(6) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([7, 8, 9]))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 0, 0]), gz=True)  # a stale .gz next to it
    got = read_mnist(tmp_path)
    assert got["y_train"].tolist() == [0, 1, 2, 3, 4, 5] and got["y_test"].tolist() == [7, 8, 9]


def test_read_mnist_errors_name_the_bad_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        read_mnist(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train-images-idx3-ubyte'"):
        read_mnist(tmp_path / "empty")
    write_mnist(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        read_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", np.zeros(3), magic=b"\x00\x00\x0d\x01")  # float64 type
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: not an unsigned-byte idx file"):
        read_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", np.zeros(2))  # 2 labels for 3 images
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: MNIST labels must be \[3\]"):
        read_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / "t10k-images-idx3-ubyte", np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: MNIST images must be \[n, 28, 28\]"):
        read_mnist(tmp_path / "m")


def test_read_idx_rejects_short_and_corrupt_files(tmp_path: Path) -> None:
    cut = tmp_path / "cut-idx1-ubyte"
    cut.write_bytes(write_idx(tmp_path / "ok-idx1-ubyte", np.arange(10)).read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"cut-idx1-ubyte: header says shape \(10,\) but the file holds 7"):
        read_idx(cut)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="tiny: too short"):
        read_idx(tmp_path / "tiny")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="bad.gz: not a readable idx file"):
        read_idx(tmp_path / "bad.gz")


# ------------------------------------------------------------------ CIFAR-10
@pytest.mark.parametrize("layout", ["unpacked", "flat", "nested"])
def test_read_cifar10_as_the_download_rule_unpacks_it(tmp_path: Path, layout: str) -> None:
    root = {"unpacked": tmp_path / "cifar-10-batches-py", "flat": tmp_path,
            "nested": tmp_path / "x" / "y"}[layout]
    batches = write_cifar(root)
    got = read_cifar10(tmp_path)
    assert got["x_train"].shape == (20, 3, 32, 32) and got["x_test"].shape == (4, 3, 32, 32)
    assert got["x_train"].dtype == np.uint8 and got["y_train"].dtype == np.int64
    assert got["y_train"].tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert got["y_test"].tolist() == batches["test_batch"][b"labels"]
    first = batches["data_batch_1"][b"data"][0]
    for c in range(3):  # channel-major rows: R(1024) G(1024) B(1024)
        assert np.array_equal(got["x_train"][0, c].ravel(), first[1024 * c : 1024 * (c + 1)])


def test_read_cifar10_errors_name_what_is_missing_or_bad(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CIFAR-10 folder not found"):
        read_cifar10(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 python batches.*cifar-10-batches-py"):
        read_cifar10(tmp_path / "empty")
    root = tmp_path / "c" / "cifar-10-batches-py"
    write_cifar(root)
    (root / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"batches missing: \['test_batch'\]"):
        read_cifar10(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})[:20])
    with pytest.raises(ValueError, match="test_batch: not a readable CIFAR-10 python batch"):
        read_cifar10(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"pixels": 0}))
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 python batch"):
        read_cifar10(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match=r"test_batch: data has shape \(2, 1024\), expected \[n, 3072\]"):
        read_cifar10(tmp_path / "c")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}))
    with pytest.raises(ValueError, match=r"test_batch: labels have shape \(1,\), expected \[2\]"):
        read_cifar10(tmp_path / "c")


# ------------------------------------------------------------------ split npz files
def _splits(n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.random((n_train, 8, 8)).astype(np.float32), "y_train": np.arange(n_train) % 10,
            "x_test": rng.random((n_test, 8, 8)).astype(np.float32), "y_test": np.arange(n_test) % 10}


def test_read_npz_splits_returns_the_arrays_as_stored(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", **_splits())
    got = read_npz_splits(tmp_path / "d.npz", what="digits data")
    assert sorted(got) == ["x_test", "x_train", "y_test", "y_train"]
    for key, arr in _splits().items():
        assert np.array_equal(got[key], arr) and got[key].dtype == arr.dtype, key


def test_read_npz_splits_errors_name_the_file_and_the_array(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="digits data not found: .*nope.npz"):
        read_npz_splits(tmp_path / "nope.npz", what="digits data")
    a = _splits()
    np.savez(tmp_path / "lack.npz", **{k: v for k, v in a.items() if k != "y_test"})
    with pytest.raises(ValueError, match=r"lack.npz: missing arrays \['y_test'\]"):
        read_npz_splits(tmp_path / "lack.npz", what="digits data")
    np.savez(tmp_path / "short.npz", **{**a, "y_train": a["y_train"][:-2]})
    with pytest.raises(ValueError, match=r"short.npz \(digits data\): y_train labels must be \[N\] matching the N=5"):
        read_npz_splits(tmp_path / "short.npz", what="digits data")
    np.savez(tmp_path / "twod.npz", **{**a, "y_test": a["y_test"][:, None]})
    with pytest.raises(ValueError, match=r"twod.npz .*y_test labels must be \[N\]"):
        read_npz_splits(tmp_path / "twod.npz", what="digits data")
    data = (tmp_path / "short.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz: not a readable .npz"):
        read_npz_splits(tmp_path / "cut.npz", what="digits data")


# ------------------------------------------------------------------ the stages' loaders on top of them
def test_stage_loaders_convert_the_readers_arrays(tmp_path: Path) -> None:
    from repro.gan import data as gan_data
    from repro.lars import data as lars_data
    from repro.quant import data as quant_data

    write_cifar(tmp_path / "cifar" / "cifar-10-batches-py")
    mn = write_mnist(tmp_path / "mnist", gz=True)
    cifar = read_cifar10(tmp_path / "cifar")

    lars = lars_data.load_classification(tmp_path / "cifar")  # uint8 as read
    assert all(np.array_equal(lars[k], cifar[k]) for k in cifar)

    q = quant_data.load_cifar10(tmp_path / "cifar")  # /255, standardised by the train set's channel stats
    xtr = cifar["x_train"].astype(np.float32) / 255.0
    mean, std = xtr.mean(axis=(0, 2, 3), keepdims=True), xtr.std(axis=(0, 2, 3), keepdims=True)
    assert torch.allclose(q.x_train, torch.from_numpy((xtr - mean) / std))
    assert torch.allclose(q.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert q.y_test.tolist() == cifar["y_test"].tolist()
    qm = quant_data.load_mnist(tmp_path / "mnist")  # [n, 1, 28, 28] in [0, 1) by 1/256 (Caffe's LeNet)
    assert qm.x_train.shape == (6, 1, 28, 28) and float(qm.x_train.max()) < 1.0
    assert torch.equal(qm.x_test[:, 0] * 256.0, torch.from_numpy(mn["x_test"].astype(np.float32)))

    g = gan_data.load_cifar10(tmp_path / "cifar")
    assert np.array_equal(g.x_train, cifar["x_train"]) and g.n_classes == 10
    gm = gan_data.load_mnist(tmp_path / "mnist")  # zero-padded 28 -> 32 for the DCGAN nets
    assert gm.x_train.shape == (6, 1, 32, 32) and gm.x_train.dtype == np.uint8
    assert np.array_equal(gm.x_train[:, 0, 2:30, 2:30], mn["x_train"]) and gm.x_train[:, :, :2].max() == 0
    assert gm.y_test.tolist() == mn["y_test"].tolist() and gm.y_test.dtype == np.int64
