"""The downloader against a local HTTP server (127.0.0.1, Range-capable); no internet needed."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from repro.data import download as dl
from repro.data.download import ChecksumError, DownloadError, UnsafeArchiveError, download_dataset


class _State:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_once: set[str] = set()  # paths whose first GET is cut off halfway
        self.ignore_range: set[str] = set()  # paths answered 200 even to a Range request
        self.lock = threading.Lock()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.hits if p == path)


def _make_handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            with state.lock:
                state.hits.append((self.path, rng))
                body = state.files.get(self.path)
                drop = self.path in state.drop_once
                state.drop_once.discard(self.path)
            if body is None:
                self.send_error(404)
                return
            if drop:  # promise the full size, send half, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and self.path not in state.ignore_range:
                start = int(m.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                body = body[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture()
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.0)


# ------------------------------------------------------------------ archives made by the tests
PAYLOAD = {"data/a.txt": b"alpha\n" * 50, "data/sub/b.bin": bytes(range(256)) * 40}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _targz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _assert_payload(out: Path) -> None:
    for name, data in PAYLOAD.items():
        assert (out / name).read_bytes() == data


def _no_leftovers(parent: Path) -> None:
    """No temporary build folders beside out_dir."""
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".out.")]


# ------------------------------------------------------------------ tests
def test_zip_downloads_verifies_extracts(server, tmp_path):
    base, state = server
    state.files["/ds.zip"] = blob = _zip(PAYLOAD)
    out, cache = tmp_path / "out", tmp_path / "cache"
    summary = download_dataset({"files": [{"url": f"{base}/ds.zip", "md5": _md5(blob)}]}, out, cache)
    _assert_payload(out)
    assert summary["bytes"] == len(blob) and summary["n_files"] == 1
    rec = summary["files"][0]
    assert rec["md5"] == _md5(blob) and rec["sha256"] == hashlib.sha256(blob).hexdigest()
    assert (cache / "ds.zip").read_bytes() == blob and not (cache / "ds.zip.part").exists()
    _no_leftovers(tmp_path)


def test_targz_with_sha256_and_plain_copy(server, tmp_path):
    base, state = server
    state.files["/ds.tar.gz"] = blob = _targz(PAYLOAD)
    state.files["/labels.gz"] = raw = b"\x1f\x8b not really extracted"
    spec = {"files": [
        {"url": f"{base}/ds.tar.gz", "sha256": hashlib.sha256(blob).hexdigest(), "extract": True},
        {"url": f"{base}/labels.gz", "sha256": hashlib.sha256(raw).hexdigest(), "extract": False},
    ]}
    download_dataset(spec, tmp_path / "out", tmp_path / "cache")
    _assert_payload(tmp_path / "out")
    assert (tmp_path / "out" / "labels.gz").read_bytes() == raw


def test_wrong_checksum_raises_and_leaves_nothing_usable(server, tmp_path):
    base, state = server
    state.files["/bad.zip"] = blob = _zip(PAYLOAD)
    url, wrong = f"{base}/bad.zip", "0" * 32
    out, cache = tmp_path / "out", tmp_path / "cache"
    with pytest.raises(ChecksumError) as err:
        download_dataset({"files": [{"url": url, "md5": wrong}]}, out, cache)
    msg = str(err.value)
    assert url in msg and wrong in msg and _md5(blob) in msg
    assert not out.exists()
    assert list(cache.iterdir()) == []  # no file, no .part, no .verified marker
    _no_leftovers(tmp_path)


def test_dropped_connection_resumes_with_range(server, tmp_path):
    base, state = server
    state.files["/big.zip"] = blob = _zip({**PAYLOAD, "data/c.bin": bytes(200_000)})
    state.drop_once.add("/big.zip")
    download_dataset({"files": [{"url": f"{base}/big.zip", "md5": _md5(blob)}]},
                     tmp_path / "out", tmp_path / "cache")
    _assert_payload(tmp_path / "out")
    ranges = [r for p, r in state.hits if p == "/big.zip"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(blob) // 2}-"


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    base, state = server
    state.files["/ds.zip"] = blob = _zip(PAYLOAD)
    state.ignore_range.add("/ds.zip")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ds.zip.part").write_bytes(b"stale garbage")
    download_dataset({"files": [{"url": f"{base}/ds.zip", "md5": _md5(blob)}]}, tmp_path / "out", cache)
    assert state.hits == [("/ds.zip", "bytes=13-")]
    assert (cache / "ds.zip").read_bytes() == blob


def test_complete_part_answered_416_is_used(server, tmp_path):
    base, state = server
    state.files["/ds.zip"] = blob = _zip(PAYLOAD)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ds.zip.part").write_bytes(blob)
    download_dataset({"files": [{"url": f"{base}/ds.zip", "md5": _md5(blob)}]}, tmp_path / "out", cache)
    _assert_payload(tmp_path / "out")
    assert state.count("/ds.zip") == 1


def test_second_call_does_not_redownload(server, tmp_path):
    base, state = server
    state.files["/ds.zip"] = blob = _zip(PAYLOAD)
    spec = {"files": [{"url": f"{base}/ds.zip", "md5": _md5(blob)}]}
    download_dataset(spec, tmp_path / "out", tmp_path / "cache")
    download_dataset(spec, tmp_path / "out", tmp_path / "cache")  # out_dir already built
    download_dataset(spec, tmp_path / "out2", tmp_path / "cache")  # cache reused, re-extracted
    assert state.count("/ds.zip") == 1
    _assert_payload(tmp_path / "out2")


@pytest.mark.parametrize("kind,evil", [
    ("zip", "../evil.txt"),
    ("zip", "/tmp/abs_evil.txt"),
    ("tar", "data/../../evil.txt"),
    ("tar", "/abs_evil.txt"),
])
def test_unsafe_members_rejected(server, tmp_path, kind, evil):
    base, state = server
    members = {"data/ok.txt": b"fine", evil: b"pwned"}
    blob = _zip(members) if kind == "zip" else _targz(members)
    name = "/evil.zip" if kind == "zip" else "/evil.tar.gz"
    state.files[name] = blob
    out = tmp_path / "nest" / "out"
    spec = {"files": [{"url": base + name, "md5": _md5(blob)}]}
    with pytest.raises(UnsafeArchiveError) as err:
        download_dataset(spec, out, tmp_path / "cache")
    assert evil in str(err.value)
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "nest" / "evil.txt").exists()
    assert not Path("/tmp/abs_evil.txt").exists()
    _no_leftovers(tmp_path / "nest")


def test_escaping_symlink_rejected_and_old_out_dir_kept(server, tmp_path):
    base, state = server
    state.files["/good.tar.gz"] = good = _targz(PAYLOAD)
    state.files["/link.tar.gz"] = bad = _targz({"data/ok.txt": b"x"}, links={"data/esc": "../../outside"})
    out, cache = tmp_path / "out", tmp_path / "cache"
    download_dataset({"files": [{"url": f"{base}/good.tar.gz", "md5": _md5(good)}]}, out, cache)
    with pytest.raises(UnsafeArchiveError, match="data/esc"):
        download_dataset({"files": [{"url": f"{base}/link.tar.gz", "md5": _md5(bad)}]}, out, cache)
    _assert_payload(out)  # the failed run left the previous dataset untouched
    _no_leftovers(tmp_path)


def test_http_404_fails_clearly(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="404"):
        download_dataset({"files": [{"url": f"{base}/missing.zip", "md5": "0" * 32}]},
                         tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists()


def test_local_folder(tmp_path):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    (src / "a.mp4").write_bytes(b"video-a")
    (src / "sub" / "b.mp4").write_bytes(b"video-b")
    summary = download_dataset({"local": str(src)}, tmp_path / "out", tmp_path / "cache")
    assert (tmp_path / "out" / "sub" / "b.mp4").read_bytes() == b"video-b"
    assert sorted(r["file"] for r in summary["files"]) == ["a.mp4", "sub/b.mp4"]
    with pytest.raises(DownloadError, match="does not exist"):
        download_dataset({"local": str(tmp_path / "nope")}, tmp_path / "out2", tmp_path / "cache")
    assert not (tmp_path / "out2").exists()


def test_bad_specs(tmp_path):
    with pytest.raises(DownloadError, match="exactly one"):
        download_dataset({}, tmp_path / "o", tmp_path / "c")
    with pytest.raises(DownloadError, match="no files"):
        download_dataset({"files": []}, tmp_path / "o", tmp_path / "c")
    with pytest.raises(DownloadError, match="md5/sha256"):
        download_dataset({"files": [{"url": "http://127.0.0.1:9/x.zip"}]}, tmp_path / "o", tmp_path / "c")


def test_full_config_downloads_are_well_formed():
    import yaml

    path = Path(__file__).resolve().parents[1] / "workflow" / "configs" / "full.yaml"
    specs = yaml.safe_load(path.read_text())["downloads"]
    assert {"coco2017", "voc2007", "cifar10", "mnist", "videos"} <= set(specs)
    for name, spec in specs.items():
        for entry in spec.get("files") or []:
            dl._expected_digest(entry)  # exactly one well-formed md5/sha256
            assert entry["url"].startswith("http"), name
    assert len(specs["mnist"]["files"]) == 4
    assert all("ossci-datasets" in f["url"] for f in specs["mnist"]["files"])


# ------------------------------------------------------------------ the Snakemake rule, end to end
def test_download_rule_against_local_server(server, tmp_path):
    """`snakemake results/data/raw/<name>` through rule `download`: a good archive (served with a
    dropped connection first) lands verified; a corrupt one fails the job and is never used."""
    import yaml

    from conftest import run_snakemake

    base, state = server
    good = _targz(PAYLOAD)
    state.files["/good.tar.gz"] = good
    state.files["/corrupt.zip"] = _zip(PAYLOAD)
    state.drop_once.add("/good.tar.gz")
    cfg = tmp_path / "dl.yaml"
    cfg.write_text(yaml.safe_dump({"downloads": {
        "tinyset": {"files": [{"url": f"{base}/good.tar.gz", "md5": hashlib.md5(good).hexdigest()}]},
        "badset": {"files": [{"url": f"{base}/corrupt.zip", "md5": "0" * 32}]},
    }}))
    wd = tmp_path / "wd"
    ok = run_snakemake(["results/data/raw/tinyset", "--cores", "1", "--configfile", str(cfg)], wd)
    assert ok.returncode == 0, ok.stderr[-3000:]
    out = wd / "results" / "data" / "raw" / "tinyset"
    assert (out / "data" / "a.txt").read_bytes() == PAYLOAD["data/a.txt"]
    assert (out / "provenance.json").exists()
    assert any(r for p, r in state.hits if p == "/good.tar.gz" and r), "no Range request after the drop"

    bad = run_snakemake(["results/data/raw/badset", "--cores", "1", "--configfile", str(cfg)], wd)
    assert bad.returncode != 0
    log = (wd / "results" / "logs" / "data" / "download_badset.log").read_text()
    assert "corrupt.zip" in log and "ChecksumError" in log
    assert not (wd / "results" / "data" / "raw" / "badset").exists()
    assert (out / "data" / "a.txt").exists(), "an earlier, good download was lost"
