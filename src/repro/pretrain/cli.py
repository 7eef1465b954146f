"""``python -m repro.pretrain <command>``: Transitive Invariance part 2 (arXiv 1708.02901, Sec. 3.3-4).

Commands (one rule each, see workflow/rules/pretrain.smk):

* ``train``   one arm and seed: Triplet-Siamese pretraining with the ranking loss on the arm's pairs
              (``scratch`` only writes the initial weights) -> ``backbone.pt``, ``net.pt``,
              ``metrics.csv`` (one row per step), ``train.json``
* ``eval``    one seed, every arm: linear probe and kNN accuracy of the frozen pooled features on
              labelled crops -> ``eval/s<seed>.json``
* ``claims``  all seeds -> ``summary.json`` (per arm mean and CI), ``results/claims/pretrain.json``,
              and the figure ``probe_knn.png``

Output contract with the detection stage (TI transfer): ``backbone.pt`` is exactly
``repro.detect.backbone.tiny_resnet(width=detect.width, blocks=detect.blocks).state_dict()`` (or
``resnet50``'s at full scale), loadable with ``torch.load(..., weights_only=True)`` and
``load_state_dict(..., strict=True)``. ``net.pt`` is the whole tower's state_dict (``backbone.*`` and
``head.*``, :func:`repro.pretrain.models.triplet_net`).

Multi-GPU: ``torchrun --nproc_per_node=N -m repro.pretrain train ...`` (or ``srun``) trains one arm as N
DDP ranks (``repro.common.distributed``; ``pretrain.batch`` is the global mini-batch whose patches all
serve as distractors, see :mod:`repro.pretrain.engine`); rank 0 alone writes checkpoints and outputs,
with the unwrapped state_dicts, so 1- and N-process checkpoints are interchangeable.

Initialisation (decided here; the paper starts every ranking arm from its context-prediction net):
every arm of seed s starts from the same random weights, drawn by ``torch.manual_seed(s)`` right
before the net is built (torchvision's ResNet init for the backbone, PyTorch's for the fc head); the
``scratch`` arm saves exactly those weights. No pretrained weights exist offline, and the graph
stage's context net has another architecture, so it cannot initialise this backbone.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

from repro.common.amp import from_config
from repro.common.cli import add_common_args, done, start
from repro.common.config import borrowed
from repro.common.device import resolve_device
from repro.common.io import atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from repro.common.provenance import provenance_record, write_provenance

NET_KEYS = ("backbone", "width", "blocks", "hidden", "embed")
# Config keys that change how a run is carried out but not its numbers (not in a checkpoint's identity).
NOT_SHAPING_RUN = ("checkpoint_every", "device", "preload_gb", "runtime_min", "threads", "arms", "seeds", "eval",
                   "amp")
# The schema sections the --config keys come from: the rules add the detection backbone's keys.
SECTIONS = ("pretrain", "detect")


def _build_net(cfg: dict, seed: int):
    """The tower with the seed's shared initial weights (module docstring)."""
    import torch

    from repro.pretrain.models import triplet_net

    net = {**cfg, **borrowed(cfg, "detect", ("backbone", "width", "blocks"))}  # the detector's backbone
    torch.manual_seed(seed)
    return triplet_net(backbone=net["backbone"], width=int(net["width"]), blocks=tuple(net["blocks"]),
                       hidden=int(net["hidden"]), embed=int(net["embed"]))


def _train_config(cfg: dict):
    from repro.pretrain.engine import TrainConfig

    opt = cfg["optimizer"]
    return TrainConfig(steps=int(cfg["steps"]), batch=int(cfg["batch"]),
                       margin=float(cfg["margin"]), negatives=cfg["negatives"],
                       hard_fraction=float(cfg["hard_fraction"]), flip=bool(cfg["flip"]),
                       lr=float(opt["lr"]), schedule=cfg["schedule"],
                       warmup_steps=int(cfg["warmup_steps"]), poly_power=float(cfg["poly_power"]))


def _write_csv(path: Path, rows: list[list[float]]) -> None:
    from repro.pretrain.engine import COLUMNS

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([int(r[0]), int(r[1]), *(f"{v:.6g}" for v in r[2:7]), int(r[7]), f"{r[8]:.3f}"])
    atomic_write_bytes(path, buf.getvalue().encode())


