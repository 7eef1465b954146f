"""Training loop and evaluation: model, optimizer, schedule and data in, device from the data.

One optimizer step consumes one batch of ``batch_size`` images. Batches larger than ``micro_batch``
are split into micro-batches whose gradients are accumulated before the step, as the paper emulates
16K/32K batches with Caffe's ``iter_size`` (Sec. 5). Without BatchNorm this is exactly the large-batch
gradient; with BatchNorm the batch statistics are per micro-batch (paper pitfall, noted in claims).

The data order of epoch ``e`` is a permutation drawn from ``(seed, e)``, so a run resumed from a
checkpoint at step ``t`` continues with exactly the batches it would have seen. The split hands out
the images of each micro-batch (:meth:`repro.lars.data.Split.batches`: indexing tensors in memory;
:class:`repro.lars.data.ImageSplit`: a DataLoader over image files, told the epoch's remaining
micro-batches up front so it decodes ahead of the step).

Under DDP (``repro.common.distributed``) every rank draws the same global batch and splits each
micro-batch of it strided over the ranks; each rank's loss is its share of the global mean
(``mean * local / global * world``) and DDP averages the gradients, so the update is the 1-process
one. ``micro_batch`` stays the global micro-batch (the BatchNorm batch, synchronised over ranks),
and gradients are all-reduced once per step (``no_sync`` for all micro-batches but the last).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from repro.common.amp import Precision
from repro.common.distributed import DistInfo, all_reduce_mean, no_sync, shard
from repro.common.rng import stream_seed
from repro.lars.data import ImageSplit, Split

__all__ = ["Diverged", "TrainState", "evaluate", "steps_per_epoch", "train"]


class Diverged(RuntimeError):
    """The training loss became NaN/inf; ``step`` is the optimizer step where it happened."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged: loss {loss} at optimizer step {step}")
        self.step = step
        self.loss = loss


@dataclass
class TrainState:
    """What the loop carries across checkpoints besides model/optimizer/scheduler states."""

    step: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # mean train loss of each finished epoch
    running: float = 0.0  # sum of step losses in the current epoch
    running_n: int = 0


def steps_per_epoch(n: int, batch_size: int) -> int:
    """ceil(n / B): the last batch of an epoch is partial (no image is dropped), except that a lone
    last image is dropped (BatchNorm cannot train on a batch of one)."""
    if n % batch_size == 1 and n > 1:
        return n // batch_size
    return max(1, math.ceil(n / batch_size))


def _micro_batches(idx: torch.Tensor, micro_batch: int) -> list[torch.Tensor]:
    """Split a batch's indices into micro-batches; a trailing micro-batch of one joins the previous."""
    chunks = list(idx.split(micro_batch))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(stream_seed(seed, epoch))
    return torch.randperm(n, generator=gen).to(device)  # [n]


def _epoch_plan(order: torch.Tensor, first: int, spe: int, batch_size: int, micro_batch: int,
                dist: DistInfo) -> list[tuple[int, list[torch.Tensor]]]:
    """Steps ``first`` .. ``spe - 1`` of an epoch in ``order``: each step's global batch size and this
    rank's indices of each of its micro-batches."""
    plan = []
    for k in range(first, spe):
        idx = order[k * batch_size : (k + 1) * batch_size]  # [B] (partial at the end of an epoch)
        plan.append((len(idx), [shard(chunk, dist) for chunk in _micro_batches(idx, micro_batch)]))
    return plan


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: Split | ImageSplit,
    *,
    batch_size: int,
    micro_batch: int,
    epochs: int,
    seed: int,
    state: TrainState | None = None,
    checkpoint: Callable[[TrainState], None] | None = None,
    checkpoint_every: int = 0,
    desc: str = "train",
    dist: DistInfo | None = None,
    precision: Precision | None = None,
) -> TrainState:
    """Train for ``epochs`` epochs (resuming from ``state.step``); raise :class:`Diverged` on a
    non-finite loss. ``checkpoint(state)`` is called every ``checkpoint_every`` steps (on every rank:
    the callback decides who writes). ``model`` may be DDP-wrapped; ``dist`` says which rank this is.
    ``precision``: mixed precision on CUDA (:mod:`repro.common.amp`; None: fp32)."""
    dist = dist or DistInfo()
    precision = precision or Precision(data.x.device.type)
    if batch_size < 1 or micro_batch < 1 or epochs < 1:
        raise ValueError(f"batch_size, micro_batch and epochs must be >= 1, got {batch_size}, {micro_batch}, {epochs}")
    state = state or TrainState()
    n = len(data)
    spe = steps_per_epoch(n, batch_size)
    total = spe * epochs
    model.train()
    bar = tqdm(total=total, initial=state.step, desc=desc, file=sys.stderr, mininterval=10.0, leave=False,
               disable=not dist.is_main)
    plan_epoch, first = -1, 0
    while state.step < total:
        epoch, k = divmod(state.step, spe)
        if epoch != plan_epoch:  # this rank's micro-batches of the rest of the epoch, and their images
            order = _epoch_order(n, seed, epoch, data.x.device)
            plan, plan_epoch, first = _epoch_plan(order, k, spe, batch_size, micro_batch, dist), epoch, k
            feed = data.batches([local for _, chunks in plan for local in chunks], seed=seed, epoch=epoch)
        n_batch, chunks = plan[k - first]
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=data.x.device)
        for j, local in enumerate(chunks):  # gradient accumulation, the paper's iter_size
            x, y = next(feed)  # the images and labels of `local`, this rank's part of the micro-batch
            with no_sync(model, j < len(chunks) - 1), precision.autocast():
                logits = model(x)  # [b, C]
                loss = F.cross_entropy(logits, y) * (len(local) * dist.world_size / n_batch)
                precision.backward(loss)
            loss_sum += loss.detach()
        value = float(all_reduce_mean(loss_sum, dist))  # the global batch's loss, the same on every rank
        if not math.isfinite(value):
            bar.close()
            raise Diverged(state.step, value)
        precision.step(optimizer)
        scheduler.step()
        state.step += 1
        state.running += value
        state.running_n += 1
        bar.update(1)
        if k == spe - 1:  # end of an epoch
            state.epoch_losses.append(state.running / state.running_n)
            state.running, state.running_n = 0.0, 0
        if checkpoint is not None and checkpoint_every > 0 and state.step % checkpoint_every == 0 and state.step < total:
            checkpoint(state)
    bar.close()
    return state


@torch.no_grad()
def evaluate(model: nn.Module, data: Split | ImageSplit, *, batch_size: int = 1024) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy on ``data`` in eval mode (BN running statistics)."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for x, y in data.eval_batches(batch_size):
        logits = model(x)  # [b, C]
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"accuracy": 100.0 * correct / len(data), "loss": loss_sum / len(data)}
