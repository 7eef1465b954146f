"""The LARS study's protocol: the SGD grid below linear scaling, span-matched claims rows, Table 5 as
the paper states it, and the Table 2 spread of ||w||/||grad L|| (1708.03888)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import repro.lars.study as study
from repro.common.paper_values import all_paper_values
from repro.lars.claims import build_claims, paper_curves, paper_spans, summarize_cells
from repro.lars.data import prepare
from repro.lars.models import build_model
from repro.lars.ratios import layer_ratios, ratio_spread

from test_lars_study import CFG, _arrays

DEFAULT = {  # the embedded default's shape: 16x main grid, AlexNet-BN/LARS also at 16 (64x), Table 5 at 2E
    **CFG,
    "batches": [64, 256, 1024],
    "epochs": 8,
    "wide": {"model": "alexnet_bn", "arm": "lars", "batches": [16]},
    "longer": {"model": "alexnet_bn", "arm": "lars", "epochs": [16]},
}


def _cell(model: str, arm: str, batch: int, epochs: int, accs: list[float | None], *,
          spread: float = 50.0) -> dict:
    """A finished cell whose chosen LR gave ``accs`` per seed (None = that seed diverged)."""
    runs = []
    for seed, acc in enumerate(accs):
        ratios = [{"layer": "conv1.w", "w_norm": 1.0, "g_norm": 1.0, "ratio": 2.0 + seed},
                  {"layer": "fc6.w", "w_norm": 1.0, "g_norm": 1.0, "ratio": (2.0 + seed) * spread},
                  {"layer": "conv1.b", "w_norm": 0.0, "g_norm": 1.0, "ratio": 0.0}]
        runs.append({"lr_ref": 0.1, "lr": 0.1 * batch / 64, "seed": seed, "val_acc": acc, "test_acc": acc,
                     "diverged": acc is None, "steps": 100, "layer_ratios": ratios})
    return {"model": model, "arm": arm, "batch": batch, "epochs": epochs, "seeds": list(range(len(accs))),
            "chosen_lr_ref": 0.1, "runs": runs}


def _summary(cfg: dict, acc: dict[tuple, list[float | None]]) -> dict:
    return summarize_cells([_cell(*key, accs) for key, accs in acc.items()])


def _full_grid(cfg: dict, value: float = 80.0) -> dict[tuple, list[float]]:
    cells = {(m, a, b, cfg["epochs"]): [value, value + 0.5, value - 0.5]
             for m in cfg["models"] for a in ("sgd", "lars") for b in cfg["batches"]}
    for b in cfg["wide"]["batches"]:
        cells[(cfg["wide"]["model"], cfg["wide"]["arm"], b, cfg["epochs"])] = [value, value + 0.5, value - 0.5]
    for e in cfg["longer"]["epochs"]:
        key = (cfg["longer"]["model"], cfg["longer"]["arm"], max(cfg["batches"]), e)
        cells[key] = [value, value + 0.5, value - 0.5]
    return cells


# ---------------------------------------------------------------- item 1: a real SGD baseline

def test_sgd_grid_reaches_from_linear_scaling_down_to_an_eighth_of_it() -> None:
    arm = {**CFG["sgd"], "lrs": {"alexnet": [0.2]}, "lr_factors": [0.125, 0.25, 0.5, 1.0]}
    grid = study.lr_grid(arm, "alexnet")
    assert grid == pytest.approx([0.025, 0.05, 0.1, 0.2])
    # at B = 16 x ref_batch the searched LRs are 1/8 ... 1 of the linearly scaled 0.2 * 16 = 3.2
    at_b = [study.scaled_lr(lr, 16 * arm["ref_batch"], arm["ref_batch"], "linear") for lr in grid]
    assert at_b == pytest.approx([0.4, 0.8, 1.6, 3.2]) and min(at_b) == pytest.approx(3.2 / 8)
    # duplicates of lrs x factors are searched once; no lr_factors = the grid as given
    assert study.lr_grid({"lrs": {"alexnet": [0.1, 0.2]}, "lr_factors": [0.5, 1.0]}, "alexnet") == pytest.approx(
        [0.05, 0.1, 0.2])
    assert study.lr_grid({"lrs": {"alexnet": [3.0, 1.0]}}, "alexnet") == [1.0, 3.0]


def test_cell_searches_the_whole_below_linear_grid_and_reports_the_chosen_lr() -> None:
    data = prepare(_arrays(), val_fraction=0.2)
    cfg = {**CFG, "sgd": {**CFG["sgd"], "lrs": {"alexnet": [0.08]}, "lr_factors": [0.25, 0.5, 1.0]}}
    out = study.run_cell(data, cfg, model_name="alexnet", arm="sgd", batch=32, epochs=1, seeds=[0, 1])
    search = [r for r in out["runs"] if r["seed"] == 0]
    assert [r["lr"] for r in search] == pytest.approx([0.08, 0.16, 0.32])  # linear: 0.08 * 32/8 = 0.32
    best = max(search, key=lambda r: (r["val_acc"], -r["lr_ref"]))
    assert out["chosen_lr_ref"] == best["lr_ref"] and out["lr_grid"] == pytest.approx([0.02, 0.04, 0.08])
    cell = summarize_cells([{"model": "alexnet", "arm": "sgd", "batch": 32, "epochs": 1, "seeds": [0, 1], **out}])
    s = cell[("alexnet", "sgd", 32, 1)]
    assert s["chosen_lr"] == pytest.approx(best["lr"]) and s["lr_grid"] == pytest.approx([0.08, 0.16, 0.32])
    assert s["n_diverged"] == 0 and s["n_seeds"] == 2


def test_chosen_lr_is_reported_relative_to_linear_scaling() -> None:
    """The paper's 8K AlexNet: best 0.03 where linear scaling of 0.01 at 512 gives 0.16 (ratio 0.19)."""
    a, b = _cell("alexnet", "sgd", 512, 1, [50.0, 51.0]), _cell("alexnet", "sgd", 8192, 1, [40.0, 41.0])
    a["runs"] = [dict(r, lr=0.01) for r in a["runs"]]
    b["runs"] = [dict(r, lr=0.03) for r in b["runs"]]
    s = summarize_cells([a, b])
    assert s[("alexnet", "sgd", 8192, 1)]["chosen_lr_vs_linear"] == pytest.approx(0.03 / 0.16)
    assert s[("alexnet", "sgd", 512, 1)]["chosen_lr_vs_linear"] == pytest.approx(1.0)


