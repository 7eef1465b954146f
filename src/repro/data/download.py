"""Download, verify and safely extract one real dataset (full scale only).

A dataset spec is either ``{"files": [{"url", "md5" | "sha256", "extract"}, ...]}`` or
``{"local": "/folder"}`` (see ``downloads:`` in ``workflow/configs/full.yaml``). Files are fetched into a cache
folder through a ``.part`` file (resumed with HTTP Range requests, retried on dropped connections),
checked against their published digest, then unpacked into a temporary folder beside ``out_dir``
that replaces ``out_dir`` in one rename: a failed run never leaves a half-filled dataset folder.
Standard library only (urllib), plus tqdm for progress on stderr.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from tqdm import tqdm

from repro.common.errors import InputError

__all__ = [
    "ChecksumError",
    "DownloadError",
    "UnsafeArchiveError",
    "download_dataset",
    "download_file",
    "extract_archive",
    "file_digests",
]

HASH_ALGOS = ("md5", "sha256")
CHUNK = 1 << 20
RETRY_BACKOFF_S = 1.0  # first pause between attempts; doubles each time (tests set it to 0)
MARKER = ".download.json"  # summary written inside a finished out_dir
USER_AGENT = "repro-downloader/1.0 (+urllib)"


class DownloadError(RuntimeError, InputError):
    """A file could not be fetched (after all retries) or a spec is unusable."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published digest (the file has been deleted)."""

    def __init__(self, url: str, algo: str, expected: str, actual: str) -> None:
        super().__init__(
            f"checksum mismatch for {url}: expected {algo} {expected}, got {actual} "
            "(the bad file was deleted; retry, or check the URL and digest)"
        )
        self.url, self.algo, self.expected, self.actual = url, algo, expected, actual


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder (or is a device/link trick)."""

    def __init__(self, archive: Path, member: str, why: str) -> None:
        super().__init__(f"unsafe member {member!r} in {archive.name}: {why}; nothing was extracted")
        self.archive, self.member = archive, member


class _Truncated(OSError):
    """The body ended before Content-Length bytes arrived (retryable)."""


# --------------------------------------------------------------------------- hashing
def file_digests(path: Path, algos: tuple[str, ...] = HASH_ALGOS) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm in ``algos``, in one streaming pass."""
    hashers = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _expected_digest(entry: dict[str, Any]) -> tuple[str, str]:
    """``(algo, hex)`` of the one published digest of a file entry."""
    given = [(a, str(entry[a]).strip().lower()) for a in HASH_ALGOS if entry.get(a)]
    if len(given) != 1:
        raise DownloadError(f"{entry.get('url')}: give exactly one of md5/sha256 (got {len(given)})")
    algo, hexdigest = given[0]
    if not re.fullmatch(r"[0-9a-f]{%d}" % (hashlib.new(algo).digest_size * 2), hexdigest):
        raise DownloadError(f"{entry['url']}: {algo} {hexdigest!r} is not a valid hex digest")
    return algo, hexdigest


