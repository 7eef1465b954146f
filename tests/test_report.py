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

from repro.common.claims import NO_EFFECT, UNDERPOWERED, one_sample_test, write_claims  # noqa: E402
from repro.common.paper_values import all_paper_values  # noqa: E402
from repro.report.cli import main  # noqa: E402
from repro.report.collect import NOT_RUN, PAPERS  # noqa: E402
from repro.report.notes import split_common  # noqa: E402
from repro.report.readme import BEGIN, END, SHORT, update_readme  # noqa: E402


def _row(claim_id: str, **kw) -> dict:
    """A row as a claims file written before the test fields had it (read with test "unknown")."""
    row = dict(paper="1612.03144", claim_id=claim_id, claim=f"{claim_id} claim.", metric="AP (fraction)",
               paper_value=0.339, ours_mean=0.41, ours_ci95=[0.38, 0.44], n_seeds=2, verdict="holds",
               scale_note="256-px synthetic shapes, tiny ResNet")
    row.update(kw)
    return row


NOTE = "256-px synthetic shapes, tiny ResNet. Two seeds."


def _tested(claim_id: str, values: list[float], note: str = "", **kw) -> dict:
    """A row with its test: one-sample t of the per-seed values against 0."""
    return _row(claim_id, scale_note=f"{NOTE} {note}".strip(), **{**one_sample_test(values).fields(), **kw})


