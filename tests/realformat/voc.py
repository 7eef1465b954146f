"""A miniature PASCAL VOC 2007 release: ``VOCtrainval_06-Nov-2007.tar`` and ``VOCtest_06-Nov-2007.tar``.

Both unpack into ``VOCdevkit/VOC2007/`` (``Annotations``, ``JPEGImages``, ``ImageSets/Main`` with the
split lists and the per-class ``<class>_<split>.txt`` lists, ``ImageSets/Layout``). The XML is the
release's: tab-indented, ``source``/``owner``/``size``/``segmented``, per object ``name``, ``pose``,
``truncated``, ``difficult`` and an integer 1-based ``bndbox`` (boxes touching the border reach
``width``/``height``), and persons with ``part`` boxes (head, hand, foot) of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realformat.archive import md5, write_tar
from realformat.images import jpeg, scene

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
ROOT = "VOCdevkit/VOC2007"


def _object_xml(name: str, box: tuple[int, int, int, int], *, truncated: int, difficult: int,
                parts: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    x1, y1, x2, y2 = box
    part_xml = "".join(
        f"\t\t<part>\n\t\t\t<name>{p}</name>\n\t\t\t<bndbox>\n\t\t\t\t<xmin>{a}</xmin>\n\t\t\t\t<ymin>{b}</ymin>\n"
        f"\t\t\t\t<xmax>{c}</xmax>\n\t\t\t\t<ymax>{d}</ymax>\n\t\t\t</bndbox>\n\t\t</part>\n"
        for p, (a, b, c, d) in parts
    )
    return (f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{truncated}</truncated>\n"
            f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n"
            f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n{part_xml}\t</object>\n")


def annotation_xml(stem: str, width: int, height: int, objects: list[str]) -> str:
    return ("<annotation>\n\t<folder>VOC2007</folder>\n"
            f"\t<filename>{stem}.jpg</filename>\n\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
            "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>\n\t\t<flickrid>341012865</flickrid>\n"
            "\t</source>\n\t<owner>\n\t\t<flickrid>Fried Camels</flickrid>\n\t\t<name>Jinky the Fruit Bat</name>\n"
            f"\t</owner>\n\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n"
            f"\t</size>\n\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n")


def _split(stems: list[str], rng: np.random.Generator) -> tuple[dict[str, bytes], dict[str, list[str]]]:
    """Members for ``stems`` (XML + JPEG) and, per image, the classes it shows."""
    members, shown = {}, {}
    for k, stem in enumerate(stems):
        width, height = (int(v) for v in rng.choice([(100, 75), (75, 100), (96, 64)]))
        objs, boxes, names = [], [], []
        for j in range(int(rng.integers(1, 4))):
            w, h = int(rng.integers(16, width // 2)), int(rng.integers(16, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if j == 0 and k % 3 == 0:  # touches the right and bottom border: truncated
                x, y = width - w, height - h
            name = "person" if j == 0 and k % 2 else CLASSES[int(rng.integers(0, len(CLASSES)))]
            x1, y1, x2, y2 = x + 1, y + 1, x + w, y + h  # 1-based, inclusive
            parts = [("head", (x1 + 2, y1 + 1, x1 + w // 3, y1 + h // 4))] if name == "person" else []
            objs.append(_object_xml(name, (x1, y1, x2, y2), truncated=int(x2 == width or y2 == height),
                                    difficult=int(j == 2 or (k % 4 == 3 and j == 1)), parts=parts))
            boxes.append((x, y, w, h))
            names.append(name)
        members[f"{ROOT}/Annotations/{stem}.xml"] = annotation_xml(stem, width, height, objs).encode()
        members[f"{ROOT}/JPEGImages/{stem}.jpg"] = jpeg(scene(rng, width, height, boxes))
        shown[stem] = names
    return members, shown


def _lists(split: str, shown: dict[str, list[str]], subsets: dict[str, list[str]]) -> dict[str, bytes]:
    """ImageSets/Main/<split>.txt (+ train/val) and <class>_<split>.txt (`stem  1` / `stem -1`)."""
    out = {f"{ROOT}/ImageSets/Main/{name}.txt": "".join(f"{s}\n" for s in stems).encode()
           for name, stems in subsets.items()}
    for cls in CLASSES:
        for name, stems in subsets.items():
            out[f"{ROOT}/ImageSets/Main/{cls}_{name}.txt"] = "".join(
                f"{s} {' 1' if cls in shown[s] else '-1'}\n" for s in stems).encode()
    out[f"{ROOT}/ImageSets/Layout/{split}.txt"] = "".join(
        f"{s} 1\n" for s in subsets[split] if "person" in shown[s]).encode()
    return out


def build(out: Path, *, n_trainval: int = 16, n_test: int = 8, seed: int = 2007) -> dict[str, str]:
    """Write both tars into ``out``; returns {file name: md5}."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 9963), n_trainval + n_test, replace=False))
    test = [f"{i:06d}" for i in ids[1::3]][:n_test]
    trainval = [f"{i:06d}" for i in ids if f"{i:06d}" not in test]
    tv_members, tv_shown = _split(trainval, rng)
    te_members, te_shown = _split(test, rng)
    tv_members |= _lists("trainval", tv_shown, {"train": trainval[::2], "val": trainval[1::2], "trainval": trainval})
    te_members |= _lists("test", te_shown, {"test": test})
    files = [write_tar(out / "VOCtrainval_06-Nov-2007.tar", dict(sorted(tv_members.items()))),
             write_tar(out / "VOCtest_06-Nov-2007.tar", dict(sorted(te_members.items())))]
    return {f.name: md5(f) for f in files}
