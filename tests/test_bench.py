"""The benchmark entry point runs a tiny subset and writes valid JSON rows and a figure.

Performance goals are checked by ``python -m bench`` itself, never here: these tests only check the
plumbing (rows, goals, merging, the TSV reader), with sizes that take seconds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench/` lives at the repository root

from bench import row  # noqa: E402
from bench.__main__ import main  # noqa: E402
from bench.dag import read_benchmarks  # noqa: E402

ROW_KEYS = {"name", "ours", "reference", "ratio", "unit", "machine", "goal", "met"}
MACHINE_KEYS = {"cpu", "cores", "torch", "device"}


def _check_rows(rows: list[dict]) -> None:
    assert rows
    for r in rows:
        assert ROW_KEYS <= set(r), r["name"]
        assert MACHINE_KEYS <= set(r["machine"])
        assert isinstance(r["met"], bool)
        assert isinstance(r["ours"], float) and math.isfinite(r["ours"])
        assert isinstance(r["name"], str) and isinstance(r["unit"], str) and isinstance(r["goal"], str)


def test_entry_point_writes_json_rows_and_figure(tmp_path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--quick", "--tiny", "--only", "kmeans", "graph", "lars", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())  # strict JSON: no NaN
    rows = doc["rows"]
    _check_rows(rows)
    assert {r["benchmark"] for r in rows} == {"kmeans", "graph", "lars"}
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    km = next(r for r in rows if r["name"].startswith("quant: HW k-means time"))
    assert km["ratio"] == pytest.approx(km["ours"] / km["reference"])
    # a second run of one benchmark refreshes its rows and keeps the others
    assert main(["--quick", "--tiny", "--only", "lars", "--out", str(out)]) == 0
    rows2 = json.loads(out.read_text())["rows"]
    assert {r["benchmark"] for r in rows2} == {"kmeans", "graph", "lars"} and len(rows2) == len(rows)


def test_row_goal_and_ratio() -> None:
    r = row("x", ours=2.0, reference=8.0, unit="s", reference_name="ref", goal_on="ratio", goal_op="<=", goal=0.25)
    assert r["ratio"] == 0.25 and r["met"] is True
    r = row("x", ours=200.0, reference=100.0, unit="s", reference_name="ref", goal_on="ours", goal_op="<=", goal=180)
    assert r["ratio"] == 2.0 and r["met"] is False
    r = row("x", ours=1.0, reference=2.0, unit="img/s", reference_name="ref", goal_on="ratio", goal_op=">=", goal=1.0)
    assert r["met"] is False
    with pytest.raises(ValueError):
        row("x", ours=1.0, reference=1.0, unit="", reference_name="", goal_on="both", goal_op="<=", goal=1)


def test_read_benchmarks_parses_snakemake_tsvs(tmp_path) -> None:
    d = tmp_path / "results" / "benchmarks" / "detect"
    d.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (d / "train_fpn_s0.tsv").write_text(header + "12.5\t0:00:12\t300.1\t900\t280\t290\t0\t1\t50.0\t11.9\n")
    (d / "aggregate.tsv").write_text(header + "1.0\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    jobs = read_benchmarks(tmp_path)
    assert jobs["detect/train_fpn_s0"] == {"s": 12.5, "cpu_time": 11.9, "max_rss": 300.1}
    assert jobs["detect/aggregate"]["s"] == 1.0 and math.isnan(jobs["detect/aggregate"]["max_rss"])


def test_merge_keeps_the_other_dag_config_and_replaces_reruns() -> None:
    """A `--dag smoke` run keeps the default DAG's row of an earlier `--dag default` run; rows of a
    benchmark that ran again are replaced, rows of benchmarks that did not run are kept."""
    from bench.__main__ import _merge

    def r(name: str, bench: str, ours: float) -> dict:
        return {"name": name, "benchmark": bench, "ours": ours}

    old = [r("dag: whole DAG wall time (default, 2 cores)", "dag", 1144.0),
           r("dag: whole DAG wall time (smoke, 2 cores)", "dag", 81.0),
           r("lars: LARS step / SGD step", "lars", 2.0), r("quant: old row", "kmeans", 1.0)]
    new = [r("dag: whole DAG wall time (smoke, 2 cores)", "dag", 70.0), r("quant: HW k-means", "kmeans", 0.05)]
    merged = {m["name"]: m["ours"] for m in _merge(old, new, {"dag", "kmeans"})}
    assert merged == {"dag: whole DAG wall time (default, 2 cores)": 1144.0,
                      "dag: whole DAG wall time (smoke, 2 cores)": 70.0,
                      "lars: LARS step / SGD step": 2.0, "quant: HW k-means": 0.05}
