"""Detection data: COCO-format splits (the synthetic set and COCO 2017) and PASCAL VOC 2007.

:func:`find_splits` maps a dataset folder (the rule's input) to its train/val annotations and image
folders. It recognises three layouts (and :func:`find_test_dev` a fourth, images only, for the COCO
evaluation server's results file):

* the synthetic set (``results/data/detection``): ``train.json``, ``val.json``, ``images/{train,val}``;
* COCO 2017 unpacked from the official zips (``results/data/raw/coco2017``):
  ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``
  (train2017/val2017 are the usual stand-ins for the paper's trainval35k/minival, Sec. 5);
* VOC 2007 unpacked from the official tars (``results/data/raw/voc2007``):
  ``VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main/{trainval,test}.txt}``. These are
  converted to a COCO dict in memory, and "difficult" objects become ``iscrowd=1``, so pycocotools
  ignores them as VOC does.

Boxes are read as COCO ``[x, y, w, h]`` and given to the model as ``[x1, y1, x2, y2]``. Category ids
(non-contiguous on COCO) are mapped to labels 1..K, and 0 is the background.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from repro.common.io import read_json
from repro.common.rng import HFLIP

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class Split:
    """One split: a COCO-format annotation dict and the folder its ``file_name``s are relative to."""

    coco: dict[str, Any]
    image_root: Path
    source: str  # the annotation file(s) it came from, for error messages and provenance


def _load_coco_json(path: Path, image_root: Path) -> Split:
    data = read_json(path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path}: not a COCO detection file (no {key!r} list)")
    if not image_root.is_dir():
        raise FileNotFoundError(f"{path}: image folder {os.fspath(image_root)!r} does not exist")
    return Split(data, image_root, os.fspath(path))


def voc_to_coco(voc_root: Path, image_set: str) -> dict[str, Any]:
    """VOC XML annotations of ``ImageSets/Main/<image_set>.txt`` as a COCO dict (VOC px are 1-based)."""
    ids_file = voc_root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(f"VOC 2007: missing image list {os.fspath(ids_file)!r}")
    images, annotations = [], []
    for img_id, name in enumerate(ids_file.read_text().split(), start=1):
        root = ET.parse(voc_root / "Annotations" / f"{name}.xml").getroot()
        size = root.find("size")
        images.append({"id": img_id, "file_name": f"{name}.jpg",
                       "width": int(size.findtext("width")), "height": int(size.findtext("height"))})
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": img_id,
                "category_id": VOC_CLASSES.index(obj.findtext("name").strip()) + 1,
                "bbox": [x1 - 1, y1 - 1, w, h], "area": w * h,
                "iscrowd": int(obj.findtext("difficult", "0").strip() == "1"),
            })
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(VOC_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def find_splits(root: str | os.PathLike) -> tuple[Split, Split]:
    """(train, val) splits of a dataset folder in one of the three layouts of the module doc."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"detection data folder {os.fspath(root)!r} does not exist")
    if (root / "train.json").is_file():
        out = []
        for split in ("train", "val"):
            path = root / f"{split}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{os.fspath(root)}: has train.json but no {split}.json")
            rel = read_json(path).get("info", {}).get("image_root", f"images/{split}")
            out.append(_load_coco_json(path, root / rel))
        return out[0], out[1]
    ann = root / "annotations"
    if (ann / "instances_train2017.json").is_file():
        return (_load_coco_json(ann / "instances_train2017.json", root / "train2017"),
                _load_coco_json(ann / "instances_val2017.json", root / "val2017"))
    voc = root / "VOCdevkit" / "VOC2007"
    if voc.is_dir():
        return tuple(Split(voc_to_coco(voc, s), voc / "JPEGImages", os.fspath(voc / s)) for s in ("trainval", "test"))
    raise FileNotFoundError(
        f"{os.fspath(root)}: no detection data found; expected train.json + val.json (synthetic),"
        " annotations/instances_train2017.json (COCO 2017) or VOCdevkit/VOC2007 (VOC 2007)"
    )


