# GANs and mode coverage: plain GAN, Reg-GAN and MDGAN (Che et al., arXiv 1612.02136), MGAN (Hoang et
# al., arXiv 1708.02556). One training job per (experiment, arm, seed) so a cluster fans out (rule
# gan_train), or, with gan.seeds_in_one_job, one per (experiment, arm) for the small experiments (rule
# gan_train_seeds: a 2-D run trains in ~8 s, so a process start-up per seed is a fifth of its job); one
# aggregate job per experiment (summary over seeds + figures); one claims job.

from repro.gan.plan import (
    SMALL_EXPERIMENTS,
    planned,
    scorer_of,
    source_of,
)  # noqa: E402

GAN = config["gan"]
GAN_RUN = list(GAN["run"])
GAN_EXP = GAN["experiments"]
# Seeds 0..n-1 per experiment: its own `seeds` where set, else gan.seeds.
GAN_SEEDS = {
    _exp: list(range(GAN_EXP[_exp].get("seeds") or GAN["seeds"])) for _exp in GAN_RUN
}
# Experiments whose arms train all their seeds in one job (rule gan_train_seeds, whose outputs list
# seeds 0..gan.seeds-1): the small ones at gan.seeds seeds when gan.seeds_in_one_job; the others run
# one job per seed (rule gan_train).
GAN_ONE_JOB_SEEDS = list(range(GAN["seeds"]))
GAN_BUNDLED = [
    _exp
    for _exp in GAN_RUN
    if GAN["seeds_in_one_job"]
    and _exp in SMALL_EXPERIMENTS
    and GAN_SEEDS[_exp] == GAN_ONE_JOB_SEEDS
]
GAN_PER_SEED = [_exp for _exp in GAN_RUN if _exp not in GAN_BUNDLED]
# Half-hour runs at full scale: their training jobs form the group `gan_small` when the run asks to
# bundle it (the slurm profile's group-components: a few submissions instead of one per run); otherwise,
# e.g. locally, they stay plain jobs. The group settings are read when the DAG is built.
GAN_SMALL = SMALL_EXPERIMENTS
# Tiny MLPs run fastest on one thread, and two 1-thread jobs in parallel beat one 2-thread job;
# `gan.threads: null` falls back to the top-level `threads` (full scale).
GAN_THREADS = GAN["threads"] or THREADS
GAN_SCORER_OF = scorer_of(
    GAN_RUN
)  # experiment -> the experiment whose scorer.pt it reads
GAN_SCORED = sorted(set(GAN_SCORER_OF.values()))
# Per-experiment inputs (repro.gan.plan): the data file or folder the CLI reads, the gan section with only
# this experiment's settings (editing one experiment never invalidates another's jobs: params are rerun
# triggers), and the Inception-v3 weights when the experiment scores with them.
GAN_DATA, GAN_DATA_FILE, GAN_CFG, GAN_WEIGHTS = {}, {}, {}, {}
for _exp in planned(GAN):
    _src = source_of(_exp)
    GAN_DATA[_exp] = {
        "mixtures": "results/data/mixtures",
        "digits": "results/data/digits.npz",
    }.get(_src) or raw_dataset(_src)
    GAN_DATA_FILE[_exp] = (
        f"results/data/mixtures/{_exp}.npz" if _src == "mixtures" else GAN_DATA[_exp]
    )
    GAN_CFG[_exp] = as_json({**GAN, "experiments": {_exp: GAN_EXP[_exp]}})
    GAN_WEIGHTS[_exp] = (
        [GAN["inception_weights"]] if GAN_EXP[_exp]["scorer"] == "inception_v3" else []
    )
GAN_JOBS = {
    (_exp, _ext): expand(
        "results/gan/{experiment}/{arm}/s{seed}{ext}",
        experiment=_exp,
        arm=GAN_EXP[_exp]["arms"],
        seed=GAN_SEEDS[_exp],
        ext=_ext,
    )
    for _exp in GAN_RUN
    for _ext in (".json", "_samples.npz")
}
GAN_ARMS = "gan|reggan|reggan_sum|mdgan|mgan|mgan_beta0"


rule gan_scorer:
    input:
        data=lambda wc: GAN_DATA[wc.experiment],
        weights=lambda wc: GAN_WEIGHTS[wc.experiment],
    output:
        scorer="results/gan/{experiment}/scorer.pt",
        metrics="results/gan/{experiment}/scorer.json",
    log:
        "results/logs/gan/{experiment}_scorer.log",
    benchmark:
        "results/benchmarks/gan/{experiment}_scorer.tsv"
    wildcard_constraints:
        experiment="|".join(GAN_SCORED) or "__none__",
    conda:
        "../../envs/torch.yaml"
    threads: GAN_THREADS
    resources:
        mem_mb=lambda wc: 2000 if wc.experiment == "digits" else 8000,
        runtime=lambda wc: 10 if wc.experiment == "digits" else 120,
        gpu=0,
    params:
        cfg=lambda wc: GAN_CFG[wc.experiment],
        seed=SEED,
    shell:
        "python -m repro.gan scorer --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --experiment {wildcards.experiment} --in {input.data} --out {output.scorer}"
        " --metrics {output.metrics} > {log} 2>&1"


