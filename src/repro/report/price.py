"""The price of a run in GPU-hours, per training rule and in total (pure functions of the config).

Every training rule's jobs are counted from the resolved config (``workflow/configs/full.yaml`` over
``config.yaml`` for a full run) and priced by one of three bases, best first:

* **measured**: seconds per iteration from ``results/bench_gpu.json`` (``python -m bench.gpu``), in the
  stage's precision (``amp: auto`` -> the AMP figure, ``off`` -> fp32), named with the GPU it ran on.
  Sizes there are the full-scale ones, so a job costs ``iterations x seconds per iteration x (global
  batch / measured batch)``; a rule whose model was not measured but has a measured sibling of similar
  cost (C5 and the FPN ablations from FPN/C4, Stacked MNIST from MNIST) says "proxy";
* **estimated (paper)**: the paper's own hardware and schedule, where it states them. FPN (1612.03144
  Sec. 4.1 and 5.2): "Synchronized SGD is used to train the model on 8 GPUs. Each mini-batch involves 2
  image per GPU", 80k iterations, and "Training Fast R-CNN with FPN takes about 10 hours on the COCO
  dataset": 8 GPUs x 10 h / 80k iterations at batch 16 = 3.6 GPU-seconds per iteration, used for every
  detector (the C4/C5 heads and the ablations are priced alike: the paper gives no separate times) and,
  per iteration, for the TI transfer (1708.02901 Sec. 4: "8 GPUs, 35K iterations", no time stated);
* **estimated (FLOPs)**: where the paper states no training time (LARS 1708.03888, quantization
  1612.01543, MGAN 1708.02556, Mode-regularized GAN 1612.02136, TI pretraining 1708.02901): 3 x the
  forward FLOPs per sample (counted once with ``torch.utils.flop_counter`` on the full-scale models,
  :data:`FORWARD_GFLOPS`) over :data:`ASSUMED_TFLOPS` sustained, plus :data:`STEP_OVERHEAD_S` per
  optimizer step (kernel launches: the whole cost of the 2-D GANs' tiny MLPs). An assumption, not a
  measurement: run ``python -m bench.gpu`` to replace it.

``gpus_per_job``: each job's batch is split over that many DDP ranks, so its wall time is at best the
GPU-hours per job divided by it (perfect scaling; the GPU-hours stay the same).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ASSUMED_TFLOPS", "RulePrice", "load_bench", "markdown_table", "price_html", "price_rows", "total"]

#: sustained training throughput assumed for FLOP-based estimates: 10 TFLOP/s, about 2/3 of a V100's
#: fp32 peak (15.7) and a small share of newer GPUs', since these small nets rarely fill a GPU
ASSUMED_TFLOPS = 10.0
#: per optimizer step, added to FLOP-based estimates (launch-bound small nets)
STEP_OVERHEAD_S = 0.005
#: the FPN paper's rate: 8 GPUs x 10 h for 80k iterations at batch 16 (1612.03144 Sec. 4.1, 5.2)
FPN_PAPER_GPU_S_PER_ITER = 8 * 10 * 3600 / 80_000
FPN_PAPER_BATCH = 16
#: forward GFLOPs per sample of the full-scale models (torch.utils.flop_counter, 2 FLOPs per multiply-add)
FORWARD_GFLOPS = {
    "alexnet_cifar": 0.203,   # lars.conv [64, 192, 384, 256, 256], fc 1024, 32 px (both variants)
    "resnet32": 0.138,        # quant ResNet-32, 32 px
    "lenet5": 0.0046,         # quant LeNet-5, 28 px
    "dcgan128_g": 0.216,      # MGAN CIFAR-10 generator (width 128), one sample
    "dcgan128_d": 0.215,      # its discriminator, one 3 x 32 x 32 image
    "dcgan64_g": 0.054,       # MNIST DCGAN generator (width 64)
    "dcgan64_d": 0.053,
    "resnet50_96": 1.51,      # ResNet-50 on a 96 px patch (TI pretraining at full scale)
}
TRAIN_FACTOR = 3.0  # forward + backward ~ 3 x forward


@dataclass(frozen=True)
class RulePrice:
    """One training rule's jobs and their cost."""

    rule: str
    jobs: int
    gpu_hours_per_job: float
    basis: str  # how it was priced (measured on ... / estimated ...)
    measured: bool

    @property
    def gpu_hours(self) -> float:
        return self.jobs * self.gpu_hours_per_job

    def wall_hours_per_job(self, gpus_per_job: int) -> float:
        """Wall hours of one job on ``gpus_per_job`` GPUs (perfect DDP scaling: a lower bound)."""
        return self.gpu_hours_per_job / max(1, int(gpus_per_job))


