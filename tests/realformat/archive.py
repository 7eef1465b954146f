"""Pack files the way the real releases are packed: zip, tar, tar.gz and gzip, byte-reproducible.

Every member gets a fixed modification time, so the same inputs give the same archive and the same
md5 (the rehearsal's download config checks them like the published digests).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

MTIME = 1_167_609_600  # 2007-01-01, any fixed time will do
ZIP_TIME = (2017, 1, 1, 0, 0, 0)


def _dirs_of(names: list[str]) -> list[str]:
    """Every parent folder of ``names``, parents first (the real archives list their folders too)."""
    dirs: list[str] = []
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i]) + "/"
            if d not in dirs:
                dirs.append(d)
    return dirs


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip with folder entries and ``members`` (name -> bytes), stored (JPEGs) or deflated (JSON)."""
    with zipfile.ZipFile(path, "w") as zf:
        for d in _dirs_of(list(members)):
            zf.writestr(zipfile.ZipInfo(d, ZIP_TIME), b"")
        for name, data in members.items():
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".jpg") else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], *, gz: bool = False) -> Path:
    """A tar (``gz``: gzipped, as ``.tar.gz``) with folder entries and ``members``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in _dirs_of(list(members)):
            info = tarfile.TarInfo(d.rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, MTIME
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    path.write_bytes(gzip_bytes(data, "") if gz else data)
    return path


def gzip_bytes(data: bytes, name: str) -> bytes:
    """``data`` gzipped with a fixed header time (and ``name`` as the stored original file name)."""
    out = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=out, mtime=MTIME) as gz:
        gz.write(data)
    return out.getvalue()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
