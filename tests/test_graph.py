"""Transitive Invariance graph (1708.02901 Sec. 3.2-3.3) on hand-made inputs: transitivity,
mutual-kNN groups of 4, the clique bound, the pair mixture, the kNN restrictions, k-means."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from repro.graph.features import (
    OFFSETS,
    context_corners,
    grid_geometry,
    hog_features,
    l2_normalize,
    sample_context_batch,
)
from repro.graph.graph import (
    KIND_INTER,
    KIND_INTRA,
    KIND_TRANSITIVE,
    bisect_buckets,
    build_graph,
    four_cliques,
    group_edges,
    knn_within,
    mix_pairs,
    mutual_edges,
    select_groups,
    spherical_kmeans,
    transitive_pairs,
)

BUILD = dict(n_clusters=2, min_cluster_size=2, kmeans_iters=10, knn=3, exclude_same_video=True,
             one_neighbour_per_video=False, max_groups_per_node=1, knn_bucket=64, pair_ratio=[7, 2])


def test_transitive_pairs_sec3_3_hand_made_graph() -> None:
    # mined patches 0..3; track ends: 0->4, 1->5, 2 failed, 3->6
    track_end = np.array([4, 5, -1, 6, -1, -1, -1])
    inter = np.array([[0, 1], [1, 2], [0, 3]])
    pairs, src = transitive_pairs(inter, track_end)
    got = sorted(map(tuple, pairs.tolist()))
    expected = sorted([
        (0, 5), (4, 1), (4, 5),  # (A,B'), (A',B), (A',B') of inter (0,1)
        (5, 2),  # inter (1,2): B=2 has no track, so only (A',B)
        (0, 6), (4, 3), (4, 6),  # inter (0,3)
    ])
    assert got == expected
    assert sorted(src.tolist()) == [0, 0, 0, 1, 2, 2, 2]


def test_build_graph_pair_kinds_and_parents_sec3_3() -> None:
    """Two tight groups of 4 mined patches (different videos), all tracked: the pair list holds each
    track as an intra pair, 6 inter edges per group, and 3 transitive pairs per inter edge."""
    rng = np.random.default_rng(0)
    base = l2_normalize(np.eye(8)[:2])
    x = l2_normalize(np.repeat(base, 4, axis=0) + 0.01 * rng.normal(size=(8, 8)))
    feat_nodes = np.arange(8)
    n_nodes = 16
    track_end = np.full(n_nodes, -1)
    track_end[:8] = np.arange(8, 16)
    video = np.concatenate([np.arange(8), np.arange(8)])  # A and its A' share a video
    g = build_graph(x, feat_nodes, n_nodes, video, track_end, BUILD, np.random.default_rng(1))
    assert g.parent_kept.sum() == 2 and len(g.groups) == 2
    assert sorted(map(sorted, g.groups.tolist())) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    kinds = np.bincount(g.pair_kind, minlength=3)
    assert kinds[KIND_INTRA] == 8 and kinds[KIND_INTER] == 12 and kinds[KIND_TRANSITIVE] == 36
    # a track end takes its A's parent; every transitive pair lies inside one parent
    assert (g.parent[8:] == g.parent[:8]).all()
    tr = g.pairs[g.pair_kind == KIND_TRANSITIVE]
    assert (g.parent[tr[:, 0]] == g.parent[tr[:, 1]]).all()
    # the 7:2 mixture keeps all 8 intra pairs and 28 of the 36 transitive ones
    assert g.in_mix[g.pair_kind == KIND_INTRA].all() and g.in_mix[g.pair_kind == KIND_TRANSITIVE].sum() == 28
    assert not g.in_mix[g.pair_kind == KIND_INTER].any()


def test_mutual_knn_groups_of_four_sec3_2_hand_made_points() -> None:
    """Two tight clusters of 4 points and one loose point: with k = 3 each cluster is a mutual-3NN
    4-clique; the loose point (nobody's neighbour) joins no group."""
    pts = np.array([
        [1.0, 0.00, 0.0], [1.0, 0.05, 0.0], [1.0, 0.0, 0.05], [1.0, 0.05, 0.05],  # cluster A: 0-3
        [0.0, 1.00, 0.0], [0.05, 1.0, 0.0], [0.0, 1.0, 0.05], [0.05, 1.0, 0.05],  # cluster B: 4-7
        [0.7, 0.7, 0.1],  # loose
    ])
    x = l2_normalize(pts)
    nbr, sim = knn_within(x, np.zeros(len(x), np.int64), 3)
    assert (nbr[:4] < 4).all() and (nbr[4:8] >= 4).all() and (nbr[4:8] < 8).all()
    assert np.all(np.diff(sim, axis=1) <= 0)  # neighbours sorted by similarity
    edges = mutual_edges(nbr)
    assert not (edges == 8).any()
    cliques = four_cliques(edges, len(x), max_degree=3)
    assert sorted(map(tuple, cliques.tolist())) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    groups = select_groups(cliques, x)
    assert len(group_edges(groups)) == 12  # 6 pairs per group


def test_four_cliques_bound_and_brute_force() -> None:
    """Vectorised enumeration equals brute force on a random degree-bounded graph; a node above
    the degree bound is rejected (the C(k,3) bound would not hold)."""
    rng = np.random.default_rng(3)
    n, k = 40, 6
    nbr = np.array([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    edges = mutual_edges(nbr)
    adj = {tuple(e) for e in edges.tolist()}
    brute = [c for c in itertools.combinations(range(n), 4) if all(p in adj for p in itertools.combinations(c, 2))]
    got = four_cliques(edges, n, max_degree=k)
    assert sorted(map(tuple, got.tolist())) == brute
    star = np.array([[0, j] for j in range(1, 6)])
    with pytest.raises(ValueError, match="degree"):
        four_cliques(star, 6, max_degree=3)


def test_select_groups_greedy_is_disjoint_and_prefers_tight_cliques() -> None:
    x = l2_normalize(np.array([[1, 0], [1, 0.01], [1, 0.02], [1, 0.03], [1, 0.5]], float))
    cliques = np.array([[0, 1, 2, 4], [0, 1, 2, 3]])
    groups = select_groups(cliques, x, max_per_node=1)
    assert groups.tolist() == [[0, 1, 2, 3]]
    assert len(select_groups(cliques, x, max_per_node=2)) == 2


def test_knn_excludes_own_video_and_keeps_one_per_video() -> None:
    x = l2_normalize(np.array([[1, 0], [1, 0.01], [1, 0.02], [1, 0.03], [1, 0.2]], float))
    video = np.array([0, 0, 1, 1, 2])
    nbr, _ = knn_within(x, np.zeros(5, np.int64), 3, video=video)
    assert all(video[j] != video[i] for i in range(5) for j in nbr[i] if j >= 0)
    nbr1, _ = knn_within(x, np.zeros(5, np.int64), 3, video=video, one_per_video=True)
    for i in range(5):
        vids = video[nbr1[i][nbr1[i] >= 0]]
        assert len(vids) == len(set(vids.tolist()))
    assert nbr1[0].tolist() == [2, 4, -1]  # closest patch of video 1, then video 2; no more videos


def test_knn_buckets_keep_the_search_local() -> None:
    """A parent larger than knn_bucket is split into balanced buckets and neighbours come from the
    patch's own bucket (what keeps graph building near-linear)."""
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(500, 8)))
    buckets = bisect_buckets(x, np.arange(500), 64, np.random.default_rng(0))
    assert sorted(np.concatenate(buckets).tolist()) == list(range(500))
    assert max(len(b) for b in buckets) <= 64
    where = np.empty(500, int)
    for i, b in enumerate(buckets):
        where[b] = i
    nbr, _ = knn_within(x, np.zeros(500, np.int64), 5, bucket=64, rng=np.random.default_rng(0))
    assert (nbr >= 0).all() and (where[nbr] == where[:, None]).all()


def test_mix_pairs_ratio_7_to_2() -> None:
    kind = np.array([KIND_TRANSITIVE] * 100 + [KIND_INTRA] * 10 + [KIND_INTER] * 5)
    mask = mix_pairs(kind, (7, 2), np.random.default_rng(0))
    assert mask[kind == KIND_INTRA].all() and mask[kind == KIND_TRANSITIVE].sum() == 35
    kind = np.array([KIND_TRANSITIVE] * 14 + [KIND_INTRA] * 100)
    mask = mix_pairs(kind, (7, 2), np.random.default_rng(0))
    assert mask[kind == KIND_TRANSITIVE].all() and mask[kind == KIND_INTRA].sum() == 4


def test_spherical_kmeans_recovers_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = l2_normalize(rng.normal(size=(5, 16)))
    truth = rng.integers(0, 5, 600)
    x = l2_normalize(centres[truth] + 0.05 * rng.normal(size=(600, 16)))
    labels, c = spherical_kmeans(x, 5, iters=10, rng=rng)
    assert c.shape == (5, 16) and np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    # each found cluster is pure
    for j in range(5):
        members = truth[labels == j]
        assert len(members) and (members == np.bincount(members).argmax()).all()


def test_context_grid_geometry_doersch() -> None:
    """The 8-way labels index the 3x3 grid neighbours; sub-patches stay inside the patch with a gap
    between cells and jitter (Doersch et al. 2015), for the default 32 px and the paper's 96 px."""
    assert grid_geometry(32) == (8, 3, 1) and grid_geometry(96) == (24, 8, 4)
    for size in (32, 96):
        sub, gap, jitter = grid_geometry(size)
        label = np.tile(np.arange(8), 50)
        cy, cx, ny, nx = context_corners(label, size, np.random.default_rng(0))
        for y, x in ((cy, cx), (ny, nx)):
            assert y.min() >= 0 and x.min() >= 0 and (y + sub).max() <= size and (x + sub).max() <= size
        for d, off in ((ny - cy, OFFSETS[label, 0]), (nx - cx, OFFSETS[label, 1])):
            assert (np.abs(d - off * (sub + gap)) <= 2 * jitter).all()  # the labelled grid cell
        # neighbours never overlap the centre: separated by >= sub along an offset axis
        assert (np.maximum(np.abs(ny - cy), np.abs(nx - cx)) >= sub).all()
    patches = np.random.default_rng(1).integers(0, 255, (4, 3, 32, 32), dtype=np.uint8)
    c, n, label = sample_context_batch(patches, 16, np.random.default_rng(0))
    assert c.shape == n.shape == (16, 3, 8, 8) and set(label.tolist()) <= set(range(8))
    assert np.allclose(c.mean(axis=(2, 3)), 0, atol=1e-6)  # per-channel mean removed


def test_hog_features_are_unit_rows() -> None:
    rng = np.random.default_rng(0)
    f = hog_features(rng.integers(0, 255, (3, 3, 32, 32), dtype=np.uint8))
    assert f.shape[0] == 3 and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)