def load_bench(path: str | Path | None) -> dict[str, Any] | None:
    """The GPU check's JSON, or None when absent or a CPU self-test (whose times price nothing)."""
    if path is None or not Path(path).is_file():
        return None
    doc = json.loads(Path(path).read_text())
    return None if doc.get("self_test") else doc


def _measured(bench: Mapping[str, Any] | None, case: str, amp: Any) -> float | None:
    """Seconds per iteration of a bench case in the stage's precision (None if not measured)."""
    if not bench:
        return None
    entry = bench.get("steps", {}).get(case, {})
    key = "fp32_s_per_iter" if amp in ("off", False) else "amp_s_per_iter"
    value = entry.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _gpu_name(bench: Mapping[str, Any] | None) -> str:
    return str((bench or {}).get("environment", {}).get("gpu_name", "GPU"))


def _flops_hours(samples: float, gflops_per_sample: float, steps: float) -> float:
    seconds = TRAIN_FACTOR * gflops_per_sample * 1e9 * samples / (ASSUMED_TFLOPS * 1e12) + STEP_OVERHEAD_S * steps
    return seconds / 3600


FLOPS_BASIS = f"estimated (FLOPs at {ASSUMED_TFLOPS:g} TFLOP/s + {STEP_OVERHEAD_S * 1e3:g} ms/step)"


def _detect_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None) -> list[RulePrice]:
    d = cfg["detect"]
    batch, iters = int(d["batch_size"]), int(d["iterations"])
    per_img = int((bench or {}).get("images_per_gpu", 2))
    rows = []
    seeds = len(d["seeds"])
    for model in d["models"]:
        case = "detect_c4" if model in ("c4", "c5") else "detect_fpn"
        s = _measured(bench, case, d.get("amp", "auto"))
        if s is not None:
            proxy = "" if model in ("fpn", "c4") else f", {case.split('_')[1].upper()} as proxy"
            hours = iters * s * batch / per_img / 3600
            basis, measured = f"measured on {_gpu_name(bench)}{proxy}", True
        else:
            hours = iters * FPN_PAPER_GPU_S_PER_ITER * batch / FPN_PAPER_BATCH / 3600
            basis, measured = "estimated (paper: FPN, 8 GPUs x 10 h / 80k it)", False
        rows.append(RulePrice(f"detect train {model}", seeds, hours, basis, measured))
    t = d.get("transfer") or {}
    if t.get("arms"):
        t_iters = int(t.get("iterations", iters))
        s = _measured(bench, "detect_fpn", d.get("amp", "auto"))
        if s is not None:
            hours, basis, measured = t_iters * s * batch / per_img / 3600, f"measured on {_gpu_name(bench)}", True
        else:
            hours = t_iters * FPN_PAPER_GPU_S_PER_ITER * batch / FPN_PAPER_BATCH / 3600
            basis, measured = "estimated (paper: FPN rate per iteration)", False
        rows.append(RulePrice(f"detect transfer {t.get('model', 'fpn')}", len(t["arms"]) * len(t.get("seeds", [0])),
                              hours, basis, measured))
    return rows


def _lars_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None) -> list[RulePrice]:
    from repro.lars.plan import cells, runs_of

    lc = cfg["lars"]
    n_images = 50_000 * (1 - float(lc["val_fraction"])) if cfg.get("scale") == "full" else 0
    n_train = cfg.get("data", {}).get("classification", {}).get("n_train", 50_000)
    n_images = n_images or float(n_train) * (1 - float(lc["val_fraction"]))
    micro = int(lc["micro_batch"])
    s = _measured(bench, "lars_alexnet_bn", lc.get("amp", "auto"))
    jobs, hours = 0, 0.0
    for model, arm, batch, epochs in cells(lc):
        runs = runs_of(lc, model, arm)
        images = runs * epochs * n_images
        steps = runs * epochs * math.ceil(n_images / batch)
        hours += images * s / micro / 3600 if s is not None else _flops_hours(images, FORWARD_GFLOPS["alexnet_cifar"],
                                                                              steps)
        jobs += 1
    basis = f"measured on {_gpu_name(bench)}" if s is not None else FLOPS_BASIS
    return [RulePrice("lars cell", jobs, hours / max(jobs, 1), basis, s is not None)]


