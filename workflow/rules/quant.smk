# Network quantization (Choi, El-Khamy & Lee, arXiv 1612.01543): one job per net and seed (train
# with Adam, Hessian diagonal, quantization sweep, optional pruning), then one aggregate job that
# writes the claims, the Fig. 1-style figure of each net and the Table 1-style compression table.

QUANT_NETS = sorted(
    name for name, spec in config["quant"]["nets"].items() if spec["enabled"]
)
QUANT_NET = config["quant"]["nets"]
# `quant.threads: null` falls back to the top-level `threads` (full scale). The CLI gets the section
# without it, so changing the threads per job reruns nothing.
QUANT_THREADS = config["quant"]["threads"] or THREADS
QUANT_CLI = {k: v for k, v in config["quant"].items() if k != "threads"}


rule quant_run:
    input:
        # digits file (default) or the downloaded dataset folder; an enabled imagenet net stops here
        # (no `downloads.imagenet` entry: ImageNet/AlexNet is named only)
        data=lambda wc: (
            "results/data/digits.npz"
            if QUANT_NET[wc.net]["dataset"] == "digits"
            else raw_dataset(QUANT_NET[wc.net]["dataset"])
        ),
    output:
        result="results/quant/{net}/s{seed}.json",
        weights="results/quant/{net}/s{seed}_weights.pt",
    log:
        "results/logs/quant/{net}_s{seed}.log",
    benchmark:
        "results/benchmarks/quant/{net}_s{seed}.tsv"
    wildcard_constraints:
        net="|".join(QUANT_NETS) or "__none__",
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: QUANT_THREADS
    resources:
        mem_mb=lambda wc: QUANT_NET[wc.net]["mem_mb"],
        runtime=lambda wc: QUANT_NET[wc.net]["runtime"],
        gpu=0,
    params:
        cfg=as_json(QUANT_CLI),
        ckpt=lambda wc: f"results/checkpoints/quant/{wc.net}_s{wc.seed}",
    shell:
        "python -m repro.quant run --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
        " --net {wildcards.net} --in {input.data} --out {output.result} --weights {output.weights}"
        " --checkpoint-dir {params.ckpt} > {log} 2>&1"


rule quant_aggregate:
    input:
        expand(
            "results/quant/{net}/s{seed}.json",
            net=QUANT_NETS,
            seed=config["quant"]["seeds"],
        ),
    output:
        summary="results/quant/summary.json",
        claims="results/claims/quant.json",
        figures=[
            report(
                f"results/quant/{net}/fig1.svg",
                caption="../report/quant_fig1.rst",
                category="Network quantization",
                labels={"net": net, "figure": "Fig. 1"},
            )
            for net in QUANT_NETS
        ],
        table=report(
            "results/quant/table1.csv",
            caption="../report/quant_table1.rst",
            category="Network quantization",
            labels={"net": "all", "figure": "Table 1"},
        ),
    log:
        "results/logs/quant/aggregate.log",
    benchmark:
        "results/benchmarks/quant/aggregate.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=as_json(QUANT_CLI),
    shell:
        "python -m repro.quant aggregate --config {params.cfg:q} --threads {threads} --in {input}"
        " --summary {output.summary} --claims {output.claims} --figure {output.figures}"
        " --table {output.table} > {log} 2>&1"


if QUANT_NETS:
    register_targets(*rules.quant_aggregate.output)
