"""``python -m bench.gpu`` (``make bench-gpu``): the GPU check, writes ``results/bench_gpu.json``.

    python -m bench.gpu                       # on a CUDA machine: everything below (about 5-8 min on one H200)
    python -m bench.gpu --skip-rules          # without the smoke DAG on the GPU
    python -m bench.gpu --self-test --out /tmp/b.json   # every piece at tiny sizes on the CPU (the suite runs this)

On a CUDA machine:

1. **step times** (:mod:`bench.gpu_steps`): seconds per iteration of the full-scale models at their
   full-scale sizes, through the stages' own training loops, with ``amp: off`` (fp32) and ``amp: auto``
   (bf16 autocast where the GPU supports it, else fp16 + GradScaler; channels-last), and torchvision's
   reference detection step on the same images (fp32, and fp16 + GradScaler as its ``--amp``); each
   entry's ``amp_speedup`` is fp32 / AMP seconds, ``vs_torchvision`` ours / reference in the same mode;
2. **DDP** (:mod:`bench.gpu_ddp`): 2 nccl ranks with SyncBatchNorm against 1 process (skipped, with the
   reason, on a machine with one GPU);
3. **rules**: the smoke config's DAG (every training rule) through Snakemake with the stages on ``cuda``,
   when Snakemake is installed (else recorded as skipped, naming what is missing).

On a machine without CUDA it says so and exits 0 (``--self-test`` runs the same code at tiny sizes on
the CPU, the AMP arm as bf16 autocast on the CPU, to check the plumbing). The JSON holds the GPU's
name, torch/torchvision/CUDA versions and every measurement; :mod:`repro.report.price` reads its step
times to price a full run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import gpu_ddp, gpu_steps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results" / "bench_gpu.json"


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torchvision

    out = {"device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "python": platform.python_version(), "cuda": torch.version.cuda, "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        out.update(gpu_name=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                   bf16_supported=bool(torch.cuda.is_bf16_supported()),
                   gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return out


def _precisions(device: torch.device, self_test: bool):
    """(fp32, AMP) precisions of this device: ``amp: off`` and ``amp: auto``; on the CPU self-test the AMP
    arm is bf16 autocast on the CPU, so the autocast code path runs in the suite."""
    from repro.common.amp import Precision, precision

    if self_test:
        return Precision("cpu"), Precision("cpu", torch.bfloat16, channels_last=True)
    return precision("off", device), precision("auto", device)


def measure_steps(device: torch.device, *, cases: list[str], steps: int, warmup: int, self_test: bool,
                  images_per_gpu: int, log=print) -> dict[str, Any]:
    """Seconds per iteration of each case with and without AMP (errors recorded per case)."""
    full = gpu_steps.full_config()
    fp32, amp = _precisions(device, self_test)
    out: dict[str, Any] = {}
    for name in cases:
        entry: dict[str, Any] = {"amp_mode": amp.describe(), "steps": steps, "warmup": warmup}
        for label, prec in (("fp32", fp32), ("amp", amp)):
            try:
                run = gpu_steps.build_case(name, full, device, prec, tiny=self_test, images_per_gpu=images_per_gpu)
                entry[f"{label}_s_per_iter"] = gpu_steps.seconds_per_iteration(run, device, steps=steps,
                                                                               warmup=warmup)
                if device.type == "cuda":
                    entry[f"{label}_peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                    torch.cuda.reset_peak_memory_stats(device)
            except Exception as exc:  # noqa: BLE001 - one case failing must not hide the others
                entry[f"{label}_error"] = f"{type(exc).__name__}: {exc}"[:500]
                log(traceback.format_exc())
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        if "fp32_s_per_iter" in entry and "amp_s_per_iter" in entry:
            entry["amp_speedup"] = entry["fp32_s_per_iter"] / entry["amp_s_per_iter"]
        if name == "detect_tv_reference":  # the references' --amp: fp16 (bf16 on the CPU self-test)
            entry["amp_mode"] = f"{'fp16' if device.type == 'cuda' else 'bf16'} autocast, GradScaler (references --amp)"
        out[name] = entry
        log(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
    ref = out.get("detect_tv_reference", {})
    for name in ("detect_fpn",):
        for label in ("fp32", "amp"):
            ours, theirs = out.get(name, {}).get(f"{label}_s_per_iter"), ref.get(f"{label}_s_per_iter")
            if ours and theirs:
                out[name][f"{label}_vs_torchvision"] = ours / theirs
    return out


def run_rules(device: torch.device, *, cores: int, timeout: float, log=print) -> dict[str, Any]:
    """The smoke DAG's rules (training included) through Snakemake, in a scratch copy's results/."""
    missing = [m for m in ("snakemake", "jsonschema", "pycocotools") if importlib.util.find_spec(m) is None]
    if missing:
        return {"status": "skipped", "reason": f"not installed here: {', '.join(missing)}"}
    cmd = [sys.executable, "-m", "snakemake", "all", "--cores", str(cores), "--configfile",
           "workflow/configs/smoke.yaml"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": time.perf_counter() - t0, "command": " ".join(cmd)}
    logs = sorted(REPO.glob("results/logs/**/*.log"))
    on_gpu = sum("cuda" in p.read_text(errors="replace") for p in logs)
    return {"status": "ok" if proc.returncode == 0 else "failed", "returncode": proc.returncode,
            "seconds": time.perf_counter() - t0, "command": " ".join(cmd), "job_logs": len(logs),
            "job_logs_naming_cuda": on_gpu, "tail": (proc.stdout + proc.stderr)[-3000:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--self-test", action="store_true", help="tiny sizes on the CPU (the plumbing, not speed)")
    ap.add_argument("--cases", nargs="+", default=list(gpu_steps.CASES), choices=gpu_steps.CASES)
    ap.add_argument("--steps", type=int, default=10, help="timed iterations per case and mode")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--images-per-gpu", type=int, default=2, help="detection images per iteration (paper: 2 per GPU)")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--skip-rules", action="store_true")
    ap.add_argument("--rules-timeout", type=float, default=300.0)
    args = ap.parse_args(argv)

    if not args.self_test and not torch.cuda.is_available():
        print("bench.gpu: no CUDA device on this machine; nothing measured (run it on a GPU machine, or"
              " --self-test for the CPU plumbing check)")
        return 0
    device = torch.device("cpu") if args.self_test else torch.device("cuda", 0)
    if args.self_test:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    else:
        torch.backends.cudnn.benchmark = True  # fixed shapes per case: let cuDNN pick its kernels
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "self_test": args.self_test, "environment": environment(device),
                           "config": "workflow/configs/full.yaml over config.yaml",
                           "images_per_gpu": args.images_per_gpu}
    print(f"bench.gpu on {doc['environment'].get('gpu_name', 'cpu (self-test)')}", flush=True)
    doc["steps"] = measure_steps(device, cases=args.cases, steps=args.steps, warmup=args.warmup,
                                 self_test=args.self_test, images_per_gpu=args.images_per_gpu)
    if not args.skip_ddp:
        try:
            doc["ddp"] = gpu_ddp.run(device="cpu" if args.self_test else "cuda", tiny=args.self_test,
                                     batch=16 if args.self_test else 256)
        except Exception as exc:  # noqa: BLE001 - recorded, the rest still written
            doc["ddp"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"ddp: {doc['ddp']}", flush=True)
    if not args.skip_rules and not args.self_test:
        doc["rules"] = run_rules(device, cores=os.cpu_count() or 1, timeout=args.rules_timeout)
        print(f"rules: { {k: v for k, v in doc['rules'].items() if k != 'tail'} }", flush=True)
    doc["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out} ({doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
