# LARS stage (1708.03888): the large-batch study, one job per model x arm x batch x epochs cell
# (so a cluster runs them side by side), then one aggregate job for the JSON, figure and claims.

from repro.lars.plan import cells as lars_cells  # noqa: E402

LARS = config["lars"]
# Small CNNs run fastest on one thread, and two 1-thread jobs beat one 2-thread job on 2 cores;
# `lars.threads: null` falls back to the top-level `threads` (full scale).
LARS_THREADS = LARS["threads"] or THREADS
# ImageNet is read from its JPEG files by DataLoader processes (one per thread) at the crop size.
LARS_IMAGENET = config["data"]["classification"]["source"] == "imagenet"
if LARS_IMAGENET and "image_size" not in LARS:
    raise ValueError(
        "config key 'lars.image_size' is missing: ImageNet data needs the side of its crops (paper: 224)"
    )
LARS_CELLS = lars_cells(LARS)  # the study's cells (repro.lars.plan)
LARS_CELL_PATHS = [
    f"results/lars/cells/{m}/{a}/b{b}_e{e}.json" for m, a, b, e in LARS_CELLS
]
# What a cell reads is only its arm and its model's LR grid: editing another cell's settings, the
# Table 5 epochs or the claims never reruns it (params are rerun triggers).
LARS_CELL_SKIP = (
    "models",
    "batches",
    "wide",
    "longer",
    "claims",
    "sgd",
    "lars",
    "threads",
    "runtime_min",
)
LARS_CELL_COMMON = {k: v for k, v in LARS.items() if k not in LARS_CELL_SKIP}


rule lars_cell:
    input:
        data=classification_input(),
    output:
        "results/lars/cells/{model}/{arm}/b{batch}_e{epochs}.json",
    log:
        "results/logs/lars/cell_{model}_{arm}_b{batch}_e{epochs}.log",
    benchmark:
        "results/benchmarks/lars/cell_{model}_{arm}_b{batch}_e{epochs}.tsv"
    wildcard_constraints:
        model=r"[a-z0-9_]+",
        arm="sgd|lars",
        batch=r"\d+",
        epochs=r"\d+",
    priority: LONG_JOB_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: LARS_THREADS
    resources:
        mem_mb=32000 if LARS_IMAGENET else 4000,
        runtime=LARS["runtime_min"],
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=lambda wc: as_json(
            LARS_CELL_COMMON
            | {
                wc.arm: LARS[wc.arm]
                | {"lrs": {wc.model: LARS[wc.arm]["lrs"][wc.model]}}
            }
        ),
        seed=SEED,
        ckpt="results/checkpoints/lars/{model}_{arm}_b{batch}_e{epochs}",
    shell:
        ddp_shell(
            "repro.lars cell --config {params.cfg:q} --seed {params.seed} --threads {threads}"
            " --in {input.data} --out {output} --checkpoint-dir {params.ckpt}"
            " --model {wildcards.model} --arm {wildcards.arm} --batch {wildcards.batch}"
            " --epochs {wildcards.epochs} > {log} 2>&1"
        )


rule lars_aggregate:
    input:
        cells=LARS_CELL_PATHS,
    output:
        study="results/lars/lars_study.json",
        figure=report(
            "results/lars/accuracy_vs_batch.png",
            caption="../report/lars.rst",
            category="LARS",
        ),
        claims="results/claims/lars.json",
    log:
        "results/logs/lars/aggregate.log",
    benchmark:
        "results/benchmarks/lars/aggregate.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=as_json(LARS),
        seed=SEED,
    shell:
        "python -m repro.lars aggregate --config {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --in {input.cells} --out {output.study} --figure {output.figure} --claims {output.claims}"
        " > {log} 2>&1"


register_targets(
    rules.lars_aggregate.output.study,
    rules.lars_aggregate.output.figure,
    rules.lars_aggregate.output.claims,
)
