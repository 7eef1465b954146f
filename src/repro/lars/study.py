"""One cell of the large-batch study (1708.03888 Tables 1, 3, 5): a model, an arm (``sgd`` or
``lars``), a batch size and a number of epochs, trained for every learning rate of the arm's grid
and every seed, with checkpoint/resume across runs.

Arms (same poly(2) schedule, momentum and weight decay; only the optimizer and LR rule differ):
- ``sgd``: momentum SGD with linear warm-up (Goyal et al.; the paper's baseline, Sec. 4, Table 1).
  Its grid at batch B is every ``lr * B / B_ref * f`` for ``lr`` in the reference grid and ``f`` in
  ``lr_factors``: linear scaling (f = 1) and down to well below it, because the paper searched the
  best LR per batch and found it far under linear scaling (AlexNet at 8K: best 0.03 where linear
  scaling from 0.01 at 512 gives 0.16; divergence above 0.06 at 4K).
- ``lars``: :class:`repro.lars.optim.LARS` with gamma_0 = lr * scale(B / B_ref) * f and warm-up
  (Sec. 5, Table 3). The paper tunes gamma_0 per batch (2 at 512 ... 22 at 32K for AlexNet-BN,
  between square-root and linear in B); the config's ``scaling`` picks the rule that centres the
  small grid.
The global rate follows gamma_t = gamma_0 (1 - t/T)^2 (Algorithm 1) times the warm-up ramp.

The LR is chosen on the first seed as the best validation accuracy among the runs that did not
diverge (the paper's "best LR per batch"); a diverged run has no accuracy and is counted as such,
never scored as chance. Every run also records ||w||/||grad L|| per layer at its first iteration
(:mod:`repro.lars.ratios`, Table 2).

Multi-process (DDP, ``repro.common.distributed``): every rank runs the same cell with the same seeds,
LR search and data order; the model is wrapped (BatchNorm synchronised) and rank 0 alone writes the
checkpoint. Validation/test are evaluated by every rank on the same weights, so all ranks choose the
same LR without communicating.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from repro.common.amp import from_config
from repro.common.checkpoint import RunCheckpoint
from repro.common.distributed import DistInfo, unwrap, wrap_model
from repro.lars import ARMS
from repro.lars.data import StudyData
from repro.lars.engine import Diverged, TrainState, _epoch_order, evaluate, steps_per_epoch, train
from repro.lars.models import build_model
from repro.lars.optim import LARS, warmup_poly_schedule
from repro.lars.plan import beyond_edge, lr_grid, scaled_lr
from repro.lars.ratios import layer_ratios

__all__ = ["beyond_edge", "choose_lr", "lr_grid", "make_optimizer", "run_cell", "run_key", "scaled_lr", "warmup_epochs"]

# Config keys that do not change a cell's results (not part of its checkpoint's run identity).
NOT_SHAPING_RUN = ("checkpoint_every", "device", "eval_batch", "threads", "runtime_min", "amp")


def warmup_epochs(arm_cfg: dict[str, Any], model_name: str) -> float:
    """The arm's warm-up length: one number for every model, or per model (paper: 2 epochs for
    AlexNet, 5 for AlexNet-BN with LARS, Table 3; none for the AlexNet-BN baseline, Table 1b)."""
    value = arm_cfg["warmup_epochs"]
    if isinstance(value, dict):
        if model_name not in value:
            raise ValueError(f"warmup_epochs has no entry for model {model_name!r}")
        return float(value[model_name])
    return float(value)


def make_optimizer(arm: str, params: Any, lr: float, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (foreach) or LARS with the study's momentum and weight decay."""
    if arm == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"], foreach=True)
    if arm == "lars":
        arm_cfg = cfg["lars"]
        return LARS(
            params,
            lr=lr,
            momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"],
            trust_coefficient=arm_cfg["trust_coefficient"],
            exclude_bias_and_norm=arm_cfg["exclude_bias_and_norm"],
        )
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def run_key(lr_ref: float, seed: int) -> str:
    return f"lr{lr_ref:g}_s{seed}"


