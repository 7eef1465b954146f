"""Inputs of the pretraining stage: the graph stage's patches, node table and pair list, the pair
subset of each arm, and the labelled crops of the evaluation.

Formats (written by ``python -m repro.graph``, see its module docstring): ``patches.npy`` uint8
[N,3,S,S] (row = node id); ``nodes.npz`` per node ``video``, ``role``, ``class_id`` (-1 unknown) ...;
``pairs.npz`` ``a``, ``b`` node ids, ``kind`` (0 intra, 1 inter, 2 transitive), ``parent`` (cluster of
the pair, for the other-parent distractors), ``in_mix`` (the paper's 7:2 transitive:intra mixture).

Arms (Table 1 rows; names are the ``{arm}`` of ``results/pretrain/{arm}/s{seed}/backbone.pt``):

* ``scratch``     no pretraining: the initial weights (Table 1 "Scratch");
* ``intra``       kind 0, tracking pairs (A, A') only (Table 1 "Tracking" [61]);
* ``inter``       kind 1, pairs inside a child group only (our addition: the paper has no such row);
* ``transitive``  the ``in_mix`` pairs, transitive + intra 7:2 (Table 1 "Ours");
* ``transitive_hog`` / ``transitive_short``: ``transitive`` on the ``hog`` / ``short`` graph variant
  (Table 2 ablations: HOG clustering features, 15- instead of 30-frame tracks); the rule picks the file.
* ``transitive_mixed``: ``transitive`` with [61]'s mix of hard and random distractors instead of the
  paper's random ones (our ablation, see :mod:`repro.pretrain.losses`).

Evaluation crops (no detection), one or more labelled sets (``pretrain.eval.sources``):

* ``mined``: every mined patch whose ``class_id >= 0`` (ground truth of the synthetic videos), labelled
  with that class and grouped by its video, so the folds of :mod:`repro.pretrain.metrics` never put
  crops of one video in both train and test. Few instances: an object is one video's shape/colour.
* ``detection``: the ground-truth boxes of the synthetic detection set (the data of the TI transfer),
  cropped and resized to ``crop_size``; its train split trains the probe, its val split tests it.
  Many instances (every object has its own texture), so it measures shape over colour/texture.
* ``voc2007`` (full scale, where the mined videos are unlabelled): VOC 2007 object boxes (``trainval``
  -> train, ``test`` -> test, difficult objects skipped) resized to ``crop_size``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.common.npz import open_npy, read_npz

__all__ = ["ARMS", "EvalSet", "PairSet", "PatchBank", "arm_graph_variant", "load_nodes", "load_pairs", "load_patches",
           "detection_crops", "mined_crops", "select_pairs", "voc_crops"]

ARMS = ("scratch", "intra", "inter", "transitive", "transitive_hog", "transitive_short", "transitive_mixed")
VARIANT_OF_ARM = {"transitive_hog": "hog", "transitive_short": "short"}  # the other arms: the configured graph
KIND_INTRA, KIND_INTER, KIND_TRANSITIVE = 0, 1, 2
# cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION (cv2 is imported where images are read): pixels as stored,
# like the detection stage's PIL reader, since the annotation boxes refer to them; OpenCV would otherwise
# rotate an image by its EXIF orientation tag.
_READ_AS_STORED = 1 | 128
PAIR_KEYS = ("a", "b", "kind", "parent", "in_mix")
NODE_KEYS = ("video", "role", "class_id")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def arm_graph_variant(arm: str, default: str = "main") -> str:
    """The graph variant an arm trains on: ``hog``/``short`` for the Table 2 ablation arms, else ``default``
    (the one source of this mapping: the rules call it too)."""
    return VARIANT_OF_ARM.get(check_arm(arm), default)


def check_arm(arm: str) -> str:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r} (one of {', '.join(ARMS)})")
    return arm


def load_patches(path: str | os.PathLike) -> np.ndarray:
    """``patches.npy`` memory-mapped: uint8 [N, 3, S, S]; a clear error names a wrong file."""
    x = open_npy(path, what="patches")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3] or x.dtype != np.uint8:
        raise ValueError(f"patches {os.fspath(path)!r}: expected uint8 [N,3,S,S], got {x.dtype} {tuple(x.shape)}")
    return x


def load_nodes(path: str | os.PathLike, n_nodes: int) -> dict[str, np.ndarray]:
    """``nodes.npz`` with one row per patch (checked against the patch count)."""
    nodes = read_npz(path, NODE_KEYS, what="nodes", all_arrays=True)
    bad = [k for k in NODE_KEYS if len(nodes[k]) != n_nodes]
    if bad:
        raise ValueError(f"nodes {os.fspath(path)!r}: arrays {bad} do not have one row per patch ({n_nodes})")
    return nodes


@dataclass(frozen=True)
class PairSet:
    """The positive pairs of one arm: node ids ``a``, ``b`` and the pair's ``parent`` cluster, int64 [P]."""

    a: np.ndarray
    b: np.ndarray
    parent: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


