"""ImageNet (ILSVRC2012) from the user's release tars: verify, unpack, open (LARS at full scale).

ImageNet cannot be downloaded by the pipeline: the user supplies the three release archives
(``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``, ``ILSVRC2012_devkit_t12.tar.gz``) in one
folder. :func:`verify_archives` checks every one of them against the md5 that torchvision's
``ImageNet`` class checks (``torchvision.datasets.imagenet.ARCHIVE_META``, read at call time) before
anything is unpacked, and names the file and its expected md5 when one is missing or differs. The
config key ``data.classification.imagenet_md5`` replaces those md5s for a rehearsal on miniature tars
in the release layout (``tests/realformat``); a real run leaves it unset.
:func:`prepare_imagenet` then unpacks them with torchvision's own parsers into the layout its
``ImageNet`` class reads (``meta.bin``, ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``), in a
temporary folder renamed into place at the end; :func:`open_imagenet` opens one split of it.
torchvision's parsers check the same md5s again as they unpack (the replaced ones, if any).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from repro.common.errors import InputError
from repro.data.download import file_digests

__all__ = ["ARCHIVE_KEYS", "ImageNetArchiveError", "archive_paths", "is_prepared", "open_imagenet",
           "prepare_imagenet", "verify_archives"]

ARCHIVE_KEYS = ("devkit", "train", "val")  # the order torchvision parses them in (val needs the devkit)
META_FILE = "meta.bin"


class ImageNetArchiveError(InputError):
    """A release tar is missing or does not match its published md5; the message names both."""


def _archive_meta(md5: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """torchvision's (file name, md5) per archive key, with the md5s of ``md5`` (key -> md5) in place."""
    from torchvision.datasets import imagenet

    unknown = sorted(set(md5 or {}) - set(ARCHIVE_KEYS))
    if unknown:
        raise ValueError(f"config key 'data.classification.imagenet_md5' names unknown archives {unknown}; "
                         f"known: {list(ARCHIVE_KEYS)}")
    return {key: (name, (md5 or {}).get(key, digest)) for key, (name, digest) in imagenet.ARCHIVE_META.items()}


@contextlib.contextmanager
def _parsers_expect(meta: Mapping[str, tuple[str, str]]) -> Iterator[None]:
    """torchvision's parsers read their md5s from its module-level ``ARCHIVE_META``: expect ``meta``'s
    while they run, and restore the published ones after."""
    from torchvision.datasets import imagenet

    saved = dict(imagenet.ARCHIVE_META)
    imagenet.ARCHIVE_META.update(meta)
    try:
        yield
    finally:
        imagenet.ARCHIVE_META.clear()
        imagenet.ARCHIVE_META.update(saved)


def archive_paths(folder: str | os.PathLike, md5: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The three release tars' paths in ``folder``, by torchvision's keys (devkit, train, val);
    :class:`ImageNetArchiveError` naming each one that is not there, with its md5."""
    meta = _archive_meta(md5)
    paths = {key: Path(folder) / meta[key][0] for key in ARCHIVE_KEYS}
    missing = [key for key, path in paths.items() if not path.is_file()]
    if missing:
        raise ImageNetArchiveError(
            f"ImageNet folder {folder} lacks "
            + ", ".join(f"{paths[k].name} (md5 {meta[k][1]})" for k in missing)
            + ": put the ILSVRC2012 release tars there (they cannot be downloaded by the pipeline)")
    return paths


def verify_archives(folder: str | os.PathLike, md5: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Check that ``folder`` holds the three tars with their published md5s (or those of ``md5``); return
    each one's record (file, bytes, md5). Every tar's presence is checked before any is hashed (the train
    tar is 138 GB)."""
    meta = _archive_meta(md5)
    paths = archive_paths(folder, md5)
    records = {}
    for key, path in paths.items():
        digest = file_digests(path, ("md5",))["md5"]
        if digest != meta[key][1]:
            raise ImageNetArchiveError(
                f"{path}: md5 {digest} does not match the {'configured' if key in (md5 or {}) else 'published'} "
                f"md5 {meta[key][1]} of {meta[key][0]} (a truncated copy or another file?)")
        records[key] = {"file": str(path), "bytes": path.stat().st_size, "md5": digest}
    return records


def prepare_imagenet(folder: str | os.PathLike, out_dir: str | os.PathLike,
                     md5: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Verify the tars in ``folder`` (against ``md5`` where given) and unpack them into ``out_dir`` with
    torchvision's parsers; return a summary (tars, classes, images per split)."""
    from torchvision.datasets.imagenet import parse_devkit_archive, parse_train_archive, parse_val_archive

    records = verify_archives(folder, md5)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        # An absolute `file` is joined to `root` as itself: the tars stay where the user keeps them.
        with _parsers_expect(_archive_meta(md5)):
            parse_devkit_archive(str(tmp), file=records["devkit"]["file"])
            parse_train_archive(str(tmp), file=records["train"]["file"])
            parse_val_archive(str(tmp), file=records["val"]["file"])
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    train, val = open_imagenet(out_dir, "train"), open_imagenet(out_dir, "val")
    return {"archives": records, "classes": len(train.wnids), "train": len(train), "val": len(val)}


def is_prepared(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder :func:`prepare_imagenet` wrote (``meta.bin`` beside train/ and val/)."""
    path = Path(path)
    return (path / META_FILE).is_file() and (path / "train").is_dir() and (path / "val").is_dir()


def open_imagenet(path: str | os.PathLike, split: str) -> Any:
    """torchvision's ``ImageNet`` dataset of one split (``train`` or ``val``) of a prepared folder:
    ``samples`` [(file, class index)], ``wnids``, ``classes``; images load as PIL RGB."""
    from torchvision.datasets import ImageNet

    if not is_prepared(path):
        raise FileNotFoundError(
            f"{path}: not an unpacked ImageNet folder (expected {META_FILE}, train/ and val/ as written by "
            "`python -m repro.data imagenet`)")
    return ImageNet(str(path), split=split)
