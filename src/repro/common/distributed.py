"""Distributed data parallel helpers that degrade to one process (one code path for 1 and N ranks).

Launch a training CLI with ``torchrun --nproc_per_node=N -m repro.<stage> ...`` (or ``srun`` with
N tasks on SLURM: the SLURM step variables are read when torchrun's are absent). Without those
variables every helper below is a no-op and the run is a plain single-process run (world size 1).
Backend: ``nccl`` when this rank trains on a GPU, ``gloo`` on CPU.

Convention for equal results across world sizes:

* the config's batch size is the *global* batch; every rank draws the same global batch from the
  seed (same permutation on every rank) and takes a strided shard of it (:func:`shard`);
* each rank's loss is its share of the global mean (sum over its samples / global batch x world
  size), so DDP's gradient *average* equals the 1-process gradient, even for uneven shards;
* BatchNorm layers become synchronised under DDP (:func:`wrap_model`): ``torch.nn.SyncBatchNorm`` on
  GPUs and :class:`GlooSyncBatchNorm` on CPU (torch's needs a GPU), so batch statistics are those of
  the whole (micro-)batch, as in the 1-process run;
* checkpoints and outputs are written by rank 0 only; the other ranks wait at :func:`barrier`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from repro.common.device import resolve_device

T = TypeVar("T")

__all__ = [
    "DistInfo", "GlooSyncBatchNorm", "all_gather_rows", "all_reduce_mean", "barrier", "cleanup", "dist_env",
    "init_distributed",
    "no_sync", "shard", "shard_batch", "sync_batchnorm", "unwrap", "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def dist_env() -> DistInfo:
    """Rank and world size from torchrun's variables, else from an ``srun`` step's, else 1 process.

    Only a job *step* (``SLURM_STEP_NUM_TASKS``, set by ``srun``) counts: a batch script allocated
    with several tasks but running one ``python`` is a single process, not a hung world.
    """
    if "WORLD_SIZE" in os.environ:
        info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    elif "SLURM_STEP_NUM_TASKS" in os.environ and "SLURM_PROCID" in os.environ:
        info = DistInfo(_env_int("SLURM_PROCID", 0), _env_int("SLURM_STEP_NUM_TASKS", 1), _env_int("SLURM_LOCALID", 0))
    else:
        return DistInfo()
    if not 0 <= info.rank < max(info.world_size, 1):
        raise ValueError(f"rank {info.rank} is outside world size {info.world_size}")
    return info if info.world_size > 1 else DistInfo()


def init_distributed(device: str = "auto", *, key: str = "device") -> tuple[DistInfo, torch.device]:
    """This process's rank info and device; joins the process group when launched with N > 1 ranks.

    ``device`` is the stage's device setting (``auto`` picks this rank's local GPU, else the CPU).
    The rendezvous address comes from torchrun; under srun it defaults to the launching node and a
    port derived from the job id. ``REPRO_DIST_TIMEOUT_MIN`` (default 60) bounds how long ranks wait
    for each other (rank 0 evaluates alone at the end while the others wait at a barrier).
    """
    info = dist_env()
    dev = resolve_device(device, key=key, local_rank=info.local_rank, world_size=info.world_size)
    if info.enabled and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", str(20000 + _env_int("SLURM_JOB_ID", 9500) % 20000))
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        timeout = datetime.timedelta(minutes=_env_int("REPRO_DIST_TIMEOUT_MIN", 60))
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, timeout=timeout)
    return info, dev


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with a gradient: the gradient of a sum over ranks is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over all ranks' inputs, for CPU (gloo) runs.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs. This one reduces per-channel sums with the
    autograd-aware all-reduce :class:`_AllReduceSum` (two passes: the mean, then the squared
    deviations), so its forward and backward equal a BatchNorm over the concatenated batch. Same
    parameters and buffers (and state_dict keys) as ``BatchNorm{1,2,3}d``; in eval mode, or with one
    rank, it is a plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input [N, C, ...], got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_n = x.numel() // x.shape[1]
        sums = all_reduce(torch.cat([x.sum(dims), x.new_tensor([float(local_n)])]))  # [C + 1]
        count = sums[-1]
        mean = sums[:-1] / count  # [C]
        sq = all_reduce((x - mean.view(shape)).pow(2).sum(dims))  # [C]
        var = sq / count
        if count.item() <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self._momentum()
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (count / (count - 1)), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _momentum(self) -> float:
        if self.momentum is not None:
            return self.momentum
        # cumulative moving average, as _BatchNorm does with momentum=None
        return 1.0 / float(self.num_batches_tracked) if self.num_batches_tracked > 0 else 0.0

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm*d`` in ``module`` (in place below the root) by this class."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            for p_new, p_old in zip(new.parameters(), module.parameters()):
                p_new.requires_grad_(p_old.requires_grad)
            ref = next(iter(module.state_dict().values()), None)
            return new.to(ref.device) if ref is not None else new
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers synchronised over ranks: torch's SyncBatchNorm on GPUs, :class:`GlooSyncBatchNorm` on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlooSyncBatchNorm.convert(model)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, *, sync_bn: bool = True,
               find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` when running distributed (BatchNorm synchronised unless
    ``sync_bn=False``); the model itself with one process. ``model`` must already be on ``device``;
    keep using ``unwrap(wrapped)`` (the same module object) for state_dicts and evaluation."""
    if not info.enabled:
        return model
    if sync_bn:
        model = sync_batchnorm(model, device)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (what checkpoints store and evaluation runs)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync()`` (accumulate gradients locally) when ``skip`` and ``model`` is DDP-wrapped."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def shard(items: Sequence[T] | torch.Tensor, info: DistInfo) -> Any:
    """This rank's strided part ``items[rank::world]`` of a global batch (all of it with one process).

    Raises ValueError (on every rank alike, as all ranks see the same global batch) when the batch
    has fewer items than ranks, so no rank would be left without data.
    """
    if not info.enabled:
        return items
    if len(items) < info.world_size:
        raise ValueError(
            f"a global batch of {len(items)} cannot be split over {info.world_size} ranks (every rank needs"
            " at least one sample): use a larger batch/micro-batch or fewer processes"
        )
    return items[info.rank :: info.world_size]


