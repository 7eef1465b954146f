"""Real video files in more than one container, one of them corrupt, packed as one tar.

Written with OpenCV's VideoWriter: MPEG-4 Part 2 in ``.mp4`` and Motion-JPEG in ``.avi`` (both in
OpenCV's wheels), each showing textured squares moving over a textured, slowly panning background
so that the mining stage finds moving objects to track. ``broken.mp4`` is an ``.mp4`` cut to its
first kilobytes, as an interrupted copy leaves it. The tar holds them under ``clips/`` (sub-folders
of the user's video folder are searched).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from realformat.archive import md5, write_tar

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def frames(rng: np.random.Generator, n_frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """BGR uint8 frames [H, W, 3]: two squares moving in straight lines over a drifting texture."""
    w, h = size
    ground = cv2.GaussianBlur(rng.integers(0, 256, size=(h + 64, w + 64, 3), dtype=np.uint8), (5, 5), 0)
    objects = []
    for _ in range(2):
        s = int(rng.integers(h // 4, h // 2))
        tex = np.clip(rng.integers(0, 256, size=(s, s, 3)) // 2 + 128, 0, 255).astype(np.uint8)
        objects.append((tex, rng.uniform(0, w - s), rng.uniform(0, h - s), *rng.uniform(-3, 3, 2)))
    out = []
    for t in range(n_frames):
        f = ground[t % 32 : t % 32 + h, t % 16 : t % 16 + w].copy()
        for tex, x0, y0, vx, vy in objects:
            s = tex.shape[0]
            x = int(np.clip(x0 + vx * t, 0, w - s))
            y = int(np.clip(y0 + vy * t, 0, h - s))
            f[y : y + s, x : x + s] = tex
        out.append(f)
    return out


def encode(path: Path, clip: list[np.ndarray], fps: float = 30.0) -> bytes:
    """The bytes of ``clip`` written by OpenCV to ``path`` (its suffix picks the container and codec)."""
    h, w = clip[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODECS[path.suffix]), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} ({CODECS[path.suffix]})")
    for f in clip:
        writer.write(f)
    writer.release()
    return path.read_bytes()


def build(out: Path, *, n_videos: int = 6, n_frames: int = 48, size: tuple[int, int] = (128, 96),
          seed: int = 30) -> dict[str, str]:
    """Write ``videos.tar`` into ``out`` (``n_videos`` good clips alternating .mp4/.avi + one broken .mp4)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    members = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_videos):
            suffix = (".mp4", ".avi")[i % 2]
            members[f"clips/clip{i:02d}{suffix}"] = encode(Path(tmp) / f"v{i}{suffix}", frames(rng, n_frames, size))
    members["clips/broken.mp4"] = members["clips/clip00.mp4"][:2048]
    f = write_tar(out / "videos.tar", dict(sorted(members.items())))
    return {f.name: md5(f)}
