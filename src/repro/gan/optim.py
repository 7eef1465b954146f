"""Adam (Kingma & Ba 2015, Algorithm 1) without torch.optim's import cost.

Constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (its methods are wrapped in
``torch._disable_dynamo``), about 0.9 s of CPU per process; a 2-D GAN job trains for ~3 s, and the
stage runs ~55 of them, so that import alone would be a quarter of the stage's time budget. This
class computes the same update as ``torch.optim.Adam`` with its defaults (no weight decay, no
AMSGrad; ``tests/test_gan_units.py`` checks it against torch.optim.Adam) and offers the subset of
the optimizer API the training loop uses: ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


class Adam:
    """``theta -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moment estimates."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no trainable parameters")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """One group of every parameter (what ``torch.amp.GradScaler`` reads to unscale gradients)."""
        return [{"params": self.params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        bc1 = 1 - b1**self.t
        bc2_sqrt = math.sqrt(1 - b2**self.t)
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        m = [self.m[i] for i in live]
        v = [self.v[i] for i in live]
        torch._foreach_lerp_(m, grads, 1 - b1)  # m = b1 m + (1 - b1) g
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)  # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, 1.0 / bc2_sqrt)
        torch._foreach_add_(denom, self.eps)  # sqrt(v_hat) + eps
        torch._foreach_addcdiv_(params, m, denom, value=-self.lr / bc1)

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "lr": self.lr, "betas": list(self.betas), "eps": self.eps, "m": list(self.m), "v": list(self.v)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["m"]) != len(self.params):
            raise ValueError(f"optimizer state has {len(state['m'])} tensors, the model {len(self.params)}")
        self.t = int(state["t"])
        self.lr, self.eps = float(state["lr"]), float(state["eps"])
        self.betas = (float(state["betas"][0]), float(state["betas"][1]))
        for dst, src in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            dst.copy_(src)