def load_pairs(path: str | os.PathLike, n_nodes: int) -> dict[str, np.ndarray]:
    """``pairs.npz``, with every node id checked to be a row of ``patches.npy``."""
    pairs = read_npz(path, PAIR_KEYS, what="pairs", all_arrays=True)
    n = len(pairs["a"])
    if any(len(pairs[k]) != n for k in PAIR_KEYS):
        raise ValueError(f"pairs {os.fspath(path)!r}: arrays {PAIR_KEYS} differ in length")
    for k in ("a", "b"):
        if n and (pairs[k].min() < 0 or pairs[k].max() >= n_nodes):
            raise ValueError(f"pairs {os.fspath(path)!r}: '{k}' has node ids outside [0, {n_nodes})")
    return pairs


def select_pairs(pairs: dict[str, np.ndarray], arm: str) -> PairSet:
    """The arm's subset of the pair list (module docstring); ``scratch`` has none."""
    base = check_arm(arm).split("_", 1)[0]
    if base == "scratch":
        mask = np.zeros(len(pairs["a"]), bool)
    elif base == "intra":
        mask = pairs["kind"] == KIND_INTRA
    elif base == "inter":
        mask = pairs["kind"] == KIND_INTER
    else:  # transitive: the paper's training mixture
        mask = pairs["in_mix"].astype(bool)
    return PairSet(pairs["a"][mask].astype(np.int64), pairs["b"][mask].astype(np.int64),
                   pairs["parent"][mask].astype(np.int64))


class PatchBank:
    """The patches a run trains on, addressed by compact row ids (``rows_of`` maps node ids to them).

    Loaded once onto ``device`` when they take at most ``preload_bytes``; otherwise each batch is
    read from the memory-mapped ``patches.npy`` (the paper-scale file does not fit in memory).
    """

    def __init__(self, patches: np.ndarray, node_ids: np.ndarray, device, *, preload_bytes: float = 4e9) -> None:
        import torch

        self.ids = np.unique(node_ids)  # [n] sorted node ids
        self.device = device
        nbytes = len(self.ids) * int(np.prod(patches.shape[1:]))
        self._mem = None if nbytes <= preload_bytes else patches
        self._data = torch.from_numpy(np.ascontiguousarray(patches[self.ids])).to(device) if self._mem is None else None

    def rows_of(self, node_ids: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.ids, node_ids)
        if len(node_ids) and not np.array_equal(self.ids[np.minimum(rows, len(self.ids) - 1)], node_ids):
            raise ValueError("PatchBank: node ids outside the bank")
        return rows.astype(np.int64)

    def __call__(self, rows):
        """uint8 [n,3,S,S] on the device for compact row ids [n] (a CPU tensor)."""
        import torch

        if self._data is not None:
            return self._data[rows.to(self._data.device)]
        node = self.ids[rows.numpy()]
        order = np.argsort(node, kind="stable")
        out = np.empty((len(node), *self._mem.shape[1:]), np.uint8)
        out[order] = self._mem[node[order]]  # sorted reads from the memmap
        return torch.from_numpy(out).to(self.device)