def test_build_graph_without_patches_is_empty_not_an_error() -> None:
    for n in (0, 1):
        x = l2_normalize(np.ones((n, 4)))
        g = build_graph(x, np.arange(n), n, np.zeros(n, np.int64), np.full(n, -1), BUILD, np.random.default_rng(0))
        assert len(g.groups) == 0 and len(g.pairs) == 0 and g.in_mix.sum() == 0


def test_claims_without_ground_truth_are_inconclusive_not_a_crash() -> None:
    """Full scale mines unlabelled videos: no precision can be measured, every row stays valid."""
    from repro.common.claims import validate_rows
    from repro.graph.claims import build_claims

    mining = {"n_mined": 10, "n_mined_labelled": 0, "n_mined_real": 10, "mining_precision": None,
              "random_box_precision": None, "per_video_mining_precision": [], "per_video_random_box_precision": [],
              "track_purity": None, "track_survival": 0.5, "static_box_purity": None, "per_video_track_purity": [],
              "per_video_static_box_purity": []}
    stats = [{"seed": s, "n_clusters": 4, "n_parents_kept": 2, "n_pairs_mix": 9, "n_transitive_pairs_mix": 7,
              "n_intra_pairs_mix": 2, "n_inter_pairs": 6, "n_transitive_pairs": 7, "inter_edge_precision": None,
              "transitive_pair_precision": None, "chance_same_class": float("nan"), "parent_same_class": None}
             for s in (0, 1)]
    rows = build_claims(mining, stats, stats, scale="full", setup="x=1")
    from dataclasses import asdict

    validate_rows([asdict(r) for r in rows])
    verdicts = {r.claim_id: r.verdict for r in rows}
    assert verdicts["ti_graph_mining_precision"] == "inconclusive"
    assert verdicts["ti_graph_inter_precision"] == "inconclusive"
    assert verdicts["ti_graph_inter_precision_vs_kmeans"] == "inconclusive"


