"""The ratio ||w|| / ||grad L(w)|| per layer at the first iteration (1708.03888 Sec. 3, Table 2).

The paper motivates LARS by how much this ratio differs between layers: for AlexNet-BN at the first
iteration it runs from 5.76 (conv1.w) to 1345 (fc6.w), so one global LR is too large for some layers
and too small for others. We measure the same quantity on our nets.

Decided here (the paper does not say):
- "At the 1st iteration" = the initial weights and the gradient of the first mini-batch of the run
  (epoch 0's data order, the run's batch size, averaged over micro-batches as in training), i.e. the
  quantities LARS sees at its first step.
- The spread is ``max / min`` of the ratio over the conv and fc weight tensors ("*.w"), where both of
  the paper's extremes lie. Our biases start at zero (||w|| = 0, ratio 0), so they are listed but not
  part of the spread; BatchNorm scales and shifts are not in the paper's table and are left out too.
- The measurement runs on a copy of the model, so BatchNorm's running statistics and the run's
  random state are untouched.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["layer_ratios", "ratio_spread"]


def _layer_names(model: nn.Module) -> dict[int, str]:
    """Paper-style names by position: conv1, conv2, ... then fc6, fc7, fc8 (AlexNet's numbering of its
    last three layers; with fewer convs the fc names keep AlexNet's 6, 7, 8)."""
    names: dict[int, str] = {}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for i, m in enumerate(convs):
        names[id(m)] = f"conv{i + 1}"
    first_fc = 9 - len(fcs)
    for i, m in enumerate(fcs):
        names[id(m)] = f"fc{first_fc + i}"
    return names


def layer_ratios(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, micro_batch: int) -> list[dict[str, Any]]:
    """``[{"layer": "conv1.w", "w_norm", "g_norm", "ratio"}, ...]`` for every conv/fc weight and bias
    of ``model`` at its current weights, on the batch ``x`` [B, 3, H, W], ``y`` [B] (Table 2)."""
    net = copy.deepcopy(model)
    net.train()
    net.zero_grad(set_to_none=True)
    for xs, ys in zip(x.split(micro_batch), y.split(micro_batch)):
        loss = F.cross_entropy(net(xs), ys) * (len(ys) / len(y))  # mean over the whole batch
        loss.backward()
    names = _layer_names(net)
    out = []
    for m in net.modules():
        if id(m) not in names:
            continue
        for suffix, p in (("w", m.weight), ("b", m.bias)):
            if p is None or p.grad is None:
                continue
            wn, gn = float(p.detach().norm()), float(p.grad.norm())
            ratio = wn / gn if gn > 0 else math.inf
            out.append({"layer": f"{names[id(m)]}.{suffix}", "w_norm": wn, "g_norm": gn, "ratio": ratio})
    return out


def ratio_spread(layers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Smallest and largest ratio over the weight tensors ("*.w") and their quotient (the spread)."""
    weights = [r for r in layers if r["layer"].endswith(".w") and math.isfinite(r["ratio"]) and r["ratio"] > 0]
    if not weights:
        raise ValueError("no conv/fc weight with a finite, positive ||w||/||grad||")
    lo = min(weights, key=lambda r: r["ratio"])
    hi = max(weights, key=lambda r: r["ratio"])
    return {"min_layer": lo["layer"], "min": lo["ratio"], "max_layer": hi["layer"], "max": hi["ratio"],
            "spread": hi["ratio"] / lo["ratio"]}
