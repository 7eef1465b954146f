"""Training loop of the context-prediction net (Doersch et al. 2015 8-way relative position, TI's [9]).

One code path for CPU and GPU (the device comes from the caller), checkpoints every
``ckpt_every`` steps in ``ckpt_dir`` with automatic resume of this run's checkpoint (the log says "resumed from step N"),
a NaN/inf loss stops the run with an error naming the step.  Batches are drawn from a generator
seeded by (seed, step), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from repro.common.checkpoint import RunCheckpoint
from repro.common.errors import NonFiniteLossError

__all__ = ["NonFiniteLossError", "train_context"]

Sampler = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]]


def train_context(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: Sampler,
    *,
    steps: int,
    seed: int,
    device: torch.device | str,
    ckpt: RunCheckpoint | None = None,
    ckpt_every: int = 100,
) -> list[dict[str, float]]:
    """Train ``model`` on ``steps`` batches from ``sampler``; returns per-step {step, loss, acc}.

    ``ckpt`` (this run's checkpoint) is saved every ``ckpt_every`` steps and resumed from if it is this
    run's; the caller deletes it (``ckpt.finish()``) once the outputs are written.
    """
    from tqdm import tqdm

    device = torch.device(device)
    model.to(device)
    history: list[dict[str, float]] = []
    start = 0
    state = ckpt.resume() if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        history = [dict(h) for h in state["history"]]
        print(f"resumed from step {start}", file=sys.stderr)
    model.train()
    for step in tqdm(range(start, steps), desc="context net", file=sys.stderr, initial=start, total=steps,
                     mininterval=5.0):
        centre, neighbour, label = sampler(np.random.default_rng([seed, step]))
        centre_t = torch.from_numpy(centre).to(device)
        neighbour_t = torch.from_numpy(neighbour).to(device)
        label_t = torch.from_numpy(label).to(device)
        logits = model(centre_t, neighbour_t)  # [B, 8]
        loss = F.cross_entropy(logits, label_t)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"context-prediction loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        acc = (logits.argmax(1) == label_t).float().mean().item()
        history.append({"step": step, "loss": float(loss.item()), "acc": acc})
        if ckpt is not None and ((step + 1) % ckpt_every == 0 or step + 1 == steps):
            ckpt.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                       "history": history})
    return history


def trained_context_features(patches: np.ndarray, rows: np.ndarray, cfg: dict, *, seed: int, device: torch.device,
                             ckpt: RunCheckpoint | None) -> tuple[np.ndarray, list[dict], torch.nn.Module]:
    """Train the context net on every patch (A, A' and short ends are all training images for the 8-way
    task; ``patches`` may be a memmap) and embed the patches ``rows``: features, training history, net."""
    from repro.graph.features import context_features, sample_context_batch
    from repro.graph.models import context_net

    if len(patches) == 0:
        raise ValueError("features: no mined patch to train the context net on")
    model = context_net(width=int(cfg["width"]), embed=int(cfg["embed"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    history = train_context(model, opt, lambda rng: sample_context_batch(patches, int(cfg["batch"]), rng),
                            steps=int(cfg["steps"]), seed=seed, device=device, ckpt=ckpt,
                            ckpt_every=int(cfg["ckpt_every"]))
    return context_features(model, patches, rows=rows, grid=int(cfg["grid"]), device=device), history, model
