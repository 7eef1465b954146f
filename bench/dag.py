"""Benchmark: the whole DAG, wall time on 2 cores, with per-rule times from Snakemake's benchmark TSVs.

    .venv/bin/python -m bench.dag --config smoke        # goal <= 3 min  (about 2-4 min)
    .venv/bin/python -m bench.dag --config default      # goal <= 20 min (about 25 min at 130a78c)

Runs ``snakemake -s <repo>/Snakefile -d <scratch folder> --cores 2 [--configfile smoke.yaml]`` in a
fresh scratch work folder (data synthesized there, nothing shared with ``results/``), and reads every
``results/benchmarks/**.tsv`` the jobs wrote. Per job: Snakemake's ``s`` (wall seconds of the job).

Reference, measured in the same run: the same jobs one after another, i.e. the sum of the jobs' wall
seconds; ``ratio = wall / serial`` shows how much the 2 cores overlap the jobs. The goal is on the
wall time itself. Also recorded: the CPU seconds of the whole process tree (``getrusage`` of the
children) and the load average sampled during the run — on a shared machine the wall time includes
waiting for other people's jobs, and ``cpu_s / cores`` is a lower bound of the wall time an idle
machine would need.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import row  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "smoke": (REPO / "workflow" / "configs" / "smoke.yaml", 180.0),
    "default": (None, 1200.0),  # config.yaml, the embedded default
}


def snakemake_exe() -> str:
    """The venv's snakemake (beside this interpreter), else the one on PATH."""
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")


def snakemake_env() -> dict[str, str]:
    """The Makefile's environment: the venv's bin first on PATH (rules call ``python -m repro...``).

    Thread variables the in-process benchmarks set are dropped: Snakemake sets each job's own.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def read_benchmarks(workdir: Path) -> dict[str, dict[str, float]]:
    """``{"<stage>/<job>": {"s": wall s, "cpu_time": s, "max_rss": MB}}`` from results/benchmarks/**.tsv."""
    out: dict[str, dict[str, float]] = {}
    root = workdir / "results" / "benchmarks"
    for path in sorted(root.glob("**/*.tsv")):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        last = rows[-1]  # one row per repeat; Snakemake writes one by default

        def num(key: str) -> float:
            try:
                return float(last.get(key, "nan"))
            except ValueError:  # "NA" where psutil could not sample
                return float("nan")

        out[str(path.relative_to(root).with_suffix(""))] = {"s": num("s"), "cpu_time": num("cpu_time"),
                                                            "max_rss": num("max_rss")}
    return out


class _LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self._stop_event = every, [], threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop_event.wait(self.every)

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join()
        return self.samples


def run_dag(config: str, *, cores: int = 2, workdir: Path | None = None, extra_args: list[str] | None = None,
            timeout: float | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run the whole DAG once in ``workdir``; returns wall and CPU seconds, the jobs' TSV times, rc, log tail."""
    configfile, _ = CONFIGS[config]
    cmd = [snakemake_exe(), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", str(cores)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += extra_args or []
    if verbose:
        print("  $ " + " ".join(cmd), flush=True)
    sampler = _LoadSampler()
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    log_path = workdir / "results" / "logs" / "bench_snakemake.log"  # results/ is git-ignored (--dag-workdir .)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=snakemake_env(), cwd=REPO,
                                  timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    loads = sampler.stop()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = log_path.read_text()[-3000:] if rc != 0 else ""
    return {"cmd": cmd, "rc": rc, "wall_s": wall, "cpu_s": cpu, "loadavg": loads, "jobs": read_benchmarks(workdir),
            "log_tail": tail}


def run(*, config: str = "smoke", cores: int = 2, keep: bool = False, workdir: str | None = None,
        verbose: bool = True) -> list[dict[str, Any]]:
    """One row: the DAG's wall time against its budget; reference = the jobs' summed wall seconds."""
    if config not in CONFIGS:
        raise ValueError(f"unknown DAG config {config!r}; expected one of {sorted(CONFIGS)}")
    _, budget = CONFIGS[config]
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"bench_dag_{config}_"))
    wd.mkdir(parents=True, exist_ok=True)
    try:
        res = run_dag(config, cores=cores, workdir=wd, verbose=verbose)
    finally:
        if not keep and workdir is None:
            shutil.rmtree(wd, ignore_errors=True)
    jobs = res["jobs"]
    serial = sum(j["s"] for j in jobs.values() if j["s"] == j["s"])
    stages: dict[str, float] = {}
    for name, j in jobs.items():
        stages[name.split("/")[0]] = stages.get(name.split("/")[0], 0.0) + j["s"]
    top = sorted(jobs.items(), key=lambda kv: -kv[1]["s"])
    mean_load = statistics.fmean(res["loadavg"]) if res["loadavg"] else float("nan")
    if verbose:
        status = "ok" if res["rc"] == 0 else f"FAILED (rc {res['rc']})"
        print(f"DAG {config} on {cores} cores: {status}, wall {res['wall_s']:.1f} s (goal <= {budget:.0f} s), "
              f"{len(jobs)} jobs summing to {serial:.1f} s, CPU {res['cpu_s']:.1f} s, mean load {mean_load:.2f}")
        for stage, s in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"    {stage:<10} {s:8.1f} s")
        for name, j in top[:10]:
            print(f"    {name:<45} {j['s']:7.1f} s")
        if res["rc"] != 0:
            print(res["log_tail"], file=sys.stderr)
    r = row(f"dag: whole DAG wall time ({config}, {cores} cores)", ours=res["wall_s"], reference=serial, unit="s",
            reference_name="the same jobs one after another (sum of the benchmark TSVs' s)",
            goal_on="ours", goal_op="<=", goal=budget, goal_text=f"wall <= {budget / 60:g} min",
            details={"config": config, "cores": cores, "rc": res["rc"], "n_jobs": len(jobs),
                     "cpu_s": res["cpu_s"], "idle_wall_lower_bound_s": res["cpu_s"] / cores,
                     "loadavg_mean": mean_load, "loadavg_max": max(res["loadavg"], default=float("nan")),
                     "stages_s": stages, "jobs_s": {k: v["s"] for k, v in top},
                     "jobs_max_rss_mb": {k: v["max_rss"] for k, v in top},
                     "command": " ".join(res["cmd"][:1] + ["-s", "Snakefile", "-d", "<scratch>"] + res["cmd"][5:]),
                     **({"log_tail": res["log_tail"]} if res["rc"] != 0 else {})})
    if res["rc"] != 0:
        r["met"] = False
    return [r]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="smoke", choices=sorted(CONFIGS))
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", help="scratch work folder (default: a fresh temporary one, deleted afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = p.parse_args(argv)
    rows = run(config=args.config, cores=args.cores, keep=args.keep, workdir=args.workdir)
    return 0 if rows[0]["details"]["rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