rule gan_train:
    input:
        unpack(gan_train_inputs),
    output:
        result="results/gan/{experiment}/{arm}/s{seed}.json",
        samples="results/gan/{experiment}/{arm}/s{seed}_samples.npz",
        weights="results/gan/{experiment}/{arm}/s{seed}_weights.pt",
        csv="results/gan/{experiment}/{arm}/s{seed}_metrics.csv",
    log:
        "results/logs/gan/{experiment}_{arm}_s{seed}.log",
    benchmark:
        "results/benchmarks/gan/{experiment}_{arm}_s{seed}.tsv"
    wildcard_constraints:
        experiment="|".join(GAN_PER_SEED) or "__none__",
        arm=GAN_ARMS,
        seed=r"\d+",
    group:
        gan_small_group
    conda:
        "../../envs/torch.yaml"
    threads: GAN_THREADS
    resources:
        mem_mb=lambda wc: (2000 if wc.experiment in GAN_SMALL else 16000),
        runtime=lambda wc: (30 if wc.experiment in GAN_SMALL else 1440),
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=lambda wc: GAN_CFG[wc.experiment],
        data=lambda wc: GAN_DATA_FILE[wc.experiment],
        scorer=lambda wc, input: f"--scorer {input.scorer}" if input.scorer else "",
        ckpt=lambda wc: f"results/checkpoints/gan/{wc.experiment}_{wc.arm}_s{wc.seed}",
    shell:
        ddp_shell(
            "repro.gan train --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
            " --experiment {wildcards.experiment} --arm {wildcards.arm} --in {params.data} {params.scorer}"
            " --out {output.result} --samples {output.samples} --weights {output.weights}"
            " --metrics-csv {output.csv} --checkpoint-dir {params.ckpt} > {log} 2>&1"
        )


rule gan_train_seeds:
    input:
        unpack(gan_train_inputs),
    output:
        result=expand(
            "results/gan/{{experiment}}/{{arm}}/s{seed}.json", seed=GAN_ONE_JOB_SEEDS
        ),
        samples=expand(
            "results/gan/{{experiment}}/{{arm}}/s{seed}_samples.npz",
            seed=GAN_ONE_JOB_SEEDS,
        ),
        weights=expand(
            "results/gan/{{experiment}}/{{arm}}/s{seed}_weights.pt",
            seed=GAN_ONE_JOB_SEEDS,
        ),
        csv=expand(
            "results/gan/{{experiment}}/{{arm}}/s{seed}_metrics.csv",
            seed=GAN_ONE_JOB_SEEDS,
        ),
    log:
        "results/logs/gan/{experiment}_{arm}.log",
    benchmark:
        "results/benchmarks/gan/{experiment}_{arm}.tsv"
    wildcard_constraints:
        experiment="|".join(GAN_BUNDLED) or "__none__",
        arm=GAN_ARMS,
    group:
        gan_small_group
    conda:
        "../../envs/torch.yaml"
    threads: GAN_THREADS
    resources:
        mem_mb=2000,
        runtime=30 * len(GAN_ONE_JOB_SEEDS),
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=lambda wc: GAN_CFG[wc.experiment],
        data=lambda wc: GAN_DATA_FILE[wc.experiment],
        scorer=lambda wc, input: f"--scorer {input.scorer}" if input.scorer else "",
        seeds=" ".join(map(str, GAN_ONE_JOB_SEEDS)),
        ckpt=lambda wc: " ".join(
            f"results/checkpoints/gan/{wc.experiment}_{wc.arm}_s{s}"
            for s in GAN_ONE_JOB_SEEDS
        ),
    shell:
        ddp_shell(
            "repro.gan train --config {params.cfg:q} --seed {params.seeds} --threads {threads}"
            " --experiment {wildcards.experiment} --arm {wildcards.arm} --in {params.data} {params.scorer}"
            " --out {output.result} --samples {output.samples} --weights {output.weights}"
            " --metrics-csv {output.csv} --checkpoint-dir {params.ckpt} > {log} 2>&1"
        )


rule gan_aggregate:
    input:
        results=lambda wc: GAN_JOBS[(wc.experiment, ".json")],
        samples=lambda wc: GAN_JOBS[(wc.experiment, "_samples.npz")],
        data=lambda wc: GAN_DATA[wc.experiment],
    output:
        summary="results/gan/{experiment}/summary.json",
        samples_fig=report(
            "results/gan/figures/{experiment}_samples.png",
            caption="../report/gan_samples.rst",
            category="GANs",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "samples"},
        ),
        curves_fig=report(
            "results/gan/figures/{experiment}_curves.png",
            caption="../report/gan_curves.rst",
            category="GANs",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "figure": "metrics over steps"},
        ),
    log:
        "results/logs/gan/{experiment}_aggregate.log",
    benchmark:
        "results/benchmarks/gan/{experiment}_aggregate.tsv"
    wildcard_constraints:
        experiment="|".join(GAN_RUN) or "__none__",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=lambda wc: GAN_CFG[wc.experiment],
        data=lambda wc: GAN_DATA_FILE[wc.experiment],
    shell:
        "python -m repro.gan aggregate --config {params.cfg:q} --threads {threads}"
        " --experiment {wildcards.experiment} --in {input.results} --samples {input.samples}"
        " --data {params.data} --out {output.summary}"
        " --figures {output.samples_fig} {output.curves_fig} > {log} 2>&1"


rule gan_claims:
    input:
        expand("results/gan/{experiment}/summary.json", experiment=GAN_RUN),
    output:
        "results/claims/gan.json",
    log:
        "results/logs/gan/claims.log",
    benchmark:
        "results/benchmarks/gan/claims.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        cfg=as_json(GAN),
    shell:
        "python -m repro.gan claims --config {params.cfg:q} --threads {threads} --in {input}"
        " --out {output} > {log} 2>&1"


if GAN_RUN:
    register_targets(
        "results/claims/gan.json",
        *expand(
            "results/gan/figures/{experiment}_{fig}.png",
            experiment=GAN_RUN,
            fig=("samples", "curves"),
        ),
    )
