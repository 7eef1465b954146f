"""LARS, Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg, arXiv 1708.03888, Algorithm 1),
and the global learning-rate schedule it is used with (warm-up, then polynomial decay of power 2).

Algorithm 1, for every parameter tensor ("layer" l; a weight and its bias are separate layers) at
step t with global rate gamma_t::

    g        = grad L(w_l)
    lambda_l = eta * ||w_l|| / (||g|| + beta * ||w_l||)          (local LR, trust coefficient eta)
    v_l      = m * v_l + gamma_t * lambda_l * (g + beta * w_l)    (momentum m, weight decay beta)
    w_l      = w_l - v_l

so each layer moves by about gamma_t * eta of its own norm per step (Sec. 3), whatever the scale of its
gradient. Paper defaults: eta = 0.001, m = 0.9, beta = 5e-4 (AlexNet variants; 1e-4 for ResNet-50).

Zero norms (the paper does not say; decided here):
- ``||w|| = 0`` (zero-initialised biases, BatchNorm shifts): the literal formula gives lambda = 0 and
  the tensor would never move. We use lambda = eta instead, i.e. take ||w||/||g|| as 1: the tensor takes
  a plain SGD step with learning rate gamma_t * eta, the same order as LARS's relative step
  (gamma_t * eta). Once it is non-zero the formula applies.
- ``||g|| = 0`` with ``||w|| > 0``: the formula is used as is; lambda = eta / beta, so the update is a
  pure weight-decay step that shrinks w by gamma_t * eta of its norm (the same relative step as any
  other layer). ``eps`` in the denominator only guards 0/0 when also beta = 0 (then g + beta*w = 0 and
  nothing moves anyway).
- ``exclude_bias_and_norm=True`` (later practice, e.g. for LAMB/SimCLR; NOT the paper, which excludes
  nothing, Fig. 2 plots bias local LRs) gives every 1-D tensor (biases, norm scales/shifts)
  lambda = 1 and no weight decay, i.e. plain momentum SGD with rate gamma_t for them.

The update is written with ``torch._foreach_*`` ops on all tensors of a parameter group at once,
allocates nothing of the model's size, and has no host synchronisation (no ``.item()``), so a LARS step
costs one more pass over the weights and gradients (their norms) than SGD (``bench/lars_step.py``
measures it).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LARS", "trust_ratios", "warmup_poly_factor", "warmup_poly_schedule"]


def trust_ratios(
    w_norms: torch.Tensor, g_norms: torch.Tensor, *, trust_coefficient: float, weight_decay: float, eps: float
) -> torch.Tensor:
    """Local LRs lambda_l = eta * ||w|| / (||g|| + beta * ||w|| + eps) for stacked norms [L] (Alg. 1).

    Tensors with ``||w|| = 0`` get lambda = eta (see the module docstring for why).
    """
    lam = trust_coefficient * w_norms / (g_norms + weight_decay * w_norms + eps)  # [L]
    return torch.where(w_norms > 0, lam, torch.full_like(lam, trust_coefficient))  # [L]


class LARS(torch.optim.Optimizer):
    """Algorithm 1 of You et al. 2017 (see the module docstring for the formulas and zero-norm rules).

    Args:
        params: parameters or parameter groups (each tensor is one "layer").
        lr: the global rate gamma (gamma_t when a schedule changes ``group["lr"]``); note that LARS's
            gamma is a relative step size, not comparable with SGD learning rates (paper: 2-29).
        momentum: m (paper 0.9).
        weight_decay: beta (paper 5e-4 for AlexNet variants, 1e-4 for ResNet-50).
        trust_coefficient: eta (paper 0.001).
        eps: added to the denominator of lambda; only matters when ||g|| = beta*||w|| = 0.
        exclude_bias_and_norm: 1-D tensors get lambda = 1 and no weight decay (off: the paper
            excludes nothing).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-9,
        exclude_bias_and_norm: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"LARS: lr must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"LARS: weight_decay must be >= 0, got {weight_decay}")
        if not trust_coefficient > 0.0:
            raise ValueError(f"LARS: trust_coefficient must be > 0, got {trust_coefficient}")
        if not eps >= 0.0:
            raise ValueError(f"LARS: eps must be >= 0, got {eps}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            exclude_bias_and_norm=exclude_bias_and_norm,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adapted, plain = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                (plain if group["exclude_bias_and_norm"] and p.ndim <= 1 else adapted).append(p)
            if adapted:
                self._lars_update(group, adapted)
            if plain:
                self._sgd_update(group, plain)
        return loss

    def _buffers(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        return bufs

    def _lars_update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        beta = group["weight_decay"]
        n = len(params)
        # [2L]: ||w_l|| then ||g_l||, one call, never below fp32 (mixed-precision runs keep fp32 weights and
        # gradients; a half-precision tensor would be upcast: the trust ratio's norms must not under/overflow)
        norms = torch.stack(torch._foreach_norm([t.float() if t.element_size() < 4 else t for t in params + grads]))
        lam = trust_ratios(
            norms[:n], norms[n:], trust_coefficient=group["trust_coefficient"], weight_decay=beta, eps=group["eps"]
        )  # [L]
        scale = lam * group["lr"]  # gamma_t * lambda_l [L]
        bufs = self._buffers(params)
        # v = m v + gamma_t lambda_l g + gamma_t lambda_l beta w: two in-place addcmuls instead of
        # materialising g + beta w (a fresh allocation of the model's size every step; bench/lars_step.py
        # measured LARS/SGD 1.33 with it, 1.14 without)
        torch._foreach_mul_(bufs, group["momentum"])  # v = m v ...
        torch._foreach_addcmul_(bufs, grads, list(scale.unbind(0)))  # ... + gamma_t lambda_l g ...
        if beta != 0:
            torch._foreach_addcmul_(bufs, params, list((scale * beta).unbind(0)))  # ... + gamma_t lambda_l beta w
        torch._foreach_sub_(params, bufs)  # w = w - v

    def _sgd_update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Excluded tensors: v = m v + gamma_t g; w = w - v (lambda = 1, no weight decay)."""
        bufs = self._buffers(params)
        torch._foreach_mul_(bufs, group["momentum"])
        torch._foreach_add_(bufs, [p.grad for p in params], alpha=group["lr"])
        torch._foreach_sub_(params, bufs)


def warmup_poly_factor(
    step: int, total_steps: int, warmup_steps: int = 0, power: float = 2.0, warmup_start: float = 0.0
) -> float:
    """Multiplier of the base rate at optimizer step ``step`` (0-based): ramp(t) * (1 - t/T)^power.

    The decay is Algorithm 1's gamma_t = gamma_0 (1 - t/T)^2 over the global step t. Warm-up (the
    paper uses it for LARS and for the linear-scaling SGD baseline but states no shape; Goyal et al.'s
    is linear) multiplies it by a linear ramp from ``warmup_start`` that reaches 1 at step
    ``warmup_steps - 1``: ramp(t) = s + (1 - s) * min(1, (t + 1) / W), so the first step is not zero.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    t = min(max(step, 0), total_steps)
    poly = (1.0 - t / total_steps) ** power
    if warmup_steps > 0:
        ramp = warmup_start + (1.0 - warmup_start) * min(1.0, (t + 1) / warmup_steps)
    else:
        ramp = 1.0
    return ramp * poly


def warmup_poly_schedule(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    power: float = 2.0,
    warmup_start: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_poly_factor` per optimizer step (call ``.step()`` after
    each ``optimizer.step()``); its state dict goes in checkpoints as usual."""
    if warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if not (0.0 <= warmup_start <= 1.0) or not math.isfinite(power) or power < 0:
        raise ValueError("warmup_start must be in [0, 1] and power >= 0")
    return LambdaLR(
        optimizer,
        lambda step: warmup_poly_factor(step, total_steps, warmup_steps, power, warmup_start),
    )
