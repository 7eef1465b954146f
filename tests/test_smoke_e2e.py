"""End to end: the whole DAG on the smoke config; every output exists and carries provenance."""

from __future__ import annotations

import json
from pathlib import Path

from repro.common.claims import read_claims


def test_smoke_dag_outputs_and_provenance(smoke_run: Path) -> None:
    data = smoke_run / "results" / "data"
    for name in ("videos", "detection", "mixtures"):
        assert (data / name / "provenance.json").exists(), name
    for name in ("digits.npz", "classification.npz"):
        prov = json.loads((data / f"{name}.provenance.json").read_text())
        assert prov["config"] and prov["seed"] == 0 and prov["git_commit"] and prov["packages"]["numpy"]
    # every rule left a benchmark TSV (wall time per stage, for the report)
    assert list((smoke_run / "results" / "benchmarks").glob("**/*.tsv"))


def test_smoke_claims_files_follow_the_contract(smoke_run: Path) -> None:
    for path in sorted((smoke_run / "results" / "claims").glob("*.json")):
        rows = read_claims(path)  # raises on any contract violation
        assert rows, f"{path.name} is empty"


def test_snakemake_report_archive_builds_after_the_run(smoke_run: Path) -> None:
    import zipfile

    from conftest import SMOKE, run_snakemake

    proc = run_snakemake(["--report", "results/report.zip", "--configfile", str(SMOKE)], smoke_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(smoke_run / "results" / "report.zip") as zf:
        names = zf.namelist()
    assert any(n.endswith("report.html") for n in names), names[:20]
    assert any("index.html" in n for n in names), "the one-page report is not in the archive"


def test_one_page_report_lists_the_claims(smoke_run: Path) -> None:
    import pandas as pd

    page = (smoke_run / "results" / "report" / "index.html").read_text()
    table = pd.read_csv(smoke_run / "results" / "claims.csv")
    assert "<h2>Summary</h2>" in page and "<h2>Provenance</h2>" in page
    for claim_id in table["claim_id"]:
        assert claim_id in page
