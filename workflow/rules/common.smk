# The one place with Python logic: config validation, stage config as JSON, input functions.
import json
import os
import sys

from snakemake.utils import validate


def _validate_config(cfg):
    """Validate against the schema (filling defaults); name the offending key on failure."""
    import jsonschema
    import yaml

    schema_path = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
    schema = yaml.safe_load(open(schema_path))
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg),
        key=lambda e: list(e.path),
    )
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  config key '{key}': {err.message}")
        raise ValueError(
            "invalid configuration (see workflow/schemas/config.schema.yaml):\n"
            + "\n".join(lines)
        )
    validate(
        cfg, schema=schema_path
    )  # snakemake's validator also fills in the schema defaults


_validate_config(config)

# Rules call `python -m repro.<stage>` (and `torchrun`): every job, local or SLURM (sbatch exports
# this environment), runs the interpreter that runs Snakemake, i.e. the project's venv, without the
# user activating anything; and the package is importable even where it is not pip-installed (conda
# envs via --sdm conda, cluster nodes with --export=ALL).
os.environ.update(
    PATH=os.pathsep.join(
        p for p in [os.path.dirname(sys.executable), os.environ.get("PATH", "")] if p
    ),
    PYTHONPATH=os.pathsep.join(
        p
        for p in [
            os.path.join(workflow.basedir, "src"),
            os.environ.get("PYTHONPATH", ""),
        ]
        if p
    ),
)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The rules' parse-time imports (model, arm and cell lists) read this checkout's package too, whatever
# copy of `repro` the Python running Snakemake has installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

SEED = config["seed"]
THREADS = config["threads"]
DOWNLOADS = sorted(config.get("downloads", {}))

# Several GPUs per training job (config `gpus_per_job`, N). The DDP training rules (lars_cell,
# detect_train, detect_transfer, pretrain_train, gan_train) write `shell: ddp_shell("repro.<stage> ...")`:
# their stage starts with TRAIN_PY, i.e. as N ranks under torchrun when N > 1 (the config's batch
# sizes stay global: repro.common.distributed). The launcher goes into the shell template when the
# rules are parsed, not through a params entry or a {field}: with N = 1 the template is still exactly
# `python -m repro...`, so Snakemake's code and params rerun triggers see no change and nothing reruns
# (changing N does change the template: those jobs then rerun unless `--rerun-triggers` leaves out code).
# The same rules declare resources gpu=GPUS_PER_JOB and cpus_per_task=ddp_cpus (N x threads, since
# each rank runs `--threads {threads}`): sbatch --gpus and --cpus-per-task on SLURM; locally they
# limit nothing unless given to --resources (e.g. `--resources gpu=2` on a 2-GPU workstation).
GPUS_PER_JOB = config["gpus_per_job"]
# The longest chain of the DAG (videos -> mining -> context net -> graph -> pretraining -> TI transfer)
# runs first: its rules carry this priority, so with few cores the independent stages (LARS, GANs, the
# detectors, quantization) fill the cores around it instead of leaving the chain to run alone at the end.
CHAIN_PRIORITY = 10
# Then the longest jobs beside it (the detectors' and the LARS cells' training, 0.5-2 min each in the
# embedded default) start before the short ones (GAN arms, quantization, aggregates), so the short jobs
# fill both cores at the end instead of one 2-min detector training alone beside an idle core.
LONG_JOB_PRIORITY = 5
TRAIN_PY = (
    "python -m"
    if GPUS_PER_JOB == 1
    else f"torchrun --standalone --nproc_per_node={GPUS_PER_JOB} -m"
)


def ddp_shell(cmd):
    """Shell template of a DDP training rule: `<TRAIN_PY> repro.<stage> ...` (cmd starts at the module)."""
    return f"{TRAIN_PY} {cmd}"


def ddp_cpus(wildcards, threads):
    """CPUs of a DDP training job: `threads` torch threads for each of its GPUS_PER_JOB ranks."""
    return threads * GPUS_PER_JOB


def as_json(obj):
    """A config section as one JSON word for a stage CLI's --config."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def raw_dataset(name):
    """Folder of a downloaded dataset; fails early if the config has no download entry for it."""
    if name not in config.get("downloads", {}):
        raise ValueError(
            f"config key 'downloads.{name}' is missing but a data source needs it"
        )
    return f"results/data/raw/{name}"


def videos_input():
    """Synthetic videos or the downloaded/local video folder, as data.videos.source says."""
    if config["data"]["videos"]["source"] == "synthetic":
        return "results/data/videos"
    return raw_dataset("videos")


def detection_input():
    """Synthetic COCO-format set, or COCO 2017 / VOC 2007 as data.detection.source says."""
    source = config["data"]["detection"]["source"]
    return "results/data/detection" if source == "synthetic" else raw_dataset(source)


IMAGENET_TARS = os.path.expanduser(
    config["data"]["classification"].get("imagenet_tars", "")
)


def imagenet_archives(wildcards):
    """The user's ILSVRC2012 release tars (data.classification.imagenet_tars); a missing one stops the
    DAG with its name and md5."""
    from repro.data.imagenet import archive_paths

    if not IMAGENET_TARS:
        raise ValueError(
            "config key 'data.classification.imagenet_tars' is missing: source imagenet needs the folder"
            " holding the ILSVRC2012 release tars"
        )
    md5 = config["data"]["classification"].get("imagenet_md5")
    return [str(p) for p in archive_paths(IMAGENET_TARS, md5).values()]


def classification_input():
    """The LARS study's data: synthetic set, CIFAR-10 download or unpacked ImageNet (data.smk)."""
    source = config["data"]["classification"]["source"]
    if source == "imagenet":
        return "results/data/imagenet"
    return (
        "results/data/classification.npz"
        if source == "synthetic"
        else raw_dataset(source)
    )


def gan_small_group(wildcards):
    """Group `gan_small` for the small experiments' GAN training jobs when the run bundles that group."""
    from repro.gan.plan import SMALL_EXPERIMENTS

    bundle = "gan_small" in (workflow.group_settings.group_components or {})
    return "gan_small" if bundle and wildcards.experiment in SMALL_EXPERIMENTS else None


def gan_train_inputs(wildcards):
    """The dataset and, for image experiments, the scorer a GAN training job reads (gan.smk's tables)."""
    scorer = GAN_SCORER_OF.get(wildcards.experiment)
    return {
        "data": GAN_DATA[wildcards.experiment],
        "scorer": [] if scorer is None else f"results/gan/{scorer}/scorer.pt",
    }


# Each stage's .smk registers its final outputs here with `register_targets(...)`;
# `rule all` (defined after the includes) builds all of them.
STAGE_TARGETS = []


def register_targets(*paths):
    STAGE_TARGETS.extend(paths)


def report_claims(wildcards):
    """Claims files the stages registered (input of rule report)."""
    return sorted(
        t
        for t in STAGE_TARGETS
        if t.startswith("results/claims/") and t.endswith(".json")
    )


def report_figures(wildcards):
    """Figures the stages registered (embedded in the report)."""
    return sorted(str(t) for t in STAGE_TARGETS if str(t).endswith((".png", ".svg")))


def final_outputs():
    """The default target's inputs, i.e. the outputs of every stage that exists."""
    outs = [
        videos_input(),
        detection_input(),
        classification_input(),
        "results/data/mixtures",
        "results/data/digits.npz",
    ]
    outs += [f"results/data/raw/{name}" for name in DOWNLOADS]
    outs += STAGE_TARGETS
    return list(dict.fromkeys(outs))
