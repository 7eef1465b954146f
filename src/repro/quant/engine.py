"""Training, evaluation, magnitude pruning and fine-tuning of shared centres (one code path).

* :func:`train`: minibatch Adam (the paper's Sec. 3.5 needs Adam's second moments) on tensors
  already on ``device``; optional fixed pruning masks (pruned weights and their gradients stay 0);
  checkpoints every ``ckpt_every`` steps through the caller's ``RunCheckpoint`` (resumed only if it is
  this run's: "resumed from step N"; it carries the epoch's losses, so the final train loss equals an
  uninterrupted run's);
  a non-finite loss raises :class:`FloatingPointError`.
* :func:`magnitude_masks`: global magnitude pruning of the weight tensors (dim > 1), as Han et al.
  (2015) whose pruned models the paper's Table 1 starts from.
* :func:`finetune_centres`: fine-tuning of the shared values after quantization (paper Sec. 5,
  as Deep Compression): assignments fixed, each centre moved by the average (``reduce="mean"``,
  the paper) or the sum (Deep Compression) of its members' gradients; BatchNorm stays in eval mode.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from repro.common.amp import Precision
from repro.common.checkpoint import RunCheckpoint
from repro.common.rng import AUGMENT_OFFSET, AUGMENT_STRIDE, PRUNED_OFFSET, QUANT_EPOCH_STRIDE, stream_seed


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine
    augment: bool = False

    def lr_at(self, step: int, total: int) -> float:
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
        if self.schedule == "constant":
            return self.lr
        raise ValueError(f"unknown lr schedule {self.schedule!r}; expected 'constant' or 'cosine'")


def _epoch_perm(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(stream_seed(seed, epoch, stride=QUANT_EPOCH_STRIDE))
    return torch.randperm(n, generator=g)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainSpec,
    *,
    seed: int,
    ckpt: RunCheckpoint | None = None,
    ckpt_every: int = 500,
    masks: dict[str, torch.Tensor] | None = None,
    augment=None,
    desc: str = "train",
    precision: Precision | None = None,
) -> dict:
    """Train for ``spec.epochs`` epochs (deterministic batch order from ``seed``); returns a summary.

    ``ckpt`` (this run's checkpoint; its identity is the caller's) is saved every ``ckpt_every`` steps
    and at the end, and resumed from when it is this run's. ``precision``: mixed precision on CUDA
    (:mod:`repro.common.amp`; None: fp32); the pruning masks apply to the (scaled) gradients alike.
    """
    precision = precision or Precision(x.device.type)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total = spec.epochs * steps_per_epoch
    step = 0
    losses: list[float] = []  # the current epoch's step losses (the run's final train loss is their mean)
    state = ckpt.resume() if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        precision.restore(state)
        step = int(state["step"])
        losses = [float(v) for v in state["epoch_losses"]]
        print(f"[{desc}] resumed from step {step}", file=sys.stderr, flush=True)
    params = dict(model.named_parameters())
    if masks:
        with torch.no_grad():
            for name, m in masks.items():
                params[name].mul_(m)
    model.train()
    aug_gen = torch.Generator().manual_seed(seed + AUGMENT_OFFSET)
    bar = tqdm(total=total, initial=step, desc=desc, file=sys.stderr, mininterval=5.0, disable=None)
    while step < total:
        epoch, within = divmod(step, steps_per_epoch)
        idx = _epoch_perm(n, seed, epoch)[within * spec.batch_size : (within + 1) * spec.batch_size].to(x.device)
        xb, yb = x[idx], y[idx]
        if augment is not None:
            aug_gen.manual_seed(stream_seed(seed, step, stride=AUGMENT_STRIDE))  # resumable: depends on the step only
            xb = augment(xb, aug_gen)
        for group in optimizer.param_groups:
            group["lr"] = spec.lr_at(step, total)
        with precision.autocast():
            loss = nn.functional.cross_entropy(model(xb), yb)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"[{desc}] non-finite training loss ({loss.item()}) at step {step}; stopping")
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        if masks:
            for name, m in masks.items():
                params[name].grad.mul_(m)
        precision.step(optimizer)
        if masks:
            with torch.no_grad():
                for name, m in masks.items():
                    params[name].mul_(m)
        if within == 0:
            losses = []  # a new epoch
        step += 1
        losses.append(loss.item())
        bar.update(1)
        if ckpt is not None and (step % ckpt_every == 0 or step == total):
            ckpt.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "epoch_losses": losses, **precision.checkpoint_state()})
    bar.close()
    model.eval()
    return {"steps": total, "final_train_loss": float(sum(losses) / len(losses)) if losses else None}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
             params: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
    """(top-1 accuracy in %, mean cross-entropy in nats), optionally with replaced ``params``."""
    model.eval()
    correct, ce = 0, 0.0
    for s in range(0, x.shape[0], batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        logits = model(xb) if params is None else functional_call(model, params, (xb,))
        ce += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return 100.0 * correct / x.shape[0], ce / x.shape[0]


def magnitude_masks(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Keep-masks removing the ``fraction`` smallest-magnitude weights over all weight tensors (dim>1)."""
    weights = {n: p.detach() for n, p in model.named_parameters() if p.dim() > 1}
    allw = torch.cat([p.abs().flatten() for p in weights.values()])
    n_prune = int(round(fraction * allw.numel()))
    if n_prune == 0:
        return {n: torch.ones_like(p, dtype=torch.bool) for n, p in weights.items()}
    thresh = torch.kthvalue(allw.cpu(), n_prune).values.to(allw.device)
    return {n: p.abs() > thresh for n, p in weights.items()}


