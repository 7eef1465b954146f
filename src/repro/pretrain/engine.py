"""Training loop of the Triplet-Siamese net (arXiv 1708.02901, Sec. 4): model, optimizer, data in,
device from the data; one code path for CPU and GPU.

One step takes ``batch`` positive pairs (the paper's mini-batch of 100), embeds their 2 x batch
patches with the shared tower, draws each anchor's distractor from the other-parent patches of the
same mini-batch (:func:`repro.pretrain.losses.triplet_step_loss`) and takes an optimizer step on the
mean ranking loss. Pair order: epoch ``e`` is a permutation drawn from ``(seed, e)``; an epoch has
``max(1, P // batch)`` steps (a trailing partial batch is dropped; with fewer pairs than ``batch``
every step uses all of them). Per-step randomness (negatives, flips) comes from a generator seeded by
``(seed, step)``. So everything a step does is a function of (weights, optimizer state, seed, step),
and a run resumed from a checkpoint at step t ends with exactly the weights of an uninterrupted run.

The learning rate is a function of the step too (``lr_factor``), so checkpoints need no scheduler.

DDP (``torchrun --nproc_per_node=W``, :mod:`repro.common.distributed`): ``batch`` stays the *global*
mini-batch, because the distractors come "from a different parent cluster, within the same
mini-batch" (Sec. 4) -- the whole one, not a rank's share. Every rank draws the same pair order and
the same flips (the generators above), fetches and embeds its strided share ``rows[rank::W]`` of the
2B patches through the DDP-wrapped net (BatchNorm synchronised, so its statistics are over all 2B
patches), and gathers the embeddings with autograd into global order
(:func:`repro.common.distributed.all_gather_rows`). Every rank then computes the identical
:func:`triplet_step_loss` on the whole batch (same negatives, same stats, same NaN check). The
gather's backward sums the incoming gradient over ranks, so a rank's parameter gradient is W times its
rows' share of the 1-process gradient, and DDP's average over the W ranks is exactly the 1-process
gradient. Only rank 0 shows the progress bar; the ``checkpoint`` callback decides who writes.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from repro.common.amp import Precision
from repro.common.distributed import DistInfo, all_gather_rows, shard
from repro.common.rng import stream_seed
from repro.pretrain.losses import triplet_step_loss
from repro.pretrain.models import normalize

__all__ = ["COLUMNS", "TrainConfig", "lr_factor", "make_optimizer", "train"]

COLUMNS = ("step", "epoch", "lr", "loss", "active", "d_pos", "d_neg", "triplets", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch: int
    margin: float = 0.5  # paper m = 0.5
    negatives: str = "random"
    hard_fraction: float = 0.5
    flip: bool = True
    lr: float = 0.01
    schedule: str = "constant"  # constant | cosine | poly
    warmup_steps: int = 0
    poly_power: float = 2.0


@dataclass
class TrainState:
    step: int = 0
    rows: list[list[float]] = field(default_factory=list)  # one per finished step, COLUMNS order


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR at 0-based ``step``: linear warm-up, then constant / cosine / poly decay."""
    t = min(max(step, 0), cfg.steps)
    if cfg.schedule == "constant":
        decay = 1.0
    elif cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * t / max(cfg.steps, 1)))
    elif cfg.schedule == "poly":  # LARS's gamma_t = gamma_0 (1 - t/T)^2 (1708.03888 Algorithm 1)
        decay = (1.0 - t / max(cfg.steps, 1)) ** cfg.poly_power
    else:
        raise ValueError(f"pretrain.schedule: unknown schedule {cfg.schedule!r} (constant | cosine | poly)")
    ramp = min(1.0, (t + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    return ramp * decay


def make_optimizer(params, opt_cfg: dict) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's solver) or LARS (``repro.lars.optim``, imported only when chosen)."""
    name = opt_cfg["name"]
    lr = float(opt_cfg["lr"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(opt_cfg["momentum"]),
                               weight_decay=float(opt_cfg["weight_decay"]))
    if name == "lars":
        from repro.lars.optim import LARS

        return LARS(params, lr=lr, momentum=float(opt_cfg["momentum"]),
                    weight_decay=float(opt_cfg["weight_decay"]),
                    trust_coefficient=float(opt_cfg["trust_coefficient"]),
                    exclude_bias_and_norm=bool(opt_cfg["exclude_bias_and_norm"]))
    raise ValueError(f"pretrain.optimizer.name: unknown optimizer {name!r} (sgd | lars)")


def _generator(seed: int, salt: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, index) * 2 + salt)


def steps_per_epoch(n_pairs: int, batch: int) -> int:
    return max(1, n_pairs // batch)


def train(net: nn.Module, optimizer: torch.optim.Optimizer, patches: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor,
          a: torch.Tensor, b: torch.Tensor, parent: torch.Tensor, cfg: TrainConfig, *, seed: int,
          state: TrainState | None = None, checkpoint: Callable[[TrainState], None] | None = None,
          checkpoint_every: int = 0, desc: str = "pretrain", dist: DistInfo | None = None,
          precision: Precision | None = None) -> TrainState:
    """Train ``net`` on the pairs (a[i], b[i]) for ``cfg.steps`` steps, resuming at ``state.step``.

    ``patches`` maps row ids [n] to uint8 patches [n,3,S,S] on the training device: a tensor (indexed)
    or a callable such as :class:`repro.pretrain.data.PatchBank`. Raises FloatingPointError on a
    non-finite loss. ``net`` may be DDP-wrapped; ``dist`` says which rank this is (module docstring).
    ``precision``: mixed precision on CUDA (:mod:`repro.common.amp`; None: fp32); the embeddings are
    cast to fp32 before the ranking loss."""
    dist = dist or DistInfo()
    precision = precision or Precision()
    if cfg.batch < 2:
        raise ValueError(f"pretrain.batch must be >= 2 pairs, got {cfg.batch}")
    state = state or TrainState()
    n = len(a)
    if n == 0 and cfg.steps > 0:
        raise ValueError("pretrain: the arm has no pairs to train on (empty pair list)")
    fetch = patches.__getitem__ if isinstance(patches, torch.Tensor) else patches
    spe = steps_per_epoch(n, cfg.batch)
    base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    for g, lr in zip(optimizer.param_groups, base_lrs):
        g["initial_lr"] = lr
    net.train()
    bar = tqdm(total=cfg.steps, initial=state.step, desc=desc, file=sys.stderr, mininterval=5.0, leave=False,
               disable=not dist.is_main)
    order, order_epoch = None, -1
    t0 = time.perf_counter()
    while state.step < cfg.steps:
        epoch, k = divmod(state.step, spe)
        if epoch != order_epoch:
            order, order_epoch = torch.randperm(n, generator=_generator(seed, 0, epoch)), epoch  # [P]
        idx = order[k * cfg.batch : (k + 1) * cfg.batch]  # [B]
        gen = _generator(seed, 1, state.step)
        rows = torch.cat([a[idx], b[idx]])  # [2B] the global batch's patches
        mine = shard(torch.arange(len(rows)), dist)  # [2B/W] this rank's strided share (all with one process)
        x = normalize(fetch(rows[mine]))  # [2B/W,3,S,S]
        device = x.device
        if cfg.flip:  # independent horizontal flips (our augmentation; the paper states none), drawn for all 2B
            flip = (torch.rand(len(rows), generator=gen) < 0.5)[mine].to(device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        factor = lr_factor(state.step, cfg)
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr * factor
        with precision.autocast():
            out = net(x)
        emb = all_gather_rows(out.float(), dist, len(rows))  # [2B, E] in global order, the same on every rank
        loss, stats = triplet_step_loss(emb[: len(idx)], emb[len(idx) :], parent[idx].to(device), margin=cfg.margin,
                                        mode=cfg.negatives, hard_fraction=cfg.hard_fraction, generator=gen)
        if not math.isfinite(stats["loss"]):
            bar.close()
            raise FloatingPointError(f"pretrain: the ranking loss is {stats['loss']} at step {state.step}"
                                     " (lower pretrain.optimizer.lr)")
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(optimizer)
        state.step += 1
        state.rows.append([state.step, epoch, base_lrs[0] * factor, stats["loss"], stats["active"], stats["d_pos"],
                           stats["d_neg"], stats["triplets"], time.perf_counter() - t0])
        bar.update(1)
        if bar.n % 50 == 0:
            bar.set_postfix(loss=f"{stats['loss']:.3f}", active=f"{stats['active']:.2f}")
        if checkpoint is not None and checkpoint_every > 0 and state.step % checkpoint_every == 0 \
                and state.step < cfg.steps:
            checkpoint(state)
    bar.close()
    return state
