"""Shared object shape classes and a textured-object renderer for the synthetic data sets.

The videos (TI mining), the detection set (FPN / TI transfer) and the small classification set
(LARS) all draw objects from :data:`SHAPE_CLASSES`, so class ``i`` means the same shape everywhere;
the detection transfer experiment depends on that.  Each shape is defined inside the unit circle,
so an object of nominal ``size`` (diameter, px) fits a ``size``-wide patch at any rotation.
Textures and backgrounds are crops of real photos that ship inside the scikit-image wheel
(no network), cached once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SHAPE_CLASSES: list[str] = [
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "diamond",
    "hexagon",
    "crescent",
    "arrow",
]

# Photos from ``skimage.data`` that load offline (colour and grey); used for textures and backgrounds.
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "moon",
)

_SUBPIX = 4  # cv2.fillPoly fractional bits: vertices are placed with 1/16 px precision
_SUPER = 4  # supersampling factor of shape masks


def _regular(n: int, radius: float, phase_deg: float = -90.0) -> np.ndarray:
    a = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    a = np.deg2rad(-90.0) + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _circle(radius: float, cx: float = 0.0, cy: float = 0.0, n: int = 48) -> np.ndarray:
    return _regular(n, radius) + np.array([cx, cy])


def _build_shapes() -> dict[str, list[tuple[np.ndarray, int]]]:
    """Each class is a list of (polygon in unit coordinates, 1 = fill / 0 = cut out), drawn in order."""
    w, l = 0.3, 0.95
    cross = np.array(
        [[-w, -l], [w, -l], [w, -w], [l, -w], [l, w], [w, w], [w, l], [-w, l], [-w, w], [-l, w], [-l, -w], [-w, -w]]
    )
    arrow = np.array(
        [[-0.95, -0.22], [0.2, -0.22], [0.2, -0.6], [0.95, 0.0], [0.2, 0.6], [0.2, 0.22], [-0.95, 0.22]]
    )
    return {
        "circle": [(_circle(0.95), 1)],
        "square": [(_regular(4, 0.97, 45.0), 1)],
        "triangle": [(_regular(3, 1.0), 1)],
        "star": [(_star(5, 1.0, 0.42), 1)],
        "cross": [(cross, 1)],
        "ring": [(_circle(0.95), 1), (_circle(0.55), 0)],
        "diamond": [(np.array([[0.0, -1.0], [0.58, 0.0], [0.0, 1.0], [-0.58, 0.0]]), 1)],
        "hexagon": [(_regular(6, 0.95, 0.0), 1)],
        "crescent": [(_circle(0.95), 1), (_circle(0.8, 0.45, -0.1), 0)],
        "arrow": [(arrow, 1)],
    }


_SHAPES = _build_shapes()
assert list(_SHAPES) == SHAPE_CLASSES


def shape_mask(cls: int, size: float, angle_deg: float = 0.0, canvas: int | None = None,
               center: tuple[float, float] | None = None) -> np.ndarray:
    """Anti-aliased coverage mask (float32 in [0, 1]) of shape ``cls`` with diameter ``size`` px.

    The mask is ``canvas`` px square (default ``ceil(size) + 2``) with the shape centred (or at
    ``center``, in px), rotated counter-clockwise by ``angle_deg``.
    """
    if canvas is None:
        canvas = int(np.ceil(size)) + 2
    if center is None:
        center = ((canvas - 1) / 2.0, (canvas - 1) / 2.0)
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # image y axis points down
    # Exact-ish coverage: fill at _SUPER x resolution (sub-pixel vertices), then box-filter down.
    # (cv2's LINE_AA fill bleeds about a pixel outwards, which would bias small boxes.)
    big = np.zeros((canvas * _SUPER, canvas * _SUPER), np.uint8)
    scale = size / 2.0 * _SUPER
    origin = (np.asarray(center, float) + 0.5) * _SUPER - 0.5  # pixel centres at integers
    for poly, value in _SHAPES[SHAPE_CLASSES[cls]]:
        pts = poly @ rot.T * scale + origin
        pts = np.round(pts * (1 << _SUBPIX)).astype(np.int32)
        cv2.fillPoly(big, [pts], 255 * value, lineType=cv2.LINE_8, shift=_SUBPIX)
    out = cv2.resize(big, (canvas, canvas), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32) / 255.0


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A ``skimage.data`` photo as float32 RGB in [0, 1] (cached; grey photos are replicated)."""
    import skimage.data

    im = np.asarray(getattr(skimage.data, name)())
    if im.ndim == 2:
        im = np.repeat(im[:, :, None], 3, axis=2)
    im = im[:, :, :3].astype(np.float32)
    im /= 255.0
    im.setflags(write=False)
    return im


