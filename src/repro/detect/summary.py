"""Summaries over runs: ``results/fpn_coco.json`` (FPN Tables 1 and 3) and ``results/ti_transfer_<data set>.json``.

Our values are fractions in [0, 1]. The paper's tables are kept in % in ``paper_reference`` (read from
``repro/common/paper_values``), exactly as printed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.common.claims import ClaimRow, ci95
from repro.common.io import read_json
from repro.common.paper_values import all_paper_values
from repro.common.provenance import provenance_record
from repro.detect.claims import (
    ARM_PAPER_ROW,
    FPN_CLAIMS,
    POOLER_CLAIM_ID,
    TRANSFER_FAMILIES,
    claim_rows,
    not_run_row,
    pooler_claim,
    timing_row,
    transfer_claims,
)
from repro.detect.config import PAPER_ROWS, resolve_config
from repro.detect.metrics import BBOX_STATS, RPN_KEYS

UNITS = ("AP/AR/mAP values are fractions in [0, 1]: means over seeds (null where a size bucket has no ground"
         " truth), per-seed values under runs (-1 there, as pycocotools); paper_reference holds the paper's %")
DELTA_KEYS = (("bbox", "AP"), ("bbox", "AP_s"), ("rpn", "AR1k"), ("rpn", "AR1k_s"))
_RUN_META = ("iters", "batch_size", "image_size", "backbone", "pretrained", "pooler", "canonical_scale",
             "anchor_sizes", "n_train_images", "n_val_images", "device", "threads", "rpn_budget")


def flatten(run: dict[str, Any]) -> dict[str, float]:
    """``{"bbox.AP": ..., "rpn.AR1k": ..., "voc_map50": ...}`` of one run's metrics JSON."""
    out = {f"bbox.{k}": float(v) for k, v in run["bbox"].items()}
    out.update({f"rpn.{k}": float(v) for k, v in run["rpn"].items()})
    out["voc_map50"] = float(run.get("voc_map50", float("nan")))
    return out


def _load(paths: Sequence[Path], key: str) -> dict[str, dict[int, dict[str, Any]]]:
    """Runs grouped by ``key`` (model or arm), then seed. Duplicates are an error."""
    grouped: dict[str, dict[int, dict[str, Any]]] = {}
    for p in paths:
        run = read_json(p)
        for field in (key, "seed", "bbox", "rpn"):
            if run.get(field) is None:
                raise ValueError(f"{os.fspath(p)}: not a detection metrics file (no {field!r})")
        name, seed = str(run[key]), int(run["seed"])
        if seed in grouped.setdefault(name, {}):
            raise ValueError(f"{os.fspath(p)}: a second run of {key} {name!r} seed {seed}")
        grouped[name][seed] = run
    return grouped


