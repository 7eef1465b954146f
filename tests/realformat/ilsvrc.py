"""A miniature ILSVRC2012 release, built from tiny JPEGs in the real archives' layout.

- ``ILSVRC2012_img_train.tar``: one inner ``<wnid>.tar`` per class holding ``<wnid>_<k>.JPEG``;
- ``ILSVRC2012_img_val.tar``: flat ``ILSVRC2012_val_<8 digits>.JPEG``;
- ``ILSVRC2012_devkit_t12.tar.gz``: ``ILSVRC2012_devkit_t12/data/meta.mat`` (the ``synsets`` struct
  array: ILSVRC2012_ID, WNID, words, gloss, num_children, children, wordnet_height,
  num_train_images; one non-leaf synset that the parser must drop) and
  ``data/ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per val image, in file order).

Each class has its own colour, so a tiny CNN can learn it. The md5s differ from the published ones:
:func:`archive_meta` gives the ``ARCHIVE_META`` a test patches into torchvision to accept them.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TRAIN, VAL, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331")
NAMES = ("tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark", "tiger shark",
         "hammerhead, hammerhead shark", "electric ray, crampfish")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 60, 220), (220, 220, 40), (200, 40, 200), (40, 200, 200))


@dataclass
class MiniIlsvrc:
    folder: Path
    wnids: list[str]  # leaf synsets in ILSVRC2012_ID order (= torchvision's class order, sorted wnids)
    val_wnids: list[str]  # ground truth of each val image, in file-name order
    n_train: int
    md5: dict[str, str] = field(default_factory=dict)  # devkit / train / val


def _jpeg(rng: np.random.Generator, colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    from PIL import Image

    w, h = size
    noise = rng.integers(-30, 30, (h, w, 3))
    pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            _add(tar, name, data)
    return buf.getvalue()


def _meta_mat(wnids: list[str], names: list[str]) -> bytes:
    import scipy.io as sio

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i + 1, w, n, f"gloss of {w}", 0, np.zeros(0), 0, 6) for i, (w, n) in enumerate(zip(wnids, names))]
    # a non-leaf synset after the leaves (as in the real file): torchvision keeps only num_children == 0
    rows.append((len(wnids) + 1, "n00000001", "fish", "a parent synset", len(wnids),
                 np.arange(1, len(wnids) + 1), 1, 0))
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        synsets[i, 0] = row
    buf = io.BytesIO()
    sio.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def build_ilsvrc2012(folder: Path, *, n_classes: int = 3, train_per_class: int = 6, val_per_class: int = 2,
                     size: tuple[int, int] = (40, 32), seed: int = 0) -> MiniIlsvrc:
    """Write the three release archives into ``folder`` (``size`` = JPEG width, height)."""
    if not 2 <= n_classes <= len(WNIDS):
        raise ValueError(f"n_classes must be in 2..{len(WNIDS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wnids, names = list(WNIDS[:n_classes]), list(NAMES[:n_classes])
    inner = {
        f"{w}.tar": _tar_bytes({f"{w}_{k}.JPEG": _jpeg(rng, COLOURS[c], size) for k in range(train_per_class)})
        for c, w in enumerate(wnids)
    }
    (folder / TRAIN).write_bytes(_tar_bytes(inner))
    val_classes = rng.permutation(np.repeat(np.arange(n_classes), val_per_class))  # shuffled, as the real set
    val = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": _jpeg(rng, COLOURS[c], size) for i, c in enumerate(val_classes)}
    (folder / VAL).write_bytes(_tar_bytes(val))
    truth = "".join(f"{c + 1}\n" for c in val_classes).encode()  # ILSVRC2012_ID = index + 1
    (folder / DEVKIT).write_bytes(_tar_bytes({
        "ILSVRC2012_devkit_t12/data/meta.mat": _meta_mat(wnids, names),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": truth,
    }, mode="w:gz"))
    md5 = {key: hashlib.md5((folder / name).read_bytes()).hexdigest()
           for key, name in (("devkit", DEVKIT), ("train", TRAIN), ("val", VAL))}
    return MiniIlsvrc(folder, wnids, [wnids[c] for c in val_classes], n_classes * train_per_class, md5)


def archive_meta(mini: MiniIlsvrc) -> dict[str, tuple[str, str]]:
    """torchvision's ``ARCHIVE_META`` for the miniature: the real file names with its md5s."""
    return {"devkit": (DEVKIT, mini.md5["devkit"]), "train": (TRAIN, mini.md5["train"]),
            "val": (VAL, mini.md5["val"])}
