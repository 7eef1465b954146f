"""Diagonal of the loss Hessian per parameter (Choi et al., 1612.01543, Sec. 3.1 and 3.5).

The paper weights each weight's quantization error by h_ii = d^2 L / d w_i^2, averaged over a set of
training samples (50,000 in the paper; 1,000 "nearly as good", Sec. 5). Three ways are offered:

* ``ggn`` (default, exact for the nets used here): the per-sample Hessian of a loss l(f(x; w)) is
  J^T (d^2 l / d f^2) J + sum_c (d l / d f_c) d^2 f_c / d w^2. For networks that are piecewise
  linear in every single weight (ReLU, max-pooling, eval-mode BatchNorm, residual sums, linear and
  conv layers) the second term's *diagonal* is zero almost everywhere (f is linear in each w_i
  alone), so diag(H) = diag(J^T S J) exactly, S = diag(p) - p p^T for softmax cross-entropy.
  With S = M M^T, M[:, c] = sqrt(p_c) (e_c - p), diag(J^T S J) = sum_c (J^T M[:, c])^2: C
  vector-Jacobian products per sample, batched with ``torch.func.vmap``. (For tanh/sigmoid nets
  this is the Gauss-Newton diagonal, an approximation.) Compared with LeCun's diagonal backprop,
  which the paper uses, this drops no off-diagonal terms of S.
* ``hvp``: one Hessian-vector product per unit vector, exact for any loss; O(P) passes, reference
  for tests and tiny nets only.
* ``hutchinson``: E_z[z * (H z)] with Rademacher z (Bekas et al. 2007), unbiased, ``probes`` HVPs.

The free alternative (Sec. 3.5) is the square root of Adam's second-moment estimate at the end of
training, :func:`adam_second_moment_diag` (bias-corrected v_hat by default, as Adam's update uses).
:func:`net_hessians` gives a sweep its flattened, floored weights: the diagonal over ``n_samples``
training samples (the paper's 50,000), over the first ``small_samples`` of the same draw (the paper's
1,000, Fig. 2) and Adam's.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from repro.common.amp import full_precision
from repro.common.rng import HESSIAN_OFFSET

METHODS = ("ggn", "hvp", "hutchinson")


def _named(model: nn.Module, names: list[str] | None) -> dict[str, torch.Tensor]:
    params = {n: p.detach() for n, p in model.named_parameters()}
    return params if names is None else {n: params[n] for n in names}


def _loss_factor(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """Rows m_c with sum_c m_c m_c^T = d^2 loss / d logits^2 for each sample: [B, C, C]."""
    b, c = logits.shape
    if loss == "mse":  # loss = 1/2 ||f - y||^2  ->  S = I
        return torch.eye(c, dtype=logits.dtype, device=logits.device).expand(b, c, c)
    if loss != "ce":
        raise ValueError(f"unknown loss {loss!r}; expected 'ce' or 'mse'")
    p = torch.softmax(logits, dim=1)  # [B, C]
    eye = torch.eye(c, dtype=logits.dtype, device=logits.device)
    # row c of the result = sqrt(p_c) (e_c - p)
    return p.sqrt()[:, :, None] * (eye[None] - p[:, None, :])


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for s in range(0, x.shape[0], batch_size):
        yield x[s : s + batch_size], y[s : s + batch_size]


def ggn_diagonal(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce", batch_size: int = 100,
    names: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean over the samples of diag(J^T S J) per parameter (exact Hessian diagonal, see module doc).

    ``x`` [n, ...], ``y`` [n] (CE) or [n, C] (MSE, targets do not enter S); the model is put in eval mode."""
    model.eval()
    params = _named(model, names)
    others = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = {n: b for n, b in model.named_buffers()}

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, ({**others, **p}, buffers), (xi.unsqueeze(0),)).squeeze(0)  # [C]

    def per_sample(xi: torch.Tensor, mi: torch.Tensor) -> dict[str, torch.Tensor]:
        _, pull = vjp(lambda p: f(p, xi), params)
        (g,) = vmap(pull)(mi)  # each [C, *shape]
        return {n: (v * v).sum(0) for n, v in g.items()}

    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    n_seen = 0
    for xb, _ in _batches(x, y, batch_size):
        with torch.no_grad():
            m = _loss_factor(model(xb), loss)  # [B, C, C]
        out = vmap(per_sample)(xb, m)
        for n in acc:
            acc[n] += out[n].sum(0)
        n_seen += xb.shape[0]
    return {n: a / n_seen for n, a in acc.items()}


