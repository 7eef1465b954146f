"""Stats of the mined patches and of one graph, measured against the synthetic videos' ground truth.

Definitions are in :mod:`repro.graph.truth`.  Every figure is computed on the labelled (synthetic)
videos only; the real clips have no labels and enter through counts (patches, track survival).
Pure functions of the node arrays (see :mod:`repro.graph.shards` for their meaning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from repro.graph.graph import KIND_INTER, KIND_INTRA, KIND_NAMES, KIND_TRANSITIVE, Graph
from repro.graph.shards import ROLE_END, ROLE_MINED, ROLE_SHORT
from repro.graph.truth import IOU_MATCH, chance_same_class, per_group_mean, same_class


def _rate(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None


def track_end_of(nodes: dict[str, np.ndarray], role: int) -> np.ndarray:
    """[N] node id of each mined patch's track end of ``role`` (ROLE_END or ROLE_SHORT), else -1."""
    end = np.full(len(nodes["role"]), -1, np.int64)
    rows = np.flatnonzero(nodes["role"] == role)
    end[nodes["src"][rows]] = rows
    return end


def mining_metrics(nodes: dict[str, np.ndarray], labelled: np.ndarray, video_names: list[str]) -> dict[str, Any]:
    """Mining precision, track survival/purity (with their baselines) and per-real-clip counts.

    ``labelled`` [V] says which videos have ground truth.  ``per_video_*`` lists hold one value per
    labelled video (for intervals over videos).
    """
    role, video = nodes["role"], nodes["video"]
    lab_node = labelled[video] if len(video) else np.zeros(0, bool)
    mined = role == ROLE_MINED
    tracked = mined & np.isfinite(nodes["track"][:, 0, 0])
    out: dict[str, Any] = {
        "n_nodes": int(len(role)),
        "n_mined": int(mined.sum()),
        "n_track_ends": int((role == ROLE_END).sum()),
        "n_short_ends": int((role == ROLE_SHORT).sum()),
        "track_survival": _rate(tracked[mined]),
    }
    m = mined & lab_node
    hit = nodes["iou"][m] >= IOU_MATCH
    out["mining_precision"] = _rate(hit)
    out["random_box_precision"] = _rate(nodes["rand_iou"][m] >= IOU_MATCH)
    out["mining_mean_iou"] = float(np.mean(nodes["iou"][m])) if m.any() else None
    out["per_video_mining_precision"] = per_group_mean(hit, video[m]).tolist()
    out["per_video_random_box_precision"] = per_group_mean(nodes["rand_iou"][m] >= IOU_MATCH, video[m]).tolist()
    out["n_mined_labelled"] = int(m.sum())
    out["n_mined_real"] = int((mined & ~lab_node).sum())
    for name, r in (("track", ROLE_END), ("short_track", ROLE_SHORT)):
        ends = np.flatnonzero((role == r) & lab_node)
        a = nodes["src"][ends]
        ok = nodes["object"][a] >= 0  # tracks whose A is a true object
        pure = nodes["object"][ends[ok]] == nodes["object"][a[ok]]
        out[f"{name}_purity"] = _rate(pure)
        out[f"{name}_end_precision"] = _rate(nodes["iou"][ends] >= IOU_MATCH)
        out[f"n_{name}s_scored"] = int(ok.sum())
        if r == ROLE_END:
            static = nodes["static_object"][a[ok]] == nodes["object"][a[ok]]
            out["static_box_purity"] = _rate(static)
            out["per_video_track_purity"] = per_group_mean(pure, video[a[ok]]).tolist()
            out["per_video_static_box_purity"] = per_group_mean(static, video[a[ok]]).tolist()
    real = {}
    for v in np.flatnonzero(~labelled):
        mv = mined & (video == v)
        real[video_names[v]] = {"mined": int(mv.sum()), "tracks_ok": int((tracked & (video == v)).sum()),
                                "track_survival": _rate(tracked[mv])}
    out["real_clips"] = real
    return out