# ---------------------------------------------------------------- item 2: claims at the paper's span

def test_paper_values_in_the_yaml_equal_the_table_cells_they_come_from() -> None:
    """Every claim entry's value is the difference of the paper's own table cells at its span."""
    curves = paper_curves()
    acc = {k: dict(v) for k, v in curves.items()}
    expect = {
        "lars_alexnet_sgd_drop": acc["alexnet/sgd"][8192] - acc["alexnet/sgd"][512],
        "lars_alexnet_lars_holds": acc["alexnet/lars"][8192] - acc["alexnet/lars"][512],
        "lars_alexnet_lars_vs_sgd": acc["alexnet/lars"][8192] - acc["alexnet/sgd"][8192],
        "lars_alexnet_bn_sgd_drop": acc["alexnet_bn/sgd"][8192] - acc["alexnet_bn/sgd"][512],
        "lars_alexnet_bn_lars_holds": acc["alexnet_bn/lars"][32768] - acc["alexnet_bn/lars"][512],
        "lars_alexnet_bn_lars_holds_16x": acc["alexnet_bn/lars"][8192] - acc["alexnet_bn/lars"][512],
        "lars_alexnet_bn_lars_vs_sgd": acc["alexnet_bn/lars"][8192] - acc["alexnet_bn/sgd"][8192],
        "lars_longer_training_recovers": acc["alexnet_bn/lars/epochs"][200] - acc["alexnet_bn/lars"][512],
    }
    values = all_paper_values()
    for claim_id, value in expect.items():
        assert values[claim_id]["value"] == pytest.approx(value, abs=0.051), claim_id
    assert paper_spans(curves, "alexnet_bn", "lars") == [8, 16, 32, 64]
    assert paper_spans(curves, "alexnet", "sgd") == [8, 16]


