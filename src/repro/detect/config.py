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


def transfer_config(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The section one TI transfer data set's jobs get: ``transfer`` with that data set's schedule on top
    (the paper's per-table schedules, ``transfer.schedules``) and ``data_source`` set to it."""
    t = cfg["transfer"]
    own = {k: v for k, v in t.items() if k not in ("datasets", "schedules")}
    return {k: v for k, v in cfg.items() if k not in RULE_KEYS} | {
        "transfer": own | t.get("schedules", {}).get(dataset, {}) | {"data_source": dataset}}


def check_transfer_datasets(cfg: dict[str, Any], detection_source: str) -> None:
    """The synthetic transfer set is the detection data itself: it needs ``data.detection.source: synthetic``."""
    if "synthetic" in cfg["transfer"]["datasets"] and detection_source != "synthetic":
        raise ValueError("detect.transfer.datasets: 'synthetic' needs data.detection.source: synthetic")
