"""Summary of the study's cells and the claims rows (1708.03888 Tables 1, 2, 3 and 5).

Every accuracy claim is a difference of top-1 test accuracy (percentage points) between two cells,
paired by seed (same seed = same initialisation and data order), at each cell's chosen LR; its mean
and 95% CI are over the seeds, and the verdict comes from the CI (``one_sample_test``):
- "drops" (SGD, Table 1) and "beats" (LARS vs SGD) hold when the whole CI is on the claimed side of 0;
- "holds accuracy" (LARS, Table 3) and Table 5's "longer training recovers the small-batch accuracy"
  hold when the whole CI is above ``-hold_tolerance_pp`` (1 pp, fixed before any run) and fail when it
  is wholly below.

Span matching (decided here): a row compares our largest batch B_hi of a model and arm with
B_hi / s, for a span s at which the paper has a number, and sets beside it the paper's difference at
the same span from its own small batch 512 (Tables 1, 3: e.g. AlexNet 512 -> 8K is 16x, AlexNet-BN
with LARS 512 -> 32K is 64x). A span the config does not cover gives no row; a row never carries a
paper value of another span. The headline span of each claim keeps the plain claim id; other spans
get an ``_<s>x`` suffix (``_e<epochs>`` for Table 5's other lengths).

Table 5 as the paper states it: at B_hi = 64 x B_lo (its 32K vs 512), twice the epochs recover the
small-batch accuracy: acc(B_hi, 2E) - acc(B_lo, E) >= -tolerance (paper: 59.9 - 60.2 = -0.3 pp).

Table 2: the spread max/min of ||w||/||grad L|| over AlexNet-BN's conv and fc weights at the first
iteration (:mod:`repro.lars.ratios`; paper 1345 / 5.76 = 234x), measured in the SGD cell at our
smallest batch; it holds when the CI of the spread is above ``ratio_spread_min`` (10x, an order of
magnitude, fixed before any run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from repro.common.claims import ClaimRow, TestResult, ci95, one_sample_test
from repro.common.paper_values import all_paper_values
from repro.lars.data import dataset_name
from repro.lars.models import IMAGENET_MIN_SIZE
from repro.lars.ratios import ratio_spread

__all__ = ["PAPER_BATCH", "build_claims", "paper_curves", "paper_spans", "summarize_cells"]

PAPER = "LARS (You, Gitman, Ginsburg 2017, arXiv 1708.03888)"
PAPER_BATCH = 512  # the paper's small batch, the base of every span (Tables 1, 3)
PAPER_EPOCHS = 100  # AlexNet / AlexNet-BN training length (Sec. 4; Table 5's base)
T5_SPAN = 32768 // PAPER_BATCH  # Table 5 is at 32K: 64x the small batch
UNITS = {"pp": "top-1 test accuracy difference, percentage points", "x": "max/min over layers (ratio)"}


@dataclass(frozen=True)
class _Spec:
    claim_id: str  # at the headline span
    model: str
    arm: str
    kind: str  # drop | holds | beats
    headline_span: int


SPECS = (
    _Spec("lars_alexnet_sgd_drop", "alexnet", "sgd", "drop", 16),
    _Spec("lars_alexnet_lars_holds", "alexnet", "lars", "holds", 16),
    _Spec("lars_alexnet_lars_vs_sgd", "alexnet", "lars", "beats", 16),
    _Spec("lars_alexnet_bn_sgd_drop", "alexnet_bn", "sgd", "drop", 16),
    _Spec("lars_alexnet_bn_lars_holds", "alexnet_bn", "lars", "holds", 64),
    _Spec("lars_alexnet_bn_lars_vs_sgd", "alexnet_bn", "lars", "beats", 16),
)
T5_ID = "lars_longer_training_recovers"  # at 2x the epochs (Table 5: 200 vs 100)
SPREAD_ID = "lars_alexnet_bn_ratio_spread"
SPREAD_PAPER = 1345.0 / 5.76  # Table 2: fc6.w over conv1.w


def _cell_key(cell: dict[str, Any]) -> tuple[str, str, int, int]:
    return (cell["model"], cell["arm"], int(cell["batch"]), int(cell["epochs"]))


def summarize_cells(cells: list[dict[str, Any]]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Per (model, arm, batch, epochs): the LR grid, the chosen LR, divergence counts, test accuracy
    per seed at the chosen LR (diverged seeds have none), mean and CI, and the Table 2 ratios."""
    out: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for cell in cells:
        key = _cell_key(cell)
        if key in out:
            raise ValueError(f"duplicate study cell {key}")
        chosen = cell["chosen_lr_ref"]
        search_seed = int(cell["seeds"][0])
        search = [r for r in cell["runs"] if int(r["seed"]) == search_seed]
        at_lr = [r for r in cell["runs"] if chosen is not None and float(r["lr_ref"]) == float(chosen)]
        by_seed = {int(r["seed"]): float(r["test_acc"]) for r in at_lr if not r["diverged"]}
        mean, ci = ci95(list(by_seed.values()))
        grid = sorted(float(r["lr_ref"]) for r in search)
        ratios: dict[int, list[dict[str, Any]]] = {}
        for r in cell["runs"]:
            if r.get("layer_ratios"):
                ratios.setdefault(int(r["seed"]), r["layer_ratios"])
        out[key] = {
            "model": key[0],
            "arm": key[1],
            "batch": key[2],
            "epochs": key[3],
            "lr_grid": [float(r["lr"]) for r in sorted(search, key=lambda r: float(r["lr_ref"]))],
            "chosen_lr_ref": None if chosen is None else float(chosen),
            "chosen_lr": float(at_lr[0]["lr"]) if at_lr else None,
            "chosen_lr_vs_linear": None,  # filled by _add_linear_ratio
            "test_acc_by_seed": by_seed,
            "test_acc_mean": mean,
            "test_acc_ci95": ci,
            "n_seeds": len(by_seed),
            # divergence, its own count (never scored as accuracy): LRs of the search that diverged,
            # and seeds that diverged at the chosen LR
            "n_diverged": sum(bool(r["diverged"]) for r in search),
            "diverged_lrs": [float(r["lr"]) for r in search if r["diverged"]],
            "n_diverged_at_chosen_lr": sum(bool(r["diverged"]) for r in at_lr),
            "steps": int(search[0]["steps"]) if search else None,
            # the best LR is the smallest or largest of the grid: the optimum may lie outside it
            "chosen_at_grid_edge": chosen is not None and len(grid) > 1 and float(chosen) in (grid[0], grid[-1]),
            "ratio_spread_by_seed": {s: ratio_spread(v)["spread"] for s, v in sorted(ratios.items())},
            "layer_ratios": ratios.get(search_seed, []),
            "lr_search": [
                {k: r[k] for k in ("lr_ref", "lr", "seed", "val_acc", "test_acc", "diverged")} for r in search
            ],
        }
    _add_linear_ratio(out)
    return out


