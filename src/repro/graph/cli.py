"""``python -m repro.graph <command>``: Transitive Invariance part 1 (1708.02901 Sec. 3).

Commands (one rule each, see workflow/rules/graph.smk):

* ``mine``     one shard of videos -> shard ``.npz`` + manifest ``.json`` (mining + KCF tracking)
* ``merge``    all shards -> ``patches.npy``, ``nodes.npz``, ``mining.json`` (with ground-truth scores)
* ``features`` ``context`` (train the context-prediction net, then embed) or ``hog`` -> ``features.npz``
* ``build``    features + nodes -> ``graph.npz``, ``pairs.npz``, ``stats.json`` (one variant, one seed)
* ``claims``   mining + per-seed stats -> ``results/claims/graph.json``
* ``figure``   mined patches and tracks on the real clips -> PNG

Output formats (the pretraining stage reads these):

``patches.npy``  uint8 [N,3,S,S] RGB patches, row = node id (``np.load(..., mmap_mode="r")`` works).
``nodes.npz``    per node: ``video`` int64 (index into ``video_names``), ``video_names`` str [V],
                 ``labelled`` bool [V], ``frame`` int32, ``box`` float32 [N,4] (x, y, w, h, original
                 pixels), ``role`` int8 (0 mined patch A, 1 track end A' after ``track_frames``,
                 2 short-track end after ``short_track_frames``), ``src`` int64 (A of a track end,
                 -1 for A), ``track`` float32 [N,T+1,4] (KCF boxes of A rows, NaN otherwise),
                 ``object`` / ``class_id`` int64 (true object and class, -1 unknown: real clips or no
                 box with IoU >= 0.5), ``iou`` float32, ``moving_frac``, ``rand_iou``, ``static_object``.
``features.npz`` ``node`` int64 [M] (the mined patches), ``x`` float32 [M,D] unit rows; the context
                 net's final ``state_dict`` goes to ``--weights`` (``repro.graph.models.context_net``).
``graph.npz``    ``parent`` int64 [N] (k-means cluster of a mined patch; a track end takes its A's;
                 -1 none), ``parent_size`` [K], ``parent_kept`` bool [K], ``groups`` int64 [G,4]
                 (node ids of each child), ``group_parent`` [G], ``edges`` int64 [E,2] and
                 ``edge_kind`` int8 [E] (0 intra A-A', 1 inter).
``pairs.npz``    ``a``, ``b`` int64 [P] node ids; ``kind`` int8 (0 intra, 1 inter, 2 transitive);
                 ``parent`` int64 (parent cluster, for negatives from another parent); ``in_mix``
                 bool (the transitive:intra training mixture, ``pair_ratio``).  Variant ``short``
                 uses the short-track ends as A'.
``stats.json``   counts and precision figures of the graph, ``mining.json`` those of the mining.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from repro.common.cli import add_common_args, done, start
from repro.common.config import borrowed
from repro.common.device import resolve_device
from repro.common.io import atomic_savez, atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json
from repro.common.npz import open_npy, read_npz
from repro.common.provenance import provenance_record, write_provenance
from repro.common.rng import METRICS_SUBSAMPLE

NODE_KEYS = ("video", "frame", "box", "role", "src", "track", "moving_frac", "object", "class_id", "iou", "rand_iou",
             "static_object")


def _load_npz(path: str | Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` input, ``keys`` required; errors name the file (missing, truncated)."""
    return read_npz(path, keys, what=what, all_arrays=True)


# ----------------------------------------------------------------------------- commands
def cmd_mine(args: argparse.Namespace) -> dict:
    from repro.graph.shards import mine_shard

    arrays, manifest = mine_shard(args.videos, args.shard, args.n_shards, args.config)
    atomic_savez(args.out, **arrays)
    manifest["provenance"] = provenance_record(args.config, args.seed, started=args.started, stage="graph.mine")
    atomic_write_json(args.manifest, manifest)
    return manifest["totals"]


