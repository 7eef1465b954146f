# Transitive Invariance part 2 (Wang, He & Gupta, arXiv 1708.02901, Sec. 3.3-4): Triplet-Siamese
# pretraining with the ranking loss on the graph stage's pairs, one job per (arm, seed); one
# evaluation job per seed (linear probe + kNN of every arm's frozen backbone on labelled crops); one
# claims job over the seeds. Outputs and formats: src/repro/pretrain/cli.py.
#
# results/pretrain/{arm}/s{seed}/backbone.pt is exactly the state_dict of the detection stage's
# backbone (repro.detect.backbone: tiny_resnet(width=detect.width, blocks=detect.blocks), or resnet50
# at full scale), which the detection stage's TI-transfer rules load strict with weights_only=True.

PRETRAIN = config["pretrain"]
PRETRAIN_ARMS = PRETRAIN["arms"]
from repro.pretrain.data import (
    ARMS as PRETRAIN_ARM_NAMES,
    arm_graph_variant,
    starts_from_context,
)  # noqa: E402

PRETRAIN_SEEDS = PRETRAIN["seeds"]
# Small nets run fastest on one thread and two 1-thread jobs beat one 2-thread job on 2 cores;
# `pretrain.threads: null` falls back to the top-level `threads` (full scale).
PRETRAIN_THREADS = PRETRAIN["threads"] or THREADS
PRETRAIN_BIG = config["scale"] == "full"
# The backbone is the detection stage's: same builder, width and blocks (weights transfer unchanged).
PRETRAIN_NET = {
    "backbone": config["detect"]["backbone"],
    "width": config["detect"]["width"],
    "blocks": config["detect"].get("blocks", [1, 1, 1, 1]),
}
# What a training job reads: not the arm list, seeds, evaluation or resources (params are rerun triggers).
PRETRAIN_TRAIN_CFG = {
    k: v
    for k, v in PRETRAIN.items()
    if k not in ("arms", "seeds", "eval", "threads", "runtime_min")
}
PRETRAIN_EVAL_CFG = {
    k: PRETRAIN[k] for k in ("hidden", "embed", "device", "eval")
} | PRETRAIN_NET


# Labelled crop sets of the evaluation (eval.sources), from their own rules' outputs.
PRETRAIN_SOURCES = PRETRAIN["eval"]["sources"]
if (
    "detection" in PRETRAIN_SOURCES
    and config["data"]["detection"]["source"] != "synthetic"
):
    raise ValueError(
        "config key 'pretrain.eval.sources': 'detection' crops need data.detection.source: synthetic"
    )
PRETRAIN_EVAL_DATA = (
    (
        {"patches": "results/graph/patches.npy", "nodes": "results/graph/nodes.npz"}
        if "mined" in PRETRAIN_SOURCES
        else {}
    )
    | ({"detection": detection_input()} if "detection" in PRETRAIN_SOURCES else {})
    | ({"voc": raw_dataset("voc2007")} if "voc2007" in PRETRAIN_SOURCES else {})
)


rule pretrain_train:
    input:
        # nothing for scratch; the patches for context; a ranking arm also its pairs (transitive_hog/_short:
        # the hog/short graph) and, with pretrain.init: context, the context arm's backbone of its seed
        unpack(
            lambda wc: (
                {}
                if wc.arm == "scratch"
                else {"patches": "results/graph/patches.npy"}
                | (
                    {}
                    if wc.arm == "context"
                    else {
                        "pairs": "results/graph/{variant}/s{seed}/pairs.npz".format(
                            variant=arm_graph_variant(
                                wc.arm, PRETRAIN["graph_variant"]
                            ),
                            seed=wc.seed,
                        )
                    }
                )
                | (
                    {
                        "init_backbone": f"results/pretrain/context/s{wc.seed}/backbone.pt"
                    }
                    if starts_from_context(wc.arm, PRETRAIN["init"])
                    else {}
                )
            )
        ),
    output:
        backbone="results/pretrain/{arm}/s{seed}/backbone.pt",
        net="results/pretrain/{arm}/s{seed}/net.pt",
        metrics="results/pretrain/{arm}/s{seed}/metrics.csv",
        summary="results/pretrain/{arm}/s{seed}/train.json",
    log:
        "results/logs/pretrain/train_{arm}_s{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/train_{arm}_s{seed}.tsv"
    wildcard_constraints:
        arm="|".join(PRETRAIN_ARM_NAMES),
        seed=r"\d+",
    priority: CHAIN_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: PRETRAIN_THREADS
    resources:
        mem_mb=32000 if PRETRAIN_BIG else 2000,
        runtime=PRETRAIN["runtime_min"],
        gpu=GPUS_PER_JOB,
        cpus_per_task=ddp_cpus,
    params:
        cfg=as_json(PRETRAIN_TRAIN_CFG | PRETRAIN_NET),
        ckpt="results/checkpoints/pretrain/{arm}_s{seed}",
        inputs=lambda wc, input: " ".join(
            f"--{k.replace('_', '-')} {input[k]}"
            for k in ("patches", "pairs", "init_backbone")
            if k in input.keys()
        ),
    shell:
        ddp_shell(
            "repro.pretrain train --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
            " --arm {wildcards.arm} {params.inputs} --out-backbone {output.backbone} --out-net {output.net}"
            " --out-metrics {output.metrics} --out-summary {output.summary} --checkpoint-dir {params.ckpt}"
            " > {log} 2>&1"
        )