def _add_linear_ratio(summary: dict[tuple, dict[str, Any]]) -> None:
    """chosen LR / (the same model and arm's chosen LR at its smallest batch x B / B_small): 1 is
    linear scaling, below 1 is the paper's finding for SGD (8K: 0.03 vs linear 0.16, ratio 0.19)."""
    for (model, arm, batch, epochs), cell in summary.items():
        base = [c for c in summary.values() if (c["model"], c["arm"], c["epochs"]) == (model, arm, epochs)
                and c["chosen_lr"] is not None]
        if len(base) < 2 or cell["chosen_lr"] is None:
            continue  # no other batch of this model, arm and length to compare with
        lo = min(base, key=lambda c: c["batch"])
        cell["chosen_lr_vs_linear"] = cell["chosen_lr"] / (lo["chosen_lr"] * batch / lo["batch"])


def paper_curves() -> dict[str, list[tuple[float, float]]]:
    """The paper's accuracy curves from paper_values/lars.yaml (entries with ``series`` and ``x``):
    ``{"alexnet/sgd": [(batch, acc), ...], ..., "alexnet_bn/lars/epochs": [(epochs, acc), ...]}``."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for entry in all_paper_values().values():
        if entry.get("stage") == "lars" and "series" in entry:
            curves.setdefault(entry["series"], []).append((float(entry["x"]), float(entry["value"])))
    return {k: sorted(v) for k, v in curves.items()}


def _paper_acc(curves: dict[str, list[tuple[float, float]]], series: str, x: float) -> float | None:
    return next((acc for xx, acc in curves.get(series, []) if xx == x), None)


def paper_spans(curves: dict[str, list[tuple[float, float]]], model: str, arm: str) -> list[int]:
    """Spans B / 512 at which the paper has an accuracy for ``model``/``arm`` (Tables 1, 3)."""
    xs = [int(x) for x, _ in curves.get(f"{model}/{arm}", [])]
    return sorted(x // PAPER_BATCH for x in xs if x > PAPER_BATCH and x % PAPER_BATCH == 0)


def _paired(
    summary: dict[tuple, dict[str, Any]], a: tuple, b: tuple, *, threshold: float = 0.0, higher: bool = True
) -> tuple[TestResult, str]:
    """The test of acc(a) - acc(b) against ``threshold`` over the seeds both cells have; note on what is missing."""
    if a not in summary or b not in summary:
        missing = [k for k in (a, b) if k not in summary]
        return one_sample_test([], threshold=threshold, higher_is_better=higher), f"cell(s) {missing} not in this study's config"
    sa, sb = summary[a]["test_acc_by_seed"], summary[b]["test_acc_by_seed"]
    seeds = sorted(set(sa) & set(sb))
    note = ""
    if not seeds:
        note = "no seed with an accuracy in both cells (every LR or seed diverged)"
    return one_sample_test([sa[s] - sb[s] for s in seeds], threshold=threshold, higher_is_better=higher), note


def _fmt(summary: dict[tuple, dict[str, Any]], key: tuple) -> str:
    cell = summary.get(key)
    if cell is None:
        return "n/a"
    div = f"{cell['n_diverged']} of {len(cell['lr_grid'])} LRs diverged"
    if cell["test_acc_mean"] is None:
        return f"no accuracy ({div})"
    edge = ", at the edge of its LR grid" if cell["chosen_at_grid_edge"] else ""
    vs = f", {cell['chosen_lr_vs_linear']:.2g}x linear" if key[1] == "sgd" and cell["chosen_lr_vs_linear"] else ""
    lr = f"LR {cell['chosen_lr']:.3g}{vs}{edge}"
    return f"{cell['test_acc_mean']:.1f}% (B={key[2]}, {lr}; {div}; {cell['steps']} steps)"


def _batches(cfg: dict[str, Any], model: str, arm: str) -> list[int]:
    """The batches at which ``model``/``arm`` has a main-length cell: the grid plus ``wide``'s."""
    wide = cfg.get("wide") or {}
    extra = wide.get("batches", []) if (wide.get("model"), wide.get("arm")) == (model, arm) else []
    return sorted(set(cfg["batches"]) | set(extra))


