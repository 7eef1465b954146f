"""The GAN stage's two training jobs: the scorer behind the inception score, and one (experiment, arm, seed).

``python -m repro.gan scorer|train`` (:mod:`repro.gan.cli`) only parses the job and calls
:func:`fit_scorer` or :func:`train_arm` (on every rank of the run: one process, or N under DDP).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repro.common.amp import from_config
from repro.common.checkpoint import RunCheckpoint, run_identity
from repro.common.cli import log
from repro.common.distributed import DistInfo
from repro.common.io import atomic_savez, atomic_torch_save, atomic_write_bytes, atomic_write_json
from repro.common.provenance import provenance_record
from repro.common.rng import PLOT_SUBSAMPLE
from repro.gan.arms import build_arm, check_world_size, generate
from repro.gan.config import experiment_config
from repro.gan.engine import NonFiniteLossError, train
from repro.gan.evaluation import Evaluator, load_real


@dataclass(frozen=True)
class ScorerJob:
    """One ``scorer`` command: the experiment, its dataset, and the two output files."""

    experiment: str
    seed: int
    inp: Path
    out: Path
    metrics: Path
    started: str


def fit_scorer(job: ScorerJob, cfg: dict[str, Any], device: torch.device) -> None:
    """Train the in-pipeline classifier p(y|x) (or wrap Inception-v3) and save it with its label marginal."""
    from repro.gan.classifier import build_classifier, fit_classifier, load_inception, predict_probs, save_scorer
    from repro.gan.data import load_images, to_unit_range
    from repro.gan.metrics import inception_score

    exp = experiment_config(cfg, job.experiment)
    data = load_images(job.experiment, job.inp)
    x_tr = torch.from_numpy(to_unit_range(data.x_train))
    y_tr = torch.from_numpy(data.y_train)
    x_te = torch.from_numpy(to_unit_range(data.x_test))
    train_marginal = np.bincount(data.y_train, minlength=data.n_classes) / len(data.y_train)
    t0 = time.perf_counter()
    if exp["scorer"] == "inception_v3":
        model = load_inception(cfg["inception_weights"])
        n = min(cfg["metrics"]["eval_samples"], len(x_tr))
        idx = torch.from_numpy(np.random.default_rng(job.seed).choice(len(x_tr), n, replace=False))
        # for the MODE score: p(y) = the network's label marginal on training images (ImageNet classes)
        train_marginal = predict_probs(model, x_tr[idx], batch_size=100, device=device).mean(0)
        info: dict[str, Any] = {"kind": "inception_v3", "dataset": job.experiment, "weights": str(cfg["inception_weights"]),
                                "n_classes": 1000, "test_accuracy": float("nan"), "epoch_losses": []}
        probs_te = predict_probs(model, x_te[: cfg["metrics"]["eval_samples"]], batch_size=100, device=device)
        save_model = None
    else:
        model = build_classifier(job.experiment, n_classes=data.n_classes)
        gen = torch.Generator().manual_seed(job.seed)
        losses = fit_classifier(model, x_tr.to(device), y_tr.to(device), epochs=exp["scorer_epochs"],
                                batch_size=exp["scorer_batch_size"], lr=exp["scorer_lr"], device=device, generator=gen)
        probs_te = predict_probs(model, x_te, device=device)
        acc = float((probs_te.argmax(1) == data.y_test).mean())
        log(f"scorer {job.experiment}: test accuracy {acc:.4f} after {exp['scorer_epochs']} epochs")
        info = {"kind": "classifier", "dataset": job.experiment, "n_classes": data.n_classes,
                "test_accuracy": acc, "epoch_losses": losses}
        save_model = model.cpu()
    real_is, real_is_std = inception_score(probs_te, splits=cfg["metrics"]["is_splits"])
    info.update(train_marginal=torch.tensor(train_marginal, dtype=torch.float64), real_test_is=real_is,
                real_test_is_std=real_is_std)
    save_scorer(job.out, save_model, info)
    summary = {k: v for k, v in info.items() if k not in ("train_marginal",)}
    summary.update(train_marginal=train_marginal.tolist() if len(train_marginal) <= 10 else None,
                   seconds=time.perf_counter() - t0,
                   provenance=provenance_record(cfg, job.seed, started=job.started, stage="gan"))
    atomic_write_json(job.metrics, summary)
    log(f"real test-set IS under the scorer: {real_is:.3f}")


@dataclass(frozen=True)
class TrainJob:
    """One ``train`` command: what it trains and where its outputs go (every path from the rule)."""

    experiment: str
    arm: str
    seed: int
    inp: Path
    out: Path
    samples: Path
    weights: Path
    metrics_csv: Path
    started: str
    scorer: Path | None = None
    checkpoint_dir: Path | None = None


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, (list, dict))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def train_arm(job: TrainJob, cfg: dict[str, Any], dist_info: DistInfo, device: torch.device,
              finished: list[RunCheckpoint] | None = None) -> int:
    """Train on every rank (one process: the only one); rank 0 writes samples, weights and results.

    Once the outputs are written the run's checkpoint is deleted, or, with ``finished``, appended to it
    for the caller to delete later (a job over several seeds keeps each finished seed's last checkpoint
    until every seed is done, so a rerun after a failure resumes them at their last step).
    Returns the exit code: 0, or 3 when the losses diverged (:class:`NonFiniteLossError`).
    """
    t_start = time.perf_counter()
    exp = experiment_config(cfg, job.experiment)
    if job.arm not in exp["arms"]:
        raise ValueError(f"arm {job.arm!r} is not in config key 'gan.experiments.{job.experiment}.arms' {exp['arms']}")
    say = log if dist_info.is_main else (lambda msg: None)
    ranks = f" ({dist_info.world_size} ranks)" if dist_info.enabled else ""
    say(f"gan train: experiment {job.experiment}, arm {job.arm}, seed {job.seed}, device {device}{ranks},"
        f" {exp['steps']} steps")
    data = load_real(job.experiment, job.inp, scorer=job.scorer, inception_weights=cfg["inception_weights"],
                     device=device)
    setup = build_arm(job.arm, exp, data_shape=data.shape, device=device, dist=dist_info,
                      precision=from_config(cfg, device, section="gan"))  # mixed precision on CUDA
    check_world_size(setup, exp["batch_size"], dist_info.world_size, f"gan.experiments.{job.experiment}")
    evaluate = Evaluator(data, setup, n=exp["eval_samples"] or cfg["metrics"]["eval_samples"], metrics=cfg["metrics"],
                         seed=job.seed, device=device, log=say)
    ckpt = RunCheckpoint(job.checkpoint_dir, run_identity(
        stage="gan.train", seed=job.seed, experiment=job.experiment, arm=job.arm,
        config={**{k: cfg[k] for k in ("inception_weights", "metrics")},
                "experiment": {k: v for k, v in exp.items() if k not in ("arms", "checkpoint_every", "seeds")}},
        inputs={"data": job.inp, "scorer": job.scorer},
    ), is_main=dist_info.is_main, log=say)
    try:
        history = train(
            setup, sample_real=data.sample, steps=exp["steps"], batch_size=exp["batch_size"], device=device,
            evaluate=evaluate, eval_every=exp["eval_every"], ckpt=ckpt, checkpoint_every=exp["checkpoint_every"],
            dist=dist_info,
        )
    except NonFiniteLossError as exc:
        say(f"ERROR: {exc}")
        return 3
    if not dist_info.is_main:
        return 0

    # ---- outputs: final samples, weights, metrics CSV, results JSON
    x, gen_ids = generate(setup, cfg["plot_samples"], device=device)
    keep = torch.from_numpy(np.random.default_rng([job.seed, PLOT_SUBSAMPLE]).permutation(len(x))[: cfg["plot_samples"]])
    atomic_savez(job.samples, samples=x[keep].cpu().numpy(), generator=gen_ids[keep].cpu().numpy())
    atomic_torch_save(job.weights, {k: {n: t.cpu() for n, t in v.state_dict().items()} for k, v in setup.nets.items()})
    _write_csv(job.metrics_csv, history)
    final = history[-1]
    result = {
        "experiment": job.experiment,
        "arm": job.arm,
        "seed": job.seed,
        "steps": exp["steps"],
        "lr": exp["lr"],
        "n_generators": setup.n_generators,
        "final": final,
        "history": history,
        "seconds": {"total": time.perf_counter() - t_start, "train": final["train_s"], "eval": evaluate.seconds},
        "device": str(device),
        "world_size": dist_info.world_size,
        "provenance": provenance_record(cfg, job.seed, started=job.started, stage="gan"),
    }
    if data.kind == "mixture":
        result["n_modes"] = int(len(data.mixture.centers))
        result["mode_std"] = float(data.mixture.std)
    else:
        result["kind"] = data.kind
        result["scorer"] = {k: data.scorer_info[k] for k in ("kind", "test_accuracy", "real_test_is")}
    atomic_write_json(job.out, result)
    if finished is None:
        ckpt.finish()
    else:
        finished.append(ckpt)
    say(f"done in {result['seconds']['total']:.1f} s (train {final['train_s']:.1f} s, eval {evaluate.seconds:.1f} s)")
    return 0
