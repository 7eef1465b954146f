"""The transitive graph (1708.02901 Sec. 3.2-3.3): parent clusters, mutual-kNN groups, transitive pairs.

Given L2-normalised features of the mined patches (cosine similarity = dot product):

1. **Parents** (Sec. 3.2, stage 1): spherical k-means into ``n_clusters`` (paper K = 5000), clusters
   with fewer than ``min_cluster_size`` members (paper 100) are dropped; 546 of 5000 survive in the
   paper.  Lloyd iterations in torch (any device), assignments in chunks: O(N K d) per iteration,
   never an N x N or N x K matrix beyond one chunk.
2. **Children** (stage 2): inside each kept parent, every patch's ``knn`` (paper 10) nearest
   neighbours; a child is a group of ``group_size`` (paper 4) patches that are all in each other's
   top-k, i.e. a 4-clique of the mutual-kNN graph.  Every pair in a child is an inter-instance edge.
   Decisions: (a) neighbours from the same video are excluded (``exclude_same_video``): at our scale
   one clip contributes several mined frames of the same object, which would otherwise be each
   other's nearest neighbours and turn "inter-instance" edges into intra-instance ones; (b) a parent
   larger than ``knn_bucket`` is split by recursive 2-means bisection at the median into buckets of
   at most ``knn_bucket`` patches and neighbours are searched within a bucket (approximate for huge
   parents, exact otherwise), so the cost is O(N * knn_bucket * d), near-linear in N.
3. **Bound on the clique search**: in a mutual-kNN graph every node has degree <= k, so the 4-cliques
   whose smallest member is node i are among the C(k, 3) = 120 triples of its higher-numbered
   neighbours: at most N * C(k, 3) candidates, enumerated in vectorised chunks (no explosion).
   The paper allows overlapping children ("rare"); we accept cliques greedily by decreasing mean
   cosine similarity while each patch is in at most ``max_groups_per_node`` accepted children
   (default 1: disjoint children).
4. **Transitivity** (Sec. 3.3): an inter edge (A, B) with intra edges (A, A') and (B, B') gives the
   positive pairs (A, B'), (A', B), (A', B') ("different instance, different viewpoint"); where only
   one track survives only the pairs that exist are made.  The direct (A, B) is kept as kind
   ``inter``, not ``transitive`` (the paper is ambiguous, digest pitfall 3).
5. **Pair list**: kinds 0 intra (A, A'), 1 inter (A, B), 2 transitive; each with its parent cluster
   (a track end A' has no features of its own and takes its A's parent, digest pitfall 5).  The
   training mixture ``in_mix`` keeps transitive : intra = ``pair_ratio`` (paper 7M : 2M): all pairs
   of the scarcer kind and a seeded random subset of the other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

KIND_INTRA, KIND_INTER, KIND_TRANSITIVE = 0, 1, 2
KIND_NAMES = {KIND_INTRA: "intra", KIND_INTER: "inter", KIND_TRANSITIVE: "transitive"}


# ----------------------------------------------------------------------------- stage 1: parents
def kmeans_pp_init(x, k: int, gen):
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on unit rows ``x`` [n,d] (torch), with the
    cosine distance 1 - x.c as the distance: the first centre uniformly, each next one with
    probability proportional to the squared distance to the nearest chosen centre.  Returns [k, d] (torch)."""
    import torch

    n = x.shape[0]
    idx = [int(torch.randint(n, (1,), generator=gen, device="cpu"))]
    dist = (1.0 - x @ x[idx[0]]).clamp_min(0)  # [n]
    for _ in range(1, k):
        w = dist.square()
        if float(w.sum()) <= 0:  # fewer distinct points than k: pick uniformly
            nxt = int(torch.randint(n, (1,), generator=gen, device="cpu"))
        else:
            nxt = int(torch.multinomial((w / w.sum()).cpu(), 1, generator=gen))
        idx.append(nxt)
        dist = torch.minimum(dist, (1.0 - x @ x[nxt]).clamp_min(0))
    return x[idx].clone()