def random_photo_crop(rng: np.random.Generator, out_h: int, out_w: int,
                      min_zoom: float = 0.25, max_zoom: float = 1.0) -> np.ndarray:
    """A random crop of a random photo, resized to ``out_h`` x ``out_w`` (float32 RGB in [0, 1]).

    ``zoom`` is the crop side as a fraction of the photo's short side (smaller = coarser detail).
    """
    photo = load_photo(PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))])
    ph, pw = photo.shape[:2]
    zoom = float(rng.uniform(min_zoom, max_zoom))
    ch = max(4, int(min(ph, pw) * zoom))
    cw = max(4, min(pw, int(round(ch * out_w / out_h))))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > out_h else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (out_w, out_h), interpolation=interp)


def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.5, 1.0),
                  val: tuple[float, float] = (0.45, 1.0)) -> np.ndarray:
    """A random saturated RGB colour (float32 in [0, 1]) from a uniform hue."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


@dataclass(frozen=True)
class Appearance:
    """Per-instance look of an object: a square RGB texture (float32 in [0, 1]) rotated with it."""

    texture: np.ndarray


def random_appearance(rng: np.random.Generator, tex_size: int = 64) -> Appearance:
    """Random colour x photo-texture luminance, mixed with a little of the photo's own colour."""
    crop = random_photo_crop(rng, tex_size, tex_size, min_zoom=0.08, max_zoom=0.5)
    lum = crop.mean(axis=2)
    lo, hi = np.percentile(lum, [2, 98])
    lum = np.clip((lum - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
    contrast = rng.uniform(0.3, 0.9)
    colour = random_colour(rng)
    tex = colour[None, None, :] * (1.0 - contrast / 2 + contrast * lum)[:, :, None]
    mix = rng.uniform(0.0, 0.3)
    tex = (1.0 - mix) * tex + mix * crop
    return Appearance(np.clip(tex, 0.0, 1.0).astype(np.float32))


def render_object(cls: int, size: float, appearance: Appearance, angle_deg: float = 0.0,
                  brightness: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Render one textured object: returns ``(rgb, alpha)``, float32, ``P x P x 3`` and ``P x P``.

    ``P = ceil(size) + 4``; the texture is resized to the object and rotated with it (the object is
    a rigid textured body), then scaled by ``brightness`` and clipped to [0, 1].
    """
    alpha = shape_mask(cls, size, angle_deg)
    p = alpha.shape[0]
    tex = appearance.texture
    interp = cv2.INTER_AREA if tex.shape[0] > p else cv2.INTER_LINEAR
    tex = cv2.resize(tex, (p, p), interpolation=interp)
    if angle_deg % 360.0:
        m = cv2.getRotationMatrix2D(((p - 1) / 2.0, (p - 1) / 2.0), angle_deg, 1.0)
        tex = cv2.warpAffine(tex, m, (p, p), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rgb = np.clip(tex * np.float32(brightness), 0.0, 1.0)
    return rgb, alpha


def composite(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Alpha-blend a patch onto ``canvas`` (H x W x 3 float32, in place) with top-left at (x0, y0).

    The patch is clipped at the canvas border.  Returns the object's full-canvas coverage
    (H x W float32) so callers can compute visible masks and occlusion.
    """
    h, w = canvas.shape[:2]
    ph, pw = alpha.shape
    cov = np.zeros((h, w), np.float32)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + pw, w), min(y0 + ph, h)
    if xa >= xb or ya >= yb:
        return cov
    a = alpha[ya - y0:yb - y0, xa - x0:xb - x0]
    region = canvas[ya:yb, xa:xb]
    region += a[:, :, None] * (rgb[ya - y0:yb - y0, xa - x0:xb - x0] - region)
    cov[ya:yb, xa:xb] = a
    return cov


def tight_box(mask: np.ndarray) -> list[int] | None:
    """Tight ``[x, y, w, h]`` box (integers, px) of a boolean mask; ``None`` when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