# ----------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> dict:
    from repro.common.distributed import barrier, distributed

    with distributed(args.config["device"], key="pretrain.device") as (info, device):
        out = _train_ranked(args, info, device)
        barrier(info)  # the other ranks wait while rank 0 writes the outputs
    return out


def _train_ranked(args: argparse.Namespace, dist_info, device) -> dict:
    """Train on every rank (one process: the only one), write the outputs on rank 0."""
    from dataclasses import replace

    import torch

    from repro.common.checkpoint import RunCheckpoint, run_identity
    from repro.common.distributed import wrap_model
    from repro.pretrain.data import PatchBank, check_arm, load_pairs, load_patches, select_pairs
    from repro.pretrain.engine import TrainState, make_optimizer, train

    cfg, arm = args.config, check_arm(args.arm)
    net = _build_net(cfg, args.seed).to(device)
    tcfg = _train_config(cfg)
    if arm == "transitive_mixed":  # the ablation arm: [61]'s mix of hard and random distractors
        tcfg = replace(tcfg, negatives="mixed")
    state = TrainState()
    info: dict = {"arm": arm, "seed": args.seed, "device": str(device), "n_pairs": 0, "steps": 0,
                  "negatives": tcfg.negatives,
                  "world_size": dist_info.world_size}
    trainable = arm != "scratch"
    if trainable:
        if args.pairs is None:
            raise ValueError(f"train: arm {arm!r} needs --pairs")
        patches_np = load_patches(args.patches)
        pairs = select_pairs(load_pairs(args.pairs, len(patches_np)), arm)
        reason = None
        if len(pairs) == 0:
            reason = f"{args.pairs} has no pairs for arm {arm!r}"
        elif len(np.unique(pairs.parent)) < 2:
            reason = (f"all {len(pairs)} pairs of arm {arm!r} in {args.pairs} share one parent cluster, so no"
                      " mini-batch has an other-parent distractor")
        if reason is not None:  # tiny graphs (smoke scale): keep the DAG going, say so everywhere
            print(f"WARNING: {reason}; the arm is NOT trained and saves its initial weights", file=sys.stderr)
            info.update(untrained=reason, n_pairs=len(pairs))
            trainable = False
    if trainable:
        bank = PatchBank(patches_np, np.concatenate([pairs.a, pairs.b]), device,
                         preload_bytes=float(cfg["preload_gb"]) * 1e9)
        precision = from_config(cfg, device, section="pretrain")  # mixed precision on CUDA (repro.common.amp)
        # N ranks: DDP + synced BatchNorm; net stays the plain module
        ddp = wrap_model(precision.prepare(net), dist_info, device)
        opt = make_optimizer(net.parameters(), cfg["optimizer"])
        ckpt = RunCheckpoint(args.checkpoint_dir, run_identity(
            stage="pretrain.train", config=cfg, seed=args.seed, arm=arm, ignore=NOT_SHAPING_RUN,
            inputs={"patches": args.patches, "pairs": args.pairs}), is_main=dist_info.is_main)
        saved = ckpt.resume()
        if saved is not None:
            net.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            precision.restore(saved)
            state = TrainState(step=int(saved["step"]), rows=saved["rows"].tolist())
            print(f"resumed from step {state.step}", file=sys.stderr)

        def checkpoint(st: TrainState) -> None:
            ckpt.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": st.step,
                       "rows": torch.tensor(st.rows, dtype=torch.float64), **precision.checkpoint_state()})

        t0 = time.perf_counter()
        state = train(ddp, opt, bank, torch.from_numpy(bank.rows_of(pairs.a)), torch.from_numpy(bank.rows_of(pairs.b)),
                      torch.from_numpy(pairs.parent), tcfg, seed=args.seed, state=state,
                      checkpoint=checkpoint if args.checkpoint_dir else None,
                      checkpoint_every=int(cfg["checkpoint_every"]), desc=f"pretrain {arm} s{args.seed}",
                      dist=dist_info, precision=precision)
        last = np.array(state.rows[-min(len(state.rows), 20):], dtype=float)
        info.update(n_pairs=len(pairs), steps=state.step, train_seconds=time.perf_counter() - t0,
                    final_loss=float(np.nanmean(last[:, 3])), final_active=float(np.nanmean(last[:, 4])),
                    first_loss=float(state.rows[0][3]), epochs=float(state.step * tcfg.batch / len(pairs)))
    if not dist_info.is_main:
        return {}
    net = net.cpu()
    atomic_torch_save(args.out_backbone, net.backbone.state_dict())
    atomic_torch_save(args.out_net, net.state_dict())
    _write_csv(args.out_metrics, state.rows)
    for p in (args.out_backbone, args.out_net, args.out_metrics):
        write_provenance(p, args.config, args.seed, started=args.started, stage="pretrain.train")
    info["provenance"] = provenance_record(args.config, args.seed, started=args.started, stage="pretrain.train")
    atomic_write_json(args.out_summary, info)
    if trainable:
        ckpt.finish()
    return {k: v for k, v in info.items() if k != "provenance"}