@dataclass(frozen=True)
class Layout:
    """Which parameters are quantized, in which order, and which of their entries are kept."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    kept: torch.Tensor  # [P] bool over the concatenated flattened parameters

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]


def make_layout(model: nn.Module, names: list[str], masks: dict[str, torch.Tensor] | None) -> Layout:
    params = dict(model.named_parameters())
    kept = [
        (masks[n].flatten() if masks and n in masks else torch.ones(params[n].numel(), dtype=torch.bool, device=params[n].device))
        for n in names
    ]
    return Layout(names, [tuple(params[n].shape) for n in names], torch.cat(kept))


def flat_values(model: nn.Module, layout: Layout) -> torch.Tensor:
    """The kept entries of the quantized parameters, concatenated: [N]."""
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().flatten() for n in layout.names])[layout.kept]


def params_from_values(model: nn.Module, layout: Layout, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every parameter, with the quantized ones replaced by ``values`` (pruned entries 0)."""
    if values.shape[0] == layout.kept.shape[0]:  # nothing pruned
        full = values
    else:
        full = torch.zeros(layout.kept.shape[0], dtype=values.dtype, device=values.device)
        full = full.masked_scatter(layout.kept, values)
    out = {n: p.detach() for n, p in model.named_parameters()}
    for n, shape, chunk in zip(layout.names, layout.shapes, torch.split(full, layout.sizes)):
        out[n] = chunk.view(shape)
    return out


def finetune_centres(
    model: nn.Module,
    layout: Layout,
    centres: torch.Tensor,
    labels: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    optimizer: str = "adam",
    reduce: str = "mean",
) -> torch.Tensor:
    """Fine-tune the shared values with fixed assignments ``labels`` [N] -> ``centres`` [k]."""
    c = centres.detach().clone().requires_grad_(True)
    counts = torch.bincount(labels, minlength=c.shape[0]).clamp(min=1).to(c.dtype)
    if reduce == "mean":
        c.register_hook(lambda g: g / counts)
    elif reduce != "sum":
        raise ValueError(f"unknown centre-gradient reduction {reduce!r}; expected 'mean' or 'sum'")
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam([c], lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD([c], lr=lr, momentum=0.9)
    else:
        raise ValueError(f"unknown fine-tuning optimizer {optimizer!r}")
    model.eval()
    n = x.shape[0]
    for epoch in range(epochs):
        perm = _epoch_perm(n, seed + PRUNED_OFFSET, epoch).to(x.device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            logits = functional_call(model, params_from_values(model, layout, c[labels]), (x[idx],))
            loss = nn.functional.cross_entropy(logits, y[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss while fine-tuning centres (epoch {epoch})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return c.detach()
