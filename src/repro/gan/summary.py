"""Per-experiment summaries over seeds (the claims rows are built from them in ``repro.gan.claims``).

A summary holds, per arm: the final value of every scalar metric for each seed with its mean and
Student-t 95% CI, the metric curves over training steps (mean over seeds, and each seed), and for
2-D mixtures the fraction of seeds covering every mode at each evaluation step.

Differences between two arms (e.g. MGAN minus GAN in modes covered) get a Welch 95% CI (unequal
variances, independent runs; :func:`repro.common.claims.welch_test`); a claim holds when the whole CI
is on the claimed side of zero.
"""

from __future__ import annotations

from typing import Any

from repro.common.claims import ci95

# metrics whose per-seed final values are summarised (others, e.g. lists, stay in the job files)
MIXTURE_METRICS = ("modes_covered", "high_quality_pct", "sym_kl", "w1", "w1_real")
IMAGE_METRICS = ("inception_score", "mode_score_printed", "mode_minus_is", "mode_score_variant", "under_generated", "missing")
STACKED_METRICS = ("missed_modes", "mode_kl")


def summarize_experiment(experiment: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of one experiment's job results (any order; grouped by arm, in order of appearance)."""
    if not jobs:
        raise ValueError(f"experiment {experiment!r}: no job results to summarise")
    bad = [j.get("experiment") for j in jobs if j.get("experiment") != experiment]
    if bad:
        raise ValueError(f"experiment {experiment!r}: got job results of experiment {bad[0]!r}")
    is_mixture = "n_modes" in jobs[0]
    kind = "mixture" if is_mixture else jobs[0].get("kind", "images")
    names = {"mixture": MIXTURE_METRICS, "stacked": STACKED_METRICS}.get(kind, IMAGE_METRICS)
    arms: dict[str, list[dict]] = {}
    for job in jobs:
        arms.setdefault(job["arm"], []).append(job)
    out: dict[str, Any] = {"experiment": experiment, "kind": kind, "arms": {}}
    if is_mixture:
        out["n_modes"] = int(jobs[0]["n_modes"])
        out["mode_std"] = jobs[0].get("mode_std")
    else:
        out["scorer"] = jobs[0].get("scorer")
    for arm, runs in arms.items():
        runs = sorted(runs, key=lambda j: j["seed"])
        arm_out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "steps": runs[0]["steps"], "lr": runs[0].get("lr"), "final": {}, "curves": {}}
        for name in names:
            values = [float(r["final"][name]) for r in runs]
            mean, ci = ci95(values)
            arm_out["final"][name] = {"values": values, "mean": mean, "ci95": ci}
        steps = [row["step"] for row in runs[0]["history"]]
        arm_out["curves"]["step"] = steps
        for name in names:
            per_seed = [[row[name] for row in r["history"]] for r in runs if len(r["history"]) == len(steps)]
            arm_out["curves"][name] = {
                "mean": [sum(col) / len(col) for col in zip(*per_seed)],
                "per_seed": per_seed,
            }
        if is_mixture:
            n_modes = out["n_modes"]
            per_seed = arm_out["curves"]["modes_covered"]["per_seed"]
            arm_out["curves"]["full_coverage_fraction"] = [sum(v[i] == n_modes for v in per_seed) / len(per_seed) for i in range(len(steps))]
            arm_out["final"]["full_coverage_fraction"] = arm_out["curves"]["full_coverage_fraction"][-1]
        arm_out["seconds_per_job"] = ci95([r["seconds"]["total"] for r in runs])[0]
        out["arms"][arm] = arm_out
    return out
