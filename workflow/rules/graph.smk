# Transitive Invariance part 1 (Wang, He & Gupta, arXiv 1708.02901, Sec. 3): mine moving-object
# patches and KCF-track them (one job per shard of videos), merge the shards into the node table,
# embed the mined patches (a context-prediction net trained here, per seed; or HOG), then per graph
# variant and seed: parent clusters, mutual-kNN children, transitive pairs. Claims over the seeds,
# and a figure of mined patches and tracks on the real clips. Formats: src/repro/graph/cli.py.
from repro.graph.shards import n_shards  # noqa: E402

GRAPH = config["graph"]
GRAPH_SEEDS = GRAPH["seeds"]
GRAPH_VARIANTS = GRAPH["variants"]
# Context-net training and the graph build: `graph.threads: null` falls back to the top-level `threads`.
GRAPH_THREADS = GRAPH["threads"] or THREADS
GRAPH_BIG = (
    config["scale"] == "full"
)  # memory/runtime requests: paper scale vs laptop scales


# Shards of the mining step, known at parse time (no checkpoints): synthetic videos (+ the real
# clips) over `graph.mine.videos_per_shard`, or `graph.mine.n_shards` for downloaded videos.
# Video i goes to shard i % n_shards, so a shorter video list only leaves some shards empty.
GRAPH_VIDEOS = config["data"]["videos"]
GRAPH_N_SHARDS = n_shards(
    GRAPH_VIDEOS, GRAPH["mine"]
)  # mining jobs (repro.graph.shards)

GRAPH_FEATURES = {
    "context": "results/graph/features/context_s{seed}.npz",
    "hog": "results/graph/features/hog.npz",
}
# HOG stats per seed feed the context-vs-HOG claim (only when both graphs exist).
GRAPH_CLAIMS_HOG = (
    expand("results/graph/hog/s{seed}/stats.json", seed=GRAPH_SEEDS)
    if {"main", "hog"} <= set(GRAPH_VARIANTS) and GRAPH["features"]["kind"] == "context"
    else []
)


rule graph_mine:
    input:
        videos=videos_input(),
    output:
        shard="results/graph/shards/shard_{shard}.npz",
        manifest="results/graph/shards/shard_{shard}.json",
    log:
        "results/logs/graph/mine_{shard}.log",
    benchmark:
        "results/benchmarks/graph/mine_{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000 if GRAPH_BIG else 2000,
        runtime=720 if GRAPH_BIG else 20,
    params:
        cfg=as_json(GRAPH["mine"]),
        seed=SEED,
        n_shards=GRAPH_N_SHARDS,
    shell:
        "python -m repro.graph mine --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --videos {input.videos} --shard {wildcards.shard} --n-shards {params.n_shards}"
        " --out {output.shard} --manifest {output.manifest} > {log} 2>&1"


rule graph_merge:
    input:
        videos=videos_input(),
        shards=expand(
            "results/graph/shards/shard_{shard}.npz", shard=range(GRAPH_N_SHARDS)
        ),
        manifests=expand(
            "results/graph/shards/shard_{shard}.json", shard=range(GRAPH_N_SHARDS)
        ),
    output:
        patches="results/graph/patches.npy",
        nodes="results/graph/nodes.npz",
        stats="results/graph/mining.json",
    log:
        "results/logs/graph/merge.log",
    benchmark:
        "results/benchmarks/graph/merge.tsv"
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=32000 if GRAPH_BIG else 2000,
        runtime=240 if GRAPH_BIG else 20,
    params:
        cfg=as_json(GRAPH["mine"]),
        seed=SEED,
    shell:
        "python -m repro.graph merge --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --videos {input.videos} --shards {input.shards} --manifests {input.manifests}"
        " --out-patches {output.patches} --out-nodes {output.nodes} --out-stats {output.stats} > {log} 2>&1"


rule graph_features_context:
    input:
        patches=rules.graph_merge.output.patches,
        nodes=rules.graph_merge.output.nodes,
    output:
        features="results/graph/features/context_s{seed}.npz",
        metrics="results/graph/features/context_s{seed}.csv",
        weights="results/graph/features/context_s{seed}.pt",
    log:
        "results/logs/graph/features_context_s{seed}.log",
    benchmark:
        "results/benchmarks/graph/features_context_s{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: GRAPH_THREADS
    resources:
        mem_mb=32000 if GRAPH_BIG else 2000,
        runtime=720 if GRAPH_BIG else 30,
        gpu=0,
    params:
        cfg=as_json(GRAPH["features"] | {"device": GRAPH["device"]}),
        ckpt=lambda wc: f"results/checkpoints/graph/context_s{wc.seed}",
    shell:
        "python -m repro.graph features --kind context --config {params.cfg:q} --seed {wildcards.seed}"
        " --threads {threads} --patches {input.patches} --nodes {input.nodes} --out {output.features}"
        " --metrics {output.metrics} --weights {output.weights} --checkpoint-dir {params.ckpt} > {log} 2>&1"