def _mean_ci(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    return ci95([v for v in values if v is not None and math.isfinite(v) and v >= 0])


def _summarise(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    seeds = sorted(runs)
    entry: dict[str, Any] = {"seeds": seeds}
    for group, keys in (("bbox", BBOX_STATS), ("rpn", RPN_KEYS)):
        stats = {k: _mean_ci([runs[s][group][k] for s in seeds]) for k in keys}
        entry[group] = {k: m for k, (m, _) in stats.items()}
        entry[f"{group}_ci95"] = {k: ci for k, (_, ci) in stats.items()}
    entry["voc_map50"], entry["voc_map50_ci95"] = _mean_ci([runs[s].get("voc_map50", float("nan")) for s in seeds])
    for k in ("train_s", "infer_s_per_img"):
        entry[k] = sum(runs[s][k] for s in seeds) / len(seeds)
    counts = [runs[s]["proposals_per_image"] for s in seeds if "proposals_per_image" in runs[s]]
    if counts:  # test-time proposals per image over every seed: mean of the means, the smallest of all
        entry["proposals_per_image"] = {"mean": sum(c["mean"] for c in counts) / len(counts),
                                        "min": min(c["min"] for c in counts)}
    first = runs[seeds[0]]
    entry.update({k: first.get(k) for k in _RUN_META})
    entry["runs"] = [{"seed": s, "bbox": runs[s]["bbox"], "rpn": runs[s]["rpn"], "voc_map50": runs[s].get("voc_map50"),
                      "train_s": runs[s]["train_s"], "infer_s_per_img": runs[s]["infer_s_per_img"]} for s in seeds]
    return entry


def _paper_table(prefix: str, rows: dict[str, str], metrics: dict[str, str]) -> dict[str, Any]:
    """``{row letter: {"model": ..., metric: value %}}`` from the paper_values entries ``<prefix><row>_<metric>``."""
    values = all_paper_values()
    table = {}
    for row, model in rows.items():
        cells = {name: values[f"{prefix}{row}_{key}"]["value"] for name, key in metrics.items()
                 if f"{prefix}{row}_{key}" in values}
        if cells:
            table[row] = {"model": model, **cells}
    return table


def fpn_paper_reference() -> dict[str, Any]:
    """FPN Tables 1 and 3 (ResNet-50, COCO minival, %)."""
    rows = {letter: model for model, letter in sorted(PAPER_ROWS.items(), key=lambda kv: kv[1])}
    return {
        "units": "% (as printed in the paper)",
        "table1_rpn": _paper_table("fpn_t1", rows, {"AR100": "ar100", "AR1k": "ar1k", "AR1k_s": "ar1k_s",
                                                    "AR1k_m": "ar1k_m", "AR1k_l": "ar1k_l"}),
        "table3_faster_rcnn": _paper_table("fpn_t3", rows, {"AP50": "ap50", "AP": "ap", "AP_s": "ap_s",
                                                            "AP_m": "ap_m", "AP_l": "ap_l"}),
    }


def _scale_note(cfg: dict[str, Any], meta: dict[str, Any], n_seeds: int, *,
                pooler: str | None = None) -> str:
    paper_scale = cfg["backbone"] != "tiny_resnet" and cfg["min_size"] >= 800
    other = "" if cfg["backbone"] == "resnet50" else f" with {cfg['backbone']} (the paper: ResNet-50)"
    where = (f"paper-scale run{other}" if paper_scale else
             f"{meta.get('backbone')} trained from scratch on {meta.get('n_train_images')} synthetic-shape images,"
             f" evaluated on {meta.get('n_val_images')} ({cfg['min_size']} px; COCO size buckets unchanged),"
             " vs ResNet-50 ImageNet-initialised on COCO trainval35k/minival at 800 px")
    return (
        f"{where}; {cfg['iterations']} iterations at batch {cfg['batch_size']} (paper 80k at 16); pooler"
        f" {pooler or cfg['pooler']} (paper RoIPool); RPN and head trained jointly with shared features (Table 3 trains"
        f" them unshared, closer to Table 5); anchors {cfg['anchor_sizes']} px and Eq. 1 canonical size"
        f" {meta.get('canonical_scale'):.0f} px (224 scaled to the input); pyramid width d = {cfg['fpn_channels']}"
        " (paper 256); 2-fc head of"
        f" {cfg['representation_size']} (paper 1024); {cfg['box_batch_size_per_image']} RoIs/image (paper 512);"
        f" {cfg['box_proposals_test']} proposals into the head at test, recall over"
        f" {cfg['rpn_post_nms_top_n_test']} (paper 1000); torchvision NMS/top-k defaults. {n_seeds} seed(s),"
        " paired per seed, Student-t 95% CI; verdict 'holds' only if the CI excludes 0."
    )


def budget_note(models: dict[str, dict[str, Any]]) -> str:
    """Each model's RPN budget and the test-time proposals per image it reached (mean, minimum)."""
    parts = []
    for name, m in models.items():
        b, n = m.get("rpn_budget"), m.get("proposals_per_image")
        if not b:
            continue
        got = f"; {n['mean']:.0f} proposals/image at test (min {n['min']})" if n else ""
        parts.append(f"{name}: {b['pre_nms_top_n_train']}/{b['pre_nms_top_n_test']} candidates per"
                     f" {b['pre_nms_per']} before NMS, {b['post_nms_top_n_train']}/{b['post_nms_top_n_test']}"
                     f" after (train/test){got}")
    return ("RPN budgets: " + "; ".join(parts) + ".") if parts else ""


def _deltas(by_model: dict[str, dict[int, dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    seeds = sorted(set(by_model[a]) & set(by_model[b]))
    out = {}
    for group, key in DELTA_KEYS:
        per_seed = [by_model[a][s][group][key] - by_model[b][s][group][key] for s in seeds
                    if by_model[a][s][group][key] >= 0 and by_model[b][s][group][key] >= 0]
        mean, ci = ci95(per_seed)
        out[key] = {"mean": mean, "ci95": ci, "per_seed": per_seed}
    return {"seeds": seeds, **out}


def timing_note(timing: dict[str, Any]) -> str:
    """How the running-time ratio was measured (the scale note of its row)."""
    s = timing["s_per_image"]
    times = ", ".join(f"{m} {v * 1000:.1f} ms" for m, v in sorted(s.items()))
    return (f"Inference s/image of every trained model, measured in one job ({timing['clock']}, {timing['device']},"
            f" {timing['threads']} thread(s), {timing['image_size'][0]} px, {timing['n_images']} val images,"
            f" {timing['rounds']} interleaved rounds, median per model and seed): {times} (mean over seeds);"
            " paper: ResNet-50 at 800 px on one M40 GPU, 0.148 s (FPN) and 0.32 s (C4). Same budgets and"
            " head inputs as the evaluation (box_proposals_test proposals into the head).")


def fpn_summary(paths: Sequence[Path], config: dict[str, Any], *, started: str, timing: Path | None = None
                ) -> tuple[dict[str, Any], list[ClaimRow]]:
    """``fpn_coco.json`` content and the ``claims/fpn.json`` rows from the runs' metrics files (and the
    timing job's JSON, for the Sec. 5.2.1 running-time row)."""
    cfg = resolve_config(config)
    by_model, models, flat, n_seeds = _grouped(paths, "model", PAPER_ROWS)
    deltas = {f"fpn_minus_{b}": _deltas(by_model, "fpn", b) for b in ("c4", "c5")
              if "fpn" in by_model and b in by_model}
    note = _scale_note(cfg, next(iter(models.values())), n_seeds) + " " + budget_note(models)
    rows = claim_rows(FPN_CLAIMS, flat, paper="FPN (arXiv 1612.03144)", scale_note=note)
    pooler = pooler_claim(list(by_model), cfg["pooler"])
    if pooler is not None:
        pooler_note = _scale_note(cfg, models["fpn" if "fpn" in models else pooler.terms[0][1]], n_seeds,
                                  pooler=f"RoIAlign (sampling ratio {cfg['sampling_ratio']}) in one arm, RoIPool in the other")
        rows += claim_rows([pooler], flat, paper="Mask R-CNN (arXiv 1703.06870)",
                           scale_note=pooler_note + " " + budget_note(models))
    else:
        rows.append(not_run_row(POOLER_CLAIM_ID, "COCO AP, FPN with RoIAlign - with RoIPool (fraction)",
                                paper="Mask R-CNN (arXiv 1703.06870)",
                                reason=f"it needs an FPN with each pooler, and detect.models has one (pooler {cfg['pooler']}):"
                                       " add fpn_roi_pool (or fpn_roi_align under pooler roi_pool)."))
    extra: dict[str, Any] = {}
    if timing is not None:
        t = read_json(timing)
        ratios = {int(s): float(v) for s, v in t["fpn_over_c4"].items()}
        if ratios:
            rows.append(timing_row(ratios, paper="FPN (arXiv 1612.03144)", scale_note=timing_note(t)))
        extra["timing"] = {k: t[k] for k in ("units", "clock", "device", "threads", "image_size", "n_images",
                                             "rounds", "s_per_image", "per_seed_s_per_image", "fpn_over_c4")}
    summary = {"units": UNITS, "models": models, "deltas": deltas, **extra, "paper_reference": fpn_paper_reference(),
               **_closing(rows, cfg, started)}
    return summary, rows


def _grouped(paths: Sequence[Path], key: str, paper_rows: dict[str, str]):
    """Runs by ``key`` and seed; their per-group summaries; flat metrics for the claims; the fewest seeds."""
    grouped = _load(paths, key)
    entries = {g: {"paper_row": paper_rows.get(g), **_summarise(runs)} for g, runs in sorted(grouped.items())}
    flat = {g: {s: flatten(r) for s, r in runs.items()} for g, runs in grouped.items()}
    return grouped, entries, flat, min(len(r) for r in grouped.values())


def _closing(rows: Sequence[ClaimRow], cfg: dict[str, Any], started: str) -> dict[str, Any]:
    return {"claims": {r.claim_id: r.verdict for r in rows},
            "provenance": provenance_record(cfg, None, started=started, stage="detect")}


def transfer_paper_reference() -> dict[str, Any]:
    """TI Table 1/2 (VOC07 mAP %, Fast R-CNN), Table 3 column "All" (VOC07 mAP %, Faster R-CNN) and Table 4
    (COCO AP %, Faster R-CNN)."""
    values = all_paper_values()

    def cells(*prefixes: str) -> dict[str, float]:
        return {k.split("_", 4)[-1]: v["value"] for k, v in values.items() if k.startswith(prefixes)}

    return {"units": "% (as printed in the paper)",
            "voc07_map50": cells("ti_transfer_t1_voc_", "ti_transfer_t2_voc_"),
            "voc07_map50_faster_rcnn_table3": cells("ti_transfer_t3_voc_"),
            "coco_ap": cells("ti_transfer_t4_coco_")}


def transfer_summary(paths: Sequence[Path], config: dict[str, Any], *, started: str
                     ) -> tuple[dict[str, Any], list[ClaimRow]]:
    """``ti_transfer_<data set>.json`` content and its claims rows (one run per arm and seed), all runs on
    the data set ``transfer.data_source`` names; its rows sit beside the paper table of that protocol
    (:data:`repro.detect.claims.TRANSFER_FAMILIES`)."""
    cfg = resolve_config(config, transfer=True)
    dataset = cfg["transfer"]["data_source"]
    by_arm, arms, flat, n_seeds = _grouped(paths, "arm", ARM_PAPER_ROW)
    meta = next(iter(arms.values()))
    family, _, label = TRANSFER_FAMILIES[dataset]
    table = {"voc2007": "Table 3 (Faster R-CNN, VOC07, column All)", "coco2017": "Table 4 (Faster R-CNN, COCO)",
             "synthetic": "Table 4 (Faster R-CNN, COCO-style AP) for want of a table of its own"}[dataset]
    note = (f"Data: {dataset} ({label}); rows read beside the paper's {table}. Detector {cfg['transfer']['model']}"
            f" fine-tuned with trainable_layers={cfg['trainable_layers']} from each pretraining arm's backbone;"
            f" {meta.get('backbone')} on {meta.get('n_train_images')} images, evaluated on"
            f" {meta.get('n_val_images')}, {cfg['iterations']} iterations (paper: VGG16 for every tower and"
            " detector). VOC-style mAP@0.5 is the 11-point VOC07 metric computed by pycocotools."
            f" {n_seeds} seed(s), paired per seed, Student-t 95% CI.")
    rows = claim_rows(transfer_claims(list(by_arm), dataset), flat, paper="Transitive Invariance (arXiv 1708.02901)",
                      scale_note=note, config_key="detect.transfer.arms")
    summary = {"units": UNITS, "dataset": dataset, "claims_family": family, "arms": arms,
               "paper_reference": transfer_paper_reference(), **_closing(rows, cfg, started)}
    return summary, rows
