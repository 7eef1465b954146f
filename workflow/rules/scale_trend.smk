# Opt-in, not part of `rule all`: `snakemake scale_trend` reruns each stage of TREND_STAGES at 2x and 4x
# the default's data and steps (repro.report.trend.SCALED) and plots every claim that fails or is
# inconclusive at the default against scale, beside the paper's value. Each scaled run is a nested
# Snakemake run in a folder of its own, results/scale_trend/<stage>_x<k>/ (its own results/ tree and
# .snakemake/), so the default run's outputs are never touched. One stage alone:
# `snakemake results/scale_trend/gan/trend.png`. The report embeds results/scale_trend/*/trend.png
# when present (rerun it after the trend: `snakemake --forcerun report results/report/index.html`).
# Each trend stage is a claims file's stem (results/claims/<stem>.json): the TI transfer has one per data set.
TREND_STAGES = ["gan", "quant", "lars", "graph", "pretrain", "fpn"] + [
    f"ti_transfer_{_ds}" for _ds in TRANSFER_DATASETS
]
TREND_FACTORS = [2, 4]


wildcard_constraints:
    trend_stage="|".join(TREND_STAGES),
    factor=r"\d+",


rule scale_trend_config:
    output:
        "results/scale_trend/{trend_stage}_x{factor}/config.yaml",
    log:
        "results/logs/scale_trend/config_{trend_stage}_x{factor}.log",
    benchmark:
        "results/benchmarks/scale_trend/config_{trend_stage}_x{factor}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        cfg=as_json(config),
    shell:
        "python -m repro.report.trend config --config {params.cfg:q} --stage {wildcards.trend_stage}"
        " --factor {wildcards.factor} --out {output} > {log} 2>&1"


rule scale_trend_run:
    input:
        cfg="results/scale_trend/{trend_stage}_x{factor}/config.yaml",
    output:
        "results/scale_trend/{trend_stage}_x{factor}/results/claims/{trend_stage}.json",
    log:
        "results/logs/scale_trend/run_{trend_stage}_x{factor}.log",
    benchmark:
        "results/benchmarks/scale_trend/run_{trend_stage}_x{factor}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        snakemake=f"{sys.executable} -m snakemake",
        snakefile=workflow.main_snakefile,
        workdir=lambda w: f"results/scale_trend/{w.trend_stage}_x{w.factor}",
    shell:
        "{params.snakemake} --snakefile {params.snakefile:q} --directory {params.workdir}"
        ' --configfile "$PWD/{input.cfg}" --cores {threads} results/claims/{wildcards.trend_stage}.json'
        " > {log} 2>&1"


rule scale_trend_plot:
    input:
        default="results/claims/{trend_stage}.json",
        scaled=expand(
            "results/scale_trend/{{trend_stage}}_x{factor}/results/claims/{{trend_stage}}.json",
            factor=TREND_FACTORS,
        ),
    output:
        png="results/scale_trend/{trend_stage}/trend.png",
        csv="results/scale_trend/{trend_stage}/trend.csv",
    log:
        "results/logs/scale_trend/plot_{trend_stage}.log",
    benchmark:
        "results/benchmarks/scale_trend/plot_{trend_stage}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        scaled=lambda w, input: " ".join(
            f"{f}={p}" for f, p in zip(TREND_FACTORS, input.scaled)
        ),
    shell:
        "python -m repro.report.trend plot --stage {wildcards.trend_stage} --default {input.default}"
        " --scaled {params.scaled} --out-png {output.png} --out-csv {output.csv} > {log} 2>&1"


rule scale_trend:
    input:
        png=expand(
            "results/scale_trend/{trend_stage}/trend.png", trend_stage=TREND_STAGES
        ),
        csv=expand(
            "results/scale_trend/{trend_stage}/trend.csv", trend_stage=TREND_STAGES
        ),
    output:
        "results/scale_trend/trends.csv",
    log:
        "results/logs/scale_trend/merge.log",
    benchmark:
        "results/benchmarks/scale_trend/merge.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "python -m repro.report.trend merge --in {input.csv} --out {output} > {log} 2>&1"
