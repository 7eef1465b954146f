"""The stage's config section (``detect:``): the embedded default and how transfer runs override it."""

from __future__ import annotations

from typing import Any

# The embedded default (config.yaml `detect:`), so the CLI also runs outside Snakemake; the schema
# (workflow/schemas/config.schema.yaml) documents every key and a test keeps the two in sync.
DEFAULTS: dict[str, Any] = {
    "models": ["fpn", "c4", "c5"],
    "seeds": [0, 1],
    "backbone": "tiny_resnet",
    "width": 16,
    "blocks": [1, 1, 1, 1],
    "imagenet_weights": None,
    "trainable_layers": 5,
    "min_size": 256,
    "max_size": 256,
    "fpn_channels": 64,
    "anchor_sizes": [16, 32, 64, 128, 256],
    "aspect_ratios": [0.5, 1.0, 2.0],
    "canonical_scale": None,
    "pooler": "roi_align",
    "sampling_ratio": 2,
    "representation_size": 256,
    "rpn_pre_nms_top_n_train": 1000,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000,
    "single_map_rpn": {"pre_nms_top_n_train": 6000, "post_nms_top_n_train": 300, "pre_nms_top_n_test": 6000,
                       "post_nms_top_n_test": 1000},
    "rpn_batch_size_per_image": 256,
    "box_batch_size_per_image": 128,
    "box_proposals_test": 300,
    "box_detections_per_img": 100,
    "box_score_thresh": 0.05,
    "batch_size": 4,
    "iterations": 400,
    "lr": 0.02,
    "momentum": 0.9,
    "weight_decay": 1.0e-4,
    "warmup_iters": 50,
    "warmup_factor": 0.001,
    "lr_decay_at": [0.75],
    "lr_gamma": 0.1,
    "grad_clip": 10.0,
    "hflip": True,
    "checkpoint_every": 100,
    "eval_batch_size": 4,
    "max_val_images": None,
    "skip_empty_train": False,
    "cache_images": True,
    "num_workers": 0,
    "amp": "auto",
    "transfer": {
        "arms": ["scratch", "intra", "transitive"],
        "seeds": [0, 1],
        "model": "fpn",
        "data_source": "same",
        "iterations": 400,
        "lr": 0.02,
        "warmup_iters": 50,
        "lr_decay_at": [0.75],
        "trainable_layers": 5,
    },
}
TRANSFER_OVERRIDES = ("iterations", "lr", "warmup_iters", "lr_decay_at", "trainable_layers")


# Keys of the `detect:` section that only the Snakemake rules read (threads per job): accepted and dropped,
# so a config.yaml section can be passed whole (the rules pass it without them, see detect.smk).
RULE_KEYS = ("threads",)


def resolve_config(cfg: dict[str, Any], *, transfer: bool = False) -> dict[str, Any]:
    """The stage config over :data:`DEFAULTS`; with ``transfer`` the ``transfer`` section's overrides on top."""
    cfg = {k: v for k, v in cfg.items() if k not in RULE_KEYS}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"detect config: unknown keys {unknown}")
    out = {**DEFAULTS, **cfg, "transfer": {**DEFAULTS["transfer"], **cfg.get("transfer", {})},
           "single_map_rpn": {**DEFAULTS["single_map_rpn"], **cfg.get("single_map_rpn", {})}}
    if transfer:
        out.update({k: out["transfer"][k] for k in TRANSFER_OVERRIDES})
    return out