def _one_run(
    data: StudyData,
    cfg: dict[str, Any],
    *,
    model_name: str,
    arm: str,
    batch: int,
    epochs: int,
    lr_ref: float,
    seed: int,
    resume: dict[str, Any] | None,
    save: Any,
    dist: DistInfo,
) -> dict[str, Any]:
    arm_cfg = cfg[arm]
    lr = scaled_lr(lr_ref, batch, arm_cfg["ref_batch"], arm_cfg["scaling"])
    spe = steps_per_epoch(len(data.train), batch)
    total = spe * epochs
    warmup = min(total, int(round(warmup_epochs(arm_cfg, model_name) * spe)))
    torch.manual_seed(seed)
    model = build_model(
        model_name, num_classes=data.num_classes, image_size=data.image_size, conv=cfg["conv"], fc=cfg["fc"]
    ).to(data.train.x.device)
    precision = from_config(cfg, data.train.x.device, section="lars")  # mixed precision on CUDA
    first = _epoch_order(len(data.train), seed, 0, data.train.x.device)[:batch]  # [B] the run's first batch
    ratios = layer_ratios(model, data.train.x[first], data.train.y[first], micro_batch=cfg["micro_batch"])
    net = wrap_model(precision.prepare(model), dist, data.train.x.device)  # DDP (synchronised BatchNorm) with several ranks
    model = unwrap(net)
    optimizer = make_optimizer(arm, model.parameters(), lr, cfg)
    scheduler = warmup_poly_schedule(
        optimizer, total, warmup, power=cfg["poly_power"], warmup_start=arm_cfg["warmup_start"]
    )
    state = TrainState()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        precision.restore(resume)
        state = TrainState(**resume["state"])
        print(f"resumed from step {state.step} ({run_key(lr_ref, seed)})", file=sys.stderr)

    def checkpoint(st: TrainState) -> None:
        save(
            {
                "key": run_key(lr_ref, seed),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": dict(vars(st)),
                **precision.checkpoint_state(),
            }
        )

    t0, c0 = time.perf_counter(), time.process_time()
    record = {
        "lr_ref": lr_ref,
        "lr": lr,
        "seed": seed,
        "steps": total,
        "warmup_steps": warmup,
        "steps_per_epoch": spe,
        "layer_ratios": ratios,
    }
    try:
        state = train(
            net,
            optimizer,
            scheduler,
            data.train,
            batch_size=batch,
            micro_batch=cfg["micro_batch"],
            epochs=epochs,
            seed=seed,
            state=state,
            checkpoint=checkpoint,
            checkpoint_every=cfg["checkpoint_every"],
            desc=f"{model_name}/{arm}/B{batch}/{run_key(lr_ref, seed)}",
            dist=dist,
            precision=precision,
        )
    except Diverged as exc:
        if cfg["on_divergence"] != "record":
            raise
        print(f"run {run_key(lr_ref, seed)}: {exc}; recorded as diverged (no accuracy)", file=sys.stderr)
        outcome = {"diverged": True, "diverged_at_step": exc.step, "val_acc": None, "test_acc": None,
                   "test_loss": None, "train_loss": None}
    else:
        val = evaluate(model, data.val, batch_size=cfg["eval_batch"])
        test = evaluate(model, data.test, batch_size=cfg["eval_batch"])
        outcome = {"diverged": False, "diverged_at_step": None, "val_acc": val["accuracy"],
                   "test_acc": test["accuracy"], "test_loss": test["loss"],
                   "train_loss": state.epoch_losses[-1] if state.epoch_losses else float("nan")}
    return {
        **record,
        **outcome,
        "epoch_train_loss": state.epoch_losses,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def choose_lr(runs: list[dict[str, Any]], seed: int) -> float | None:
    """The LR (at the reference batch) with the best validation accuracy among ``seed``'s runs that
    did not diverge; ties go to the smaller LR. None when every LR diverged."""
    cands = [r for r in runs if r["seed"] == seed]
    if not cands:
        raise ValueError(f"no runs with the LR-search seed {seed}")
    finite = [r for r in cands if not r["diverged"]]
    if not finite:
        return None
    best = max(finite, key=lambda r: (r["val_acc"], -r["lr_ref"]))
    return float(best["lr_ref"])


def run_cell(
    data: StudyData,
    cfg: dict[str, Any],
    *,
    model_name: str,
    arm: str,
    batch: int,
    epochs: int,
    seeds: list[int],
    ckpt: RunCheckpoint | None = None,
    dist: DistInfo | None = None,
) -> dict[str, Any]:
    """Search the arm's LR grid (:func:`lr_grid`) with the first seed (best validation accuracy of the
    runs that did not diverge, as the paper picks the best LR per batch), past its edge while the best
    LR is the edge (:func:`beyond_edge`, ``edge_steps``), then train the remaining seeds at that LR
    (none when every LR diverged); resumable from ``ckpt``.

    The checkpoint (this cell's: its identity covers model, arm, batch, epochs, seeds, config and data)
    holds the finished runs' results and the state of the run in progress, so an interrupted job redoes
    at most ``checkpoint_every`` steps.
    Returns ``{"chosen_lr_ref", "lr_grid", "runs"}`` (``chosen_lr_ref`` None if all diverged).
    """
    dist = dist or DistInfo()
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")
    if not seeds:
        raise ValueError("need at least one seed")
    saved = (ckpt.resume() if ckpt is not None else None) or {}
    finished: list[dict[str, Any]] = list(saved.get("finished", []))
    if finished:
        print(f"resumed from checkpoint: {len(finished)} finished runs", file=sys.stderr)
    current = saved.get("current")

    def save(cur: dict[str, Any] | None) -> None:
        if ckpt is not None:
            ckpt.save({"finished": finished, "current": cur})

    def ensure(lr_ref: float, seed: int) -> None:
        key = run_key(lr_ref, seed)
        if any(run_key(r["lr_ref"], r["seed"]) == key for r in finished):
            return
        resume = current if current is not None and current.get("key") == key else None
        result = _one_run(
            data, cfg, model_name=model_name, arm=arm, batch=batch, epochs=epochs,
            lr_ref=lr_ref, seed=seed, resume=resume, save=save, dist=dist,
        )
        finished.append(result)
        acc = "diverged" if result["diverged"] else f"val {result['val_acc']:.1f}% test {result['test_acc']:.1f}%"
        print(f"{model_name} {arm} B={batch} E={epochs} {key}: lr={result['lr']:.4g} {acc} ({result['seconds']:.1f}s)",
              file=sys.stderr)
        save(None)

    if not cfg[arm]["lrs"].get(model_name):
        raise ValueError(f"config key 'lars.{arm}.lrs.{model_name}' is missing: no LR grid for this cell")
    grid = lr_grid(cfg[arm], model_name)
    for lr_ref in grid:
        ensure(lr_ref, seeds[0])
    chosen = choose_lr(finished, seeds[0])
    tried = list(grid)
    for _ in range(cfg[arm]["edge_steps"]):
        beyond = beyond_edge(tried, chosen)
        if beyond is None:
            break
        ensure(beyond, seeds[0])
        tried.append(beyond)
        chosen = choose_lr(finished, seeds[0])
    if chosen is None:
        print(f"{model_name} {arm} B={batch} E={epochs}: every LR of {grid} diverged; no other seeds run",
              file=sys.stderr)
    else:
        for seed in seeds[1:]:
            ensure(chosen, seed)
    return {"chosen_lr_ref": chosen, "lr_grid": grid, "runs": finished}
