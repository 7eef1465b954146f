# Detection stage: Faster R-CNN with a Feature Pyramid Network and its C4/C5 baselines (FPN, arXiv
# 1612.03144, Tables 1 and 3), COCO metrics, and the detection transfer of Transitive Invariance
# (1708.02901, Tables 3 and 4). One job per (model, seed); one aggregate job per results file.
DETECT = config["detect"]
# `detect.threads: null` falls back to the top-level `threads` (full scale).
DETECT_THREADS = DETECT["threads"] or THREADS
# What the CLI gets as --config: everything but the scheduling key `threads` (the CLI takes --threads),
# so changing the threads per job neither reruns finished jobs nor invalidates their checkpoints.
DETECT_CLI = {k: v for k, v in DETECT.items() if k != "threads"}
from repro.detect.config import (  # noqa: E402
    MODELS,
    check_transfer_datasets,
    transfer_config,
)

DETECT_MODELS = "|".join(MODELS)
DETECT_FULL = config["scale"] == "full"
# TI transfer data sets (detect.transfer.datasets): the synthetic detection set, VOC 2007 (Table 3's
# Faster R-CNN) or COCO 2017 (Table 4), each with its schedule (detect.transfer.schedules).
TRANSFER = DETECT["transfer"]
TRANSFER_DATASETS = TRANSFER["datasets"]


# Per data set: its folder (the detection input when it is data.detection.source, else the raw download)
# and the detect config of its runs (its schedule overrides, its name as transfer.data_source).
check_transfer_datasets(DETECT, config["data"]["detection"]["source"])
TRANSFER_DATA = {
    ds: (
        detection_input()
        if ds == config["data"]["detection"]["source"]
        else raw_dataset(ds)
    )
    for ds in TRANSFER_DATASETS
}
TRANSFER_CFG = {ds: as_json(transfer_config(DETECT, ds)) for ds in TRANSFER_DATASETS}


rule detect_train:
    input:
        data=detection_input(),
    output:
        metrics="results/detect/{model}/s{seed}/metrics.json",
        weights="results/detect/{model}/s{seed}/model.pt",
        steps="results/detect/{model}/s{seed}/train_log.csv",
        detections="results/detect/{model}/s{seed}/detections.json",
        proposals="results/detect/{model}/s{seed}/proposals.json",
    log:
        "results/logs/detect/train_{model}_s{seed}.log",
    benchmark:
        "results/benchmarks/detect/train_{model}_s{seed}.tsv"
    wildcard_constraints:
        model=DETECT_MODELS,
        seed=r"\d+",
    priority: LONG_JOB_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: DETECT_THREADS
    resources:
        mem_mb=48000 if DETECT_FULL else 4000,
        runtime=2880 if DETECT_FULL else 60,
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=as_json(DETECT_CLI),
        seed=lambda wc: wc.seed,
        ckpt=lambda wc: f"results/checkpoints/detect/{wc.model}_s{wc.seed}",
    shell:
        ddp_shell(
            "repro.detect train --model {wildcards.model} --config {params.cfg:q} --seed {params.seed}"
            " --threads {threads} --in {input.data} --out {output.metrics} --weights-out {output.weights}"
            " --metrics-csv {output.steps} --detections-out {output.detections}"
            " --proposals-out {output.proposals} --checkpoint-dir {params.ckpt} > {log} 2>&1"
        )


# FPN Sec. 5.2.1 running time: every trained model timed in one job, interleaved on the same val
# images at the same size and thread count (repro.detect.timing); the GPU at full scale, as the paper.
rule detect_timing:
    input:
        data=detection_input(),
        metrics=expand(
            "results/detect/{model}/s{seed}/metrics.json",
            model=DETECT["models"],
            seed=DETECT["seeds"],
        ),
        weights=expand(
            "results/detect/{model}/s{seed}/model.pt",
            model=DETECT["models"],
            seed=DETECT["seeds"],
        ),
    output:
        "results/detect/timing.json",
    log:
        "results/logs/detect/timing.log",
    benchmark:
        "results/benchmarks/detect/timing.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: DETECT_THREADS
    resources:
        mem_mb=16000 if DETECT_FULL else 2000,
        runtime=120 if DETECT_FULL else 20,
        gpu=0,
    params:
        cfg=as_json(DETECT_CLI),
    shell:
        "python -m repro.detect time --config {params.cfg:q} --threads {threads} --in {input.data}"
        " --metrics {input.metrics} --weights {input.weights} --out {output} > {log} 2>&1"


rule detect_fpn_coco:
    input:
        metrics=expand(
            "results/detect/{model}/s{seed}/metrics.json",
            model=DETECT["models"],
            seed=DETECT["seeds"],
        ),
        timing=rules.detect_timing.output[0],
    output:
        summary="results/fpn_coco.json",
        claims="results/claims/fpn.json",
        figure=report(
            "results/detect/fpn_tables.png",
            caption="../report/detect_fpn_tables.rst",
            category="Detection (FPN)",
            labels={"figure": "Tables 1 and 3"},
        ),
    log:
        "results/logs/detect/fpn_coco.log",
    benchmark:
        "results/benchmarks/detect/fpn_coco.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=as_json(DETECT_CLI),
    shell:
        "python -m repro.detect aggregate --config {params.cfg:q} --threads {threads} --in {input.metrics}"
        " --timing {input.timing} --out {output.summary} --claims {output.claims} --figure {output.figure}"
        " > {log} 2>&1"


