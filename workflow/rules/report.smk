# Report stage: every stage's claims beside the papers' numbers, figures, provenance.
# Included last: its inputs are the claims files and figures the stages registered.


rule report:
    input:
        claims=report_claims,
        figures=report_figures,
    output:
        csv="results/claims.csv",
        html=report(
            "results/report/index.html",
            caption="../report/report_page.rst",
            category="Report",
        ),
        # the README's results table (python -m repro.report.readme puts it into README.md)
        summary="results/report/summary.md",
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # the config (hashed into the provenance) without gpus_per_job: how many GPUs ran a training job
        # is a launch setting like --cores, and leaving it out keeps existing reports up to date
        cfg=as_json({k: v for k, v in config.items() if k != "gpus_per_job"}),
        benchmarks="results/benchmarks",
        # the opt-in scale_trend's figures, embedded when present (not inputs: never run by the default)
        trend="results/scale_trend",
        bench_gpu="results/bench_gpu.json",  # python -m bench.gpu; read if present (prices the run)
    shell:
        "python -m repro.report --config {params.cfg:q} --claims {input.claims} --figures {input.figures}"
        " --benchmarks {params.benchmarks} --bench-gpu {params.bench_gpu} --out-csv {output.csv}"
        " --out-html {output.html} --out-summary {output.summary} --trend-dir {params.trend} > {log} 2>&1"


register_targets(
    rules.report.output.csv, rules.report.output.html, rules.report.output.summary
)
