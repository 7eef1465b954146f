"""The training loop: one code path for every arm, any device, with checkpoint/resume.

``train`` runs ``setup.step`` on batches from ``sample_real`` and fresh noise, evaluates every
``eval_every`` steps (and at the last step), and every ``checkpoint_every`` steps writes one dict
(nets, optimizers, step, metric history, RNG states) to ``<checkpoint_dir>/latest.pt`` via
``repro.common.checkpoint``. If a checkpoint exists it resumes from it and logs "resumed from step N".
A non-finite loss stops the run with :class:`NonFiniteLossError` naming the arm, step and loss term.

DDP (``dist`` with several ranks, nets wrapped by ``build_arm(..., dist=...)``): ``batch_size`` is the
global batch. Every rank draws the same global real batch x and noise z from the global RNG stream
(the same stream as one process) and trains on its share: ``x[rank::W]`` and, keeping the
generator-major layout, ``z.view(K, m, d)[:, rank::W]`` (m/W per generator). The loss terms logged and
NaN-checked are the ranks' mean, the same on every rank. Evaluation: every rank runs ``evaluate``
(identical work), because :func:`repro.gan.arms.generate` draws from the global RNG and the ranks'
streams must stay equal; the caller lets rank 0 alone log and write. Rank 0 alone writes checkpoints
(unwrapped state_dicts, so 1- and N-process checkpoints are interchangeable).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import torch
from tqdm import tqdm

from repro.common.checkpoint import RunCheckpoint, rng_state, set_rng_state
from repro.common.distributed import DistInfo, all_reduce_mean, shard
from repro.common.errors import NonFiniteLossError
from repro.gan.arms import ArmSetup, sample_noise

__all__ = ["NonFiniteLossError", "shard_noise", "train"]


def _state(setup: ArmSetup, step: int, history: list[dict], device: torch.device,
           running: dict[str, Any]) -> dict[str, Any]:
    rng = rng_state()
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "arm": setup.arm,
        "step": step,
        "nets": {k: v.state_dict() for k, v in setup.nets.items()},
        "opts": {k: v.state_dict() for k, v in setup.opts.items()},
        "history": history,
        "running": running,  # loss sums/count since the last evaluation row, so a resumed row's means are exact
        "rng": rng,
        **setup.precision.checkpoint_state(),  # the GradScaler's state (fp16 on CUDA), absent otherwise
    }


def _restore(setup: ArmSetup, state: dict[str, Any], device: torch.device) -> None:
    for k, net in setup.nets.items():
        net.load_state_dict(state["nets"][k])
    for k, opt in setup.opts.items():
        opt.load_state_dict(state["opts"][k])
    setup.precision.restore(state)
    set_rng_state(state["rng"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)


def shard_noise(z: torch.Tensor, n_generators: int, dist: DistInfo) -> torch.Tensor:
    """This rank's share of a generator-major noise batch [K*m, d]: m/W rows of each generator, still
    generator-major ([K*m/W, d]); all of ``z`` with one process."""
    if not dist.enabled:
        return z
    k = n_generators
    return z.view(k, z.shape[0] // k, *z.shape[1:])[:, dist.rank :: dist.world_size].reshape(-1, *z.shape[1:])


def train(
    setup: ArmSetup,
    *,
    sample_real: Callable[[int], torch.Tensor],
    steps: int,
    batch_size: int,
    device: torch.device,
    evaluate: Callable[[int], dict[str, Any]],
    eval_every: int,
    ckpt: RunCheckpoint | None = None,
    checkpoint_every: int = 0,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    dist: DistInfo | None = None,
) -> list[dict[str, Any]]:
    """Train ``setup`` for ``steps`` iterations; returns the metric history (one row per evaluation).

    ``ckpt`` is this run's checkpoint (its identity covers config, arm, seed and inputs): resumed from
    if it is this run's, saved every ``checkpoint_every`` steps; the caller deletes it once the outputs
    are written.
    Each row: ``step``, the evaluation's metrics, the mean of every loss term since the previous
    row (``loss_d``, ``loss_g``, …) and ``train_s`` (wall seconds of training so far, evaluation excluded).
    ``dist``: this rank under DDP (module docstring); ``log`` and the progress bar are rank 0's.
    """
    dist = dist or DistInfo()
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    history: list[dict[str, Any]] = []
    start = 0
    state = ckpt.resume() if ckpt is not None else None
    if state is not None:
        _restore(setup, state, device)
        start, history = int(state["step"]), list(state["history"])
        log(f"resumed from step {start}")
    for net in setup.nets.values():
        net.train()
    sums: dict[str, float] = {}
    count = 0
    train_s = history[-1]["train_s"] if history else 0.0
    if state is not None and "running" in state:
        running = state["running"]
        sums, count = {str(n): float(v) for n, v in running["sums"].items()}, int(running["count"])
        train_s = float(running["train_s"])
    tick = time.perf_counter()
    k = setup.n_generators
    for step in tqdm(range(start, steps), initial=start, total=steps, file=sys.stderr, mininterval=10, desc=setup.arm,
                     disable=not dist.is_main):
        x = sample_real(batch_size)  # the global batch, the same on every rank
        z = sample_noise(k * setup.per_generator, setup.z_dim, setup.z_dist, device)
        with setup.precision.autocast():  # the step's backward passes leave autocast (repro.common.amp)
            out = setup.step(setup, shard(x, dist), shard_noise(z, k, dist))
        values = all_reduce_mean(torch.stack([v.float() for v in out.values()]), dist).tolist()  # mean over ranks
        for name, v in zip(out, values):
            if not math.isfinite(v):
                raise NonFiniteLossError(f"arm {setup.arm}: loss term {name!r} is {v} at step {step + 1}; stopping")
            sums[name] = sums.get(name, 0.0) + v
        count += 1
        done = step + 1
        if done % eval_every == 0 or done == steps:
            train_s += time.perf_counter() - tick
            row = {"step": done, **evaluate(done), **{n: s / count for n, s in sums.items()}, "train_s": train_s}
            history.append(row)
            sums, count = {}, 0
            tick = time.perf_counter()
        if dist.is_main and ckpt is not None and checkpoint_every > 0 and (
                done % checkpoint_every == 0 or done == steps):
            running = {"sums": dict(sums), "count": count, "train_s": train_s + time.perf_counter() - tick}
            ckpt.save(_state(setup, done, history, device, running))
    return history
