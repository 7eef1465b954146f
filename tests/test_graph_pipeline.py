"""The graph stage inside the smoke DAG: shard fan-out, node table, pair list, stats, claims, figure
(1708.02901 Sec. 3; formats documented in src/repro/graph/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from repro.common.claims import read_claims

from conftest import SMOKE


def test_graph_outputs_of_the_smoke_dag(smoke_run: Path) -> None:
    res = smoke_run / "results" / "graph"
    smoke = yaml.safe_load(SMOKE.read_text())
    shards = sorted((res / "shards").glob("shard_*.npz"))
    assert len(shards) == 2 and len(list((res / "shards").glob("shard_*.json"))) == 2  # 12 videos / 6 per shard
    mining = json.loads((res / "mining.json").read_text())
    assert mining["totals"]["videos"] == 12 and mining["totals"].get("videos_corrupt", 0) == 0
    assert 0.0 <= mining["mining_precision"] <= 1.0 and mining["n_mined"] > 0
    assert len(mining["real_clips"]) == 4

    patches = np.load(res / "patches.npy", mmap_mode="r")
    with np.load(res / "nodes.npz") as z:
        nodes = {k: z[k] for k in z.files}
    assert patches.dtype == np.uint8 and patches.shape[1:] == (3, 32, 32) and len(patches) == len(nodes["role"])
    ends = np.flatnonzero(nodes["role"] > 0)
    assert (nodes["role"][nodes["src"][ends]] == 0).all()
    assert (nodes["frame"][ends] > nodes["frame"][nodes["src"][ends]]).all()

    for variant in smoke["graph"]["variants"]:
        for seed in smoke["graph"]["seeds"]:
            d = res / variant / f"s{seed}"
            with np.load(d / "pairs.npz") as z:
                a, b, kind, parent, mix = z["a"], z["b"], z["kind"], z["parent"], z["in_mix"]
            assert len(a) == len(b) == len(kind) == len(parent) == len(mix)
            assert ((a >= 0) & (a < len(patches)) & (b >= 0) & (b < len(patches))).all()
            intra = kind == 0
            assert (nodes["src"][b[intra]] == a[intra]).all()  # (A, A') of one track
            assert not mix[kind == 1].any()
            stats = json.loads((d / "stats.json").read_text())
            assert stats["variant"] == variant and stats["seed"] == seed and "inter_edge_precision" in stats
            with np.load(d / "graph.npz") as z:
                assert z["parent"].shape == (len(patches),) and z["groups"].shape[1:] == (4,)

    rows = {r["claim_id"]: r for r in read_claims(smoke_run / "results" / "claims" / "graph.json")}
    assert {"ti_graph_patches", "ti_graph_mining_precision", "ti_graph_track_purity", "ti_graph_inter_precision",
            "ti_graph_transitive_precision"} <= set(rows)
    assert rows["ti_graph_mining_precision"]["ours_mean"] == mining["mining_precision"]
    png = res / "mined_patches.png"
    assert png.stat().st_size > 10_000 and (res / "mined_patches.png.provenance.json").exists()
    assert list((smoke_run / "results" / "benchmarks" / "graph").glob("mine_*.tsv"))
