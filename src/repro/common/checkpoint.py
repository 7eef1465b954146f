"""Checkpoints of long jobs: each belongs to exactly one run, and only that run resumes from it.

Checkpoints live in a folder the rule passes as ``--checkpoint-dir`` and does *not* declare as an
output, so Snakemake never deletes a half-trained run; only the final results are declared.

A run's **identity** (:func:`run_identity`) is everything that shapes its numbers: the resolved
config (minus keys listed as not shaping the run, e.g. ``threads``), the seed, what is trained (model,
arm, ...) and the identity of every input file. An input file's identity is its size and
modification time in nanoseconds (a folder: those of every file in it, with relative paths), not a
content hash: it costs one ``stat`` per file even for COCO's 120k images, and any rewrite of an
input, even with equal bytes, makes a fresh run (a rerun of an upstream job is a new input).

One policy, used by every stage through :class:`RunCheckpoint`:

* the checkpoint's identity equals this run's: resume from it ("resumed from step N" in the log);
* it differs (another config, seed, input), or the file cannot be read (truncated, corrupt):
  it is moved aside to ``latest.stale.pt`` / ``latest.corrupt.pt`` in the same folder (replacing an
  older one), a WARNING naming both files and the reason goes to the job log, and the run starts
  fresh;
* the job finished (its outputs are written): :meth:`RunCheckpoint.finish` deletes it, so any later
  rerun (a config edit, an input change, ``--forcerun``) is a fresh run, never a resume of a finished
  one, and a finished job holds no disk beyond its outputs (a checkpoint carries the model and the
  optimizer's state, about twice the model: 190 MB for a ResNet-50 detector).

A checkpoint is one dict of tensors and plain Python values, loadable with ``weights_only=True``;
everything a resumed run appends to (per-step logs, metric histories) lives in it, so a resumed run's
outputs equal an uninterrupted run's, file by file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from repro.common.io import atomic_torch_save

LATEST = "latest.pt"
STALE = "latest.stale.pt"
CORRUPT = "latest.corrupt.pt"
IDENTITY = "run_identity"  # the key under which a checkpoint stores its run's identity (JSON text)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Size + mtime of a file, or of every file under a folder (relative paths, sorted), as a digest.

    Raises FileNotFoundError naming ``path`` when it does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_file():
        st = path.stat()
        return {"files": 1, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    n = total = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            st = p.stat()
            h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n, total = n + 1, total + st.st_size
    return {"files": n, "bytes": total, "digest": h.hexdigest()[:16]}


def run_identity(*, stage: str, config: Mapping[str, Any], seed: int | None,
                 inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None],
                 ignore: Iterable[str] = (), **what: Any) -> dict[str, Any]:
    """The identity of one run: stage, config (without the top-level keys in ``ignore``), seed, the
    ``what`` it trains (model, arm, ...) and each named input's :func:`file_identity`."""
    ignored = set(ignore)
    ids: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, (str, os.PathLike)):
            ids[name] = file_identity(value)
        else:
            ids[name] = [file_identity(v) for v in value]
    return {
        "stage": stage,
        "what": {k: v for k, v in sorted(what.items())},
        "seed": seed,
        "config": {k: v for k, v in config.items() if k not in ignored},
        "inputs": ids,
    }


def _canonical(identity: Mapping[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A short, human-readable account of how two identities differ (for the job log)."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(diffs) >= 4:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}" if where else str(k))
        elif _canonical({"v": a}) != _canonical({"v": b}):
            if where.startswith("inputs."):
                diffs.append(f"input '{where.split('.')[1]}' changed")
            else:
                diffs.append(f"{where}: {json.dumps(a, default=str)[:60]} -> {json.dumps(b, default=str)[:60]}")

    walk(dict(old), dict(new), "")
    return "; ".join(dict.fromkeys(diffs)) or "identity differs"


def rng_state() -> dict[str, Any]:
    """Torch and numpy RNG states as tensors/plain values (weights_only-safe)."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype("int64")), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))


class RunCheckpoint:
    """The checkpoint folder of one run (``folder`` None: checkpointing off).

    ``resume()`` returns the saved state if it belongs to this run (else sets it aside and returns
    None), ``save(state)`` writes it atomically with the identity, ``finish()`` deletes it
    once the job's outputs are written. Only the main rank (``is_main``) writes, moves or deletes files; every
    rank reads, so all ranks resume from the same state.
    """

    def __init__(self, folder: str | os.PathLike | None, identity: Mapping[str, Any], *, is_main: bool = True,
                 log: Callable[[str], None] = _stderr) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.identity = dict(identity)
        self.key = _canonical(self.identity)
        self.is_main = is_main
        self.log = log

    @property
    def path(self) -> Path | None:
        return self.folder / LATEST if self.folder is not None else None

    def _set_aside(self, name: str, reason: str) -> None:
        assert self.path is not None
        if self.is_main:  # the other ranks read the same file and reach the same verdict
            os.replace(self.path, self.path.with_name(name))
            self.log(f"WARNING: checkpoint {self.path} {reason}; moved aside to {self.path.with_name(name)},"
                     " starting fresh")

    def resume(self) -> dict[str, Any] | None:
        """The saved state of this run, or None (no checkpoint, or one set aside)."""
        if self.path is None or not self.path.exists():
            return None
        import torch

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"a {type(state).__name__}, not a checkpoint dict")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is set aside the same way
            detail = (str(exc).splitlines() or ["empty or truncated file"])[0][:120]
            self._set_aside(CORRUPT, f"cannot be read ({type(exc).__name__}: {detail})")
            return None
        stored = state.get(IDENTITY)
        if stored != self.key:
            try:
                reason = describe_difference(json.loads(stored), self.identity) if stored else "has no run identity"
            except (TypeError, ValueError):
                reason = "has an unreadable run identity"
            self._set_aside(STALE, f"belongs to another run ({reason})")
            return None
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Atomically write ``state`` (plus this run's identity) as ``<folder>/latest.pt``."""
        if self.path is None or not self.is_main:
            return
        atomic_torch_save(self.path, {**state, IDENTITY: self.key})

    def finish(self) -> None:
        """The job's outputs are written: delete the checkpoint (and its folder, when nothing else is in
        it), so a later rerun starts fresh. A set-aside ``latest.stale.pt`` / ``latest.corrupt.pt`` stays."""
        if self.path is None or not self.is_main:
            return
        self.path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:  # not empty (a set-aside checkpoint) or already gone
            pass