def _eval_sets(args: argparse.Namespace, cfg: dict) -> list:
    """The labelled crop sets of ``eval.sources``, each from its own input (repro.pretrain.data)."""
    from repro.pretrain.data import detection_crops, load_nodes, load_patches, mined_crops, voc_crops

    ecfg = cfg["eval"]
    size = int(ecfg["crop_size"])
    out = []
    for source in ecfg["sources"]:
        if source == "mined":
            if args.patches is None or args.nodes is None:
                raise ValueError("eval: source 'mined' needs --patches and --nodes")
            patches = load_patches(args.patches)
            out.append(mined_crops(patches, load_nodes(args.nodes, len(patches))))
        elif source == "detection":
            if args.detection is None:
                raise ValueError("eval: source 'detection' needs --detection")
            out.append(detection_crops(args.detection, size))
        elif source == "voc2007":
            if args.voc is None:
                raise ValueError("eval: source 'voc2007' needs --voc")
            out.append(voc_crops(args.voc, size, max_per_split=int(ecfg["max_per_split"]), seed=0))
        else:
            raise ValueError(f"pretrain.eval.sources: unknown source {source!r} (mined | detection | voc2007)")
    if not out:
        raise ValueError("pretrain.eval.sources is empty")
    return out


def cmd_eval(args: argparse.Namespace) -> dict:
    import torch

    from repro.pretrain.metrics import evaluate_features
    from repro.pretrain.models import pooled_features

    cfg = args.config
    if len(args.arms) != len(args.backbones):
        raise ValueError(f"eval: {len(args.arms)} arms but {len(args.backbones)} backbone files")
    ecfg = cfg["eval"]
    sets = _eval_sets(args, cfg)
    device = resolve_device(cfg["device"], key="pretrain.device")
    kw = dict(n_folds=int(ecfg["folds"]), knn_k=int(ecfg["knn_k"]),
              probe_C=float(ecfg["probe_C"]), probe_max_iter=int(ecfg["probe_max_iter"]),
              seed=args.seed)
    nets = {}
    for arm, path in zip(args.arms, args.backbones):
        if not Path(path).is_file():
            raise FileNotFoundError(f"eval: missing backbone weights {path}")
        net = _build_net(cfg, args.seed)
        net.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        nets[arm] = net.to(device)
    out: dict = {"seed": args.seed, "sets": {}}
    for data in sets:
        x = torch.from_numpy(np.ascontiguousarray(data.x))
        counts = np.bincount(data.y)
        res: dict = {"n_crops": int(len(data.y)), "n_groups": int(len(np.unique(data.group))),
                     "n_classes": int((counts > 0).sum()), "class_counts": counts.tolist(),
                     "classes": list(data.classes), "grouped_folds": data.split is None,
                     "majority": 100.0 * float(counts.max() / len(data.y)), "arms": {}}
        small = torch.nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1).numpy()  # [M, 3*8*8]
        res["pixels"] = evaluate_features(small, data.y, data.group, data.split, **kw)  # reference, not an arm
        for arm, net in nets.items():
            feats = pooled_features(net, x, batch_size=int(ecfg["batch"]), device=device).numpy()
            if not np.isfinite(feats).all():
                raise FloatingPointError(f"eval: non-finite features of arm {arm!r} on the {data.source} crops")
            res["arms"][arm] = evaluate_features(feats, data.y, data.group, data.split, **kw)
        out["sets"][data.source] = res
    out["provenance"] = provenance_record(cfg, args.seed, started=args.started, stage="pretrain.eval")
    atomic_write_json(args.out, out)
    return {src: {a: [round(m["probe"], 1), round(m["knn"], 1)] for a, m in r["arms"].items()}
            for src, r in out["sets"].items()}