def _stream_patches(shards: list, path: str | Path, n: int) -> tuple[int, ...]:
    """Write every shard's ``patches`` into one ``.npy`` (a memmap, so it may exceed RAM), atomically."""
    import os

    shapes = [z["patches"].shape[1:] for z in shards if len(z["video"])]
    shape = shapes[0] if shapes else (3, 0, 0)
    if any(s != shape for s in shapes):
        raise ValueError(f"merge: shards have different patch shapes {sorted(set(shapes))}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *shape))
    offset = 0
    for z in shards:
        p = z["patches"]
        out[offset:offset + len(p)] = p
        offset += len(p)
    out.flush()
    del out
    os.replace(tmp, path)
    return (n, *shape)


def cmd_merge(args: argparse.Namespace) -> dict:
    from repro.graph.metrics import mining_metrics
    from repro.graph.shards import list_videos, merge_shards

    if len(args.shards) != len(args.manifests):
        raise ValueError(f"merge: {len(args.shards)} shard files but {len(args.manifests)} manifests")
    for p in args.shards:
        if not Path(p).exists():
            raise FileNotFoundError(f"merge: missing shard file {p}")
    shards = [np.load(p, allow_pickle=False) for p in args.shards]  # lazy: one array at a time
    try:
        nodes = merge_shards(shards)
    except ValueError as exc:
        raise ValueError(f"merge: {exc}") from exc
    shape = _stream_patches(shards, args.out_patches, len(nodes["role"]))
    for z in shards:
        z.close()
    videos = list_videos(args.videos)
    labelled = np.array([v["labelled"] for v in videos], bool)
    names = [v["file"] for v in videos]
    totals: dict[str, int] = {}
    bad: dict[str, list[dict]] = {"corrupt": [], "short": []}
    for path in args.manifests:
        man = read_json(path)
        for k, v in man["totals"].items():
            totals[k] = totals.get(k, 0) + int(v)
        for v in man["videos"]:
            if v["status"] in bad:
                bad[v["status"]].append({"file": v["file"], "error": v.get("error")})
    for status, videos in bad.items():
        if videos:
            print(f"WARNING: {len(videos)} of {totals.get('videos', 0)} videos {status}: "
                  + "; ".join(f"{v['file']} ({v['error']})" for v in videos[:5]), file=sys.stderr, flush=True)
    atomic_savez(args.out_nodes, **nodes, video_names=np.array(names), labelled=labelled)
    stats = {"totals": totals, "corrupt_videos": bad["corrupt"], "short_videos": bad["short"],
             **mining_metrics(nodes, labelled, names), "patch_size": int(shape[-1])}
    stats["provenance"] = provenance_record(args.config, args.seed, started=args.started, stage="graph.merge")
    atomic_write_json(args.out_stats, stats)
    write_provenance(args.out_patches, args.config, args.seed, started=args.started, stage="graph.merge")
    return {k: stats[k] for k in ("n_mined", "mining_precision", "track_survival", "track_purity")}


def cmd_features(args: argparse.Namespace) -> dict:
    from repro.graph.shards import ROLE_MINED

    nodes = _load_npz(args.nodes, ("role",), "features")
    patches = open_npy(args.patches, what="patches")
    if patches.ndim != 4 or patches.shape[1] != 3 or len(patches) != len(nodes["role"]):
        raise ValueError(f"features: {args.patches} has shape {patches.shape}, expected [{len(nodes['role'])},3,S,S]")
    mined = np.flatnonzero(nodes["role"] == ROLE_MINED)
    cfg = args.config
    out: dict = {"kind": args.kind, "n": int(len(mined))}
    if args.kind == "hog":
        from repro.graph.features import hog_features

        x = hog_features(patches, mined)
    else:
        from repro.common.checkpoint import RunCheckpoint, run_identity
        from repro.graph.engine import trained_context_features

        device = resolve_device(borrowed(cfg, "graph", ["device"])["device"], key="graph.device")
        ckpt = RunCheckpoint(args.checkpoint_dir, run_identity(
            stage="graph.features", config=cfg, seed=args.seed, ignore=("ckpt_every", "device"),
            inputs={"patches": args.patches, "nodes": args.nodes}, kind=args.kind))
        x, history, model = trained_context_features(patches, mined, cfg, seed=args.seed, device=device, ckpt=ckpt)
        if args.weights:
            atomic_torch_save(args.weights, {k: v.cpu() for k, v in model.state_dict().items()})  # weights_only-loadable
        if args.metrics:
            lines = ["step,loss,acc"] + [f"{h['step']},{h['loss']:.6f},{h['acc']:.4f}" for h in history]
            atomic_write_bytes(args.metrics, ("\n".join(lines) + "\n").encode())
        tail = history[-max(1, len(history) // 10):]
        out.update(final_loss=float(np.mean([h["loss"] for h in tail])), final_acc=float(np.mean([h["acc"] for h in tail])),
                   device=device)
    atomic_savez(args.out, node=mined.astype(np.int64), x=x.astype(np.float32))
    write_provenance(args.out, {**cfg, "kind": args.kind}, args.seed, started=args.started, stage="graph.features")
    if args.kind != "hog":
        ckpt.finish()
    out["dim"] = int(x.shape[1]) if x.ndim == 2 else 0
    return out


def cmd_build(args: argparse.Namespace) -> dict:
    from repro.graph.graph import KIND_INTRA, build_graph
    from repro.graph.metrics import graph_metrics, track_end_of
    from repro.graph.shards import ROLE_END, ROLE_SHORT

    nodes = _load_npz(args.nodes, NODE_KEYS + ("labelled",), "build")
    feats = _load_npz(args.features, ("node", "x"), "build")
    n_nodes = len(nodes["role"])
    if len(feats["node"]) and feats["node"].max() >= n_nodes:
        raise ValueError(f"build: {args.features} refers to nodes beyond the {n_nodes} in {args.nodes}")
    role = ROLE_SHORT if args.track == "short" else ROLE_END
    track_end = track_end_of(nodes, role)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    device = resolve_device(borrowed(args.config, "graph", ["device"])["device"], key="graph.device")
    g = build_graph(feats["x"], feats["node"], n_nodes, nodes["video"], track_end, args.config, rng, device=device)
    seconds = time.perf_counter() - t0
    intra = g.pairs[g.pair_kind == KIND_INTRA]
    inter = g.pairs[g.pair_kind == 1]
    edges = np.concatenate([intra, inter]).astype(np.int64).reshape(-1, 2)
    edge_kind = np.concatenate([np.zeros(len(intra), np.int8), np.ones(len(inter), np.int8)])
    atomic_savez(args.out_graph, parent=g.parent, parent_size=g.parent_size, parent_kept=g.parent_kept, groups=g.groups,
           group_parent=g.group_parent, edges=edges, edge_kind=edge_kind)
    atomic_savez(args.out_pairs, a=g.pairs[:, 0].copy(), b=g.pairs[:, 1].copy(), kind=g.pair_kind, parent=g.pair_parent,
           in_mix=g.in_mix)
    write_provenance(args.out_graph, args.config, args.seed, started=args.started, stage="graph.build")
    write_provenance(args.out_pairs, args.config, args.seed, started=args.started, stage="graph.build")
    stats = {"variant": args.variant, "seed": args.seed, "track": args.track, "features": str(args.features),
             "build_seconds": seconds, "n_features": int(len(feats["node"])), "feature_dim": int(feats["x"].shape[1]),
             **graph_metrics(g, nodes, nodes["labelled"], np.random.default_rng([args.seed, METRICS_SUBSAMPLE]))}
    stats["provenance"] = provenance_record(args.config, args.seed, started=args.started, stage="graph.build")
    atomic_write_json(args.out_stats, stats)
    return {k: stats[k] for k in ("n_parents_kept", "n_groups", "n_pairs_mix", "inter_edge_precision",
                                  "transitive_pair_precision", "chance_same_class")}


def cmd_claims(args: argparse.Namespace) -> dict:
    from repro.common.claims import write_claims
    from repro.graph.claims import build_claims

    mining = read_json(args.mining)
    main = [read_json(p) for p in args.main]
    hog = [read_json(p) for p in args.hog] if args.hog else None
    setup = ", ".join(f"{k}={v}" for k, v in sorted(args.config.items()))
    rows = build_claims(mining, main, hog, scale=args.scale, setup=setup)
    write_claims(args.out, rows)
    return {r.claim_id: r.verdict for r in rows}


def cmd_figure(args: argparse.Namespace) -> dict:
    from repro.graph.figures import draw_figure
    from repro.graph.shards import list_videos

    nodes = _load_npz(args.nodes, NODE_KEYS, "figure")
    patches = open_npy(args.patches, what="patches")
    n = draw_figure(nodes, patches, list_videos(args.videos), args.videos, args.out)
    write_provenance(args.out, args.config, args.seed, started=args.started, stage="graph.figure")
    return {"rows": n}


COMMANDS = {
    "mine": (cmd_mine, "mine + KCF-track one shard of videos"),
    "merge": (cmd_merge, "merge shards into the node table; score mining against the ground truth"),
    "features": (cmd_features, "context-prediction or HOG features of the mined patches"),
    "build": (cmd_build, "parents, mutual-kNN children, transitive pairs (one variant, one seed)"),
    "claims": (cmd_claims, "claims rows over seeds"),
    "figure": (cmd_figure, "figure of mined patches and tracks on the real clips"),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.graph", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = add_common_args(sub.add_parser("mine", help=COMMANDS["mine"][1]))
    p.add_argument("--videos", type=Path, required=True, help="video folder (index.json or video files)")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--n-shards", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="shard .npz")
    p.add_argument("--manifest", type=Path, required=True, help="shard manifest .json")
    p = add_common_args(sub.add_parser("merge", help=COMMANDS["merge"][1]))
    p.add_argument("--videos", type=Path, required=True)
    p.add_argument("--shards", type=Path, nargs="+", required=True)
    p.add_argument("--manifests", type=Path, nargs="+", required=True)
    p.add_argument("--out-patches", type=Path, required=True)
    p.add_argument("--out-nodes", type=Path, required=True)
    p.add_argument("--out-stats", type=Path, required=True)
    p = add_common_args(sub.add_parser("features", help=COMMANDS["features"][1]))
    p.add_argument("--kind", choices=("context", "hog"), required=True)
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--nodes", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, help="per-step loss/accuracy CSV of the context net")
    p.add_argument("--weights", type=Path, help="final context-net state_dict (torch.load(weights_only=True))")
    p.add_argument("--checkpoint-dir", type=Path, help="context-net checkpoints (resume)")
    p = add_common_args(sub.add_parser("build", help=COMMANDS["build"][1]))
    p.add_argument("--variant", required=True, help="name recorded in the stats (main, hog, short)")
    p.add_argument("--track", choices=("long", "short"), default="long", help="which track end is A'")
    p.add_argument("--nodes", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--out-graph", type=Path, required=True)
    p.add_argument("--out-pairs", type=Path, required=True)
    p.add_argument("--out-stats", type=Path, required=True)
    p = add_common_args(sub.add_parser("claims", help=COMMANDS["claims"][1]))
    p.add_argument("--scale", default="default")
    p.add_argument("--mining", type=Path, required=True)
    p.add_argument("--main", type=Path, nargs="+", required=True, help="stats.json of the main variant, per seed")
    p.add_argument("--hog", type=Path, nargs="*", help="stats.json of the hog variant, per seed")
    p.add_argument("--out", type=Path, required=True)
    p = add_common_args(sub.add_parser("figure", help=COMMANDS["figure"][1]))
    p.add_argument("--videos", type=Path, required=True)
    p.add_argument("--nodes", type=Path, required=True)
    p.add_argument("--patches", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    return parser


# The schema sections each command's --config draws its keys from (the rules pass these sections;
# a key missing from a direct CLI call takes the schema's default). ``claims`` gets a description only.
SECTIONS = {"mine": ("graph.mine",), "merge": ("graph.mine",), "figure": ("graph.mine",),
            "features": ("graph.features", "graph"), "build": ("graph.build", "graph")}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, SECTIONS.get(args.command))  # before any work: a bad config value is named
    return done("repro.graph", args, COMMANDS[args.command][0](args))