# The ImageNet-supervised transfer arm (full scale; Tables 1, 3, 4 "ImageNet"): the user's torchvision
# weights (detect.imagenet_weights) in the detection backbone, one copy per transfer seed. The weights are
# a parameter, not an input, so a dry run without them still plans; the job names the missing file.
rule pretrain_imagenet:
    output:
        backbone="results/pretrain/imagenet/s{seed}/backbone.pt",
    log:
        "results/logs/pretrain/imagenet_s{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/imagenet_s{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        cfg=as_json(PRETRAIN_TRAIN_CFG | PRETRAIN_NET),
        weights=config["detect"].get("imagenet_weights")
        or "detect.imagenet_weights-is-null",
    shell:
        "python -m repro.pretrain imagenet --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
        " --weights {params.weights:q} --out-backbone {output.backbone} > {log} 2>&1"


rule pretrain_eval:
    input:
        unpack(
            lambda wc: {
                "backbones": expand(
                    "results/pretrain/{arm}/s{seed}/backbone.pt",
                    arm=PRETRAIN_ARMS,
                    seed=wc.seed,
                )
            }
            | PRETRAIN_EVAL_DATA
        ),
    output:
        "results/pretrain/eval/s{seed}.json",
    log:
        "results/logs/pretrain/eval_s{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/eval_s{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: PRETRAIN_THREADS
    resources:
        mem_mb=16000 if PRETRAIN_BIG else 2000,
        runtime=120 if PRETRAIN_BIG else 10,
        gpu=0,  # features of every arm's backbone (ResNet-50 on VOC crops at full scale)
    params:
        cfg=as_json(PRETRAIN_EVAL_CFG),
        arms=" ".join(PRETRAIN_ARMS),
        inputs=lambda wc, input: " ".join(
            f"--{k} {input[k]}" for k in PRETRAIN_EVAL_DATA
        ),
    shell:
        "python -m repro.pretrain eval --config {params.cfg:q} --seed {wildcards.seed} --threads {threads}"
        " --arms {params.arms} --backbones {input.backbones} {params.inputs} --out {output} > {log} 2>&1"


rule pretrain_claims:
    input:
        evals=expand("results/pretrain/eval/s{seed}.json", seed=PRETRAIN_SEEDS),
        train=expand(
            "results/pretrain/{arm}/s{seed}/train.json",
            arm=PRETRAIN_ARMS,
            seed=PRETRAIN_SEEDS,
        ),
        graph=expand(
            "results/graph/{variant}/s{seed}/stats.json",
            variant=PRETRAIN["graph_variant"],
            seed=PRETRAIN_SEEDS,
        ),
    output:
        claims="results/claims/pretrain.json",
        summary="results/pretrain/summary.json",
        figure=report(
            "results/pretrain/probe_knn.png",
            caption="../report/pretrain_probe_knn.rst",
            category="Transitive Invariance",
            labels={
                "stage": "pretrain",
                "figure": "probe and kNN accuracy per arm (Table 1 analogue)",
            },
        ),
    log:
        "results/logs/pretrain/claims.log",
    benchmark:
        "results/benchmarks/pretrain/claims.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cfg=as_json(PRETRAIN | PRETRAIN_NET),
        scale=config["scale"],
    shell:
        "python -m repro.pretrain claims --config {params.cfg:q} --threads {threads} --scale {params.scale}"
        " --evals {input.evals} --train {input.train} --graph-stats {input.graph} --out-claims {output.claims}"
        " --out-summary {output.summary} --out-figure {output.figure} > {log} 2>&1"


register_targets(
    rules.pretrain_claims.output.claims,
    rules.pretrain_claims.output.summary,
    rules.pretrain_claims.output.figure,
)
