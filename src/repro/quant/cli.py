"""``python -m repro.quant <run|aggregate>``: network quantization (Choi et al., 1612.01543).

* ``run`` (one job per net and seed): train the net with Adam, compute the Hessian diagonal (exact,
  over ``hessian.n_samples`` training samples) and Adam's second moment, quantize all parameters
  together with every method over the sweep, code with fixed-length and Huffman codes, optionally
  fine-tune the shared values; then (optionally) magnitude-prune, retrain with Adam and sweep again
  for the compression-ratio table. Writes one JSON and the trained weights.
* ``aggregate``: reads every ``run`` JSON, writes the summary, the claims file, the figure (paper
  Fig. 1) and the compression-ratio table (paper Table 1).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from repro.common.cli import add_common_args
from repro.common.io import atomic_write_bytes, atomic_write_json
from repro.common.provenance import now_iso, provenance_record, write_provenance
from repro.common.runtime import configure_threads, seed_everything


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.quant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = add_common_args(sub.add_parser("run", help="train one net, compute Hessians, run the quantization sweep"))
    run.add_argument("--net", required=True, help="name of the net in the config's quant.nets")
    run.add_argument("--in", dest="inp", required=True, help="dataset file/folder of the net's dataset")
    run.add_argument("--out", required=True, help="result JSON")
    run.add_argument("--weights", required=True, help="trained weights (.pt, loadable with weights_only=True)")
    run.add_argument("--checkpoint-dir", default=None, help="checkpoints (training resumes from here)")
    agg = add_common_args(sub.add_parser("aggregate", help="claims, figure and table from the run JSONs"), seed=False)
    agg.add_argument("--in", dest="inp", nargs="+", required=True, help="run JSONs (all nets and seeds)")
    agg.add_argument("--summary", required=True, help="summary JSON")
    agg.add_argument("--claims", required=True, help="claims JSON (results/claims/quant.json)")
    agg.add_argument("--figure", nargs="+", required=True, help="one figure per enabled net, in config order")
    agg.add_argument("--table", required=True, help="compression-ratio table (CSV)")
    return parser


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("quant.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def _sweep_net(model, optimizer, data, cfg, masks, *, seed, tag, inits, log):

    from repro.quant.coding import CodeCost
    from repro.quant.engine import evaluate, flat_values, make_layout
    from repro.quant.hessian import net_hessians
    from repro.quant.sweep import SweepContext, position_cost, pruned_only_ratio, run_sweep, sweep_methods

    all_names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    names = all_names if cfg["quantize"] == "all" else [n for n in all_names if params[n].dim() > 1]
    layout = make_layout(model, names, masks)
    methods = sweep_methods(cfg, tag)
    hessians, h_info = net_hessians(model, optimizer, layout.names, layout.kept, data.x_train, data.y_train,
                                    cfg["hessian"], seed, log, small="hw_kmeans_small" in methods)
    n_params = sum(p.numel() for p in model.parameters())
    n_unq = sum(params[n].numel() for n in all_names if n not in names)
    pos = position_cost(layout, int(cfg["prune"]["max_gap"])) if masks else CodeCost(0.0, 0.0, 0.0)
    ctx = SweepContext(model=model, layout=layout, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                       y_test=data.y_test, hessians=hessians, n_params=n_params, n_unquantized=n_unq, position_code=pos,
                       eval_batch_size=int(cfg["eval_batch_size"]), finetune=cfg["finetune"], seed=seed)
    w = flat_values(model, layout).double().cpu().numpy()
    acc, ce = evaluate(model, data.x_test, data.y_test, batch_size=int(cfg["eval_batch_size"]))
    log(f"[{tag}] unquantized: acc {acc:.2f}%  CE {ce:.4f}  ({len(w)} quantized parameters of {n_params})")
    records = run_sweep(ctx, w, cfg, methods=methods, inits=inits, tag=tag, log=log)
    meta = {"acc": acc, "ce": ce, "n_params": n_params, "n_quantized": int(len(w)), "n_unquantized": n_unq,
            "hessian": h_info, "position_bits": pos.payload_bits + pos.table_bits,
            "cr_pruned_only": pruned_only_ratio(ctx) if masks else 1.0}
    return meta, records


def cmd_run(args: argparse.Namespace) -> int:
    import io

    import torch

    from repro.common.amp import from_config
    from repro.common.checkpoint import RunCheckpoint, run_identity
    from repro.quant.data import augment_crop_flip, load_dataset
    from repro.quant.engine import TrainSpec, magnitude_masks, train
    from repro.quant.models import build_model

    started = now_iso()
    cfg = args.config
    if args.net not in cfg.get("nets", {}):
        raise SystemExit(f"--net {args.net!r} is not in the config's quant.nets ({sorted(cfg.get('nets', {}))})")
    net_cfg = cfg["nets"][args.net]
    device = _device(cfg["device"])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_dataset(net_cfg["dataset"], args.inp).to(device)
    model = build_model(net_cfg["model"], hidden=tuple(net_cfg.get("hidden", (128, 64))),
                        in_shape=tuple(data.x_train.shape[1:]), num_classes=data.num_classes).to(device)
    precision = from_config(cfg, device, section="quant")  # mixed precision on CUDA (repro.common.amp)
    precision.prepare(model)
    spec = TrainSpec(epochs=int(net_cfg["epochs"]), batch_size=int(net_cfg["batch_size"]), lr=float(net_cfg["lr"]),
                     weight_decay=float(net_cfg["weight_decay"]), schedule=net_cfg["schedule"], augment=bool(net_cfg["augment"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    ckpt_root = Path(args.checkpoint_dir) if args.checkpoint_dir else None

    def checkpoint(phase: str) -> RunCheckpoint:
        """The checkpoint of one training phase of this net (dense training, retraining after pruning)."""
        return RunCheckpoint(ckpt_root / phase if ckpt_root else None, run_identity(
            stage="quant.run", config={"net": net_cfg}, seed=args.seed, inputs={"data": args.inp},
            net=args.net, phase=phase), log=log)

    dense_ckpt = checkpoint("dense")
    augment = augment_crop_flip if spec.augment else None
    log(f"net {args.net}: {net_cfg['model']} on {net_cfg['dataset']} ({data.x_train.shape[0]} train, "
        f"{data.x_test.shape[0]} test) on {device}")
    train_info = train(model, optimizer, data.x_train, data.y_train, spec, seed=args.seed,
                       ckpt=dense_ckpt, ckpt_every=int(cfg["checkpoint_every"]), augment=augment, desc="train",
                       precision=precision)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dense_meta, dense_records = _sweep_net(model, optimizer, data, cfg, None, seed=args.seed, tag="dense",
                                           inits=int(cfg["kmeans"]["inits"]), log=log)
    timings["dense_sweep_s"] = time.perf_counter() - t0
    result = {"net": args.net, "seed": args.seed, "dataset": net_cfg["dataset"], "model": net_cfg["model"],
              "device": str(device), "train": train_info, "dense": dense_meta, "sweeps": {"dense": dense_records}}
    weights = {"dense": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

    pc = cfg["prune"]
    pruned_ckpt = checkpoint("pruned")
    if pc["enabled"]:
        t0 = time.perf_counter()
        pruned = copy.deepcopy(model)
        masks = magnitude_masks(pruned, float(net_cfg["prune_fraction"]))
        popt = torch.optim.Adam(pruned.parameters(), lr=float(net_cfg["prune_lr"]), weight_decay=spec.weight_decay)
        pspec = TrainSpec(epochs=int(net_cfg["prune_epochs"]), batch_size=spec.batch_size, lr=float(net_cfg["prune_lr"]),
                          weight_decay=spec.weight_decay, schedule=spec.schedule, augment=spec.augment)
        result["prune_train"] = train(pruned, popt, data.x_train, data.y_train, pspec, seed=args.seed + 1,
                                      ckpt=pruned_ckpt, ckpt_every=int(cfg["checkpoint_every"]), masks=masks,
                                      augment=augment, desc="prune-retrain", precision=precision)
        timings["prune_train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta, records = _sweep_net(pruned, popt, data, cfg, masks, seed=args.seed, tag="pruned",
                                   inits=int(pc["inits"]), log=log)
        meta["fraction"] = float(net_cfg["prune_fraction"])
        result["pruned"] = meta
        result["sweeps"]["pruned"] = records
        weights["pruned"] = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
        timings["pruned_sweep_s"] = time.perf_counter() - t0

    result["timings"] = timings
    result["provenance"] = provenance_record(cfg, args.seed, started=started, stage="quant")
    buf = io.BytesIO()
    torch.save(weights, buf)
    atomic_write_bytes(args.weights, buf.getvalue())
    write_provenance(args.weights, cfg, args.seed, started=started, stage="quant")
    atomic_write_json(args.out, result)
    dense_ckpt.finish()
    pruned_ckpt.finish()
    log("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from repro.quant.report import aggregate

    aggregate(args.config, [Path(p) for p in args.inp], summary=Path(args.summary), claims=Path(args.claims),
              figures=[Path(p) for p in args.figure], table=Path(args.table), started=now_iso())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from repro.common.config import check_config

    configure_threads(args.threads)
    if args.cmd == "run":
        seed_everything(args.seed)
    try:
        check_config(args.config, "quant")  # before any work: a bad value is named
        return cmd_run(args) if args.cmd == "run" else cmd_aggregate(args)
    except (FileNotFoundError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