def test_default_rows_are_span_matched() -> None:
    summary = _summary(DEFAULT, _full_grid(DEFAULT))
    rows = {r.claim_id: r for r in build_claims(summary, DEFAULT, scale_note="note")}
    assert set(rows) == {
        "lars_alexnet_sgd_drop", "lars_alexnet_lars_holds", "lars_alexnet_lars_vs_sgd", "lars_alexnet_bn_sgd_drop",
        "lars_alexnet_bn_lars_holds_16x", "lars_alexnet_bn_lars_holds", "lars_alexnet_bn_lars_vs_sgd",
        "lars_longer_training_recovers", "lars_alexnet_bn_ratio_spread",
    }
    # 16x rows (64 -> 1024) carry the paper's 512 -> 8K values, the 64x row (16 -> 1024) its 512 -> 32K value
    assert rows["lars_alexnet_sgd_drop"].paper_value == pytest.approx(-13.2)
    assert rows["lars_alexnet_bn_lars_holds_16x"].paper_value == pytest.approx(-0.1)
    assert rows["lars_alexnet_bn_lars_holds"].paper_value == pytest.approx(-2.4)
    assert "B=1024) - acc(B=16) (64x" in rows["lars_alexnet_bn_lars_holds"].scale_note
    assert "B=1024) - acc(B=64) (16x" in rows["lars_alexnet_bn_lars_holds_16x"].scale_note
    assert all(r.n_seeds == 3 for r in rows.values())


def test_no_row_without_a_paper_number_at_its_span() -> None:
    """A 4x grid has no paper number at its span: no accuracy rows at all; 8x gets the paper's 4K values."""
    four = {**DEFAULT, "batches": [64, 256], "wide": {**DEFAULT["wide"], "batches": []}}
    rows = build_claims(_summary(four, _full_grid(four)), four, scale_note="")
    assert [r.claim_id for r in rows] == ["lars_alexnet_bn_ratio_spread"]
    eight = {**DEFAULT, "batches": [16, 128], "wide": {**DEFAULT["wide"], "batches": [2]},
             "longer": {**DEFAULT["longer"], "epochs": [16]}}
    rows = {r.claim_id: r for r in build_claims(_summary(eight, _full_grid(eight)), eight, scale_note="")}
    assert rows["lars_alexnet_sgd_drop_8x"].paper_value == pytest.approx(53.1 - 58.0)
    assert rows["lars_alexnet_lars_vs_sgd_8x"].paper_value == pytest.approx(58.5 - 53.1)
    assert rows["lars_alexnet_bn_lars_holds"].paper_value == pytest.approx(-2.4)  # 2 -> 128 is 64x
    assert "lars_alexnet_sgd_drop" not in rows and "lars_alexnet_bn_lars_holds_16x" not in rows


def test_drop_and_holds_verdicts_follow_the_ci() -> None:
    acc = _full_grid(DEFAULT)
    acc[("alexnet", "sgd", 1024, 8)] = [20.0, 21.0, 19.0]  # SGD drops ~60 pp
    acc[("alexnet", "lars", 1024, 8)] = [60.0, 61.0, 59.0]  # LARS drops ~20 pp: fails "holds"
    rows = {r.claim_id: r for r in build_claims(_summary(DEFAULT, acc), DEFAULT, scale_note="")}
    drop = rows["lars_alexnet_sgd_drop"]
    assert drop.verdict == "holds" and drop.ours_mean == pytest.approx(-60)
    assert rows["lars_alexnet_lars_holds"].verdict == "fails"
    assert rows["lars_alexnet_lars_vs_sgd"].verdict == "holds"
    assert rows["lars_alexnet_bn_lars_holds"].verdict == "holds"  # equal accuracy: CI above -1 pp