def _quant_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None) -> list[RulePrice]:
    q = cfg["quant"]
    sizes = {"mnist": 60_000, "cifar10": 50_000, "digits": 1_258, "imagenet": 1_281_167}
    model_flops = {"resnet32": "resnet32", "lenet5": "lenet5"}
    rows = []
    for name, net in q["nets"].items():
        if not net.get("enabled", True) or "model" not in net:
            continue
        n = sizes.get(net["dataset"], 50_000)
        epochs = int(net["epochs"]) + (int(net.get("prune_epochs", 0)) if q.get("prune", {}).get("enabled", True) else 0)
        steps = epochs * math.ceil(n / int(net["batch_size"]))
        s = _measured(bench, "quant_resnet32", q.get("amp", "auto")) if net["model"] == "resnet32" else None
        if s is not None:
            hours, basis = steps * s / 3600, f"measured on {_gpu_name(bench)}"
        elif net["model"] in model_flops:
            hours, basis = _flops_hours(epochs * n, FORWARD_GFLOPS[model_flops[net["model"]]], steps), FLOPS_BASIS
        else:
            hours, basis = STEP_OVERHEAD_S * steps / 3600, f"estimated ({STEP_OVERHEAD_S * 1e3:g} ms/step, small MLP)"
        rows.append(RulePrice(f"quant run {name}", len(q["seeds"]), hours, basis, s is not None))
    return rows


def _gan_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None) -> list[RulePrice]:
    from repro.common.config import with_defaults

    g = with_defaults(cfg["gan"], "gan")
    seeds = int(g["seeds"]) if isinstance(g["seeds"], int) else len(g["seeds"])
    rows = []
    for name in g["run"]:
        exp = with_defaults(g["experiments"][name], f"gan.experiments.{name}")
        steps = int(exp["steps"])
        for arm in exp["arms"]:
            if exp["model"] == "dcgan":
                case = {"cifar10": f"gan_cifar10_{'mgan' if arm.startswith('mgan') else 'gan'}"}.get(name, "gan_mnist_gan")
                s = _measured(bench, case, g.get("amp", "auto"))
                if s is not None:
                    proxy = "" if case.endswith(f"{name}_{arm}") else f", {case[4:]} as proxy"
                    rows.append(RulePrice(f"gan train {name}/{arm}", seeds, steps * s / 3600,
                                          f"measured on {_gpu_name(bench)}{proxy}", True))
                    continue
                w = "128" if int(exp["width"]) >= 128 else "64"
                k = int(exp["n_generators"]) if arm.startswith("mgan") else 1
                fakes = k * (int(exp["fakes_per_generator"] or 0) or math.ceil(int(exp["batch_size"]) / k))
                per_step = (FORWARD_GFLOPS[f"dcgan{w}_g"] * fakes
                            + FORWARD_GFLOPS[f"dcgan{w}_d"] * (int(exp["batch_size"]) + 2 * fakes))
                extra = 1.5 if arm in ("reggan", "reggan_sum", "mdgan") else 1.0  # encoder / second D
                rows.append(RulePrice(f"gan train {name}/{arm}", seeds,
                                      extra * _flops_hours(steps, per_step, 2 * steps), FLOPS_BASIS, False))
            else:
                rows.append(RulePrice(f"gan train {name}/{arm}", seeds, STEP_OVERHEAD_S * 4 * steps / 3600,
                                      f"estimated ({STEP_OVERHEAD_S * 1e3:g} ms per optimizer step, MLPs)", False))
    return rows


def _pretrain_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None) -> list[RulePrice]:
    p = cfg["pretrain"]
    trained = [a for a in p["arms"] if a != "scratch"]  # scratch saves its initial weights, no training
    steps, batch = int(p["steps"]), int(p["batch"])
    jobs = len(trained) * len(p["seeds"])
    resnet50 = cfg.get("detect", {}).get("backbone") == "resnet50"
    s = _measured(bench, "pretrain_resnet50", p.get("amp", "auto")) if resnet50 else None
    if s is not None:
        return [RulePrice("pretrain train", jobs, steps * s / 3600, f"measured on {_gpu_name(bench)}", True)]
    gflops = FORWARD_GFLOPS["resnet50_96"] if resnet50 else 0.0
    return [RulePrice("pretrain train", jobs, _flops_hours(2 * batch * steps, gflops, steps), FLOPS_BASIS, False)]