TEST_DEV_INFO = "annotations/image_info_test-dev2017.json"
TEST_DEV_IMAGES = "test2017"


def find_test_dev(root: str | os.PathLike) -> Split:
    """COCO test-dev 2017 in a folder holding the official ``image_info_test2017.zip`` and ``test2017.zip``
    unpacked: the images ``annotations/image_info_test-dev2017.json`` lists (a subset of ``test2017/``),
    with no annotations."""
    root = Path(root)
    info = root / TEST_DEV_INFO
    if not info.is_file():
        raise FileNotFoundError(f"{os.fspath(root)}: no {TEST_DEV_INFO} (unpack COCO's image_info_test2017.zip there)")
    data = read_json(info)
    for key in ("images", "categories"):
        if key not in data:
            raise ValueError(f"{info}: not a COCO image-info file (no {key!r} list)")
    images = root / TEST_DEV_IMAGES
    if not images.is_dir():
        raise FileNotFoundError(f"{os.fspath(root)}: no {TEST_DEV_IMAGES}/ folder (unpack COCO's test2017.zip there)")
    return Split({**data, "annotations": []}, images, os.fspath(info))


class CocoDetection(Dataset):
    """Images as float [3, H, W] in [0, 1] and torchvision-style targets, one per COCO image.

    ``target = {"boxes": [N, 4] x1y1x2y2, "labels": [N] in 1..K, "image_id": int}``. Crowd (and VOC
    difficult) objects and boxes under 1 px are left out of training targets, but kept for evaluation.
    ``cache=True`` decodes every image once and keeps them as uint8 (for the small default sets).
    ``hflip`` flips a sample horizontally at random. The coin comes from a torch generator seeded per
    (seed, epoch, index), so a resumed run sees the same flips.
    """

    def __init__(self, split: Split, *, max_images: int | None = None, skip_empty: bool = False,
                 cache: bool = False) -> None:
        self.split = split
        coco = split.coco
        self.cat_ids = sorted(c["id"] for c in coco["categories"])
        self.cat_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        by_image: dict[int, list[dict]] = {img["id"]: [] for img in coco["images"]}
        for a in coco["annotations"]:
            if a["image_id"] not in by_image:
                raise ValueError(f"{split.source}: annotation {a.get('id')} refers to unknown image {a['image_id']}")
            box = a.get("bbox")
            if not (isinstance(box, (list, tuple)) and len(box) == 4
                    and all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)):
                raise ValueError(f"{split.source}: annotation {a.get('id')} has bbox {box!r}; expected [x, y, w, h]")
            by_image[a["image_id"]].append(a)
        images = sorted(coco["images"], key=lambda im: im["id"])
        if skip_empty:
            images = [im for im in images if any(not a.get("iscrowd", 0) for a in by_image[im["id"]])]
        if max_images is not None:
            images = images[:max_images]
        self.images = images
        self.targets = [self._target(im["id"], by_image[im["id"]]) for im in images]
        self._cache: list[Tensor] | None = [self._read(i) for i in range(len(images))] if cache else None

    @property
    def num_classes(self) -> int:
        """Object classes + background."""
        return len(self.cat_ids) + 1

    def _target(self, image_id: int, anns: list[dict]) -> dict[str, Tensor]:
        boxes, labels = [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            if a.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.cat_to_label[a["category_id"]])
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": torch.tensor(image_id),
        }

    def _read(self, i: int) -> Tensor:
        from PIL import Image

        path = self.split.image_root / self.images[i]["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{self.split.source}: image {os.fspath(path)!r} is missing")
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))  # H x W x 3 uint8 (grey COCO images become RGB)
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()  # 3 x H x W

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        img = self._cache[i] if self._cache is not None else self._read(i)
        return img.float().div_(255.0), {k: v.clone() for k, v in self.targets[i].items()}

    def coco_gt(self) -> dict[str, Any]:
        """The ground truth of the images in this dataset (after ``max_images``) as a COCO dict."""
        keep = {im["id"] for im in self.images}
        coco = self.split.coco
        return {
            "images": self.images,
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
            "categories": coco["categories"],
        }