def spherical_kmeans(x: np.ndarray, k: int, *, iters: int, rng: np.random.Generator, device: str = "cpu",
                     chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Cluster unit vectors ``x`` [N,d] by cosine similarity; returns (labels [N], centres [k,d]).

    k-means++ seeding on a random subsample of at most max(20 k, 10000) points, then ``iters``
    Lloyd steps (assign to the most similar centre, centre = normalised member mean).  An empty
    cluster is re-seeded with a random point.
    """
    import torch

    n = len(x)
    k = int(min(k, n))
    if k < 1:
        return np.zeros(n, np.int64), np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    sub = torch.from_numpy(rng.choice(n, size=min(n, max(20 * k, 10000)), replace=False)).to(device)
    centres = torch.nn.functional.normalize(kmeans_pp_init(xt[sub], k, gen), dim=1)
    labels = torch.zeros(n, dtype=torch.long, device=device)
    for _ in range(max(int(iters), 1)):
        for s in range(0, n, chunk):
            labels[s:s + chunk] = (xt[s:s + chunk] @ centres.T).argmax(1)  # [chunk, k] -> [chunk]
        sums = torch.zeros_like(centres).index_add_(0, labels, xt)  # [k, d]
        counts = torch.bincount(labels, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            sums[empty] = xt[torch.from_numpy(rng.choice(n, size=len(empty), replace=False)).to(device)]
        centres = torch.nn.functional.normalize(sums, dim=1)
    for s in range(0, n, chunk):
        labels[s:s + chunk] = (xt[s:s + chunk] @ centres.T).argmax(1)
    return labels.cpu().numpy().astype(np.int64), centres.cpu().numpy()


def kept_parents(labels: np.ndarray, k: int, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size of each cluster [k], kept mask [k]): clusters with >= ``min_size`` members are parents."""
    sizes = np.bincount(labels, minlength=k)
    return sizes, sizes >= int(min_size)


# ----------------------------------------------------------------------------- stage 2: children
def bisect_buckets(x: np.ndarray, idx: np.ndarray, bucket: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split ``idx`` into buckets of <= ``bucket`` points by recursive 2-means-direction median splits.

    Each split: 3 Lloyd steps of 2-means seeded with two random members, then a cut at the median of
    the projection on the centre difference (balanced, so depth is log2(m / bucket)).
    """
    out: list[np.ndarray] = []
    stack = [idx]
    while stack:
        cur = stack.pop()
        if len(cur) <= bucket:
            out.append(cur)
            continue
        pts = x[cur]
        c = pts[rng.choice(len(cur), 2, replace=False)]
        for _ in range(3):
            side = (pts @ (c[0] - c[1])) > 0.5 * (c[0] @ c[0] - c[1] @ c[1])
            if side.all() or (~side).all():
                break
            c = np.stack([pts[side].mean(0), pts[~side].mean(0)])
        proj = pts @ (c[0] - c[1])
        order = np.argsort(proj, kind="stable")
        half = len(cur) // 2
        stack.extend([cur[order[:half]], cur[order[half:]]])
    return out


def _top_k_rows(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices [m,k] and values [m,k] of each row's k largest entries, in descending order."""
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]  # [m, k] unordered
    top_s = np.take_along_axis(s, top, 1)
    srt = np.argsort(-top_s, axis=1, kind="stable")
    return np.take_along_axis(top, srt, 1), np.take_along_axis(top_s, srt, 1)


def _best_per_video(s: np.ndarray, vid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the most similar column of each video: (columns [m,V], similarities [m,V])."""
    order = np.argsort(vid, kind="stable")
    v_sorted = vid[order]
    starts = np.flatnonzero(np.r_[True, v_sorted[1:] != v_sorted[:-1]])
    s2 = s[:, order]  # [m, m], columns grouped by video
    seg_max = np.maximum.reduceat(s2, starts, axis=1)  # [m, V]
    seg_id = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    pos = np.where(s2 == seg_max[:, seg_id], np.arange(len(order))[None, :], len(order))
    first = np.minimum.reduceat(pos, starts, axis=1)  # [m, V] column (in order) of the segment max
    return order[np.minimum(first, len(order) - 1)], seg_max


def knn_within(x: np.ndarray, groups: np.ndarray, k: int, *, video: np.ndarray | None = None,
               one_per_video: bool = False, bucket: int = 2048,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each point among points with the same ``groups`` label
    (label < 0: no neighbours), excluding itself and, if ``video`` is given, its own video; with
    ``one_per_video`` at most one neighbour (the most similar patch) per other video.

    Returns (neighbours [N,k] int64 padded with -1, similarities [N,k] float32 padded with -inf).
    Groups larger than ``bucket`` are split by :func:`bisect_buckets` first.
    """
    rng = rng or np.random.default_rng(0)
    if one_per_video and video is None:
        raise ValueError("one_per_video needs the video of each point")
    n = len(x)
    nbr = np.full((n, k), -1, np.int64)
    sim = np.full((n, k), -np.inf, np.float32)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2 or groups[members[0]] < 0:
            continue
        for b in bisect_buckets(x, members, bucket, rng) if len(members) > bucket else [members]:
            s = x[b] @ x[b].T  # [m, m], m <= bucket
            np.fill_diagonal(s, -np.inf)
            if video is not None:
                s[video[b][:, None] == video[b][None, :]] = -np.inf
            cols = None
            if one_per_video:
                cols, s = _best_per_video(s, video[b])  # [m, V]
            kk = min(k, s.shape[1] - 1 if cols is None else s.shape[1])
            if kk < 1:
                continue
            top, top_s = _top_k_rows(s, kk)
            if cols is not None:
                top = np.take_along_axis(cols, top, 1)
            valid = np.isfinite(top_s)
            nbr[b, :kk] = np.where(valid, b[top], -1)
            sim[b, :kk] = np.where(valid, top_s, -np.inf)
    return nbr, sim


def _edge_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return a.astype(np.int64) * n + b.astype(np.int64)


def mutual_edges(nbr: np.ndarray) -> np.ndarray:
    """Edges [E,2] (i < j) of the mutual-kNN graph: j in top-k(i) and i in top-k(j)."""
    n, k = nbr.shape
    i = np.repeat(np.arange(n), k)
    j = nbr.ravel()
    ok = j >= 0
    i, j = i[ok], j[ok]
    fwd = np.unique(_edge_keys(i, j, n))
    mutual = np.isin(_edge_keys(j, i, n), fwd)
    keep = mutual & (i < j)
    return np.unique(np.stack([i[keep], j[keep]], 1), axis=0) if keep.any() else np.zeros((0, 2), np.int64)


def four_cliques(edges: np.ndarray, n: int, *, max_degree: int, chunk: int = 8192) -> np.ndarray:
    """All 4-cliques [C,4] (sorted rows) of a graph whose nodes have degree <= ``max_degree``.

    For node i, the cliques with i as smallest member are among the C(max_degree, 3) triples of its
    higher neighbours, so the work is at most n * C(max_degree, 3) membership tests (see the module
    docstring); ``ValueError`` if a node exceeds ``max_degree`` (the bound would not hold).
    """
    if len(edges) == 0:
        return np.zeros((0, 4), np.int64)
    a, b = edges[:, 0], edges[:, 1]
    if (a >= b).any():
        raise ValueError("edges must be (i, j) with i < j")
    if np.bincount(np.concatenate([a, b]), minlength=n).max() > max_degree:
        raise ValueError(f"a node has degree > {max_degree}; the clique bound does not hold")
    keys = np.unique(_edge_keys(a, b, n))
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    up = np.full((n, max_degree), -1, np.int64)  # higher neighbours of each node, ascending
    starts = np.searchsorted(a, np.arange(n))
    up[a, np.arange(len(a)) - starts[a]] = b
    combos = np.array(list(itertools.combinations(range(max_degree), 3)), np.int64)  # [C3, 3]

    def has(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        key = _edge_keys(u, v, n)
        pos = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
        return keys[pos] == key

    out = []
    candidates = np.flatnonzero((up >= 0).sum(1) >= 3)
    for s in range(0, len(candidates), chunk):
        nodes = candidates[s:s + chunk]
        trip = up[nodes][:, combos]  # [c, C3, 3], ascending within a triple
        ok = (trip >= 0).all(2)
        ii = np.broadcast_to(nodes[:, None], ok.shape)[ok]
        j, k_, l_ = trip[ok].T
        clique = has(j, k_) & has(j, l_) & has(k_, l_)
        out.append(np.stack([ii[clique], j[clique], k_[clique], l_[clique]], 1))
    return np.concatenate(out) if out else np.zeros((0, 4), np.int64)


def select_groups(cliques: np.ndarray, x: np.ndarray, *, max_per_node: int = 1) -> np.ndarray:
    """Greedy children: cliques by decreasing mean pairwise cosine, each node in <= ``max_per_node``."""
    if len(cliques) == 0:
        return np.zeros((0, cliques.shape[1] if cliques.ndim == 2 else 4), np.int64)
    pairs = list(itertools.combinations(range(cliques.shape[1]), 2))
    score = np.mean([(x[cliques[:, p]] * x[cliques[:, q]]).sum(1) for p, q in pairs], axis=0)
    count = np.zeros(len(x), np.int64)
    keep = []
    for c in np.argsort(-score, kind="stable"):
        members = cliques[c]
        if (count[members] < max_per_node).all():
            count[members] += 1
            keep.append(c)
    return cliques[np.sort(np.array(keep, np.int64))]


def group_edges(groups: np.ndarray) -> np.ndarray:
    """Every pair inside each group, [E,2] with i < j, duplicates removed."""
    if len(groups) == 0:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate([groups[:, [p, q]] for p, q in itertools.combinations(range(groups.shape[1]), 2)])
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0)


# ----------------------------------------------------------------------------- stage 3: transitivity
def transitive_pairs(inter: np.ndarray, track_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transitive positives of inter edges (Sec. 3.3): for (A, B) with ends A' = track_end[A],
    B' = track_end[B] (-1 if the track failed): (A, B'), (A', B), (A', B').

    Returns (pairs [P,2], index of the generating inter edge [P]).
    """
    if len(inter) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    a, b = inter[:, 0], inter[:, 1]
    a2, b2 = track_end[a], track_end[b]
    e = np.arange(len(inter))
    cand = [(a, b2, e), (a2, b, e), (a2, b2, e)]
    firsts, seconds, src = [], [], []
    for u, v, s in cand:
        ok = (u >= 0) & (v >= 0)
        firsts.append(u[ok])
        seconds.append(v[ok])
        src.append(s[ok])
    return np.stack([np.concatenate(firsts), np.concatenate(seconds)], 1), np.concatenate(src)


def mix_pairs(kind: np.ndarray, ratio: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Training mixture mask: transitive : intra = ``ratio`` (paper 7 : 2), keeping every pair of the
    scarcer kind and a random subset of the other; inter pairs are not in the mixture."""
    kind = np.asarray(kind)
    tr = np.flatnonzero(kind == KIND_TRANSITIVE)
    it = np.flatnonzero(kind == KIND_INTRA)
    r_t, r_i = float(ratio[0]), float(ratio[1])
    mask = np.zeros(len(kind), bool)
    if len(tr) == 0 or len(it) == 0:
        mask[tr] = True
        mask[it] = True
        return mask
    if len(tr) * r_i >= len(it) * r_t:  # transitive is plentiful: keep all intra
        n_t = min(len(tr), int(round(len(it) * r_t / r_i)))
        mask[it] = True
        mask[rng.choice(tr, n_t, replace=False)] = True
    else:
        n_i = min(len(it), max(1, int(round(len(tr) * r_i / r_t))))
        mask[tr] = True
        mask[rng.choice(it, n_i, replace=False)] = True
    return mask


# ----------------------------------------------------------------------------- the whole build
@dataclass
class Graph:
    """Everything :func:`build_graph` makes; array meanings in the module and cli docstrings."""

    parent: np.ndarray  # [N] k-means cluster of each node (-1 for nodes without features)
    parent_size: np.ndarray  # [K]
    parent_kept: np.ndarray  # [K] bool
    groups: np.ndarray  # [G,4]
    group_parent: np.ndarray  # [G]
    n_mutual_edges: int
    n_cliques: int
    pairs: np.ndarray  # [P,2]
    pair_kind: np.ndarray  # [P]
    pair_parent: np.ndarray  # [P]
    in_mix: np.ndarray  # [P] bool


def build_graph(x: np.ndarray, feat_nodes: np.ndarray, n_nodes: int, video: np.ndarray, track_end: np.ndarray,
                cfg: dict, rng: np.random.Generator, *, device: str = "cpu") -> Graph:
    """Build parents, children, intra/inter/transitive pairs and the training mixture.

    ``x`` [M,d]: unit features of the mined patches ``feat_nodes`` [M] (node ids < ``n_nodes``);
    ``video`` [n_nodes]; ``track_end`` [n_nodes]: the track-end node of a mined patch, or -1.
    """
    k = int(min(cfg["n_clusters"], max(len(x), 1)))
    labels, _ = spherical_kmeans(x, k, iters=int(cfg["kmeans_iters"]), rng=rng, device=device)
    sizes, kept = kept_parents(labels, k, int(cfg["min_cluster_size"]))
    parent = np.full(n_nodes, -1, np.int64)
    parent[feat_nodes] = labels
    ends = track_end[feat_nodes]
    parent[ends[ends >= 0]] = labels[ends >= 0]  # A' takes its A's parent

    # children: mutual kNN inside kept parents (local indices 0..M-1)
    groups_local = np.where(kept[labels], labels, -1)
    vid = video[feat_nodes] if cfg["exclude_same_video"] or cfg["one_neighbour_per_video"] else None
    knn = int(cfg["knn"])
    nbr, _ = knn_within(x, groups_local, knn, video=vid, one_per_video=bool(cfg["one_neighbour_per_video"]),
                        bucket=int(cfg["knn_bucket"]), rng=rng)
    mutual = mutual_edges(nbr)
    cliques = four_cliques(mutual, len(x), max_degree=knn)
    groups_l = select_groups(cliques, x, max_per_node=int(cfg["max_groups_per_node"]))
    groups = feat_nodes[groups_l] if len(groups_l) else np.zeros((0, 4), np.int64)
    group_parent = labels[groups_l[:, 0]] if len(groups_l) else np.zeros(0, np.int64)

    # pairs: intra (A, A'), inter (group pairs), transitive
    has_end = track_end[feat_nodes] >= 0
    intra = np.stack([feat_nodes[has_end], track_end[feat_nodes[has_end]]], 1)
    inter = group_edges(groups)
    trans, src = transitive_pairs(inter, track_end)
    pairs = np.concatenate([intra.reshape(-1, 2), inter, trans]).astype(np.int64)
    kind = np.concatenate([np.full(len(intra), KIND_INTRA), np.full(len(inter), KIND_INTER),
                           np.full(len(trans), KIND_TRANSITIVE)]).astype(np.int8)
    pair_parent = parent[pairs[:, 0]] if len(pairs) else np.zeros(0, np.int64)
    in_mix = mix_pairs(kind, tuple(cfg["pair_ratio"]), rng)
    return Graph(parent=parent, parent_size=sizes, parent_kept=kept, groups=groups, group_parent=group_parent,
                 n_mutual_edges=len(mutual), n_cliques=len(cliques), pairs=pairs, pair_kind=kind,
                 pair_parent=pair_parent, in_mix=in_mix)
