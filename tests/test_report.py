"""Report stage: builds from fixture claims files, lists every reference claim, survives missing values,
and renders in headless Chromium with no broken images."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repro.common.claims import write_claims  # noqa: E402
from repro.common.paper_values import all_paper_values  # noqa: E402
from repro.report.cli import main  # noqa: E402
from repro.report.collect import NOT_RUN  # noqa: E402


def _row(claim_id: str, **kw) -> dict:
    row = dict(paper="1612.03144", claim_id=claim_id, claim=f"{claim_id} claim.", metric="AP (fraction)",
               paper_value=0.339, ours_mean=0.41, ours_ci95=[0.38, 0.44], n_seeds=2, verdict="holds",
               scale_note="256-px synthetic shapes, tiny ResNet")
    row.update(kw)
    return row


@pytest.fixture()
def fixture_run(tmp_path: Path) -> Path:
    claims = tmp_path / "results" / "claims"
    write_claims(claims / "fpnfix.json", [
        _row("fix_fpn_ap"),
        _row("fix_fpn_aps", verdict="fails", ours_mean=-0.02, ours_ci95=[-0.05, 0.01]),
        _row("fix_missing", ours_mean=None, ours_ci95=None, n_seeds=2, verdict="inconclusive", paper_value=None),
        _row("fix_full_only", ours_mean=None, ours_ci95=None, n_seeds=0, verdict="inconclusive", paper_value=None),
    ])
    write_claims(claims / "larsfix.json", [
        _row("fix_lars", paper="1708.03888", metric="top-1 accuracy", paper_value=58.2, ours_mean=0.7, ours_ci95=None, n_seeds=1, verdict="inconclusive"),
    ])
    fig = tmp_path / "results" / "fpnfix" / "curve.png"
    fig.parent.mkdir(parents=True)
    plt.plot([0, 1], [0, 1])
    plt.savefig(fig)
    plt.close()
    bench = tmp_path / "results" / "benchmarks" / "fpnfix"
    bench.mkdir(parents=True)
    (bench / "train.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    rc = main([
        "--config", '{"scale": "smoke", "seed": 0}',
        "--claims", str(claims / "fpnfix.json"), str(claims / "larsfix.json"),
        "--figures", str(fig),
        "--benchmarks", str(tmp_path / "results" / "benchmarks"),
        "--out-csv", str(tmp_path / "results" / "claims.csv"),
        "--out-html", str(tmp_path / "results" / "report" / "index.html"),
    ])
    assert rc == 0
    return tmp_path / "results"


def test_report_builds_from_fixture_claims(fixture_run: Path) -> None:
    page = (fixture_run / "report" / "index.html").read_text()
    table = pd.read_csv(fixture_run / "claims.csv")
    for claim_id in ("fix_fpn_ap", "fix_fpn_aps", "fix_missing", "fix_lars"):
        assert claim_id in page and claim_id in set(table["claim_id"])
    assert "missing value" in page  # a claim with no number shows as such
    status = dict(zip(table["claim_id"], table["status"]))
    assert status["fix_missing"] == "missing value" and status["fix_full_only"] == NOT_RUN  # no run: a note
    assert "12.5" in page  # wall time per stage from the benchmark TSV
    assert re.search(r"<td>1612\.03144|>1612\.03144<", page)
    summary = page.split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert re.search(r"1612\.03144.*?<td class='num'>1</td><td class='num'>1</td><td class='num'>1</td>", summary)
    assert page.count("data:image/png;base64,") >= 2  # overview figure + the stage figure, embedded


def test_every_reference_claim_appears_or_is_marked_not_run(fixture_run: Path) -> None:
    table = pd.read_csv(fixture_run / "claims.csv")
    page = (fixture_run / "report" / "index.html").read_text()
    refs = all_paper_values()
    for claim_id, ref in refs.items():
        if ref["kind"] != "claim":  # table cells kept for figures and notes, not claims
            assert claim_id not in set(table["claim_id"])
            continue
        assert claim_id in set(table["claim_id"]), claim_id
        assert claim_id in page
        row = table[table["claim_id"] == claim_id].iloc[0]
        assert row["status"] in ("measured", "missing value", NOT_RUN)


def test_claim_paper_labels_are_normalised_to_the_arxiv_id(tmp_path: Path) -> None:
    from repro.common.claims import read_claims

    write_claims(tmp_path / "x.json", [_row("fix_label", paper="FPN (arXiv 1612.03144)")])
    assert read_claims(tmp_path / "x.json")[0]["paper"] == "1612.03144"
    with pytest.raises(ValueError, match="arXiv id"):
        write_claims(tmp_path / "y.json", [_row("fix_nolabel", paper="FPN")])


def test_missing_claims_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        main(["--claims", str(tmp_path / "nope.json"), "--out-csv", str(tmp_path / "c.csv"), "--out-html", str(tmp_path / "i.html")])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK_IMAGES = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.setAttribute('data-images',i.length);"
    "document.body.setAttribute('data-broken',i.filter(x=>!x.complete||x.naturalWidth===0).length);});</script>"
)


def chromium_check(html_path: Path, out_png: Path) -> tuple[int, int]:
    """Open the page in headless Chromium: screenshot it, return (images, broken images)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out_png.parent / 'chrome-profile'}", "--virtual-time-budget=5000"]
    probe = html_path.with_name("probe.html")
    probe.write_text(html_path.read_text().replace("</body>", CHECK_IMAGES + "</body>"))
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={out_png}", "--window-size=1280,2000", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert out_png.exists() and out_png.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    broken = int(re.search(r'data-broken="(\d+)"', dom).group(1))
    return images, broken


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_broken_images(fixture_run: Path, tmp_path: Path) -> None:
    images, broken = chromium_check(fixture_run / "report" / "index.html", tmp_path / "shot.png")
    assert images >= 2 and broken == 0


def test_report_with_no_claims_files_still_builds(tmp_path: Path) -> None:
    assert main(["--out-csv", str(tmp_path / "c.csv"), "--out-html", str(tmp_path / "r" / "index.html")]) == 0
    assert "<h2>Summary</h2>" in (tmp_path / "r" / "index.html").read_text()