def hflip_sample(img: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mirror an image [3, H, W] and its x1y1x2y2 boxes left-right."""
    w = img.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return img.flip(-1), {**target, "boxes": boxes}


class StepBatchSampler(Sampler[list[int]]):
    """Index batches for steps ``start..total-1``. Each epoch is a permutation seeded by (seed, epoch).

    Batch ``t`` depends only on (seed, t), so a run resumed at step t sees the same data as an
    uninterrupted one.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, start: int, total: int) -> None:
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.bs, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, permutation) of the last epoch used

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1]

    def batch(self, step: int) -> list[int]:
        out = []
        for k in range(step * self.bs, (step + 1) * self.bs):
            epoch, pos = divmod(k, self.n)
            out.append(int(self._permutation(epoch)[pos]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return (self.batch(t) for t in range(self.start, self.total))

    def __len__(self) -> int:
        return max(self.total - self.start, 0)


class TrainView(Dataset):
    """A training view of a :class:`CocoDetection`: random horizontal flip seeded per (seed, step, index).

    Items are keyed ``(step, slot, index)`` (slot: position in the step's global batch); the target gets
    ``sample_key = [seed, step, slot]``, which the training loop hands to the model's samplers
    (``repro.detect.models.set_sampling_keys``) and removes before the forward.
    """

    def __init__(self, base: CocoDetection, *, hflip: bool, seed: int) -> None:
        self.base, self.hflip, self.seed = base, hflip, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Tensor, dict[str, Tensor]]:
        step, slot, i = key
        img, target = self.base[i]
        if self.hflip and np.random.default_rng([self.seed, step, i, HFLIP]).random() < 0.5:
            img, target = hflip_sample(img, target)
        return img, {**target, "sample_key": torch.tensor([self.seed, step, slot])}


class _KeyedSampler(Sampler[list[tuple[int, int, int]]]):
    """Wraps a StepBatchSampler so each index carries its step and slot (the random streams' keys).

    With ``world_size`` > 1 it yields this rank's strided share ``slots rank::world_size`` of each
    global batch (every rank computes the same global batch from the seed).
    """

    def __init__(self, steps: StepBatchSampler, *, rank: int = 0, world_size: int = 1) -> None:
        if steps.bs < world_size:
            raise ValueError(f"detect.batch_size {steps.bs} is the global batch: it must be >= the {world_size} ranks")
        self.steps, self.rank, self.world_size = steps, rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for t in range(self.steps.start, self.steps.total):
            batch = list(enumerate(self.steps.batch(t)))
            yield [(t, slot, i) for slot, i in batch[self.rank :: self.world_size]]

    def __len__(self) -> int:
        return len(self.steps)


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Detection batches are lists (images may differ in size)."""
    return [b[0] for b in batch], [b[1] for b in batch]


def train_loader(dataset: CocoDetection, *, batch_size: int, seed: int, start: int, total: int,
                 hflip: bool, num_workers: int = 0, rank: int = 0, world_size: int = 1) -> torch.utils.data.DataLoader:
    """Batches for steps ``start..total-1`` (deterministic per step; see StepBatchSampler); this rank's
    share of each global batch of ``batch_size`` images when ``world_size`` > 1."""
    sampler = _KeyedSampler(StepBatchSampler(len(dataset), batch_size, seed=seed, start=start, total=total),
                            rank=rank, world_size=world_size)
    return torch.utils.data.DataLoader(
        TrainView(dataset, hflip=hflip, seed=seed), batch_sampler=sampler, collate_fn=collate,
        num_workers=num_workers, persistent_workers=False,
        # its own generator: creating the iterator must not draw from the global RNG, which the
        # checkpoint restores (otherwise a resumed run's RPN/RoI sampling would differ)
        generator=torch.Generator().manual_seed(seed),
    )


def eval_loader(dataset: CocoDetection, *, batch_size: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers
    )
