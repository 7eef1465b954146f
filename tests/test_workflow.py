"""The workflow itself: schema validation, DAGs for every config, lint, profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import FULL, REPO, SMOKE, run_snakemake


@pytest.mark.parametrize(
    "override, key, message",
    [
        ("seeed: 3", "seeed", "was unexpected"),  # misspelt top-level key
        ("data:\n  videos:\n    n_vidoes: 3", "n_vidoes", "data.videos"),  # misspelt nested key
        ("threads: two", "threads", "not of type 'integer'"),  # wrong type
        ("data:\n  detection:\n    image_size: 10", "data.detection.image_size", "minimum"),  # out of range
        ("data:\n  videos:\n    source: youtube", "data.videos.source", "is not one of"),  # bad enum
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path: Path, override: str, key: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(override + "\n")
    proc = run_snakemake(["--cores", "1", "--configfile", str(bad)], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert key in out and message in out, out[-2000:]
    assert not (tmp_path / "results").exists(), "a job ran despite the invalid config"


def test_bad_download_checksum_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"downloads": {"mnist": {"files": [{"url": "http://x/y.gz", "md5": "nothex"}]}}}))
    proc = run_snakemake(["-n", "--configfile", str(bad)], tmp_path)
    assert proc.returncode != 0
    assert "downloads.mnist" in proc.stdout + proc.stderr


@pytest.mark.parametrize("configfile", [None, SMOKE, FULL], ids=["default", "smoke", "full"])
def test_dry_run_builds_dag(tmp_path: Path, configfile: Path | None) -> None:
    args = ["-n", "--cores", "2"] + (["--configfile", str(configfile)] if configfile else [])
    proc = run_snakemake(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "synth_mixtures" in proc.stdout or "download" in proc.stdout


@pytest.mark.parametrize("configfile, transfer", [(None, ["synthetic"]), (FULL, ["voc2007", "coco2017"])],
                         ids=["default", "full"])
def test_scale_trend_plans_a_scaled_run_of_every_claims_file(tmp_path: Path, configfile: Path | None,
                                                              transfer: list[str]) -> None:
    """The opt-in `scale_trend` target resolves: each stage's claims file at 2x and 4x, the TI transfer's
    once per data set (its claims files are ti_transfer_<data set>.json)."""
    args = ["-n", "--cores", "2", "scale_trend"] + (["--configfile", str(configfile)] if configfile else [])
    proc = run_snakemake(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stem in ["gan", "quant", "lars", "graph", "pretrain", "fpn"] + [f"ti_transfer_{d}" for d in transfer]:
        for k in (2, 4):
            assert f"results/scale_trend/{stem}_x{k}/results/claims/{stem}.json" in proc.stdout, (stem, k)


def test_full_config_lists_every_real_dataset_download(tmp_path: Path) -> None:
    proc = run_snakemake(["-n", "--cores", "2", "--configfile", str(FULL)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for dataset in ("coco2017", "voc2007", "cifar10", "mnist", "videos"):
        assert f"results/data/raw/{dataset}" in proc.stdout, dataset
    full = yaml.safe_load(FULL.read_text())
    for name, spec in full["downloads"].items():
        for f in spec.get("files", []):
            assert ("md5" in f) or ("sha256" in f), f"{name}: {f['url']} has no checksum"


def test_lint_is_clean(tmp_path: Path) -> None:
    proc = run_snakemake(["--lint"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Lints for" not in out, out[-3000:]


def test_slurm_profile_resolves_by_name_from_repo_root(tmp_path: Path) -> None:
    """`snakemake --profile slurm` is looked up as ./slurm/ (a link to profiles/slurm)."""
    assert (REPO / "slurm" / "config.yaml").exists()
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"  # sacct hangs on clusters without accounting
    proc = run_snakemake(["-n", "--profile", str(REPO / "slurm")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_rule_declares_threads_log_and_benchmark() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            name = block.split(":")[0]
            for directive in ("threads:", "log:", "benchmark:"):
                assert directive in block, f"{smk.name}: rule {name} lacks {directive}"