def _suffix(span: int, headline: int) -> str:
    return "" if span == headline else f"_{span}x"


def _entry(claim_id: str) -> dict[str, Any]:
    return all_paper_values().get(claim_id, {})


def build_claims(
    summary: dict[tuple, dict[str, Any]], cfg: dict[str, Any], *, scale_note: str
) -> list[ClaimRow]:
    """The stage's claims rows, every one at the paper's own span; ``scale_note`` says what differs."""
    curves = paper_curves()
    epochs = int(cfg["epochs"])
    tol = float(cfg["claims"]["hold_tolerance_pp"])
    rows: list[ClaimRow] = []

    def row(claim_id: str, claim: str, where: str, paper_value: float, a: tuple, b: tuple, threshold: float,
            higher: bool, how: str) -> None:
        test, missing = _paired(summary, a, b, threshold=threshold, higher=higher)
        entry = _entry(claim_id)
        note = f"{how}; ours: {_fmt(summary, a)} vs {_fmt(summary, b)}. {missing + '. ' if missing else ''}{scale_note}"
        rows.append(ClaimRow(
            paper=PAPER, claim_id=claim_id, claim=entry.get("claim", claim),
            metric=f"{UNITS['pp']} ({entry.get('where', where)})", paper_value=round(paper_value, 2),
            scale_note=note, **test.fields(),
        ))

    for spec in SPECS:
        series = f"{spec.model}/{spec.arm}"
        if spec.kind == "beats":  # LARS vs SGD at every grid batch B whose span B / B_min the paper has
            batches = sorted(cfg["batches"])
            for b_hi in batches[1:]:
                span = b_hi // batches[0]
                lars_acc = _paper_acc(curves, series, PAPER_BATCH * span)
                sgd_acc = _paper_acc(curves, f"{spec.model}/sgd", PAPER_BATCH * span)
                if b_hi % batches[0] or lars_acc is None or sgd_acc is None:
                    continue
                row(spec.claim_id + _suffix(span, spec.headline_span),
                    f"At {span}x the small batch, LARS beats SGD ({spec.model}: {lars_acc} vs {sgd_acc} at "
                    f"{PAPER_BATCH * span}).", "Tables 1 and 3", lars_acc - sgd_acc,
                    (spec.model, "lars", b_hi, epochs), (spec.model, "sgd", b_hi, epochs), 0.0, True,
                    f"acc(LARS) - acc(SGD) at B={b_hi} ({span}x B={batches[0]}; paper {PAPER_BATCH * span}); "
                    "holds if the CI is above 0")
            continue
        available = _batches(cfg, spec.model, spec.arm)
        b_hi = available[-1]
        base = _paper_acc(curves, series, PAPER_BATCH)
        for span in paper_spans(curves, spec.model, spec.arm):
            if b_hi % span or b_hi // span not in available or base is None:
                continue
            b_lo = b_hi // span
            hi_acc = _paper_acc(curves, series, PAPER_BATCH * span)
            drop = spec.kind == "drop"
            verb = "drops" if drop else "holds"
            how = (f"acc(B={b_hi}) - acc(B={b_lo}) ({span}x; paper {PAPER_BATCH} -> {PAPER_BATCH * span}), "
                   + ("SGD at its best non-diverged LR per batch; holds if the CI is below 0" if drop
                      else f"LARS; holds if the CI is above -{tol:g} pp"))
            row(spec.claim_id + _suffix(span, spec.headline_span),
                f"{spec.model} with {spec.arm.upper()} {verb} accuracy from {PAPER_BATCH} to {PAPER_BATCH * span}: "
                f"{base} -> {hi_acc}.", "Table 1" if drop else "Table 3", hi_acc - base,
                (spec.model, spec.arm, b_hi, epochs), (spec.model, spec.arm, b_lo, epochs),
                0.0 if drop else -tol, not drop, how)

    rows += _table5_rows(summary, cfg, curves, scale_note, tol)
    spread = _spread_row(summary, cfg, scale_note)
    if spread is not None:
        rows.append(spread)
    return rows


