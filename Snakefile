# repro: a reproducibility pipeline for six deep-learning papers (see README.md).
# Thin on purpose: config, validation and helpers live in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: workflow.source_path("config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