rule graph_features_hog:
    input:
        patches=rules.graph_merge.output.patches,
        nodes=rules.graph_merge.output.nodes,
    output:
        features="results/graph/features/hog.npz",
    log:
        "results/logs/graph/features_hog.log",
    benchmark:
        "results/benchmarks/graph/features_hog.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000 if GRAPH_BIG else 2000,
        runtime=720 if GRAPH_BIG else 20,
    params:
        cfg=as_json(GRAPH["features"]),
        seed=SEED,
    shell:
        "python -m repro.graph features --kind hog --config {params.cfg:q} --seed {params.seed}"
        " --threads {threads} --patches {input.patches} --nodes {input.nodes} --out {output.features}"
        " > {log} 2>&1"


rule graph_build:
    input:
        nodes=rules.graph_merge.output.nodes,
        features=lambda wc: GRAPH_FEATURES[
            "hog" if wc.variant == "hog" else GRAPH["features"]["kind"]
        ].format(seed=wc.seed),
    output:
        graph="results/graph/{variant}/s{seed}/graph.npz",
        pairs="results/graph/{variant}/s{seed}/pairs.npz",
        stats="results/graph/{variant}/s{seed}/stats.json",
    log:
        "results/logs/graph/build_{variant}_s{seed}.log",
    benchmark:
        "results/benchmarks/graph/build_{variant}_s{seed}.tsv"
    wildcard_constraints:
        variant="main|hog|short",
        seed=r"\d+",
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: GRAPH_THREADS
    resources:
        mem_mb=64000 if GRAPH_BIG else 2000,
        runtime=720 if GRAPH_BIG else 20,
        gpu=0,
    params:
        cfg=as_json(GRAPH["build"] | {"device": GRAPH["device"]}),
        track=lambda wc: "short" if wc.variant == "short" else "long",
    shell:
        "python -m repro.graph build --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
        " --variant {wildcards.variant} --track {params.track} --nodes {input.nodes}"
        " --features {input.features} --out-graph {output.graph} --out-pairs {output.pairs}"
        " --out-stats {output.stats} > {log} 2>&1"


rule graph_claims:
    input:
        mining=rules.graph_merge.output.stats,
        main=expand("results/graph/main/s{seed}/stats.json", seed=GRAPH_SEEDS),
        hog=GRAPH_CLAIMS_HOG,
    output:
        claims="results/claims/graph.json",
    log:
        "results/logs/graph/claims.log",
    benchmark:
        "results/benchmarks/graph/claims.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cfg=as_json(
            {
                "seeds": GRAPH_SEEDS,
                "features": GRAPH["features"]["kind"],
                "patch_size": GRAPH["mine"]["patch_size"],
                "track_frames": GRAPH["mine"]["track_frames"],
                "n_clusters": GRAPH["build"]["n_clusters"],
                "min_cluster_size": GRAPH["build"]["min_cluster_size"],
            }
        ),
        scale=config["scale"],
        seed=SEED,
    shell:
        "python -m repro.graph claims --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --scale {params.scale} --mining {input.mining} --main {input.main} --hog {input.hog}"
        " --out {output.claims} > {log} 2>&1"


rule graph_figure:
    input:
        videos=videos_input(),
        patches=rules.graph_merge.output.patches,
        nodes=rules.graph_merge.output.nodes,
    output:
        figure=report(
            "results/graph/mined_patches.png",
            caption="../report/graph_mined_patches.rst",
            category="Transitive Invariance",
            labels={"stage": "graph", "figure": "mined patches and tracks (Sec. 3.1)"},
        ),
    log:
        "results/logs/graph/figure.log",
    benchmark:
        "results/benchmarks/graph/figure.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000 if GRAPH_BIG else 2000,
        runtime=60 if GRAPH_BIG else 10,
    params:
        cfg=as_json(GRAPH["mine"]),
        seed=SEED,
    shell:
        "python -m repro.graph figure --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --videos {input.videos} --nodes {input.nodes} --patches {input.patches} --out {output.figure}"
        " > {log} 2>&1"


register_targets(
    rules.graph_claims.output.claims,
    rules.graph_figure.output.figure,
    rules.graph_merge.output.stats,
    *expand(
        "results/graph/{variant}/s{seed}/pairs.npz",
        variant=GRAPH_VARIANTS,
        seed=GRAPH_SEEDS,
    ),
)