def _loss_fn(model: nn.Module, loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if loss == "ce":
        return lambda xb, yb: nn.functional.cross_entropy(model(xb), yb, reduction="sum")
    if loss == "mse":
        return lambda xb, yb: 0.5 * ((model(xb) - yb) ** 2).sum()
    raise ValueError(f"unknown loss {loss!r}")


def _hvp_all(model, x, y, params, vecs, loss, batch_size):
    """sum over samples of H v for each v in ``vecs`` (list of dicts), via double backward."""
    fn = _loss_fn(model, loss)
    outs = [{n: torch.zeros_like(p) for n, p in params.items()} for _ in vecs]
    plist = list(params.values())
    for xb, yb in _batches(x, y, batch_size):
        grads = torch.autograd.grad(fn(xb, yb), plist, create_graph=True)
        for v, out in zip(vecs, outs):
            dot = sum((g * v[n]).sum() for g, n in zip(grads, params))
            hv = torch.autograd.grad(dot, plist, retain_graph=True)
            for n, t in zip(params, hv):
                out[n] += t.detach()
    return outs


def hvp_diagonal(model, x, y, *, loss: str = "ce", batch_size: int = 1000, names: list[str] | None = None):
    """Exact diag(H) of the mean loss by one Hessian-vector product per parameter (reference; slow)."""
    model.eval()
    params = {n: p for n, p in model.named_parameters() if names is None or n in names}
    diag = {n: torch.zeros_like(p) for n, p in params.items()}
    for n, p in params.items():
        for i in range(p.numel()):
            e = {m: torch.zeros_like(q) for m, q in params.items()}
            e[n].view(-1)[i] = 1.0
            (hv,) = _hvp_all(model, x, y, params, [e], loss, batch_size)
            diag[n].view(-1)[i] = hv[n].view(-1)[i]
    return {n: d / x.shape[0] for n, d in diag.items()}


def hutchinson_diagonal(model, x, y, *, loss: str = "ce", probes: int = 100, batch_size: int = 1000,
                        generator: torch.Generator | None = None, names: list[str] | None = None):
    """Unbiased estimate E[z * Hz] of diag(H) with Rademacher probes z."""
    model.eval()
    params = {n: p for n, p in model.named_parameters() if names is None or n in names}
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for _ in range(probes):
        z = {n: (torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for n, p in params.items()}
        (hz,) = _hvp_all(model, x, y, params, [z], loss, batch_size)
        for n in acc:
            acc[n] += z[n] * hz[n]
    return {n: a / (probes * x.shape[0]) for n, a in acc.items()}


@full_precision()
def hessian_diagonal(model, x, y, *, method: str = "ggn", loss: str = "ce", batch_size: int = 100,
                     probes: int = 100, generator: torch.Generator | None = None, names=None):
    """Dispatch to one of :data:`METHODS`, in fp32 (autocast off: :func:`repro.common.amp.full_precision`)."""
    if method == "ggn":
        return ggn_diagonal(model, x, y, loss=loss, batch_size=batch_size, names=names)
    if method == "hvp":
        return hvp_diagonal(model, x, y, loss=loss, batch_size=batch_size, names=names)
    if method == "hutchinson":
        return hutchinson_diagonal(model, x, y, loss=loss, probes=probes, batch_size=batch_size,
                                   generator=generator, names=names)
    raise ValueError(f"unknown Hessian method {method!r}; expected one of {METHODS}")


def adam_second_moment_diag(model: nn.Module, optimizer: torch.optim.Adam, *, bias_correction: bool = True,
                            names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """sqrt(v_hat) (or sqrt(v)) of Adam's second-moment estimate per parameter (Sec. 3.5)."""
    beta2 = optimizer.param_groups[0]["betas"][1]
    out = {}
    for n, p in model.named_parameters():
        if names is not None and n not in names:
            continue
        state = optimizer.state.get(p)
        if not state or "exp_avg_sq" not in state:
            raise ValueError(f"Adam-based Hessian: optimizer has no second moment for parameter {n!r}")
        v = state["exp_avg_sq"].detach()
        if bias_correction:
            step = float(state["step"])
            v = v / (1.0 - beta2**step)
        out[n] = v.sqrt()
    return out


def flat_hessian(hdict: dict[str, torch.Tensor], names: list[str], kept: torch.Tensor, floor: float) -> tuple[np.ndarray, int]:
    """Concatenate per-parameter diagonals over the kept entries, clipped at floor * mean (numpy [N])
    (the diagonal may be zero or negative, Sec. 3.1); returns (weights, number clipped)."""
    flat = torch.cat([hdict[n].detach().flatten() for n in names])[kept].double().cpu().numpy()
    if not np.all(np.isfinite(flat)):
        raise FloatingPointError("Hessian diagonal contains NaN/inf")
    mean = float(np.mean(np.abs(flat)))
    n_clipped = int(np.sum(flat < floor * mean))
    return np.maximum(flat, floor * mean if mean > 0 else 1e-12), n_clipped


def net_hessians(model: nn.Module, optimizer: torch.optim.Adam, names: list[str], kept: torch.Tensor,
                 x: torch.Tensor, y: torch.Tensor, hc: dict, seed: int, log=print, *,
                 small: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Hessian weights of the kept entries of ``names``: ``exact`` over ``hc['n_samples']`` random training
    samples, ``small`` over the first ``hc['small_samples']`` of them (Fig. 2; 0 or ``small=False``: skip) and ``adam``
    (Sec. 3.5). Returns the weights and a summary (sample counts, seconds, Spearman correlations)."""
    from scipy import stats

    g = torch.Generator().manual_seed(seed + HESSIAN_OFFSET)
    n = min(int(hc["n_samples"]), x.shape[0])
    idx = torch.randperm(x.shape[0], generator=g)[:n].to(x.device)
    floor = float(hc["floor"])

    def diag(sub: torch.Tensor) -> dict[str, torch.Tensor]:
        return hessian_diagonal(model, x[sub], y[sub], method=hc["method"], batch_size=int(hc["batch_size"]),
                                probes=int(hc["probes"]), generator=g, names=names)

    t0 = time.perf_counter()
    h_exact, clip_e = flat_hessian(diag(idx), names, kept, floor)
    t_exact = time.perf_counter() - t0
    adam = adam_second_moment_diag(model, optimizer, bias_correction=bool(hc["adam_bias_correction"]), names=names)
    h_adam, clip_a = flat_hessian(adam, names, kept, floor)
    out = {"exact": h_exact, "adam": h_adam}
    info = {"method": hc["method"], "n_samples": n, "seconds": t_exact,
            "spearman_exact_adam": float(stats.spearmanr(h_exact, h_adam).statistic),
            "clipped_exact": clip_e, "clipped_adam": clip_a, "mean_exact": float(np.mean(h_exact)),
            "mean_adam": float(np.mean(h_adam))}
    n_small = min(int(hc.get("small_samples", 0)), n) if small else 0
    if n_small > 0:
        out["small"], info["clipped_small"] = flat_hessian(diag(idx[:n_small]), names, kept, floor)
        info["n_small"] = n_small
        info["spearman_exact_small"] = float(stats.spearmanr(h_exact, out["small"]).statistic)
    log(f"Hessian ({hc['method']}, {n} samples): {t_exact:.2f} s; Spearman(exact, Adam) = {info['spearman_exact_adam']:.3f}"
        + (f"; Spearman(exact, {n_small} samples) = {info['spearman_exact_small']:.3f}" if n_small else ""))
    return out, info
