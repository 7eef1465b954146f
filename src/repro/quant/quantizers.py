"""Scalar quantizers of all network parameters together (Choi et al., 1612.01543, Sec. 3-4).

* ``kmeans`` / ``hw_kmeans``: (Hessian-)weighted k-means, see :mod:`repro.quant.kmeans1d`.
* ``uniform`` (Sec. 4.2): thresholds at (m + 1/2) * step for integer m (mid-tread, so 0 is a
  level); each cluster's shared value is the Hessian-weighted mean of its members ("the
  quantized value could be the Hessian-weighted mean", Sec. 4.2). The step is searched (bisection on
  log step) so that the index entropy hits a target rate R, since Huffman's b_bar ~= H (Sec. 4.1).
* ``ecsq`` (iterative ECSQ, Sec. 4.3 / App. A.3, the entropy-constrained Lloyd of Chou, Lookabaugh &
  Gray 1989): minimize J = D_h + lambda * H with D_h = (1/N) sum_i h_ii (w_i - c_{j(i)})^2 and
  H = -sum_j p_j log2 p_j. Alternate: assign w_i to argmin_j h_ii (w_i - c_j)^2 - lambda log2 p_j
  (times N, the per-weight share of N*H); update c_j = Hessian-weighted mean, p_j = |C_j| / N; drop
  empty clusters. It starts from a Hessian-weighted k-means with enough clusters for the rate and
  lambda is searched (regula falsi on log lambda) to hit the target entropy.

Every quantizer returns a :class:`Quantization`: shared values and a cluster label per weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from repro.quant.coding import entropy_bits
from repro.quant.kmeans1d import (
    KMeans1DResult,
    SortedWeights,
    dp_kmeans,
    interval_means,
    interval_sse,
    prepare,
    weighted_kmeans_1d,
)


@dataclass(frozen=True)
class Quantization:
    """``centres`` [k] shared values (non-empty clusters only); ``labels`` [N] cluster of each weight."""

    centres: np.ndarray
    labels: np.ndarray
    info: dict

    @property
    def k(self) -> int:
        return int(len(self.centres))

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)

    def values(self) -> np.ndarray:
        return self.centres[self.labels]


def hw_distortion(w: np.ndarray, h: np.ndarray, q: Quantization) -> float:
    """D_h = sum_i h_ii (w_i - w_bar_i)^2 (Sec. 3.1-3.2: twice the second-order loss increase)."""
    return float(np.sum(h * (w - q.values()) ** 2))


def kmeans_quantize(
    w: np.ndarray, h: np.ndarray | None, k: int, *, init: str, n_init: int, rng: np.random.Generator,
    dp_bins: int = 2048, sw: SortedWeights | None = None,
) -> Quantization:
    """k-means (``h=None``) or Hessian-weighted k-means (Sec. 3.2) of the flattened weights."""
    res = weighted_kmeans_1d(sw if sw is not None else w, h, k, init=init, n_init=n_init, rng=rng, dp_bins=dp_bins)
    return Quantization(res.centres, res.labels, {"objective": res.objective, "n_iter": res.n_iter, "k_requested": k})


def _uniform_bounds(sw: SortedWeights, step: float) -> np.ndarray:
    """Interval limits of the mid-tread uniform quantizer with this step (non-empty cells only)."""
    m_lo = math.floor(sw.w[0] / step + 0.5)
    m_hi = math.floor(sw.w[-1] / step + 0.5)
    edges = (np.arange(m_lo, m_hi) + 0.5) * step
    inner = np.searchsorted(sw.w, edges, side="left")  # a weight exactly on a threshold goes up
    b = np.unique(np.concatenate([[0], inner, [sw.n]]))
    return b


def uniform_at_step(sw: SortedWeights, step: float) -> tuple[np.ndarray, float]:
    """(bounds, entropy) of the uniform quantizer with ``step``."""
    b = _uniform_bounds(sw, step)
    return b, entropy_bits(np.diff(b))


def uniform_quantize(
    w: np.ndarray, h: np.ndarray | None, rate: float, *, tol: float = 0.01, max_steps: int = 60,
    sw: SortedWeights | None = None,
) -> Quantization:
    """Uniform quantizer whose index entropy is closest to ``rate`` bits (bisection on log step).

    H(step) is non-increasing up to the grid's phase, so the search keeps the best step seen."""
    sw = sw if sw is not None else prepare(w, h)
    span = float(sw.w[-1] - sw.w[0])
    if span <= 0:
        raise ValueError("uniform quantizer: all weights are equal")
    lo, hi = math.log(span * 2.0**-20), math.log(span * 2.0)  # H(lo) ~ log2 N, H(hi) = 0 or ~1
    best = None
    for _ in range(max_steps):
        mid = 0.5 * (lo + hi)
        b, ent = uniform_at_step(sw, math.exp(mid))
        if best is None or abs(ent - rate) < abs(best[2] - rate):
            best = (math.exp(mid), b, ent)
        if abs(ent - rate) <= tol:
            break
        if ent > rate:
            lo = mid  # too many bits: larger step
        else:
            hi = mid
    step, b, ent = best
    return _from_bounds(sw, b, {"step": step, "entropy": ent, "rate_target": rate})


def _from_bounds(sw: SortedWeights, bounds: np.ndarray, info: dict) -> Quantization:
    centres = interval_means(sw, bounds)  # Hessian-weighted means (prepare() was given h)
    labels_sorted = np.repeat(np.arange(len(centres)), np.diff(bounds))
    labels = np.empty(sw.n, dtype=np.int64)
    labels[sw.order] = labels_sorted
    info = {**info, "objective": float(interval_sse(sw, bounds[:-1], bounds[1:]).sum())}
    return Quantization(centres, labels, info)