def test_a_diverged_cell_makes_its_rows_inconclusive_not_a_drop() -> None:
    acc = _full_grid(DEFAULT)
    acc[("alexnet", "sgd", 1024, 8)] = [None, None, None]
    summary = _summary(DEFAULT, acc)
    assert summary[("alexnet", "sgd", 1024, 8)]["n_diverged"] == 1  # the search seed's one LR
    rows = {r.claim_id: r for r in build_claims(summary, DEFAULT, scale_note="")}
    row = rows["lars_alexnet_sgd_drop"]
    assert row.ours_mean is None and row.n_seeds == 0 and row.verdict == "inconclusive"
    assert "diverged" in row.scale_note


# ---------------------------------------------------------------- item 3: Table 5 as the paper states it

@pytest.mark.parametrize(
    "long_accs, verdict",
    [([79.6, 80.1, 79.1], "holds"),  # 0.4 pp under the small batch: within the 1 pp tolerance
     ([70.0, 70.5, 69.5], "fails")],  # 10 pp under it
)
def test_table5_compares_the_large_batch_at_2e_with_the_small_batch_at_e(long_accs, verdict) -> None:
    acc = _full_grid(DEFAULT)
    acc[("alexnet_bn", "lars", 1024, 8)] = [60.0, 60.5, 59.5]  # B_hi at E is far below: irrelevant to the rule
    acc[("alexnet_bn", "lars", 1024, 16)] = long_accs
    rows = {r.claim_id: r for r in build_claims(_summary(DEFAULT, acc), DEFAULT, scale_note="")}
    row = rows["lars_longer_training_recovers"]
    assert row.paper_value == pytest.approx(59.9 - 60.2)
    assert row.ours_mean == pytest.approx(sum(long_accs) / 3 - 80.0)  # against B_lo = 16 at E, not B_hi at E
    assert row.verdict == verdict and "acc(B=1024, 16 epochs) - acc(B=16, 8 epochs)" in row.scale_note


def test_table5_needs_the_64x_span() -> None:
    cfg = {**DEFAULT, "wide": {**DEFAULT["wide"], "batches": []}}
    rows = build_claims(_summary(cfg, _full_grid(cfg)), cfg, scale_note="")
    assert not any(r.claim_id.startswith("lars_longer") for r in rows)


# ---------------------------------------------------------------- item 4: Table 2, ||w|| / ||grad L||

