# Data stage: synthesize the embedded default, or download real datasets (full scale).


rule synth_videos:
    output:
        directory("results/data/videos"),
    log:
        "results/logs/data/videos.log",
    benchmark:
        "results/benchmarks/data/videos.tsv"
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cfg=as_json(config["data"]["videos"]),
        seed=SEED,
    shell:
        "python -m repro.data videos --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule synth_detection:
    output:
        directory("results/data/detection"),
    log:
        "results/logs/data/detection.log",
    benchmark:
        "results/benchmarks/data/detection.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cfg=as_json(config["data"]["detection"]),
        seed=SEED,
    shell:
        "python -m repro.data detection --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule synth_mixtures:
    output:
        directory("results/data/mixtures"),
    log:
        "results/logs/data/mixtures.log",
    benchmark:
        "results/benchmarks/data/mixtures.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cfg=as_json(config["data"]["mixtures"]),
        seed=SEED,
    shell:
        "python -m repro.data mixtures --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule digits:
    output:
        "results/data/digits.npz",
    log:
        "results/logs/data/digits.log",
    benchmark:
        "results/benchmarks/data/digits.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cfg=as_json(config["data"]["digits"]),
        seed=SEED,
    shell:
        "python -m repro.data digits --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule synth_classification:
    output:
        "results/data/classification.npz",
    log:
        "results/logs/data/classification.log",
    benchmark:
        "results/benchmarks/data/classification.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=as_json(config["data"]["classification"]),
        seed=SEED,
    shell:
        "python -m repro.data classification --config {params.cfg:q} --seed {params.seed}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule download:
    output:
        directory("results/data/raw/{dataset}"),
    log:
        "results/logs/data/download_{dataset}.log",
    benchmark:
        "results/benchmarks/data/download_{dataset}.tsv"
    wildcard_constraints:
        dataset="|".join(DOWNLOADS) or "__none__",
    retries: 2
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=720,
    params:
        spec=lambda wc: as_json(config["downloads"][wc.dataset]),
        cache=lambda wc: f"results/downloads/{wc.dataset}",  # partial/verified archives (kept on failure)
    shell:
        "python -m repro.data download --config {params.spec:q} --out {output}"
        " --cache {params.cache} > {log} 2>&1"


# ImageNet cannot be downloaded: the user's release tars are checked against torchvision's md5s (or
# data.classification.imagenet_md5's, for a rehearsal on miniature tars) and unpacked by torchvision's
# parsers (meta.bin, train/<wnid>/, val/<wnid>/).
rule imagenet:
    input:
        imagenet_archives,
    output:
        directory("results/data/imagenet"),
    log:
        "results/logs/data/imagenet.log",
    benchmark:
        "results/benchmarks/data/imagenet.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=720,
    params:
        tars=IMAGENET_TARS,
        # only the md5s: another key of the section must not unpack 150 GB again
        cfg=as_json(
            {"imagenet_md5": config["data"]["classification"].get("imagenet_md5", {})}
        ),
    shell:
        "python -m repro.data imagenet --threads {threads} --config {params.cfg:q} --in {params.tars:q}"
        " --out {output} > {log} 2>&1"