def cmd_claims(args: argparse.Namespace) -> dict:
    from repro.common.claims import write_claims
    from repro.pretrain.claims import build_claims, summarize

    evals = [read_json(p) for p in args.evals]
    trains = [read_json(p) for p in args.train] if args.train else []
    graphs = [read_json(p) for p in args.graph_stats] if args.graph_stats else []
    summary = summarize(evals, trains, graphs)
    rows = build_claims(summary, args.config, scale=args.scale)
    write_claims(args.out_claims, rows)
    summary["provenance"] = provenance_record(args.config, None, started=args.started, stage="pretrain.claims")
    atomic_write_json(args.out_summary, summary)
    if args.out_figure is not None:
        from repro.pretrain.figures import draw_figure

        draw_figure(summary, args.out_figure)
        write_provenance(args.out_figure, args.config, None, started=args.started, stage="pretrain.claims")
    return {r.claim_id: r.verdict for r in rows}


COMMANDS = {
    "train": (cmd_train, "pretrain one arm and seed with the ranking loss"),
    "eval": (cmd_eval, "linear probe and kNN accuracy of every arm of one seed"),
    "claims": (cmd_claims, "summary over seeds, claims and figure"),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = add_common_args(sub.add_parser("train", help=COMMANDS["train"][1]))
    p.add_argument("--arm", required=True, help="scratch | intra | inter | transitive | transitive_hog | transitive_short"
                   " | transitive_mixed")
    p.add_argument("--patches", type=Path, help="graph stage's patches.npy (not needed for scratch)")
    p.add_argument("--pairs", type=Path, help="graph stage's pairs.npz (not needed for scratch)")
    p.add_argument("--out-backbone", type=Path, required=True, help="backbone state_dict (the detector's)")
    p.add_argument("--out-net", type=Path, required=True, help="whole tower state_dict")
    p.add_argument("--out-metrics", type=Path, required=True, help="per-step CSV")
    p.add_argument("--out-summary", type=Path, required=True, help="train.json")
    p.add_argument("--checkpoint-dir", type=Path, help="checkpoints (automatic resume)")
    p = add_common_args(sub.add_parser("eval", help=COMMANDS["eval"][1]))
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--backbones", type=Path, nargs="+", required=True, help="backbone.pt per arm, same order")
    p.add_argument("--patches", type=Path, help="mined crops: patches.npy")
    p.add_argument("--nodes", type=Path, help="mined crops: nodes.npz (class_id >= 0 are labelled)")
    p.add_argument("--detection", type=Path, help="detection crops: the synthetic COCO-format detection set")
    p.add_argument("--voc", type=Path, help="VOC 2007 crops: the downloaded VOC 2007 folder (full scale)")
    p.add_argument("--out", type=Path, required=True)
    p = add_common_args(sub.add_parser("claims", help=COMMANDS["claims"][1]), seed=False)
    p.add_argument("--scale", default="default")
    p.add_argument("--evals", type=Path, nargs="+", required=True, help="eval/s<seed>.json")
    p.add_argument("--train", type=Path, nargs="*", help="train.json of every arm and seed (timings, losses)")
    p.add_argument("--graph-stats", type=Path, nargs="*", help="graph stage's stats.json per seed (pair precision)")
    p.add_argument("--out-claims", type=Path, required=True)
    p.add_argument("--out-summary", type=Path, required=True)
    p.add_argument("--out-figure", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, SECTIONS)  # before any work: a bad config value is named
    return done("repro.pretrain", args, COMMANDS[args.command][0](args))