def price_rows(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None = None) -> list[RulePrice]:
    """Every training rule of ``cfg`` (the resolved config; stages without a section are left out) priced
    (module docstring)."""
    builders = {"detect": _detect_rows, "pretrain": _pretrain_rows, "lars": _lars_rows, "quant": _quant_rows,
                "gan": _gan_rows}
    return [row for section, build in builders.items() if section in cfg for row in build(cfg, bench)]


def total(rows: Sequence[RulePrice]) -> float:
    """GPU-hours of all the rows."""
    return sum(r.gpu_hours for r in rows)


def _grouped(rows: Sequence[RulePrice]) -> list[RulePrice]:
    """Rows of one stage and basis kind merged (the README's short table): jobs and GPU-hours summed."""
    out: dict[tuple[str, bool], list[RulePrice]] = {}
    for r in rows:
        out.setdefault((r.rule.split(" ")[0] + " " + r.rule.split(" ")[1], r.measured), []).append(r)
    merged = []
    for (name, measured), group in out.items():
        jobs = sum(r.jobs for r in group)
        bases = sorted({r.basis for r in group})
        merged.append(RulePrice(name, jobs, sum(r.gpu_hours for r in group) / jobs, "; ".join(bases), measured))
    return merged


def markdown_table(rows: Sequence[RulePrice], *, gpus: Sequence[int] = (1, 8), grouped: bool = True) -> str:
    """A Markdown table: rule, jobs, GPU-hours, longest job's wall hours at each of ``gpus``, basis."""
    shown = _grouped(rows) if grouped else list(rows)
    head = "| rule | jobs | GPU-hours | " + " | ".join(f"h/job, {g} GPU{'s' * (g > 1)}" for g in gpus) + " | basis |"
    lines = [head, "|" + "---|" * (4 + len(gpus))]
    for r in shown:
        walls = " | ".join(f"{r.wall_hours_per_job(g):,.1f}" for g in gpus)
        lines.append(f"| {r.rule} | {r.jobs} | {r.gpu_hours:,.0f} | {walls} | {r.basis} |")
    lines.append(f"| **total** | {sum(r.jobs for r in shown)} | **{total(rows):,.0f}** | "
                 + " | ".join("" for _ in gpus) + " | |")
    return "\n".join(lines)


def price_html(cfg: Mapping[str, Any], bench: Mapping[str, Any] | None = None, *, gpus: Sequence[int] = (1, 4, 8)
               ) -> str:
    """The report's section: every rule's GPU-hours and wall hours per job at ``gpus`` GPUs per job."""
    rows = price_rows(cfg, bench)
    head = "".join(f"<th>h per job, {g} GPU{'s' * (g > 1)}</th>" for g in gpus)
    body = []
    for r in rows:
        walls = "".join(f"<td class='num'>{r.wall_hours_per_job(g):,.2f}</td>" for g in gpus)
        body.append(f"<tr><td>{html.escape(r.rule)}</td><td class='num'>{r.jobs}</td>"
                    f"<td class='num'>{r.gpu_hours:,.1f}</td>{walls}<td>{html.escape(r.basis)}</td></tr>")
    n_measured = sum(r.measured for r in rows)
    return (f"<h2>Price of this run</h2><p>GPU-hours per training rule for this config ({len(rows)} rules, "
            f"{n_measured} priced from measured step times, the rest estimated; see <code>repro.report.price</code>)."
            " Wall hours per job assume perfect DDP scaling over <code>gpus_per_job</code>; GPU-hours do not change."
            f"</p><table><tr><th>rule</th><th>jobs</th><th>GPU-hours</th>{head}<th>basis</th></tr>{''.join(body)}"
            f"<tr><th>total</th><td></td><th class='num'>{total(rows):,.0f}</th>{'<td></td>' * len(gpus)}<td></td></tr>"
            "</table>")


def main(argv: list[str] | None = None) -> int:
    """``python -m repro.report.price [--bench results/bench_gpu.json]``: the README's table for full.yaml."""
    import argparse

    from repro.common.config import merged_config

    root = Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(prog="python -m repro.report.price", description=main.__doc__)
    ap.add_argument("--configs", nargs="+", type=Path,
                    default=[root / "config.yaml", root / "workflow" / "configs" / "full.yaml"])
    ap.add_argument("--bench", type=Path, default=root / "results" / "bench_gpu.json")
    ap.add_argument("--all-rules", action="store_true", help="one row per rule, not per stage")
    args = ap.parse_args(argv)
    rows = price_rows(merged_config(*args.configs), load_bench(args.bench))
    print(markdown_table(rows, grouped=not args.all_rules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