# The COCO evaluation server's test-dev 2017 results file of one trained run (full scale: the paper's
# Table 3 numbers are test-dev). Its data is the `coco2017_test` download (test2017.zip and
# image_info_test2017.zip); registered as a target only with detect.test_dev.enabled.
rule detect_test_dev:
    input:
        data=lambda wc: raw_dataset("coco2017_test"),
        weights="results/detect/{model}/s{seed}/model.pt",
    output:
        "results/detect/test_dev/s{seed}/detections_test-dev2017_{model}_results.json",
    log:
        "results/logs/detect/test_dev_{model}_s{seed}.log",
    benchmark:
        "results/benchmarks/detect/test_dev_{model}_s{seed}.tsv"
    wildcard_constraints:
        model=DETECT_MODELS,
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: DETECT_THREADS
    resources:
        mem_mb=32000 if DETECT_FULL else 2000,
        runtime=360 if DETECT_FULL else 20,
        gpu=0,
    params:
        cfg=as_json(DETECT_CLI),
    shell:
        "python -m repro.detect test-dev --model {wildcards.model} --config {params.cfg:q} --threads {threads}"
        " --in {input.data} --weights {input.weights} --out {output} > {log} 2>&1"


# TI transfer: fine-tune the detector from each pretraining arm's backbone (a state_dict of
# repro.detect.backbone.tiny_resnet, or resnet50 at full scale), written by the pretraining stage as
# results/pretrain/{arm}/s{seed}/backbone.pt; one job per data set x arm x seed.
rule detect_transfer:
    input:
        data=lambda wc: TRANSFER_DATA[wc.dataset],
        backbone="results/pretrain/{arm}/s{seed}/backbone.pt",
    output:
        metrics="results/detect/transfer/{dataset}/{arm}/s{seed}/metrics.json",
        weights="results/detect/transfer/{dataset}/{arm}/s{seed}/model.pt",
        steps="results/detect/transfer/{dataset}/{arm}/s{seed}/train_log.csv",
        detections="results/detect/transfer/{dataset}/{arm}/s{seed}/detections.json",
        proposals="results/detect/transfer/{dataset}/{arm}/s{seed}/proposals.json",
    log:
        "results/logs/detect/transfer_{dataset}_{arm}_s{seed}.log",
    benchmark:
        "results/benchmarks/detect/transfer_{dataset}_{arm}_s{seed}.tsv"
    wildcard_constraints:
        dataset="|".join(TRANSFER_DATASETS),
        arm=r"[a-z0-9_]+",
        seed=r"\d+",
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: DETECT_THREADS
    resources:
        mem_mb=48000 if DETECT_FULL else 4000,
        runtime=2880 if DETECT_FULL else 60,
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=lambda wc: TRANSFER_CFG[wc.dataset],
        seed=lambda wc: wc.seed,
        model=TRANSFER["model"],
        ckpt=lambda wc: f"results/checkpoints/detect/transfer_{wc.dataset}_{wc.arm}_s{wc.seed}",
    shell:
        ddp_shell(
            "repro.detect train --transfer --arm {wildcards.arm} --model {params.model}"
            " --backbone-weights {input.backbone} --config {params.cfg:q} --seed {params.seed} --threads {threads}"
            " --in {input.data} --out {output.metrics} --weights-out {output.weights} --metrics-csv {output.steps}"
            " --detections-out {output.detections} --proposals-out {output.proposals}"
            " --checkpoint-dir {params.ckpt} > {log} 2>&1"
        )


# One summary and claims file per transfer data set, its rows beside the paper table of its protocol.
rule detect_ti_transfer:
    input:
        metrics=lambda wc: expand(
            "results/detect/transfer/{dataset}/{arm}/s{seed}/metrics.json",
            dataset=wc.dataset,
            arm=TRANSFER["arms"],
            seed=TRANSFER["seeds"],
        ),
    output:
        summary="results/ti_transfer_{dataset}.json",
        claims="results/claims/ti_transfer_{dataset}.json",
    log:
        "results/logs/detect/ti_transfer_{dataset}.log",
    benchmark:
        "results/benchmarks/detect/ti_transfer_{dataset}.tsv"
    wildcard_constraints:
        dataset="|".join(TRANSFER_DATASETS),
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=lambda wc: TRANSFER_CFG[wc.dataset],
    shell:
        "python -m repro.detect transfer-aggregate --config {params.cfg:q} --threads {threads}"
        " --in {input.metrics} --out {output.summary} --claims {output.claims} > {log} 2>&1"


register_targets(
    *rules.detect_fpn_coco.output,
    *expand(
        [
            "results/ti_transfer_{dataset}.json",
            "results/claims/ti_transfer_{dataset}.json",
        ],
        dataset=TRANSFER_DATASETS,
    ),
)
if DETECT["test_dev"]["enabled"]:
    register_targets(
        "results/detect/test_dev/s{seed}/detections_test-dev2017_{model}_results.json".format(
            **DETECT["test_dev"]
        )
    )