def test_layer_ratios_are_the_norms_of_weights_and_first_batch_gradients() -> None:
    torch.manual_seed(0)
    model = build_model("alexnet_bn", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 4
    before = copy.deepcopy(model.state_dict())
    layers = layer_ratios(model, x, y, micro_batch=16)
    assert [r["layer"] for r in layers if r["layer"].endswith(".w")] == [
        "conv1.w", "conv2.w", "conv3.w", "fc6.w", "fc7.w", "fc8.w"]
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()
    conv1 = ref[0][0]
    assert layers[0]["w_norm"] == pytest.approx(float(conv1.weight.detach().norm()))
    assert layers[0]["g_norm"] == pytest.approx(float(conv1.weight.grad.norm()), rel=1e-4)
    assert layers[0]["ratio"] == pytest.approx(layers[0]["w_norm"] / layers[0]["g_norm"])
    # measured on a copy: weights, BN running statistics and gradients of the model are untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # without BatchNorm, micro-batches of 8 give the one-batch gradient (training's accumulation)
    plain = build_model("alexnet", num_classes=4, image_size=8, conv=[4, 4, 4], fc=8)
    whole, split = layer_ratios(plain, x, y, micro_batch=16), layer_ratios(plain, x, y, micro_batch=8)
    assert [r["g_norm"] for r in split] == pytest.approx([r["g_norm"] for r in whole], rel=1e-4)
    spread = ratio_spread(layers)
    ws = [r["ratio"] for r in layers if r["layer"].endswith(".w")]
    assert spread["spread"] == pytest.approx(max(ws) / min(ws)) and spread["min"] == min(ws)


def test_zero_biases_are_listed_but_not_in_the_spread() -> None:
    layers = [{"layer": "conv1.w", "ratio": 5.0}, {"layer": "conv1.b", "ratio": 0.0},
              {"layer": "fc6.w", "ratio": 1000.0}, {"layer": "fc6.b", "ratio": float("inf")}]
    assert ratio_spread(layers) == {"min_layer": "conv1.w", "min": 5.0, "max_layer": "fc6.w", "max": 1000.0,
                                    "spread": 200.0}
    with pytest.raises(ValueError, match="no conv/fc weight"):
        ratio_spread([{"layer": "conv1.b", "ratio": 0.0}])


def test_every_run_records_its_first_iteration_ratios() -> None:
    data = prepare(_arrays(), val_fraction=0.2)
    out = study.run_cell(data, CFG, model_name="alexnet_bn", arm="sgd", batch=8, epochs=1, seeds=[0, 1])
    by_seed = {r["seed"]: r["layer_ratios"] for r in out["runs"]}
    assert set(by_seed) == {0, 1} and by_seed[0] != by_seed[1]  # another seed: another init and first batch
    assert all(r["ratio"] > 0 for r in by_seed[0] if r["layer"].endswith(".w"))


@pytest.mark.parametrize("spread, verdict", [(200.0, "holds"), (2.0, "fails")])
def test_spread_row_judges_the_order_of_magnitude(spread, verdict) -> None:
    acc = _full_grid(DEFAULT)
    cells = [_cell(*key, accs, spread=spread) for key, accs in acc.items()]
    rows = {r.claim_id: r for r in build_claims(summarize_cells(cells), DEFAULT, scale_note="")}
    row = rows["lars_alexnet_bn_ratio_spread"]
    assert row.paper_value == pytest.approx(1345 / 5.76, abs=0.1)
    assert row.ours_mean == pytest.approx(spread) and row.n_seeds == 3 and row.verdict == verdict


def test_full_config_judges_the_headline_spans() -> None:
    """full.yaml (128 -> 8192): the 16x rows at 512 -> 8192, AlexNet-BN/LARS also at 64x, Table 5 at
    125/150/200 of 100 epochs, each beside the paper's number at that span and length."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "config.yaml").read_text())["lars"]
    over = yaml.safe_load((root / "workflow" / "configs" / "full.yaml").read_text())["lars"]

    def merge(a: dict, b: dict) -> dict:  # as Snakemake merges a --configfile over config.yaml
        return {k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                for k, v in {**a, **b}.items()}

    cfg = merge(base, over)
    rows = {r.claim_id: r for r in build_claims(_summary(cfg, _full_grid(cfg)), cfg, scale_note="")}
    assert set(rows) == {
        "lars_alexnet_sgd_drop", "lars_alexnet_lars_holds", "lars_alexnet_lars_vs_sgd", "lars_alexnet_bn_sgd_drop",
        "lars_alexnet_bn_lars_holds_16x", "lars_alexnet_bn_lars_holds", "lars_alexnet_bn_lars_vs_sgd",
        "lars_longer_training_recovers_e125", "lars_longer_training_recovers_e150", "lars_longer_training_recovers",
        "lars_alexnet_bn_ratio_spread",
    }
    assert "acc(B=8192) - acc(B=512) (16x" in rows["lars_alexnet_sgd_drop"].scale_note
    assert "acc(B=8192) - acc(B=128) (64x" in rows["lars_alexnet_bn_lars_holds"].scale_note
    assert rows["lars_longer_training_recovers_e125"].paper_value == pytest.approx(59.2 - 60.2)
    assert study.warmup_epochs(cfg["sgd"], "alexnet_bn") == 0.0 and study.warmup_epochs(cfg["lars"], "alexnet_bn") == 5.0
