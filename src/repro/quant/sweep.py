"""One net's quantization sweep: every method x rate, coded with fixed-length and Huffman codes.

For each quantization of all (kept) parameters together the record holds: the number of clusters,
the index entropy, fixed-length bits ceil(log2 k), Huffman's average codeword length, the compression
ratio of both codes (codebook and code table counted, pruning index bits added for pruned nets,
:func:`repro.quant.coding.compression_ratio`), test accuracy and cross-entropy, the same after
fine-tuning the shared values (optional), the Hessian-weighted distortion D_h under the exact
Hessian and the second-order loss increase it predicts, 1/2 D_h (paper Sec. 3.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
from repro.quant.kmeans1d import prepare
from repro.quant.quantizers import Quantization, ecsq_quantize, kmeans_quantize, uniform_quantize

METHODS = ("kmeans", "hw_kmeans", "hw_kmeans_adam", "uniform", "ecsq")
KMEANS_HESSIAN = {"kmeans": None, "hw_kmeans": "exact", "hw_kmeans_adam": "adam"}


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
    if ctx.finetune.get("enabled", False) and int(record["init"]) < int(ctx.finetune["inits"]):
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
    """All methods of ``methods`` over ``cfg['kmeans']['ks']`` / ``cfg['rates']`` for one net."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown quantization methods {unknown}; expected some of {METHODS}")
    km = cfg["kmeans"]
    sorted_by = {name: prepare(w, None if name is None else ctx.hessians[name]) for name in (None, "exact", "adam")}
    records: list[dict] = []
    for method in methods:
        t_method = time.perf_counter()
        if method in KMEANS_HESSIAN:
            hname = KMEANS_HESSIAN[method]
            for r in range(inits):
                for k in km["ks"]:
                    # the same generator for every k-means variant: paired comparisons share the seeding
                    rng = np.random.default_rng([ctx.seed, r, int(k)])
                    t0 = time.perf_counter()
                    q = kmeans_quantize(w, None, int(k), init=km["init"], n_init=int(km["n_init"]), rng=rng,
                                        dp_bins=int(km["dp_bins"]), sw=sorted_by[hname])
                    dt = time.perf_counter() - t0
                    records.append(score(ctx, w, q, {"sweep": tag, "method": method, "hessian": hname or "none",
                                                     "init": r, "target": int(k), "quantize_s": dt}))
        else:
            for rate in cfg["rates"]:
                t0 = time.perf_counter()
                if method == "uniform":
                    q = uniform_quantize(w, ctx.hessians["exact"], float(rate), sw=sorted_by["exact"])
                else:
                    e = cfg["ecsq"]
                    q = ecsq_quantize(w, ctx.hessians["exact"], float(rate), init_clusters=int(e["init_clusters"]) or None,
                                      tol=float(e["rate_tol"]), max_iter=int(e["max_iter"]), sw=sorted_by["exact"],
                                      device=ctx.x_test.device)
                dt = time.perf_counter() - t0
                records.append(score(ctx, w, q, {"sweep": tag, "method": method, "hessian": "exact", "init": 0,
                                                 "target": float(rate), "quantize_s": dt}))
        log(f"[{tag}] {method}: {time.perf_counter() - t_method:.2f} s")
    return records


def position_cost(layout: Layout, max_gap: int) -> CodeCost:
    kept = layout.kept.cpu().numpy()
    return index_cost(None if kept.all() else kept, max_gap)
