"""Helpers of run_smoke.sh: read the slurm profile, and check what reached SLURM.

    check_jobs.py default-resources PROFILE --partition P   the profile's default-resources + partition,
                                                             as `--default-resources` words
    check_jobs.py probe-resources PROFILE RULE              a training rule's set-resources entry of the
                                                             profile, as `--set-resources` words for RULE
    check_jobs.py check LOG --profile PROFILE --partition P [--expect RULE=STATE,STATE ...] [--rules-from DIR]

`check` reads a Snakemake log written with --verbose: each job's block (rule, jobid, threads,
resources) and the plugin's `sbatch call:` and `Job N has been submitted with SLURM jobid M` lines.
For every SLURM job it runs `scontrol show job M` and checks that SLURM recorded what Snakemake
resolved (runtime -> TimeLimit, mem_mb -> MinMemoryNode, cpus_per_task or threads -> CPUs/Task,
gpu -> TresPerJob=gres:gpu:N, slurm_partition -> Partition, slurm_account -> Account), that the sbatch
line carried the same flags, and that for rules with a set-resources entry in the profile Snakemake
resolved exactly the profile's values. Without --expect every job must have COMPLETED.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

GPU_KEYS = ("gpu",)


def load_profile(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def default_resources_words(profile: dict, partition: str) -> list[str]:
    res = dict(profile.get("default-resources") or {})
    res["slurm_partition"] = partition
    return [f"{k}={v}" for k, v in res.items()]


def training_entry(profile: dict) -> tuple[str, dict]:
    """The first set-resources entry that asks for a GPU (a training rule's)."""
    for rule, res in (profile.get("set-resources") or {}).items():
        if int((res or {}).get("gpu", 0) or 0) >= 1:
            return rule, res
    raise LookupError("the profile has no set-resources entry with gpu >= 1 (no training rule yet)")


# ---------------------------------------------------------------- log parsing
BLOCK_RE = re.compile(r"^(?:local)?rule (\w+):\s*$")
GROUP_RE = re.compile(r"Group job (\w+) \(jobs in lexicogr\. order\):")
MEMBER_RE = re.compile(r"^\s+(?:local)?rule (\w+):\s*$")  # a job inside a group job's block
SUBMIT_RE = re.compile(r"Job ([\w-]+) has been submitted with SLURM jobid (\d+) \(log: (.*)\)\.$")
OUTPUT_RE = re.compile(r" --output '?([^' ]+)'?")
SBATCH_RE = re.compile(r"sbatch call: (sbatch .*)")


def parse_resources(text: str) -> dict:
    out = {}
    for part in text.split(", "):
        key, _, val = part.partition("=")
        val = val.strip()
        out[key.strip()] = int(val) if re.fullmatch(r"-?\d+", val) else val
    return out


def parse_log(text: str) -> list[dict]:
    """One record per SLURM submission: rule, snakemake jobid, threads, resources, sbatch line.

    A group job (Snakemake job grouping) is one submission: its record has ``group`` (the group
    name, which SLURM sees as the rule name) and ``members`` (the rules of its jobs); Snakemake logs
    no resources for the group as a whole, so ``resources`` is empty.
    """
    blocks: dict[str, dict] = {}  # latest job block per snakemake jobid
    current: dict | None = None
    pending_sbatch: list[str] = []
    pending_groups: list[dict] = []  # group blocks logged, not yet submitted (in order)
    subs = []
    for line in text.splitlines():
        m = GROUP_RE.search(line)
        if m:
            pending_groups.append({"rule": m.group(1), "group": m.group(1), "members": [], "threads": 1,
                                   "resources": {}})
            current = None
            continue
        m = MEMBER_RE.match(line)
        if m and pending_groups:
            pending_groups[-1]["members"].append(m.group(1))
            continue
        m = BLOCK_RE.match(line)
        if m:
            current = {"rule": m.group(1), "threads": 1, "resources": {}}
            continue
        s = line.strip()
        if current is not None:
            if s.startswith("jobid:"):
                current["jobid"] = s.split(":", 1)[1].strip()
                blocks[current["jobid"]] = current
            elif s.startswith("threads:"):
                current["threads"] = int(s.split(":", 1)[1])
            elif s.startswith("resources:"):
                current["resources"] = parse_resources(s.split(":", 1)[1].strip())
            elif not s:
                current = None
        m = SBATCH_RE.search(line)
        if m:
            pending_sbatch.append(m.group(1))
        m = SUBMIT_RE.search(line)
        if m:
            jobid, slurm_id, slurm_log = m.groups()
            blk = blocks.get(jobid)
            if blk is None and "/group_" in slurm_log:
                # the plugin's log folder for a group job: group_<group>_<group or wildcards>/
                name = slurm_log.split("/group_", 1)[1].split("/", 1)[0]
                blk = next((g for g in pending_groups if name.startswith(g["group"] + "_")), None)
                if blk is not None:
                    pending_groups.remove(blk)
            if blk is None:
                raise SystemExit(f"no job block for snakemake job {jobid} in the log")
            # the sbatch line of this submission: its --output is the SLURM log path with %j
            sb = None
            for cand in pending_sbatch:
                out = OUTPUT_RE.search(cand)
                if out and out.group(1).replace("%j", slurm_id) == slurm_log:
                    sb = cand
                    break
            if sb:
                pending_sbatch.remove(sb)
            subs.append({**blk, "slurm_id": slurm_id, "sbatch": sb})
    return subs


# ---------------------------------------------------------------- scontrol
def scontrol(slurm_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise SystemExit(f"scontrol show job {slurm_id} failed: {out.stderr.strip()}")
    rec = {}
    for tok in shlex.split(out.stdout.strip()):
        k, _, v = tok.partition("=")
        rec[k] = v
    return rec


def minutes(limit: str) -> int:
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)


def megabytes(mem: str) -> float:
    unit = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return float(mem[:-1]) * unit[mem[-1]] if mem[-1] in unit else float(mem)


def expected(sub: dict) -> dict:
    res = sub["resources"]
    cpt = res.get("cpus_per_task")
    return {
        "runtime": res.get("runtime"),
        "mem_mb": res.get("mem_mb"),
        "cpus": cpt if isinstance(cpt, int) and cpt > 0 else sub["threads"],
        "gpu": int(res.get("gpu", 0) or 0),
        "partition": res.get("slurm_partition"),
        "account": res.get("slurm_account"),
    }


def observed(rec: dict) -> dict:
    gres = rec.get("TresPerJob", "") + "," + rec.get("TresPerNode", "")
    m = re.search(r"gres:gpu:(\d+)", gres)
    return {
        "runtime": minutes(rec["TimeLimit"]),
        "mem_mb": megabytes(rec["MinMemoryNode"]),
        "cpus": int(rec["CPUs/Task"]),
        "gpu": int(m.group(1)) if m else 0,
        "partition": rec["Partition"],
        "account": None if rec.get("Account") in (None, "(null)") else rec["Account"],
    }


def sbatch_flags(line: str) -> dict:
    head = line.split(" --wrap=", 1)[0]
    flags = {}
    for key, pat in [("runtime", r" -t '?(\d+)"), ("mem_mb", r" --mem (\d+)"), ("cpus", r"--cpus-per-task=(\d+)"),
                     ("gpu", r"--gpus=(?:\w+:)?(\d+)"), ("partition", r" -p '?([\w-]+)")]:
        m = re.search(pat, head)
        flags[key] = m.group(1) if m else None
    return flags


def check(args) -> int:
    profile = load_profile(args.profile)
    set_res = profile.get("set-resources") or {}
    subs = parse_log(Path(args.log).read_text(errors="replace"))
    if not subs:
        print("no SLURM submissions found in the log", file=sys.stderr)
        return 1
    expect = {}
    for item in args.expect or []:
        rule, _, states = item.partition("=")
        expect[rule] = states.split(",")
    seen_states: dict[str, list[str]] = {}
    problems = []
    print(f"{'slurm':>5} {'rule':24} {'state':10} {'TimeLimit':>9} {'Mem(MB)':>8} {'CPUs/T':>6} {'GPU':>3} "
          f"{'partition':10} account")
    for sub in subs:
        rec = scontrol(sub["slurm_id"])
        exp, obs = expected(sub), observed(rec)
        if sub.get("group"):
            exp = dict.fromkeys(exp)
        state = rec["JobState"]
        seen_states.setdefault(sub["rule"], []).append(state)
        print(f"{sub['slurm_id']:>5} {sub['rule']:24} {state:10} {rec['TimeLimit']:>9} {obs['mem_mb']:>8.0f} "
              f"{obs['cpus']:>6} {obs['gpu']:>3} {obs['partition']:10} {obs['account']}")
        where = f"rule {sub['rule']} (SLURM job {sub['slurm_id']})"
        comment = rec.get("Comment", "").split("_wildcards_")[0]
        if comment != f"rule_{sub['rule']}" and not (sub.get("group") and comment.startswith(f"rule_{sub['rule']}_")):
            problems.append(f"{where}: scontrol Comment={rec.get('Comment')!r} names another rule")
        for key in ("runtime", "mem_mb", "cpus", "gpu", "partition"):
            if exp[key] is not None and (exp[key] != obs[key] if key == "partition" else float(exp[key]) != float(obs[key])):
                problems.append(f"{where}: {key} Snakemake={exp[key]} but SLURM recorded {obs[key]}")
        if exp["account"] and exp["account"] != obs["account"]:
            problems.append(f"{where}: account Snakemake={exp['account']} but SLURM recorded {obs['account']}")
        if sub.get("group"):  # resources: what sbatch asked for (Snakemake logs none for the group)
            pass
        elif sub["sbatch"]:
            flags = sbatch_flags(sub["sbatch"])
            for key in ("runtime", "mem_mb", "cpus", "gpu"):
                want = exp[key] if (key != "gpu" or exp["gpu"]) else None
                if want is not None and flags[key] is not None and str(want) != flags[key]:
                    problems.append(f"{where}: sbatch line has {key}={flags[key]}, expected {want}")
                if key == "gpu" and exp["gpu"] and flags["gpu"] is None:
                    problems.append(f"{where}: gpu={exp['gpu']} requested but the sbatch line has no --gpus")
        elif args.require_sbatch_lines:
            problems.append(f"{where}: no 'sbatch call:' line in the log (run snakemake with --verbose)")
        # the profile's set-resources entry must be what Snakemake resolved for this rule
        for key, val in ({} if sub.get("group") else set_res.get(sub["rule"]) or {}).items():
            got = sub["resources"].get(key)
            if isinstance(val, str):  # an expression, e.g. "threads"
                try:
                    val = eval(val, {"threads": sub["threads"], "attempt": 1})  # noqa: S307 (our own profile)
                except Exception:  # a plain string resource
                    pass
            if str(got) != str(val):
                problems.append(f"{where}: profile set-resources says {key}={val}, Snakemake resolved {got}")
        if sub["rule"] not in expect and state != "COMPLETED":
            problems.append(f"{where}: ended {state}, ExitCode={rec.get('ExitCode')}")
    for rule, states in expect.items():
        if seen_states.get(rule) != states:
            problems.append(f"rule {rule}: expected SLURM states {states}, got {seen_states.get(rule)}")
    if args.show_sbatch:
        print("\nsbatch lines (as the plugin logged them; --wrap command cut):")
        for sub in subs:
            if sub["sbatch"]:
                head = sub["sbatch"].split(" --wrap=")[0]
                head = re.sub(r" --parsable| --export=ALL| --comment \S+| --output \S+| --job-name \S+| -D \S+", "", head)
                print(f"  {sub['rule']:24} {' '.join(head.split())}")
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    groups = [s for s in subs if s.get("group")]
    n_jobs = len(subs) - len(groups) + sum(len(g["members"]) for g in groups)
    print(f"\nall {len(subs)} SLURM jobs match the requested resources")
    print(f"sbatch submissions: {len(subs)} for {n_jobs} Snakemake jobs ({len(groups)} group jobs holding "
          f"{sum(len(g['members']) for g in groups)}: "
          + (", ".join(f"{g['group']} x{len(g['members'])}" for g in groups) or "none") + ")")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("default-resources")
    d.add_argument("profile")
    d.add_argument("--partition", required=True)
    pr = sub.add_parser("probe-resources")
    pr.add_argument("profile")
    pr.add_argument("rule")
    c = sub.add_parser("check")
    c.add_argument("log")
    c.add_argument("--profile", required=True)
    c.add_argument("--expect", nargs="*", help="RULE=STATE[,STATE...]: the SLURM states of the rule's jobs in order")
    c.add_argument("--require-sbatch-lines", action="store_true")
    c.add_argument("--show-sbatch", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "default-resources":
        print(" ".join(shlex.quote(w) for w in default_resources_words(load_profile(args.profile), args.partition)))
        return 0
    if args.cmd == "probe-resources":
        try:
            src, res = training_entry(load_profile(args.profile))
            print(f"probe {args.rule}: resources copied from the profile's entry for rule {src}", file=sys.stderr)
        except LookupError as err:
            res = {"gpu": 1, "cpus_per_task": 2, "mem_mb": 1000, "runtime": 5}
            print(f"probe {args.rule}: {err}; using {res}", file=sys.stderr)
        print(" ".join(shlex.quote(f"{args.rule}:{k}={v}") for k, v in res.items()))
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
