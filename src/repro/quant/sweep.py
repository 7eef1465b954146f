"""One net's quantization sweep: every method x rate, coded with fixed-length and Huffman codes.

k-means and Hessian-weighted k-means run at every k from 2 to ``kmeans.every_k_max`` besides
``kmeans.ks`` (1-D clustering is cheap), so their Huffman operational curve has no gaps of a whole bit
that interpolation would bridge (paper Fig. 1c/d compare the methods at equal average codeword
length). With ``kmeans.init: exact`` every k-means result is the global optimum of its (Hessian-
weighted) objective (:func:`repro.quant.kmeans1d.optimal_kmeans`); with any other seeding each record
carries its gap to that optimum (``gap_to_optimum``).

For each quantization of all (kept) parameters together the record holds: the number of clusters,
the index entropy, fixed-length bits ceil(log2 k), Huffman's average codeword length, the compression
ratio of both codes (codebook and code table counted, pruning index bits added for pruned nets,
:func:`repro.quant.coding.compression_ratio`), test accuracy and cross-entropy, the same after
fine-tuning the shared values (optional), the Hessian-weighted distortion D_h under the exact
Hessian and the second-order loss increase it predicts, 1/2 D_h (paper Sec. 3.1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from repro.quant.coding import (
    CodeCost,
    compression_ratio,
    entropy_bits,
    fixed_length_cost,
    huffman_cost,
    index_cost,
)
from repro.quant.engine import Layout, evaluate, finetune_centres, params_from_values
from repro.quant.kmeans1d import SortedWeights, dp_kmeans, optimal_kmeans, prepare
from repro.quant.quantizers import (
    Quantization,
    ecsq_quantize,
    ecsq_start_clusters,
    kmeans_quantize,
    uniform_quantize,
)

METHODS = ("kmeans", "hw_kmeans", "hw_kmeans_adam", "hw_kmeans_small", "uniform", "ecsq")
# which Hessian weights each k-means variant: none, all sampled training data, Adam (Sec. 3.5), a small sample (Fig. 2)
KMEANS_HESSIAN = {"kmeans": None, "hw_kmeans": "exact", "hw_kmeans_adam": "adam", "hw_kmeans_small": "small"}
EVERY_K = ("kmeans", "hw_kmeans")  # the k-means curves of the Huffman comparison (Fig. 1c/d)
# fine-tuned when fine-tuning is on: the methods of Fig. 1 and Table 1 (no claim reads the others' tuned values)
FINETUNED = ("kmeans", "hw_kmeans", "uniform", "ecsq")
TABLE1 = ("kmeans", "hw_kmeans", "uniform", "ecsq")  # the quantizer columns of Table 1 (the pruned sweep)


def sweep_methods(cfg: dict, tag: str) -> list[str]:
    """The configured methods; the pruned sweep (Table 1 only) runs just the Table 1 columns."""
    return [m for m in cfg["methods"] if tag != "pruned" or m in TABLE1]


def kmeans_ks(cfg: dict, method: str) -> list[int]:
    """Cluster counts of a k-means variant: ``kmeans.ks``, plus every k up to ``every_k_max`` (EVERY_K)."""
    ks = {int(k) for k in cfg["kmeans"]["ks"]}
    if method in EVERY_K:
        ks |= set(range(2, int(cfg["kmeans"].get("every_k_max", 0)) + 1))
    return sorted(ks)


@dataclass
class SweepContext:
    model: nn.Module
    layout: Layout
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    hessians: dict[str, np.ndarray]  # "exact", "adam": [N] positive weights of the kept parameters
    n_params: int  # every parameter of the model
    n_unquantized: int  # parameters stored at 32 bits (not quantized)
    position_code: CodeCost  # pruning index (zero cost when unpruned)
    eval_batch_size: int
    finetune: dict
    seed: int


def pruned_only_ratio(ctx: SweepContext) -> float:
    """CR of the pruned model before quantization (kept parameters at 32 bits + their positions)."""
    n_kept = int(ctx.layout.kept.sum())
    return compression_ratio(ctx.n_params, CodeCost(0.0, 0.0, 0.0), 0,
                             n_unquantized=ctx.n_unquantized + n_kept, position_code=ctx.position_code)


def score(ctx: SweepContext, w: np.ndarray, q: Quantization, record: dict) -> dict:
    """Code, evaluate (and optionally fine-tune) one quantization; returns the completed record."""
    counts = q.counts
    fixed, huff = fixed_length_cost(counts), huffman_cost(counts)
    device = ctx.x_test.device
    dtype = ctx.x_test.dtype
    values = torch.as_tensor(q.values(), dtype=dtype, device=device)
    acc, ce = evaluate(ctx.model, ctx.x_test, ctx.y_test, batch_size=ctx.eval_batch_size,
                       params=params_from_values(ctx.model, ctx.layout, values))
    d_h = float(np.sum(ctx.hessians["exact"] * (w - q.values()) ** 2))
    rec = {
        **record,
        "k": q.k,
        "entropy": entropy_bits(counts),
        "bits_fixed": fixed.mean_length,
        "bits_huffman": huff.mean_length,
        "cr_fixed": compression_ratio(ctx.n_params, fixed, q.k, n_unquantized=ctx.n_unquantized, position_code=ctx.position_code),
        "cr_huffman": compression_ratio(ctx.n_params, huff, q.k, n_unquantized=ctx.n_unquantized, position_code=ctx.position_code),
        "acc": acc,
        "ce": ce,
        "hw_distortion": d_h,
        "predicted_dloss": 0.5 * d_h,
        **{k: v for k, v in q.info.items() if k in ("objective", "step", "lambda", "n_iter")},
    }
    if (ctx.finetune.get("enabled", False) and record["method"] in FINETUNED
            and int(record["init"]) < int(ctx.finetune["inits"])):
        centres = torch.as_tensor(q.centres, dtype=dtype, device=device)
        labels = torch.as_tensor(q.labels, device=device)
        tuned = finetune_centres(
            ctx.model, ctx.layout, centres, labels, ctx.x_train, ctx.y_train,
            epochs=int(ctx.finetune["epochs"]), batch_size=int(ctx.finetune["batch_size"]), lr=float(ctx.finetune["lr"]),
            seed=ctx.seed, optimizer=ctx.finetune["optimizer"], reduce=ctx.finetune["reduce"],
        )
        rec["acc_ft"], rec["ce_ft"] = evaluate(ctx.model, ctx.x_test, ctx.y_test, batch_size=ctx.eval_batch_size,
                                               params=params_from_values(ctx.model, ctx.layout, tuned[labels]))
    return rec


def run_sweep(ctx: SweepContext, w: np.ndarray, cfg: dict, *, methods: list[str], inits: int, tag: str,
              log=print) -> list[dict]:
    """All methods of ``methods`` over :func:`kmeans_ks` / ``cfg['rates']`` for one net."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown quantization methods {unknown}; expected some of {METHODS}")
    missing = sorted({KMEANS_HESSIAN[m] for m in methods if m in KMEANS_HESSIAN} - {None} - set(ctx.hessians))
    if missing:
        raise ValueError(f"quantization methods {methods} need Hessian weights {missing} that were not computed")
    sorted_by = {name: prepare(w, None if name is None else ctx.hessians[name])
                 for name in (None, *ctx.hessians)}
    records: list[dict] = []
    for method in methods:
        t_method = time.perf_counter()
        if method in KMEANS_HESSIAN:
            hname = KMEANS_HESSIAN[method]
            records += _kmeans_records(ctx, w, sorted_by[hname], cfg, method=method, hname=hname, inits=inits, tag=tag)
        else:
            e = cfg["ecsq"]
            if method == "ecsq":  # the starting HW k-means of every rate from one DP pass
                k0s = sorted({ecsq_start_clusters(float(r), int(e["init_clusters"]) or None) for r in cfg["rates"]})
                starts = dp_kmeans(sorted_by["exact"], k0s)
            for rate in cfg["rates"]:
                t0 = time.perf_counter()
                if method == "uniform":
                    q = uniform_quantize(w, ctx.hessians["exact"], float(rate), sw=sorted_by["exact"])
                else:
                    k0 = ecsq_start_clusters(float(rate), int(e["init_clusters"]) or None)
                    q = ecsq_quantize(w, ctx.hessians["exact"], float(rate), init_clusters=k0,
                                      tol=float(e["rate_tol"]), max_iter=int(e["max_iter"]), sw=sorted_by["exact"],
                                      device=ctx.x_test.device, start=starts[k0])
                dt = time.perf_counter() - t0
                records.append(score(ctx, w, q, {"sweep": tag, "method": method, "hessian": "exact", "init": 0,
                                                 "target": float(rate), "quantize_s": dt}))
        log(f"[{tag}] {method}: {time.perf_counter() - t_method:.2f} s")
    return records


