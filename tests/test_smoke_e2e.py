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
