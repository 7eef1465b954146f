"""``python -m repro.gan <command> --config JSON --seed N --threads T …`` — the GAN stage's entry points.

- ``scorer``: train the in-pipeline classifier p(y|x) for one image experiment (or wrap the
  Inception network), save it with the training-label marginal and its test accuracy;
- ``train``: one (experiment, arm, seed) job: train, evaluate over steps, write the results JSON,
  the per-evaluation metrics CSV, final samples (npz) and final weights (.pt). Runs as one process
  or under ``torchrun --nproc_per_node=N`` / ``srun`` (DDP, ``repro.common.distributed``: the
  experiment's ``batch_size`` is the global batch, and it and the fakes per generator must be
  divisible by N; every rank evaluates, rank 0 alone writes checkpoints and outputs);
- ``aggregate``: one experiment's jobs -> a summary JSON (mean and 95% CI over seeds) and figures;
- ``claims``: experiment summaries -> ``results/claims/gan.json``.

``--config`` is the whole ``gan:`` section. All paths come from the rule.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from repro.common.cli import add_common_args
from repro.common.io import atomic_write_bytes, atomic_write_json
from repro.common.provenance import now_iso, provenance_record
from repro.common.runtime import configure_threads, seed_everything


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"config key 'gan.device' = {name!r} but no CUDA device is available")
    return torch.device(name)


# --------------------------------------------------------------------------- scorer


def cmd_scorer(args: argparse.Namespace) -> int:
    import torch

    from repro.gan.classifier import build_classifier, fit_classifier, load_inception, predict_probs, save_scorer
    from repro.gan.config import experiment_config, stage_config
    from repro.gan.data import load_images, to_unit_range
    from repro.gan.metrics import inception_score

    started = now_iso()
    cfg = stage_config(args.config)
    exp = experiment_config(cfg, args.experiment)
    device = resolve_device(cfg["device"])
    data = load_images(args.experiment, args.inp)
    x_tr = torch.from_numpy(to_unit_range(data.x_train))
    y_tr = torch.from_numpy(data.y_train)
    x_te = torch.from_numpy(to_unit_range(data.x_test))
    train_marginal = np.bincount(data.y_train, minlength=data.n_classes) / len(data.y_train)
    t0 = time.perf_counter()
    if exp["scorer"] == "inception_v3":
        model = load_inception(cfg["inception_weights"])
        n = min(cfg["metrics"]["eval_samples"], len(x_tr))
        idx = torch.from_numpy(np.random.default_rng(args.seed).choice(len(x_tr), n, replace=False))
        # for the MODE score: p(y) = the network's label marginal on training images (ImageNet classes)
        train_marginal = predict_probs(model, x_tr[idx], batch_size=100, device=device).mean(0)
        info: dict[str, Any] = {"kind": "inception_v3", "dataset": args.experiment, "weights": str(cfg["inception_weights"]),
                                "n_classes": 1000, "test_accuracy": float("nan"), "epoch_losses": []}
        probs_te = predict_probs(model, x_te[: cfg["metrics"]["eval_samples"]], batch_size=100, device=device)
        save_model = None
    else:
        model = build_classifier(args.experiment, n_classes=data.n_classes)
        gen = torch.Generator().manual_seed(args.seed)
        losses = fit_classifier(model, x_tr.to(device), y_tr.to(device), epochs=exp["scorer_epochs"],
                                batch_size=exp["scorer_batch_size"], lr=exp["scorer_lr"], device=device, generator=gen)
        probs_te = predict_probs(model, x_te, device=device)
        acc = float((probs_te.argmax(1) == data.y_test).mean())
        _log(f"scorer {args.experiment}: test accuracy {acc:.4f} after {exp['scorer_epochs']} epochs")
        info = {"kind": "classifier", "dataset": args.experiment, "n_classes": data.n_classes,
                "test_accuracy": acc, "epoch_losses": losses}
        save_model = model.cpu()
    real_is, real_is_std = inception_score(probs_te, splits=cfg["metrics"]["is_splits"])
    info.update(train_marginal=torch.tensor(train_marginal, dtype=torch.float64), real_test_is=real_is, real_test_is_std=real_is_std)
    save_scorer(args.out, save_model, info)
    summary = {k: v for k, v in info.items() if k not in ("train_marginal",)}
    summary.update(train_marginal=train_marginal.tolist() if len(train_marginal) <= 10 else None,
                   seconds=time.perf_counter() - t0, provenance=provenance_record(args.config, args.seed, started=started, stage="gan"))
    atomic_write_json(args.metrics, summary)
    _log(f"real test-set IS under the scorer: {real_is:.3f}")
    return 0


# --------------------------------------------------------------------------- train


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, (list, dict))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def cmd_train(args: argparse.Namespace) -> int:
    from repro.common.distributed import barrier, distributed
    from repro.gan.config import stage_config

    name = stage_config(args.config)["device"]
    resolve_device(name)  # a clear error for a missing GPU, before joining any process group
    with distributed(name) as (info, device):
        code = _train_ranked(args, info, device)
        barrier(info)  # the other ranks wait while rank 0 writes the outputs
    return code


def _train_ranked(args: argparse.Namespace, dist_info, device) -> int:
    """Train on every rank (one process: the only one); rank 0 writes samples, weights and results."""
    import torch

    from repro.common.amp import from_config
    from repro.common.checkpoint import RunCheckpoint, run_identity
    from repro.gan.arms import build_arm, check_world_size, generate
    from repro.gan.config import experiment_config, stage_config
    from repro.gan.data import MIXTURE_DATASETS, STACKED_BASE, load_images, load_mixture
    from repro.gan.engine import NonFiniteLossError, train
    from repro.gan.metrics import image_metrics, mixture_metrics, stacked_metrics

    started = now_iso()
    t_start = time.perf_counter()
    cfg = stage_config(args.config)
    exp = experiment_config(cfg, args.experiment)
    if args.arm not in exp["arms"]:
        raise SystemExit(f"arm {args.arm!r} is not in config key 'gan.experiments.{args.experiment}.arms' {exp['arms']}")
    mcfg = cfg["metrics"]
    log = _log if dist_info.is_main else (lambda msg: None)
    ranks = f" ({dist_info.world_size} ranks)" if dist_info.enabled else ""
    log(f"gan train: experiment {args.experiment}, arm {args.arm}, seed {args.seed}, device {device}{ranks},"
        f" {exp['steps']} steps")

    # ---- data: a sampler of real minibatches and an evaluation function
    is_mixture = args.experiment in MIXTURE_DATASETS
    is_stacked = args.experiment in STACKED_BASE  # scored by the base set's classifier, per channel
    if is_mixture:
        mix = load_mixture(args.inp)
        real = torch.from_numpy(mix.samples).to(device)  # n x 2
        shape: tuple[int, ...] = (2,)
    else:
        images = load_images(args.experiment, args.inp)
        real = torch.from_numpy(images.x_train).to(device)  # uint8 or float32, n x C x H x W
        shape = tuple(images.x_train.shape[1:])
        if args.scorer is None:
            raise SystemExit(f"experiment {args.experiment!r} needs --scorer (the classifier behind the inception score)")
        from repro.gan.classifier import load_scorer, predict_probs

        scorer, scorer_info = load_scorer(args.scorer, inception_weights=cfg["inception_weights"])
        scorer.to(device)
        train_marginal = scorer_info["train_marginal"].numpy()
        if is_stacked:  # the training share of each of the n_classes triples
            train_marginal = np.bincount(images.y_train, minlength=images.n_classes) / len(images.y_train)

    def sample_real(n: int) -> torch.Tensor:
        batch = real[torch.randint(len(real), (n,), device=device)]
        if batch.dtype == torch.uint8:
            batch = batch.float() / 127.5 - 1.0
        return batch

    setup = build_arm(args.arm, exp, data_shape=shape, device=device, dist=dist_info,
                      precision=from_config(cfg, device, section="gan"))  # mixed precision on CUDA
    check_world_size(setup, exp["batch_size"], dist_info.world_size, f"gan.experiments.{args.experiment}")
    eval_s = [0.0]

    def evaluate(step: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        x, _ = generate(setup, exp["eval_samples"] or mcfg["eval_samples"], device=device)
        if is_mixture:
            out = mixture_metrics(
                x.cpu().numpy(), mix.samples, mix.centers, mix.std, rng=np.random.default_rng([args.seed, step]),
                n_sigma=mcfg["n_sigma"], min_fraction=mcfg["min_mode_fraction"], bins=mcfg["hist_bins"],
                margin=mcfg["hist_margin"], eps=mcfg["hist_eps"], w1_samples=mcfg["w1_samples"],
            )
        elif is_stacked:
            n, c = x.shape[:2]
            probs = predict_probs(scorer, x.reshape(n * c, 1, *x.shape[2:]), batch_size=500, device=device)
            out = stacked_metrics(probs.reshape(n, c, -1), train_marginal)
        else:
            probs = predict_probs(scorer, x, batch_size=500, device=device)
            out = image_metrics(probs, train_marginal, splits=mcfg["is_splits"], under_ratio=mcfg["under_ratio"])
        eval_s[0] += time.perf_counter() - t0
        brief = {k: round(v, 4) for k, v in out.items() if isinstance(v, (int, float))}
        log(f"step {step}: {brief}")
        return out

    ckpt = RunCheckpoint(args.checkpoint_dir, run_identity(
        stage="gan.train", seed=args.seed, experiment=args.experiment, arm=args.arm,
        config={**{k: cfg[k] for k in ("inception_weights", "metrics")},
                "experiment": {k: v for k, v in exp.items() if k not in ("arms", "checkpoint_every")}},
        inputs={"data": args.inp, "scorer": args.scorer},
    ), is_main=dist_info.is_main, log=log)
    try:
        history = train(
            setup, sample_real=sample_real, steps=exp["steps"], batch_size=exp["batch_size"], device=device,
            evaluate=evaluate, eval_every=exp["eval_every"], ckpt=ckpt, checkpoint_every=exp["checkpoint_every"],
            dist=dist_info,
        )
    except NonFiniteLossError as exc:
        log(f"ERROR: {exc}")
        return 3
    if not dist_info.is_main:
        return 0

    # ---- outputs: final samples, weights, metrics CSV, results JSON
    x, gen_ids = generate(setup, cfg["plot_samples"], device=device)
    keep = torch.from_numpy(np.random.default_rng([args.seed, 7]).permutation(len(x))[: cfg["plot_samples"]])
    buf = io.BytesIO()
    np.savez(buf, samples=x[keep].cpu().numpy(), generator=gen_ids[keep].cpu().numpy())
    atomic_write_bytes(args.samples, buf.getvalue())
    wbuf = io.BytesIO()
    torch.save({k: {n: t.cpu() for n, t in v.state_dict().items()} for k, v in setup.nets.items()}, wbuf)
    atomic_write_bytes(args.weights, wbuf.getvalue())
    _write_csv(args.metrics_csv, history)
    final = history[-1]
    result = {
        "experiment": args.experiment,
        "arm": args.arm,
        "seed": args.seed,
        "steps": exp["steps"],
        "lr": exp["lr"],
        "n_generators": setup.n_generators,
        "final": final,
        "history": history,
        "seconds": {"total": time.perf_counter() - t_start, "train": final["train_s"], "eval": eval_s[0]},
        "device": str(device),
        "world_size": dist_info.world_size,
        "provenance": provenance_record(args.config, args.seed, started=started, stage="gan"),
    }
    if is_mixture:
        result["n_modes"] = int(len(mix.centers))
        result["mode_std"] = float(mix.std)
    else:
        result["kind"] = "stacked" if is_stacked else "images"
        result["scorer"] = {k: scorer_info[k] for k in ("kind", "test_accuracy", "real_test_is")}
    atomic_write_json(args.out, result)
    ckpt.finish()
    _log(f"done in {result['seconds']['total']:.1f} s (train {final['train_s']:.1f} s, eval {eval_s[0]:.1f} s)")
    return 0


# --------------------------------------------------------------------------- aggregate / claims


def cmd_aggregate(args: argparse.Namespace) -> int:
    from repro.gan.config import stage_config
    from repro.gan.summary import summarize_experiment

    started = now_iso()
    cfg = stage_config(args.config)
    jobs = [json.loads(Path(p).read_text()) for p in args.inp]
    summary = summarize_experiment(args.experiment, jobs)
    summary["provenance"] = provenance_record(args.config, None, started=started, stage="gan")
    atomic_write_json(args.out, summary)
    if args.figures:
        from repro.gan.plots import write_figures

        write_figures(args.experiment, jobs, summary, [Path(p) for p in args.samples], args.data, args.figures, cfg)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from repro.common.claims import write_claims
    from repro.gan.claims import claim_rows
    from repro.gan.config import stage_config

    cfg = stage_config(args.config)
    summaries = {}
    for p in args.inp:
        s = json.loads(Path(p).read_text())
        summaries[s["experiment"]] = s
    rows = claim_rows(summaries, cfg)
    write_claims(args.out, rows)
    for r in rows:
        _log(f"{r.claim_id}: {r.verdict} (ours {r.ours_mean}, CI {r.ours_ci95}, n={r.n_seeds})")
    return 0


COMMANDS = {"scorer": cmd_scorer, "train": cmd_train, "aggregate": cmd_aggregate, "claims": cmd_claims}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.gan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = add_common_args(sub.add_parser("scorer", help="train the in-pipeline classifier for the inception score"))
    p.add_argument("--experiment", required=True)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="dataset file/folder")
    p.add_argument("--out", type=Path, required=True, help="scorer weights (.pt)")
    p.add_argument("--metrics", type=Path, required=True, help="scorer accuracy etc. (.json)")

    p = add_common_args(sub.add_parser("train", help="one (experiment, arm, seed) job"))
    p.add_argument("--experiment", required=True)
    p.add_argument("--arm", required=True)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="mixture .npz or image dataset")
    p.add_argument("--scorer", type=Path, help="scorer .pt (image experiments)")
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--samples", type=Path, required=True, help="final samples (.npz)")
    p.add_argument("--weights", type=Path, required=True, help="final weights (.pt, weights_only)")
    p.add_argument("--metrics-csv", type=Path, required=True, help="metrics per evaluation step (.csv)")
    p.add_argument("--checkpoint-dir", help="checkpoint folder (resumed automatically)")

    p = add_common_args(sub.add_parser("aggregate", help="one experiment's jobs -> summary and figures"), seed=False)
    p.add_argument("--experiment", required=True)
    p.add_argument("--in", dest="inp", nargs="+", required=True, help="job results JSONs")
    p.add_argument("--samples", nargs="*", default=[], help="the jobs' sample .npz files (same order)")
    p.add_argument("--data", type=Path, help="the experiment's dataset (true modes / real digits for the figures)")
    p.add_argument("--out", type=Path, required=True, help="summary JSON")
    p.add_argument("--figures", nargs="*", type=Path, default=[], help="figure paths: samples, curves")

    p = add_common_args(sub.add_parser("claims", help="experiment summaries -> claims JSON"), seed=False)
    p.add_argument("--in", dest="inp", nargs="*", default=[], help="experiment summary JSONs")
    p.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from repro.common.config import check_config
    from repro.gan.config import stage_config

    configure_threads(args.threads)
    seed_everything(getattr(args, "seed", 0))
    try:
        check_config(args.config, "gan")  # before any work: a bad value is named
        check_config(stage_config(args.config), "gan")
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as exc:
        _log(f"ERROR: {exc}")
        return 2