def _kmeans_records(ctx: SweepContext, w: np.ndarray, sw: SortedWeights, cfg: dict, *, method: str,
                    hname: str | None, inits: int, tag: str) -> list[dict]:
    """One k-means variant at every k of :func:`kmeans_ks`, each record with its gap to the exact optimum."""
    km = cfg["kmeans"]
    ks = kmeans_ks(cfg, method)
    t0 = time.perf_counter()
    optimum = optimal_kmeans(sw, ks)  # the global optimum of every k: the result (init exact) or the yardstick
    t_opt = time.perf_counter() - t0
    exact = km["init"] == "exact"
    records = []
    for r in range(1 if exact else inits):  # the optimum is deterministic: one run
        for k in ks:
            if exact:
                res, dt = optimum[k], t_opt / len(ks)
                q = Quantization(res.centres, res.labels, {"objective": res.objective, "n_iter": 0})
            else:
                # the same generator for every k-means variant: paired comparisons share the seeding
                rng = np.random.default_rng([ctx.seed, r, k])
                t0 = time.perf_counter()
                q = kmeans_quantize(w, None, k, init=km["init"], n_init=int(km["n_init"]), rng=rng,
                                    dp_bins=int(km["dp_bins"]), sw=sw)
                dt = time.perf_counter() - t0
            best = optimum[k].objective
            gap = q.info["objective"] / best - 1.0 if best > 0 else 0.0
            records.append(score(ctx, w, q, {"sweep": tag, "method": method, "hessian": hname or "none", "init": r,
                                             "target": k, "quantize_s": dt, "optimum": best, "gap_to_optimum": gap}))
    return records