def _table5_rows(summary: dict[tuple, dict[str, Any]], cfg: dict[str, Any], curves: dict[str, Any],
                 scale_note: str, tol: float) -> list[ClaimRow]:
    """acc(B_hi, r E) - acc(B_hi / 64, E) for every longer length r E whose paper length 100 r is in
    Table 5 (headline: r = 2, 200 vs 100 epochs)."""
    longer = cfg["longer"]
    model, arm = longer["model"], longer["arm"]
    epochs = int(cfg["epochs"])
    b_hi = max(cfg["batches"])
    base = _paper_acc(curves, f"{model}/{arm}", PAPER_BATCH)
    b_lo = b_hi // T5_SPAN
    if b_hi % T5_SPAN or b_lo not in _batches(cfg, model, arm) or base is None:
        return []
    rows = []
    for e in sorted(longer["epochs"]):
        x = PAPER_EPOCHS * e / epochs
        paper_long = _paper_acc(curves, f"{model}/{arm}/epochs", x)
        if paper_long is None or not float(x).is_integer():
            continue
        claim_id = T5_ID if int(x) == 2 * PAPER_EPOCHS else f"{T5_ID}_e{int(x)}"
        a, b = (model, arm, b_hi, e), (model, arm, b_lo, epochs)
        test, missing = _paired(summary, a, b, threshold=-tol)
        same_b = _paired(summary, a, (model, arm, b_hi, epochs))[0].ours_mean
        extra = f" For reference acc(B={b_hi}, {e} epochs) - acc(B={b_hi}, {epochs} epochs) = " + (
            f"{same_b:+.1f} pp." if same_b is not None else "n/a.")
        entry = _entry(claim_id)
        rows.append(ClaimRow(
            paper=PAPER, claim_id=claim_id,
            claim=entry.get("claim", f"{model} {arm} at 32K for {int(x)} epochs recovers the 512-batch accuracy "
                                     f"of {PAPER_EPOCHS} epochs: {paper_long} vs {base}."),
            metric=f"{UNITS['pp']} ({entry.get('where', 'Tables 3 and 5')})",
            paper_value=round(paper_long - base, 2), **test.fields(),
            scale_note=(f"acc(B={b_hi}, {e} epochs) - acc(B={b_lo}, {epochs} epochs) ({T5_SPAN}x, paper 32K at "
                        f"{int(x)} vs 512 at {PAPER_EPOCHS}), {arm.upper()}; holds if the CI is above -{tol:g} pp; "
                        f"ours: {_fmt(summary, a)} vs {_fmt(summary, b)}.{extra} "
                        f"{missing + '. ' if missing else ''}{scale_note}"),
        ))
    return rows