def test_precision_rows_compare_against_chance_and_kmeans_alone() -> None:
    """Inter edges well above chance but no better than random pairs from one parent cluster: the chance
    row holds, the k-means-only row does not, and the note says whether the CI clears 2x chance."""
    from repro.graph.claims import build_claims

    mining = {"n_mined": 10, "n_mined_labelled": 10, "n_mined_real": 0, "mining_precision": 0.9,
              "random_box_precision": 0.1, "per_video_mining_precision": [0.9, 0.8, 1.0],
              "per_video_random_box_precision": [0.1, 0.0, 0.2], "track_purity": 1.0, "track_survival": 0.5,
              "static_box_purity": 0.1, "per_video_track_purity": [1.0, 1.0], "per_video_static_box_purity": [0.0, 0.2]}
    stats = [{"seed": s, "n_clusters": 4, "n_parents_kept": 2, "n_pairs_mix": 9, "n_transitive_pairs_mix": 7,
              "n_intra_pairs_mix": 2, "n_inter_pairs": 6, "n_transitive_pairs": 7, "inter_edge_precision": 0.40 + d,
              "transitive_pair_precision": 0.35 + d, "chance_same_class": 0.1, "parent_same_class": 0.40 - d,
              "inter_pair_unmatched": 0.2, "inter_pair_precision_matched": 0.5, "transitive_pair_unmatched": 0.2,
              "transitive_pair_precision_matched": 0.45, "chance_same_class_matched": 0.17}
             for s, d in ((0, 0.01), (1, -0.01), (2, 0.0))]
    rows = {r.claim_id: r for r in build_claims(mining, stats, None, scale="default", setup="x=1")}
    assert rows["ti_graph_inter_precision"].verdict == "holds"
    assert "clears 2x chance" in rows["ti_graph_inter_precision"].scale_note
    assert "0.20 (mean over seeds) have a patch on no true object" in rows["ti_graph_inter_precision"].scale_note
    assert rows["ti_graph_inter_precision_vs_kmeans"].verdict == "inconclusive"
    assert rows["ti_graph_transitive_precision_vs_kmeans"].verdict == "fails"