@dataclass(frozen=True)
class EvalSet:
    """Labelled crops: ``x`` uint8 [M,3,S,S], ``y`` int64 [M] class, ``group`` int64 [M] (video or
    image: never split across train and test), ``split`` int8 [M] (0 train / 1 test) or None for
    grouped k-fold cross-validation, ``classes`` the class names."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    split: np.ndarray | None
    classes: tuple[str, ...]
    source: str


def mined_crops(patches: np.ndarray, nodes: dict[str, np.ndarray]) -> EvalSet:
    """Every patch with a known class (``class_id >= 0``), grouped by video (module docstring)."""
    keep = np.flatnonzero(nodes["class_id"] >= 0)
    if len(keep) == 0:
        raise ValueError("eval: no mined patch has a ground-truth class (class_id >= 0); the synthetic videos"
                         " label them. With downloaded videos set pretrain.eval.source: voc2007")
    y = nodes["class_id"][keep].astype(np.int64)
    names = tuple(f"class_{c}" for c in range(int(y.max()) + 1))
    return EvalSet(np.asarray(patches[keep]), y, nodes["video"][keep].astype(np.int64), None, names, "mined")


def detection_crops(folder: str | os.PathLike, size: int) -> EvalSet:
    """Ground-truth boxes of the synthetic COCO-format detection set (``train.json``/``val.json`` with
    ``info.image_root``): train -> train, val -> test; crowd boxes and boxes under 4 px skipped."""
    import json

    import cv2

    folder = Path(folder)
    xs, ys, groups, splits = [], [], [], []
    names: tuple[str, ...] = ()
    for split_id, split in enumerate(("train", "val")):
        path = folder / f"{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"eval: detection set {os.fspath(folder)!r} has no {split}.json (the synthetic"
                                    " layout; COCO 2017 crops are not supported, use eval.sources: [voc2007])")
        coco = json.loads(path.read_text())
        root = folder / coco.get("info", {}).get("image_root", f"images/{split}")
        cats = sorted(c["id"] for c in coco["categories"])
        names = tuple({c["id"]: c["name"] for c in coco["categories"]}[i] for i in cats)
        files = {im["id"]: im["file_name"] for im in coco["images"]}
        by_image: dict[int, list] = {}
        for ann in coco["annotations"]:
            if not ann.get("iscrowd", 0):
                by_image.setdefault(ann["image_id"], []).append(ann)
        for image_id in sorted(by_image):
            img = cv2.imread(os.fspath(root / files[image_id]), _READ_AS_STORED)
            if img is None:
                raise FileNotFoundError(f"eval: cannot read detection image {os.fspath(root / files[image_id])!r}")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            for ann in by_image[image_id]:
                x, y, w, h = (int(round(v)) for v in ann["bbox"])
                crop = img[max(y, 0) : y + h, max(x, 0) : x + w]
                if min(crop.shape[:2]) < 4:
                    continue
                xs.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))
                ys.append(cats.index(ann["category_id"]))
                groups.append(split_id * 1_000_000 + image_id)
                splits.append(split_id)
    if not xs:
        raise ValueError(f"eval: detection set {os.fspath(folder)!r} has no usable boxes")
    return EvalSet(np.stack(xs).astype(np.uint8), np.asarray(ys, np.int64), np.asarray(groups, np.int64),
                   np.asarray(splits, np.int8), names, "detection")


def _voc_root(folder: Path) -> Path:
    for cand in (folder / "VOCdevkit" / "VOC2007", folder / "VOC2007", folder):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return cand
    raise FileNotFoundError(f"eval: {os.fspath(folder)!r} holds no VOCdevkit/VOC2007 (Annotations, ImageSets/Main)")


def voc_crops(folder: str | os.PathLike, size: int, *, max_per_split: int = 0, seed: int = 0) -> EvalSet:
    """VOC 2007 object crops (non-difficult boxes) resized to ``size`` px; trainval -> train, test -> test.

    ``max_per_split`` > 0 keeps a random subset of that many objects per split (fixed by ``seed``).
    """
    import cv2

    root = _voc_root(Path(folder))
    xs, ys, groups, splits = [], [], [], []
    rng = np.random.default_rng(seed)
    for split_id, image_set in enumerate(("trainval", "test")):
        ids_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not ids_file.is_file():
            raise FileNotFoundError(f"eval: VOC 2007 image list {os.fspath(ids_file)!r} is missing")
        objects = []
        for img_no, name in enumerate(ids_file.read_text().split()):
            ann = ET.parse(root / "Annotations" / f"{name}.xml").getroot()
            for obj in ann.iter("object"):
                if obj.findtext("difficult", "0").strip() == "1":
                    continue
                bb = obj.find("bndbox")
                box = [int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")]
                objects.append((name, VOC_CLASSES.index(obj.findtext("name").strip()), box, img_no))
        if max_per_split and len(objects) > max_per_split:
            objects = [objects[i] for i in sorted(rng.choice(len(objects), max_per_split, replace=False))]
        cache: dict[str, np.ndarray] = {}
        for name, cls, (x1, y1, x2, y2), img_no in objects:
            if name not in cache:
                cache.clear()
                img = cv2.imread(os.fspath(root / "JPEGImages" / f"{name}.jpg"), _READ_AS_STORED)
                if img is None:
                    raise FileNotFoundError(f"eval: cannot read VOC image {name}.jpg")
                cache[name] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            img = cache[name]
            crop = img[max(y1 - 1, 0) : y2, max(x1 - 1, 0) : x2]  # VOC pixels are 1-based, inclusive
            if crop.size == 0:
                continue
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            xs.append(crop.transpose(2, 0, 1))
            ys.append(cls)
            groups.append(split_id * 1_000_000 + img_no)
            splits.append(split_id)
    return EvalSet(np.stack(xs).astype(np.uint8), np.asarray(ys, np.int64), np.asarray(groups, np.int64),
                   np.asarray(splits, np.int8), VOC_CLASSES, "voc2007")