def _spread_row(summary: dict[tuple, dict[str, Any]], cfg: dict[str, Any], scale_note: str) -> ClaimRow | None:
    """Table 2: spread of ||w||/||grad|| over AlexNet-BN's weight layers at the first iteration."""
    b_lo, epochs = min(cfg["batches"]), int(cfg["epochs"])
    cell = summary.get(("alexnet_bn", "sgd", b_lo, epochs))
    if cell is None or not cell["ratio_spread_by_seed"]:
        return None
    threshold = float(cfg["claims"]["ratio_spread_min"])
    spreads = list(cell["ratio_spread_by_seed"].values())
    ext = ratio_spread(cell["layer_ratios"]) if cell["layer_ratios"] else None
    first = (f"first seed: {ext['min']:.3g} ({ext['min_layer']}) to {ext['max']:.3g} ({ext['max_layer']}); "
             if ext else "")
    plain = summary.get(("alexnet", "sgd", b_lo, epochs))
    other = ""
    if plain is not None and plain["ratio_spread_by_seed"]:
        pm, _ = ci95(list(plain["ratio_spread_by_seed"].values()))
        other = f"AlexNet without BN: {pm:.3g}x. "
    entry = _entry(SPREAD_ID)
    return ClaimRow(
        paper=PAPER, claim_id=SPREAD_ID,
        claim=entry.get("claim", "||w||/||grad L|| varies widely between layers (AlexNet-BN, first iteration)."),
        metric=f"{UNITS['x']} of ||w||/||grad L|| over conv/fc weights ({entry.get('where', 'Table 2')})",
        paper_value=round(SPREAD_PAPER, 1), **one_sample_test(spreads, threshold=threshold).fields(),
        scale_note=(f"max/min of ||w||/||grad L|| over the conv and fc weights at the initial weights and the first "
                    f"batch (B={b_lo}), per seed; holds if the CI is above {threshold:g}x (an order of magnitude); "
                    f"{first}{other}paper: 5.76 (conv1.w) to 1345 (fc6.w) at B=512 on ImageNet. "
                    "Our weights are He-normal (std sqrt(2/fan-in) per layer), the paper's nets are Caffe's BVLC "
                    "AlexNet (fixed-std Gaussians), with 4096-wide fc layers against our 64; biases start at zero "
                    "here (ratio 0) and are left out of the spread. "
                    f"{scale_note}"),
    )


def scale_note(cfg: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """What differs from the paper's protocol (ImageNet, 100 epochs, 512 -> 8K / 32K), for every row."""
    d = cells[0]["data"] if cells else {}
    batches = sorted(cfg["batches"])
    wide = cfg["wide"]
    steps_hi = -(-int(d.get("n_train", 0)) // batches[-1]) * int(cfg["epochs"])
    src = dataset_name(d.get("path", ""), d.get("source"))
    wide_note = (f"; {wide['model']}/{wide['arm']} also at {wide['batches']} for the paper's 64x span"
                 if wide["batches"] else "")
    sgd, lars = cfg["sgd"], cfg["lars"]
    nets = "AlexNet-shaped" if int(d.get("image_size") or 0) >= IMAGENET_MIN_SIZE else "small AlexNet-like"
    return (
        f"Ours: {src}, {d.get('n_train')} train / {d.get('n_test')} test images of {d.get('image_size')} px, "
        f"{nets} CNNs (no LRN, no dropout), {cfg['epochs']} epochs, batches {batches}{wide_note} "
        f"(paper: ImageNet, AlexNet with LRN and AlexNet-BN, 100 epochs, 512 to 8K = 16x and 32K = 64x); each row "
        f"compares batches at the span of the paper number beside it. Our largest batch takes {steps_hi} optimizer "
        f"steps in all, the paper's 15.6K (8K) and 3.9K (32K), so our large-batch runs are far more step-starved. "
        f"Micro-batch {cfg['micro_batch']} with gradient accumulation (BN statistics per micro-batch). "
        f"SGD: momentum {cfg['momentum']}, LR grid {sgd['lrs']} x B/{sgd['ref_batch']} x {sgd['lr_factors']} "
        f"(linear scaling and below it), warm-up {sgd['warmup_epochs']} epochs; LARS: eta "
        f"{lars['trust_coefficient']}, gamma_0 grid {lars['lrs']} x {lars['scaling']}(B/{lars['ref_batch']}) "
        f"x {lars['lr_factors']}, warm-up {lars['warmup_epochs']} epochs (paper: LARS 2 AlexNet / 5 AlexNet-BN of "
        f"100, AlexNet-BN baseline without warm-up); poly(2) decay for both. Best LR per cell by validation "
        f"accuracy of seed {cells[0]['seeds'][0] if cells else '?'} among the runs that did not diverge (while the "
        f"best is the grid's smallest or largest LR the search goes on past it, up to {sgd['edge_steps']} / "
        f"{lars['edge_steps']} more LRs for SGD / LARS), then "
        f"{cfg['seeds']} seeds at it; diverged runs are counted, not scored. "
        "LARS uses lambda = eta where ||w|| = 0 (zero-initialised biases and BN shifts would otherwise never move)."
    )
