"""A miniature COCO 2017 release: ``train2017.zip``, ``val2017.zip``, ``annotations_trainval2017.zip`` and
``test2017.zip`` with ``image_info_test2017.zip`` (the test-dev list), laid out and encoded as the real ones.

What the real files have and this copies: 12-digit zero-padded file names; the 80 categories with
their non-contiguous ids 1-90 and supercategories; polygon segmentations with float boxes and areas;
``iscrowd`` annotations whose segmentation is an uncompressed RLE (``counts`` a list); images
without any annotation; grayscale (one-channel) JPEGs among the RGB ones; ``info`` and ``licenses``;
the test-dev image list (``annotations/image_info_test-dev2017.json``, no annotations).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from realformat.archive import md5, write_zip
from realformat.images import jpeg, scene

CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
]
USED = (1, 3, 18, 44, 62, 90)  # the categories the miniature's objects use (first, last, and between)
INFO = {"description": "COCO 2017 Dataset (miniature)", "url": "http://cocodataset.org", "version": "1.0",
        "year": 2017, "contributor": "COCO Consortium", "date_created": "2017/09/01"}
LICENSES = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
             "name": "Attribution-NonCommercial-ShareAlike License"}]


def categories() -> list[dict]:
    return [{"supercategory": s, "id": i, "name": n} for i, n, s in CATEGORIES]


def _image_record(image_id: int, split: str, width: int, height: int) -> dict:
    name = f"{image_id:012d}.jpg"
    return {"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}/{name}",
            "height": height, "width": width, "date_captured": "2013-11-14 11:18:45",
            "flickr_url": f"http://farm1.staticflickr.com/{image_id}.jpg", "id": image_id}


def _polygon(x: float, y: float, w: float, h: float) -> list[list[float]]:
    """A rectangle as a COCO polygon (one ring, x/y interleaved, 2 decimals as in the release)."""
    return [[round(v, 2) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]]


def _crowd_rle(x: int, y: int, w: int, h: int, width: int, height: int) -> dict:
    """An uncompressed RLE (``counts`` a list of run lengths, column-major), as crowd regions are stored."""
    m = np.zeros((height, width), np.uint8, order="F")
    m[y : y + h, x : x + w] = 1
    counts, prev, run = [], 0, 0
    for v in m.flatten(order="F"):
        if v != prev:
            counts.append(run)
            prev, run = v, 0
        run += 1
    counts.append(run)
    rle = {"counts": counts, "size": [height, width]}
    assert mask_utils.area(mask_utils.frPyObjects(rle, height, width)) == w * h
    return rle


def build_split(split: str, n_images: int, rng: np.random.Generator, first_id: int,
                first_ann: int) -> tuple[dict, dict[str, bytes]]:
    """(instances dict, {zip member: JPEG bytes}) for ``split`` (``train2017`` or ``val2017``)."""
    images, annotations, members = [], [], {}
    for k in range(n_images):
        image_id = first_id + 7 * k + int(rng.integers(0, 5))  # sparse ids, as in the release
        width, height = (int(v) for v in rng.choice([(96, 72), (72, 96), (96, 64), (80, 80)]))
        boxes, anns = [], []
        n_obj = 0 if k % 5 == 4 else int(rng.integers(1, 4))  # every fifth image has no annotation
        for _ in range(n_obj):
            w, h = int(rng.integers(12, width // 2)), int(rng.integers(12, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            boxes.append((x, y, w, h))
            xf, yf, wf, hf = x + 0.31, y + 0.57, w - 0.62, h - 0.84  # sub-pixel, as annotators' clicks
            anns.append({"segmentation": _polygon(xf, yf, wf, hf), "area": round(wf * hf, 4), "iscrowd": 0,
                         "image_id": image_id, "bbox": [round(v, 2) for v in (xf, yf, wf, hf)],
                         "category_id": int(rng.choice(USED)), "id": 0})
        if k % 3 == 1:  # a crowd region next to the objects
            w, h = width // 3, height // 3
            boxes.append((0, height - h, w, h))
            anns.append({"segmentation": _crowd_rle(0, height - h, w, h, width, height), "area": w * h,
                         "iscrowd": 1, "image_id": image_id, "bbox": [0.0, float(height - h), float(w), float(h)],
                         "category_id": 1, "id": 0})
        for a in anns:
            a["id"] = first_ann + len(annotations)
            annotations.append(a)
        images.append(_image_record(image_id, split, width, height))
        members[f"{split}/{image_id:012d}.jpg"] = jpeg(scene(rng, width, height, boxes), grey=k % 4 == 2)
    instances = {"info": INFO, "licenses": LICENSES, "images": images, "annotations": annotations,
                 "categories": categories()}
    return instances, members


def build(out: Path, *, n_train: int = 24, n_val: int = 10, seed: int = 2017) -> dict[str, str]:
    """Write the three train/val zips into ``out``; returns {file name: md5}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train, train_jpgs = build_split("train2017", n_train, rng, first_id=9, first_ann=1001)
    val, val_jpgs = build_split("val2017", n_val, rng, first_id=139, first_ann=900001)
    js = {f"annotations/instances_{s}.json": json.dumps(d).encode() for s, d in (("train2017", train),
                                                                                  ("val2017", val))}
    files = [
        write_zip(out / "train2017.zip", train_jpgs),
        write_zip(out / "val2017.zip", val_jpgs),
        write_zip(out / "annotations_trainval2017.zip", js),
    ]
    return {f.name: md5(f) for f in files}


def build_test(out: Path, *, n_test: int = 4, n_dev: int = 3, seed: int = 2018) -> dict[str, str]:
    """The test release (download ``coco2017_test``): ``test2017.zip`` with the images and
    ``image_info_test2017.zip`` whose test-dev list is a subset of them, as the real one; {name: md5}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = [_image_record(1 + 3 * k, "test2017", 96, 72) for k in range(n_test)]
    jpgs = {f"test2017/{im['file_name']}": jpeg(scene(rng, 96, 72, [(10, 8, 30, 24)]), grey=k == 1)
            for k, im in enumerate(images)}
    info = {"info": INFO, "licenses": LICENSES, "images": images, "categories": categories()}
    dev = {**info, "images": images[:n_dev]}
    files = [
        write_zip(out / "test2017.zip", jpgs),
        write_zip(out / "image_info_test2017.zip", {
            "annotations/image_info_test2017.json": json.dumps(info).encode(),
            "annotations/image_info_test-dev2017.json": json.dumps(dev).encode(),
        }),
    ]
    return {f.name: md5(f) for f in files}