def graph_metrics(g: Graph, nodes: dict[str, np.ndarray], labelled: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Counts and ground-truth precision of one built graph (see :mod:`repro.graph.truth`)."""
    cls, obj, video = nodes["class_id"], nodes["object"], nodes["video"]
    lab_node = labelled[video]
    out: dict[str, Any] = {
        "n_clusters": int(len(g.parent_size)),
        "n_parents_kept": int(g.parent_kept.sum()),
        "parent_sizes_kept": sorted(g.parent_size[g.parent_kept].tolist(), reverse=True),
        "n_patches_in_parents": int(g.parent_size[g.parent_kept].sum()),
        "n_mutual_knn_edges": int(g.n_mutual_edges),
        "n_four_cliques": int(g.n_cliques),
        "n_groups": int(len(g.groups)),
        "n_pairs_mix": int(g.in_mix.sum()),
    }
    for kind, name in KIND_NAMES.items():
        sel = g.pair_kind == kind
        out[f"n_{name}_pairs"] = int(sel.sum())
        out[f"n_{name}_pairs_mix"] = int((sel & g.in_mix).sum())
        a, b = g.pairs[sel, 0], g.pairs[sel, 1]
        lab = lab_node[a] & lab_node[b]
        if kind == KIND_INTRA:  # same object instance (the track's purity, over all tracks)
            out["intra_pair_precision"] = _rate((obj[a[lab]] >= 0) & (obj[a[lab]] == obj[b[lab]]))
        else:
            out[f"{name}_pair_precision"] = _rate(same_class(cls[a[lab]], cls[b[lab]]))
            # split of the errors: pairs with a patch on no object (a mining miss) vs same-class rate of
            # the pairs whose two patches both hit an object (the features' part)
            hit = lab & (cls[a] >= 0) & (cls[b] >= 0)
            out[f"{name}_pair_unmatched"] = _rate(~hit[lab])
            out[f"{name}_pair_precision_matched"] = _rate(cls[a[hit]] == cls[b[hit]])
        if kind == KIND_INTER:
            out["inter_same_instance"] = _rate((video[a] == video[b]) & (obj[a] >= 0) & (obj[a] == obj[b]))
    mined_lab = np.flatnonzero((nodes["role"] == ROLE_MINED) & lab_node)
    out["chance_same_class"] = chance_same_class(cls[mined_lab], video[mined_lab], rng)
    # within-parent baseline: random cross-video pairs inside the same kept parent (k-means alone)
    par = g.parent[mined_lab]
    ok = (par >= 0) & g.parent_kept[np.maximum(par, 0)]
    out["parent_same_class"] = _parent_pair_rate(cls[mined_lab[ok]], video[mined_lab[ok]], par[ok], rng)
    hit = mined_lab[cls[mined_lab] >= 0]  # chance among patches that hit an object
    out["chance_same_class_matched"] = chance_same_class(cls[hit], video[hit], rng)
    out["inter_edge_precision"] = out.pop("inter_pair_precision")
    out["transitive_pair_precision"] = out.pop("transitive_pair_precision")
    return out


def _parent_pair_rate(cls: np.ndarray, video: np.ndarray, parent: np.ndarray, rng: np.random.Generator,
                      n_pairs: int = 20000) -> float | None:
    """Same-class rate of random cross-video pairs drawn inside the same parent cluster."""
    if len(cls) < 2:
        return None
    order = np.argsort(parent, kind="stable")
    p_sorted = parent[order]
    starts = np.searchsorted(p_sorted, p_sorted, side="left")
    ends = np.searchsorted(p_sorted, p_sorted, side="right")
    first = rng.integers(0, len(order), n_pairs)
    lo, hi = starts[first], ends[first]
    second = lo + (rng.random(n_pairs) * (hi - lo)).astype(np.int64)
    a, b = order[first], order[second]
    keep = video[a] != video[b]
    return _rate(same_class(cls[a[keep]], cls[b[keep]]))


__all__ = ["graph_metrics", "mining_metrics", "track_end_of", "KIND_INTRA", "KIND_INTER", "KIND_TRANSITIVE"]
