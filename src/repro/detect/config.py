"""The stage's config section (``detect:``), its defaults from the pipeline's schema, and how transfer runs override it."""

from __future__ import annotations

from typing import Any

from repro.common.config import stage_config

# The detection models (config ``detect.models``; the workflow's rules read this too) and the row of the
# paper's tables each reproduces (Table 1 RPN, Table 3 Faster R-CNN).
PAPER_ROWS: dict[str, str] = {
    "c4": "a", "c5": "b", "fpn": "c", "fpn_no_topdown": "d", "fpn_no_lateral": "e", "fpn_p2_only": "f",
}
# FPN with the pooler fixed (RoIAlign vs RoIPool, Mask R-CNN Sec. 3): no row of the FPN tables.
POOLER_ARMS = ("fpn_roi_align", "fpn_roi_pool")
MODELS = (*PAPER_ROWS, *POOLER_ARMS)
TRANSFER_OVERRIDES = ("iterations", "lr", "warmup_iters", "lr_decay_at", "trainable_layers")


# Keys of the `detect:` section that only the Snakemake rules read (threads per job): accepted and dropped,
# so a config.yaml section can be passed whole (the rules pass it without them, see detect.smk).
RULE_KEYS = ("threads",)


def resolve_config(cfg: dict[str, Any], *, transfer: bool = False) -> dict[str, Any]:
    """The stage config checked and completed from the schema; with ``transfer`` the ``transfer`` overrides on top."""
    out = stage_config(cfg, "detect", ignore=RULE_KEYS)
    if transfer:
        out.update({k: out["transfer"][k] for k in TRANSFER_OVERRIDES})
    return out
