"""The GPU check's pieces at tiny sizes on the CPU (``python -m bench.gpu --self-test``), and the price table.

Speed is measured by ``python -m bench.gpu`` on a GPU, never here: these tests check that every
measurement runs through the stages' loops (fp32 and the autocast path, bf16 on the CPU), that the 2-rank
DDP comparison runs (gloo), that a CPU-only machine exits cleanly, and that the price of a run is sane.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench/` lives at the repository root

from bench import gpu, gpu_ddp  # noqa: E402
from repro.common.config import merged_config  # noqa: E402
from repro.report.price import RulePrice, load_bench, markdown_table, price_html, price_rows, total  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST_CASES = ["detect_fpn", "detect_c4", "pretrain_resnet50", "lars_alexnet_bn", "quant_resnet32", "gan_cifar10_mgan",
              "gan_mnist_gan"]


def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "b.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "b.json").exists()


def test_self_test_times_every_model_in_both_precisions(tmp_path: Path) -> None:
    out = tmp_path / "bench_gpu.json"
    assert gpu.main(["--self-test", "--skip-ddp", "--steps", "1", "--warmup", "0", "--cases", *FAST_CASES,
                     "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["self_test"] is True and {"torch", "torchvision", "device"} <= set(doc["environment"])
    for name in FAST_CASES:
        entry = doc["steps"][name]
        assert not any(k.endswith("_error") for k in entry), entry
        assert entry["fp32_s_per_iter"] > 0 and entry["amp_s_per_iter"] > 0
        assert math.isclose(entry["amp_speedup"], entry["fp32_s_per_iter"] / entry["amp_s_per_iter"])
        assert entry["amp_mode"] == "bf16 autocast, channels-last"
    assert load_bench(out) is None  # a self-test's CPU times never price a run


def test_torchvision_reference_step_runs(tmp_path: Path) -> None:
    from bench import gpu_steps
    from repro.common.amp import Precision

    # fp32: its AMP arm is torchvision's own autocast + GradScaler (bf16 on a CPU is slow: ResNet-50)
    run = gpu_steps.build_case("detect_tv_reference", gpu_steps.full_config(), torch.device("cpu"),
                               Precision("cpu"), tiny=True)
    run(1)


@pytest.mark.slow  # spawns 2 processes (about 30 s on 2 shared cores): `make test`, not `make test-fast`
def test_ddp_two_gloo_ranks_match_one_process() -> None:
    res = gpu_ddp.run(device="cpu", steps=2, batch=8, tiny=True)
    assert res["status"] == "ok" and res["backend"] == "gloo" and res["sync_batchnorm_layers"] > 0, res


def test_ddp_on_one_gpu_is_skipped_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    res = gpu_ddp.run(device="cuda")
    assert res["status"] == "skipped" and "needs 2" in res["reason"]


# ------------------------------------------------------------------ the price of a run
def _full() -> dict:
    return merged_config(REPO / "config.yaml", REPO / "workflow" / "configs" / "full.yaml")


def test_price_of_the_full_config_is_estimated_without_measurements() -> None:
    rows = price_rows(_full())
    assert rows and all(isinstance(r, RulePrice) and r.jobs > 0 and r.gpu_hours_per_job >= 0 for r in rows)
    assert not any(r.measured for r in rows) and all(r.basis.startswith("estimated") for r in rows)
    fpn = next(r for r in rows if r.rule == "detect train fpn")
    assert fpn.jobs == 2 and fpn.gpu_hours_per_job == pytest.approx(80.0)  # the paper's 8 GPUs x 10 h
    assert fpn.wall_hours_per_job(8) == pytest.approx(10.0)
    assert total(rows) == pytest.approx(sum(r.jobs * r.gpu_hours_per_job for r in rows))
    assert sum(r.jobs for r in rows if r.rule.startswith("detect train")) == 12  # 6 models x 2 seeds
    table = markdown_table(rows)
    assert table.splitlines()[0].startswith("| rule | jobs | GPU-hours") and "**total**" in table


def test_measured_step_times_replace_the_estimates() -> None:
    bench = {"environment": {"gpu_name": "Test GPU"}, "images_per_gpu": 2,
             "steps": {"detect_fpn": {"fp32_s_per_iter": 0.4, "amp_s_per_iter": 0.2},
                       "lars_alexnet_bn": {"fp32_s_per_iter": 0.1, "amp_s_per_iter": 0.05},
                       "pretrain_resnet50": {"fp32_s_per_iter": 0.2, "amp_s_per_iter": 0.1}}}
    rows = {r.rule: r for r in price_rows(_full(), bench)}
    fpn = rows["detect train fpn"]
    assert fpn.measured and fpn.basis == "measured on Test GPU"
    assert fpn.gpu_hours_per_job == pytest.approx(80_000 * 0.2 * 16 / 2 / 3600)  # amp: auto -> the AMP time
    assert "proxy" in rows["detect train fpn_no_lateral"].basis
    assert not rows["detect train c4"].measured  # not measured, no sibling measured: the paper's figure
    cfg = _full()
    cfg["detect"]["amp"] = "off"
    assert {r.rule: r for r in price_rows(cfg, bench)}["detect train fpn"].gpu_hours_per_job == pytest.approx(
        2 * fpn.gpu_hours_per_job)
    assert rows["lars cell"].measured
    assert rows["pretrain train"].measured and rows["pretrain train"].gpu_hours_per_job == pytest.approx(
        200_000 * 0.1 / 3600)


@pytest.mark.parametrize("configfile", [None, "workflow/configs/smoke.yaml"])
def test_price_section_renders_for_the_small_configs(configfile: str | None) -> None:
    cfg = merged_config(REPO / "config.yaml", *([REPO / configfile] if configfile else []))
    page = price_html(cfg)
    assert page.startswith("<h2>Price of this run</h2>") and "<th>total</th>" in page


def test_price_section_of_a_config_without_stages_is_an_empty_table() -> None:
    assert price_rows({"scale": "smoke", "seed": 0}) == []
    assert "<th>total</th>" in price_html({"scale": "smoke", "seed": 0})