def _ecsq_lloyd(
    w: torch.Tensor, h: torch.Tensor, centres: np.ndarray, probs: np.ndarray, lam: float, *,
    max_iter: int, stop_fraction: float = 1e-4, chunk: int = 1 << 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Entropy-constrained Lloyd at a fixed lambda on ``w``/``h`` [N] (float64 tensors on any device);
    returns (centres, labels) of the non-empty clusters as numpy arrays."""
    n = w.shape[0]
    c = torch.as_tensor(centres, dtype=w.dtype, device=w.device)
    p = torch.as_tensor(probs, dtype=w.dtype, device=w.device)
    labels = None
    # h (w - c)^2 - lam log2 p = [h, -2 h w, 1] . [c^2, c, -lam log2 p] + h w^2: one GEMM per chunk
    feats = torch.stack([h, -2.0 * h * w, torch.ones_like(h)], dim=1)  # [N, 3]
    for _ in range(max_iter):
        coef = torch.stack([c * c, c, -lam * torch.log2(p)])  # [3, K]
        new = torch.empty(n, dtype=torch.int64, device=w.device)
        for s in range(0, n, chunk):
            new[s : s + chunk] = torch.min(feats[s : s + chunk] @ coef, dim=1).indices  # [B] (faster than argmin on CPU)
        counts = torch.bincount(new, minlength=c.shape[0])
        keep = torch.nonzero(counts > 0).flatten()
        remap = torch.full((c.shape[0],), -1, dtype=torch.int64, device=w.device)
        remap[keep] = torch.arange(keep.shape[0], device=w.device)
        new = remap[new]
        hw = torch.bincount(new, weights=h * w, minlength=keep.shape[0])
        hh = torch.bincount(new, weights=h, minlength=keep.shape[0])
        c, order = torch.sort(hw / hh)  # updated centres (HW means), kept sorted
        p = (counts[keep] / n).to(w.dtype)[order]
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.shape[0], device=w.device)
        new = inv[new]
        done = labels is not None and int((new != labels).sum()) <= stop_fraction * n
        labels = new
        if done:
            break
    return c.cpu().numpy(), labels.cpu().numpy()


def ecsq_start_clusters(rate: float, init_clusters: int | None = None) -> int:
    """Clusters of ECSQ's starting HW k-means: ``init_clusters``, else 2^(ceil(rate)+3) within 16..256."""
    return init_clusters or int(min(256, max(16, 2 ** (math.ceil(rate) + 3))))


def ecsq_quantize(
    w: np.ndarray, h: np.ndarray, rate: float, *, init_clusters: int | None = None, tol: float = 0.02,
    max_search: int = 25, max_iter: int = 30, sw: SortedWeights | None = None, device: str | torch.device = "cpu",
    start: KMeans1DResult | None = None,
) -> Quantization:
    """Iterative ECSQ (App. A.3) at the target entropy ``rate`` (lambda searched on a log scale); the
    assignment steps run with torch on ``device`` (the sweep passes the net's device). ``start``: the
    HW k-means with :func:`ecsq_start_clusters` clusters, if already computed (the sweep shares it)."""
    w = np.asarray(w, dtype=np.float64).ravel()
    h = np.asarray(h, dtype=np.float64).ravel()
    w_t = torch.as_tensor(w, device=device)
    h_t = torch.as_tensor(h, device=device)
    sw = sw if sw is not None else prepare(w, h)
    k0 = ecsq_start_clusters(rate, init_clusters)
    init = start if start is not None else dp_kmeans(sw, [k0])[k0]
    c0 = init.centres
    p0 = np.bincount(init.labels, minlength=len(c0)) / len(w)
    h0 = entropy_bits(p0)
    if rate >= h0 - tol:  # the unconstrained start already has the rate (lambda = 0)
        return Quantization(c0, init.labels, {"lambda": 0.0, "entropy": h0, "rate_target": rate})
    scale = float(np.mean(h) * np.var(w))  # lambda in units of the per-weight distortion of k=1
    lo, hi = math.log(1e-8), math.log(10.0)  # H(lo) ~ H0 > rate; H(hi) ~ 0 < rate

    warm = {lo: (c0, p0)}  # solution at the largest lambda known to give too many bits

    def run(loglam: float) -> tuple[float, np.ndarray, np.ndarray]:
        # warm start from the closest smaller-lambda solution: a larger lambda only merges clusters
        start_c, start_p = warm[max(x for x in warm if x <= loglam)]
        c, lab = _ecsq_lloyd(w_t, h_t, start_c, start_p, math.exp(loglam) * scale, max_iter=max_iter)
        ent = entropy_bits(np.bincount(lab))
        if ent > rate:
            warm[loglam] = (c, np.bincount(lab) / len(w))
        return ent, c, lab

    f_lo, f_hi = h0 - rate, -rate  # H - rate at the bracket ends (monotone decreasing in lambda)
    best = None
    side = 0
    for _ in range(max_search):
        # Illinois regula falsi on g(loglam) = H - rate, falling back to bisection near flat parts
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not (lo < x < hi) or (hi - lo) > 4.0:
            x = 0.5 * (lo + hi)
        ent, c, lab = run(x)
        g = ent - rate
        if best is None or abs(g) < abs(best[0] - rate):
            best = (ent, c, lab, x)
        if abs(g) <= tol:
            break
        if g > 0:
            lo, f_lo = x, g
            if side == -1:
                f_hi *= 0.5
            side = -1
        else:
            hi, f_hi = x, g
            if side == 1:
                f_lo *= 0.5
            side = 1
    ent, c, lab, x = best
    return Quantization(c, lab, {"lambda": math.exp(x) * scale, "entropy": ent, "rate_target": rate})