shard_batch = shard  # the original name


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (losses/metrics logged and NaN-checked identically on every rank)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


class _AllGatherRows(torch.autograd.Function):
    """Forward: every rank's strided rows -> the whole batch in global order. Backward: sum the
    incoming gradients over ranks, return this rank's rows (see :func:`all_gather_rows`)."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, rank: int, world: int, n_total: int) -> torch.Tensor:
        ctx.rank, ctx.world = rank, world
        size = -(-n_total // world)  # rows of the largest shard (rank 0's); gloo gathers equal sizes
        padded = local.new_zeros((size, *local.shape[1:]))
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        out = local.new_empty((n_total, *local.shape[1:]))
        for r, part in enumerate(parts):
            out[r::world] = part[: len(range(r, n_total, world))]  # undo the padding and the striding
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank :: ctx.world], None, None, None


def all_gather_rows(local: torch.Tensor, info: DistInfo, n_total: int) -> torch.Tensor:
    """The whole batch [n_total, ...] from every rank's strided shard ``local = x[rank::world]``, with autograd.

    For a loss that couples every row of the global batch (the Triplet-Siamese distractors come from
    the whole mini-batch, 1708.02901 Sec. 4), each rank embeds its shard, gathers all rows in global
    order and computes the *same* global loss L. Backward sums the incoming gradient over ranks
    (``W * dL/dx`` when every rank holds the same L) and returns this rank's rows, so this rank's
    parameter gradients are ``W x`` its rows' share of dL/dtheta; DDP's average over the W ranks then
    gives exactly the 1-process gradient ``sum over ranks of the shares = dL/dtheta``. With one
    process it returns ``local`` itself (no copy, no communication).
    """
    if not info.enabled:
        return local
    expected = len(range(info.rank, n_total, info.world_size))
    if len(local) != expected:
        raise ValueError(f"rank {info.rank} holds {len(local)} rows, but its strided shard of {n_total} has {expected}")
    return _AllGatherRows.apply(local, info.rank, info.world_size, n_total)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str = "auto", *, key: str = "device") -> Iterator[tuple[DistInfo, torch.device]]:
    """``with distributed(cfg_device) as (info, device): ...``: init, then leave the group on exit."""
    info, dev = init_distributed(device, key=key)
    try:
        yield info, dev
    finally:
        cleanup(info)