# --------------------------------------------------------------------------- HTTP
def _total_from_content_range(value: str | None) -> int | None:
    """The complete size from a ``Content-Range: bytes a-b/total`` (or ``*/total``) header."""
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One HTTP attempt: append to ``part`` (Range resume) until the body is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = _total_from_content_range(exc.headers.get("Content-Range"))
            exc.close()
            if total == have:  # the .part already holds the whole file
                return
            part.unlink()  # .part is longer than the file or the server cannot tell: start over
            raise _Truncated(f"HTTP 416 for a {have}-byte .part; restarting from zero") from None
        raise
    with resp:
        status = resp.status
        if have and status == 200:  # server ignored the Range header: restart from zero
            have = 0
        elif have and status == 206:
            m = re.match(r"\s*bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink()
                raise _Truncated(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        written = have
        with open(part, "ab" if have else "wb") as fh, tqdm(
            total=expected, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=Path(urllib.parse.urlsplit(url).path).name[:40], file=sys.stderr,
            mininterval=1.0, leave=False,
        ) as bar:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if expected is not None and written != expected:
        raise _Truncated(f"got {written} of {expected} bytes")


def download_file(url: str, dest: Path, *, retries: int = 3, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` via ``dest.part``, resuming and retrying; returns ``dest``.

    Retries (with Range resume) on connection errors, timeouts, truncated bodies and HTTP 5xx/429;
    other HTTP errors (404, 403...) fail at once. The checksum is *not* checked here.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if urllib.parse.urlsplit(url).scheme == "file":  # a local mirror: plain copy
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), part)
        os.replace(part, dest)
        return dest
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 500, 502, 503, 504) or attempt >= retries:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            why: BaseException = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if attempt >= retries:
                raise DownloadError(f"{url}: failed after {retries} retries: {exc}") from exc
            why = exc
        attempt += 1
        have = part.stat().st_size if part.exists() else 0
        print(f"[download] {url}: {why}; retry {attempt}/{retries} from byte {have}", file=sys.stderr)
        time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))


def _cached_verified(url: str, cache_dir: Path, *, retries: int, timeout: float,
                     algo: str, expected: str) -> tuple[Path, dict[str, Any]]:
    """Return the cached, verified file for ``url`` and its record (size, digests).

    A ``<file>.verified`` JSON marker skips re-hashing; a cached file without one is re-hashed.
    A mismatch deletes the file and raises :class:`ChecksumError`.
    """
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name:
        raise DownloadError(f"{url}: cannot derive a file name from the URL")
    dest = cache_dir / name
    marker = dest.with_name(name + ".verified")
    if dest.exists() and marker.exists():
        try:
            record = json.loads(marker.read_text())
            if record.get(algo) == expected and record.get("bytes") == dest.stat().st_size:
                return dest, record
        except (OSError, ValueError):
            pass
    marker.unlink(missing_ok=True)
    fresh = not dest.exists()
    if fresh:
        download_file(url, dest, retries=retries, timeout=timeout)
    digests = file_digests(dest)
    if digests[algo] != expected:
        dest.unlink(missing_ok=True)
        if not fresh:  # a stale cached copy: fetch it once more
            return _cached_verified(url, cache_dir, retries=retries, timeout=timeout,
                                    algo=algo, expected=expected)
        raise ChecksumError(url, algo, expected, digests[algo])
    record = {"url": url, "bytes": dest.stat().st_size, **digests}
    marker.write_text(json.dumps(record, indent=1) + "\n")
    return dest, record


# --------------------------------------------------------------------------- extraction
def _check_member_name(archive: Path, name: str) -> str:
    """Normalised relative path of ``name``, or :class:`UnsafeArchiveError`."""
    if not name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(archive, name, "absolute path")
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "'..' path component")
    return str(PurePosixPath(*[p for p in parts if p not in ("", ".")]))


def _check_tar(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Validate every member (names and link targets) before anything is written."""
    members = tar.getmembers()
    for m in members:
        name = _check_member_name(archive, m.name)
        if m.issym() or m.islnk():
            base = posixpath.dirname(name) if m.issym() else ""
            if m.linkname.startswith(("/", "\\")):
                raise UnsafeArchiveError(archive, m.name, f"link to absolute path {m.linkname!r}")
            target = posixpath.normpath(posixpath.join(base, m.linkname))
            if target == ".." or target.startswith("../"):
                raise UnsafeArchiveError(archive, m.name, f"link {m.linkname!r} escapes the target")
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(archive, m.name, "device, fifo or other special file")
    return members


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a zip / tar / tar.gz / tgz / tar.bz2 / tar.xz / gz file into ``target``.

    Every member is checked first: absolute paths, ``..`` components, links pointing outside
    ``target`` and special files raise :class:`UnsafeArchiveError` and nothing is written.
    """
    target.mkdir(parents=True, exist_ok=True)
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(archive, info.filename)
            zf.extractall(target)
    elif lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        with tarfile.open(archive, "r:*") as tar:
            members = _check_tar(archive, tar)
            try:
                if hasattr(tarfile, "data_filter"):  # second line of defence (Python >= 3.11.4)
                    tar.extractall(target, members=members, filter="data")
                else:  # pragma: no cover
                    tar.extractall(target, members=members)
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(archive, getattr(exc.tarinfo, "name", "?"), str(exc)) from exc
    elif lower.endswith(".gz"):
        with gzip.open(archive, "rb") as src, open(target / archive.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    else:
        raise DownloadError(f"{archive.name}: unknown archive type (set `extract: false` to copy it)")


# --------------------------------------------------------------------------- dataset
def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` folder to ``out_dir`` (replacing an old one) by renames."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "d")
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it 0700
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fingerprint(spec: dict[str, Any]) -> str:
    """A stable hash of the spec, to recognise an out_dir built from the same spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def download_dataset(spec: dict[str, Any], out_dir: Path, cache_dir: Path, *,
                     retries: int = 3, timeout: float = 60.0) -> dict[str, Any]:
    """Build ``out_dir`` from one dataset spec; return a summary (files, bytes, digests).

    ``files``: each is downloaded into ``cache_dir`` (resumable, verified; verified files are
    reused), then extracted (``extract: true``, the default) or copied into ``out_dir``.
    ``local``: the files of an existing folder are hard-linked (or copied) into ``out_dir``.
    ``out_dir`` is assembled in a temporary folder beside it and renamed into place at the end.
    An ``out_dir`` already built from the same ``files`` spec is left as is (a ``local`` folder is
    re-linked every time, since its contents may change).
    """
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    if ("files" in spec) == ("local" in spec):
        raise DownloadError("a download spec needs exactly one of `files:` or `local:`")
    fingerprint = _fingerprint(spec)
    done = out_dir / MARKER
    if "files" in spec and done.exists():
        try:
            summary = json.loads(done.read_text())
            if summary.get("spec_sha256") == fingerprint:
                return summary
        except (OSError, ValueError):
            pass

    records: list[dict[str, Any]] = []
    sources: list[tuple[Path, bool]] = []  # (file, extract?)
    if "local" in spec:
        src = Path(os.path.expanduser(str(spec["local"])))
        if not src.is_dir():
            raise DownloadError(f"local dataset folder {src} does not exist or is not a folder "
                                "(set `local:` in the downloads config to the folder holding the files)")
    else:
        files = spec["files"] or []
        if not files:
            raise DownloadError("the spec lists no files: add url + md5/sha256 entries, or use `local:`")
        cache_dir.mkdir(parents=True, exist_ok=True)
        for entry in files:  # download + verify everything before touching out_dir
            algo, expected = _expected_digest(entry)
            path, record = _cached_verified(entry["url"], cache_dir, retries=retries,
                                            timeout=timeout, algo=algo, expected=expected)
            records.append({**record, "file": path.name, "extract": bool(entry.get("extract", True))})
            sources.append((path, bool(entry.get("extract", True))))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        if "local" in spec:
            shutil.copytree(src, tmp, copy_function=_link_or_copy, dirs_exist_ok=True)
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                records.append({"file": f.relative_to(tmp).as_posix(), "bytes": f.stat().st_size,
                                "source": str(src / f.relative_to(tmp)), **file_digests(f, ("sha256",))})
        for path, extract in sources:
            if extract:
                extract_archive(path, tmp)
            else:
                shutil.copy2(path, tmp / path.name)
        summary = {
            "out_dir": str(out_dir),
            "files": records,
            "n_files": len(records),
            "bytes": sum(r["bytes"] for r in records),
            "spec_sha256": fingerprint,
        }
        (tmp / MARKER).write_text(json.dumps(summary, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