def test_context_net_resumes_from_checkpoint_and_stops_on_nan(tmp_path, capsys) -> None:
    """Doersch-style 8-way training: an interrupted run resumed from its checkpoint ends with the same
    weights as an uninterrupted one (batches are seeded by step); a NaN loss raises, naming the step."""
    import torch

    from repro.graph.engine import NonFiniteLossError, train_context
    from repro.graph.models import context_net

    patches = np.random.default_rng(0).integers(0, 255, (10, 3, 32, 32), dtype=np.uint8)

    def sampler(rng):
        return sample_context_batch(patches, 8, rng)

    def fresh():
        torch.manual_seed(0)
        m = context_net(width=4, embed=4)
        return m, torch.optim.Adam(m.parameters(), lr=1e-3)

    from repro.common.checkpoint import RunCheckpoint

    def dies_at_step_5(rng):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return sampler(rng)

    calls: list[int] = []
    ckpt = RunCheckpoint(tmp_path, {"run": "context"})
    m, o = fresh()
    with pytest.raises(KeyboardInterrupt):
        train_context(m, o, dies_at_step_5, steps=6, seed=0, device="cpu", ckpt=ckpt, ckpt_every=2)
    m, o = fresh()
    hist = train_context(m, o, sampler, steps=6, seed=0, device="cpu", ckpt=ckpt, ckpt_every=2)
    assert "resumed from step 4" in capsys.readouterr().err
    assert [h["step"] for h in hist] == list(range(6))
    ref, ref_o = fresh()
    train_context(ref, ref_o, sampler, steps=6, seed=0, device="cpu")
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)

    def nan_sampler(rng):
        c, n, y = sampler(rng)
        return c * np.nan, n, y

    m, o = fresh()
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_context(m, o, nan_sampler, steps=2, seed=0, device="cpu")
