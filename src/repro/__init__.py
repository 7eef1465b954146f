"""repro: a Snakemake pipeline that re-runs six deep-learning papers at laptop or cluster scale.

Stages exchange files through the workflow's rules. In code a stage imports only :mod:`repro.common`
(the seams every stage shares), its own modules, and what another stage offers in :data:`PUBLIC_API`;
``tests/test_boundaries.py`` fails on any other cross-stage import.
"""

__version__ = "0.1.0"

# What one stage offers others, and why (each module documents its contract).
PUBLIC_API: dict[str, str] = {
    "repro.data.imagenet": "the ILSVRC2012 release, verified and unpacked, as image files and labels",
    "repro.data.readers": "readers of the real datasets' release formats (CIFAR-10, MNIST, the npz splits)",
    "repro.detect.backbone": "the backbone whose state_dict pretraining writes and detection loads",
    "repro.lars.plan": "the cells of the LARS study and their LR grids (the rules schedule them, the report prices them)",
    "repro.lars.optim": "the LARS optimizer and its warm-up + polynomial schedule",
}