def position_cost(layout: Layout, max_gap: int) -> CodeCost:
    kept = layout.kept.cpu().numpy()
    return index_cost(None if kept.all() else kept, max_gap)


def sweep_net(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Any, cfg: dict[str, Any],
              masks: dict[str, torch.Tensor] | None, *, seed: int, tag: str, inits: int,
              log: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Quantize one trained net with every method of the sweep (``tag``: dense, or pruned with ``masks``).

    Sets up what the quantizers weigh by: the Hessian diagonal over ``hessian.n_samples`` training samples
    and Adam's second moment (Sec. 3.5), and the position code of a pruned net (Sec. 5.3); returns the
    net's unquantized metrics with those set-up details, and one record per (method, rate, seeding).
    """
    from repro.quant.coding import CodeCost
    from repro.quant.engine import evaluate, flat_values, make_layout
    from repro.quant.hessian import net_hessians

    all_names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    names = all_names if cfg["quantize"] == "all" else [n for n in all_names if params[n].dim() > 1]
    layout = make_layout(model, names, masks)
    methods = sweep_methods(cfg, tag)
    hessians, h_info = net_hessians(model, optimizer, layout.names, layout.kept, data.x_train, data.y_train,
                                    cfg["hessian"], seed, log, small="hw_kmeans_small" in methods)
    n_params = sum(p.numel() for p in model.parameters())
    n_unq = sum(params[n].numel() for n in all_names if n not in names)
    pos = position_cost(layout, int(cfg["prune"]["max_gap"])) if masks else CodeCost(0.0, 0.0, 0.0)
    ctx = SweepContext(model=model, layout=layout, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                       y_test=data.y_test, hessians=hessians, n_params=n_params, n_unquantized=n_unq, position_code=pos,
                       eval_batch_size=int(cfg["eval_batch_size"]), finetune=cfg["finetune"], seed=seed)
    w = flat_values(model, layout).double().cpu().numpy()
    acc, ce = evaluate(model, data.x_test, data.y_test, batch_size=int(cfg["eval_batch_size"]))
    log(f"[{tag}] unquantized: acc {acc:.2f}%  CE {ce:.4f}  ({len(w)} quantized parameters of {n_params})")
    records = run_sweep(ctx, w, cfg, methods=methods, inits=inits, tag=tag, log=log)
    meta = {"acc": acc, "ce": ce, "n_params": n_params, "n_quantized": int(len(w)), "n_unquantized": n_unq,
            "hessian": h_info, "position_bits": pos.payload_bits + pos.table_bits,
            "cr_pruned_only": pruned_only_ratio(ctx) if masks else 1.0}
    return meta, records