@pytest.fixture()
def fixture_run(tmp_path: Path) -> Path:
    claims = tmp_path / "results" / "claims"
    write_claims(claims / "fpnfix.json", [
        _tested("fix_fpn_ap", [0.40, 0.41, 0.42, 0.43, 0.41, 0.42], "Per seed: six."),  # holds, survives Holm
        _tested("fix_fpn_aps", [-0.02, -0.03, -0.021]),  # fails
        _tested("fix_underpowered", [0.02, -0.01, 0.04], paper_value=0.01),  # MDE ~0.08 > the paper's 0.01
        _tested("fix_no_effect", [0.002, -0.001, 0.001], paper_value=0.2),  # MDE ~0.005 < the paper's 0.2
        _tested("fix_missing", [], paper_value=None, n_seeds=2),
        _tested("fix_full_only", [], paper_value=None),
        _row("fix_not_in_config", ours_mean=None, ours_ci95=None, n_seeds=0, verdict="inconclusive",  # a stage's own
             scale_note="not run in this configuration: no fpn_p2_only runs (add to detect.models to run it)."),  # note
    ])
    write_claims(claims / "larsfix.json", [  # a file written before the test fields: read, power unknown
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
        "--out-summary", str(tmp_path / "results" / "report" / "summary.md"),
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
    # holds, fails, underpowered, no effect, no test (the missing value), not run, Holm survivors
    cells = "".join(f"<td class='num'>{c}</td>" for c in (1, 1, 1, 1, 1))
    assert re.search(r"1612\.03144.*?" + re.escape(cells) + r"<td class='num'>\d+</td>"
                     + re.escape("<td class='num'>1 / 1</td><td class='num'>0 / 0</td>"), summary)
    assert page.count("data:image/png;base64,") >= 2  # forest plot + the stage figure, embedded
    assert (fixture_run / "report" / "figures" / "forest_1612.03144.png").exists()


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


def test_power_holm_and_the_stage_note_said_once(fixture_run: Path) -> None:
    table = pd.read_csv(fixture_run / "claims.csv").set_index("claim_id")
    assert table.loc["fix_underpowered", "power"] == UNDERPOWERED and table.loc["fix_no_effect", "power"] == NO_EFFECT
    assert table.loc["fix_lars", "power"] == "power unknown" and table.loc["fix_lars", "test"] == "unknown"
    assert table.loc["fix_underpowered", "n_needed"] > 3 and table.loc["fix_underpowered", "mde"] > 0.05
    assert bool(table.loc["fix_fpn_ap", "holm_paper"]) and bool(table.loc["fix_fpn_ap", "holm_table"])
    assert not bool(table.loc["fix_fpn_aps", "holm_paper"])  # p ~0.018 x 3 (the second smallest of 4): not below 0.05
    page = (fixture_run / "report" / "index.html").read_text()
    # said once above the stage's table; a row the stage did not run keeps its own note whole beside it
    assert page.count("256-px synthetic shapes, tiny ResNet.") == 1
    assert "no fpn_p2_only runs (add to detect.models to run it)." in page
    assert "Per seed: six." in page and "n needed" in page and "Holm: paper ✓, table ✓" in page


def test_readme_table_from_the_run(fixture_run: Path, tmp_path: Path) -> None:
    summary = (fixture_run / "report" / "summary.md").read_text()
    assert "commit `" in summary and "| FPN [1612.03144]" in summary and "| **all** |" in summary
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nintro\n")
    update_readme(readme, summary)
    update_readme(readme, summary)  # replaces its own block, once
    text = readme.read_text()
    assert text.startswith("# title\n\n" + BEGIN) and text.count(BEGIN) == 1 and END in text and "intro" in text


def test_readme_table_marks_a_run_from_uncommitted_changes() -> None:
    from repro.report.readme import _short

    assert _short("0123456789abcdef0123-dirty") == "0123456789ab-dirty" and _short("0123456789abcdef") == "0123456789ab"


def test_every_paper_with_a_claim_has_a_title_and_a_short_name() -> None:
    """The report's paper column and the README's results table name every paper a claim cites."""
    cited = {e["paper"] for e in all_paper_values().values()} | {"1612.02136", "1708.02556", "1708.03888"}
    assert cited <= set(PAPERS) and set(PAPERS) == set(SHORT), (cited - set(PAPERS), set(PAPERS) ^ set(SHORT))


def test_scale_trend_config_scales_only_the_stages_data_and_steps() -> None:
    from repro.report.trend import scaled_config

    cfg = {"data": {"detection": {"n_train": 400, "n_val": 100}},
           "gan": {"experiments": {"ring8": {"steps": 3000, "lr": 0.002}, "digits": {"steps": 2000}}},
           "lars": {"epochs": 8, "longer": {"epochs": [16]}}}
    gan = scaled_config(cfg, "gan", 4)
    assert gan["gan"]["experiments"]["ring8"] == {"steps": 12000, "lr": 0.002}
    assert gan["gan"]["experiments"]["digits"]["steps"] == 8000 and gan["lars"] == cfg["lars"]
    assert scaled_config(cfg, "fpn", 2)["data"]["detection"] == {"n_train": 800, "n_val": 100}
    lars = scaled_config({**cfg, "data": {"classification": {"n_train": 8000}}}, "lars", 2)
    assert lars["data"]["classification"]["n_train"] == 16000 and lars["lars"] == cfg["lars"]  # steps x2, not x4
    assert cfg["gan"]["experiments"]["ring8"]["steps"] == 3000  # a copy
    # the TI transfer writes one claims file per data set; each scales the transfer's keys
    voc = scaled_config({**cfg, "detect": {"transfer": {"iterations": 150}}}, "ti_transfer_voc2007", 2)
    assert voc["detect"]["transfer"]["iterations"] == 300 and voc["data"]["detection"]["n_train"] == 800
    with pytest.raises(ValueError, match="no scaled keys"):
        scaled_config(cfg, "nope", 2)


def test_scale_trend_plot_and_the_report_embeds_it(tmp_path: Path) -> None:
    from repro.report.trend import main as trend_main

    def claims(name: str, shift: float) -> Path:
        write_claims(tmp_path / name, [_tested("fix_fails", [-0.03 + shift, -0.02 + shift, -0.025 + shift]),
                                       _tested("fix_holds", [0.4, 0.41, 0.42])])
        return tmp_path / name

    out = tmp_path / "scale_trend" / "fpnfix" / "trend.png"
    assert trend_main(["plot", "--stage", "fpnfix", "--default", str(claims("d.json", 0.0)),
                       "--scaled", f"2={claims('x2.json', 0.02)}", f"4={claims('x4.json', 0.04)}",
                       "--out-png", str(out), "--out-csv", str(out.with_suffix(".csv"))]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["claim_id"]) == {"fix_fails"} and list(table["factor"]) == [1, 2, 4]  # holds at 1x: no trend
    assert out.stat().st_size > 5_000
    page = tmp_path / "r" / "index.html"
    assert main(["--out-csv", str(tmp_path / "c.csv"), "--out-html", str(page),
                 "--trend-dir", str(tmp_path / "scale_trend")]) == 0
    assert "Where each failing claim is heading" in page.read_text() and "fpnfix: claims against scale" in page.read_text()


def test_split_common_says_most_rows_note_once_and_keeps_another_kind_whole() -> None:
    notes = ["Tiny ResNet. Three seeds. Per seed: 1.", "Tiny ResNet. Three seeds. Per seed: 2.",
             "Tiny ResNet. Three seeds. Per seed: 3.", "Inference time on 16 images."]
    common, own, whole = split_common(notes)
    assert common == "Tiny ResNet. Three seeds."
    assert own == ["Per seed: 1.", "Per seed: 2.", "Per seed: 3.", "Inference time on 16 images."] and whole == [3]
    # the shared sentences are looked for among the picked notes only; the others lose them where they have them
    common, own, whole = split_common(notes + ["Not run. Tiny ResNet. Three seeds."], among=[True] * 4 + [False])
    assert common == "Tiny ResNet. Three seeds." and own[4] == "Not run." and whole == [3]
    assert split_common(notes[2:]) == ("", notes[2:], [])  # two rows with nothing shared: nothing lifted
