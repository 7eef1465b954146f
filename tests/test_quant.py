"""Network quantization (arXiv 1612.01543): quantizers, codes, compression ratio, Hessian diagonal."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from repro.quant import analysis, coding
from repro.quant.engine import Layout, finetune_centres, flat_values, make_layout, params_from_values
from repro.quant.hessian import adam_second_moment_diag, ggn_diagonal, hutchinson_diagonal, hvp_diagonal
from repro.quant.kmeans1d import interval_sse, optimal_kmeans, optimal_partition, prepare, weighted_kmeans_1d
from repro.quant.models import lenet5, mlp, resnet32
from repro.quant.quantizers import ecsq_quantize, hw_distortion, uniform_quantize


def _hw_objective(w, h, labels, k):
    """The HW k-means objective (Sec. 3.2) evaluated directly: sum_j sum_{i in C_j} h_i (w_i - c_j)^2 with HW means c_j."""
    total = 0.0
    for j in range(k):
        m = labels == j
        if m.any():
            c = np.sum(h[m] * w[m]) / np.sum(h[m])
            total += float(np.sum(h[m] * (w[m] - c) ** 2))
    return total


def _all_objectives(w, h, assign, k):
    """The same objective for many assignments at once (rows of ``assign``)."""
    total = np.zeros(len(assign))
    for j in range(k):
        m = assign == j
        s0, s1, s2 = (m * h).sum(1), (m * h * w).sum(1), (m * h * w * w).sum(1)
        total += np.where(s0 > 0, s2 - s1**2 / np.where(s0 > 0, s0, 1.0), 0.0)
    return total


@pytest.mark.parametrize("n, k", [(7, 2), (7, 3), (8, 4)])
def test_hw_kmeans_reaches_the_exact_optimum__sec3_2(n: int, k: int) -> None:
    """Brute force over *every* assignment (not only intervals): DP is optimal, Lloyd from seeds reaches it."""
    rng = np.random.default_rng(n * 10 + k)
    for _ in range(4):
        w = rng.normal(size=n)
        h = rng.random(n) + 0.05
        assign = np.array(list(itertools.product(range(k), repeat=n)))  # [k^n, n]: every assignment
        best = float(np.min(_all_objectives(w, h, assign, k)))
        dp = weighted_kmeans_1d(w, h, k, init="dp")
        assert dp.objective == pytest.approx(best, rel=1e-10, abs=1e-12)
        assert _hw_objective(w, h, dp.labels, len(dp.centres)) == pytest.approx(best, abs=1e-10)
        pp = weighted_kmeans_1d(w, h, k, init="kmeans++", n_init=30, rng=rng)
        assert pp.objective == pytest.approx(best, rel=1e-9, abs=1e-12)


def _brute_force_contiguous(w: np.ndarray, h: np.ndarray, k: int) -> float:
    """Optimum over every split of the sorted weights into k non-empty intervals (1-D optimal clusters
    are intervals, which the all-assignments search below confirms on the smallest sets)."""
    order = np.argsort(w)
    ws, hs = w[order], h[order]
    best = math.inf
    for cuts in itertools.combinations(range(1, len(w)), k - 1):
        total = 0.0
        for lo, hi in zip((0, *cuts), (*cuts, len(w))):
            c = np.sum(hs[lo:hi] * ws[lo:hi]) / np.sum(hs[lo:hi])
            total += float(np.sum(hs[lo:hi] * (ws[lo:hi] - c) ** 2))
        best = min(best, total)
    return best


@pytest.mark.parametrize("n, k", [(8, 3), (12, 2), (12, 4), (14, 5)])
def test_claims_kmeans_within_0p1_percent_of_brute_force_heavy_tails__sec3_2(n: int, k: int) -> None:
    """The k-means results the claims use (init exact, :func:`optimal_kmeans`, every k in one DP pass) hit the
    brute-force optimum of the HW objective on heavy-tailed weights (Student t, 1.5 d.o.f., like real nets'
    outliers) with Hessian weights spanning six orders of magnitude; one k-means++ seeding often does not."""
    rng = np.random.default_rng(100 * n + k)
    pp_gaps = []
    for _ in range(5):
        w = 0.05 * rng.standard_t(1.5, size=n)
        h = 10.0 ** rng.uniform(-3, 3, size=n)
        best = _brute_force_contiguous(w, h, k)
        if n <= 8:  # every assignment, not only intervals
            assign = np.array(list(itertools.product(range(k), repeat=n)))
            assert float(np.min(_all_objectives(w, h, assign, k))) == pytest.approx(best, rel=1e-9, abs=1e-15)
        sw = prepare(w, h)
        res = optimal_kmeans(sw, list(range(1, k + 1)))
        assert res[k].objective <= best * (1 + 1e-3) + 1e-15  # within 0.1 % (in fact exact)
        assert res[k].objective == pytest.approx(best, rel=1e-9, abs=1e-15)
        assert _hw_objective(w, h, res[k].labels, len(res[k].centres)) == pytest.approx(best, rel=1e-9, abs=1e-15)
        pp = weighted_kmeans_1d(sw, None, k, init="kmeans++", n_init=1, rng=rng)
        pp_gaps.append(pp.objective / best - 1 if best > 0 else 0.0)
    assert min(pp_gaps) >= -1e-9  # nothing beats the optimum


def test_kmeanspp_seeding_misses_the_optimum_on_heavy_tailed_weights() -> None:
    """Why the claims use the exact optimum: on a net-sized heavy-tailed set with Hessian weights over six
    orders of magnitude, Lloyd from one k-means++ seeding lands > 0.1 % above it at some k."""
    rng = np.random.default_rng(7)
    w = np.concatenate([0.05 * rng.standard_t(3, 4000), rng.laplace(0, 0.01, 4000)])
    h = 10.0 ** rng.uniform(-3, 3, w.size)
    sw = prepare(w, h)
    ks = [2, 4, 8, 16, 32]
    exact = optimal_kmeans(sw, ks)
    gaps = [weighted_kmeans_1d(sw, None, k, init="kmeans++", rng=np.random.default_rng(k)).objective
            / exact[k].objective - 1 for k in ks]
    assert min(gaps) >= -1e-9 and max(gaps) > 1e-3
    for k in ks:  # the one-pass DP agrees with the single-k DP
        assert exact[k].objective == pytest.approx(optimal_partition(sw.s0, sw.s1, sw.s2, k)[1], rel=1e-12)


def test_best_ratio_reads_only_finetuned_seedings() -> None:
    """Table 1 with pruning off and more k-means seedings than fine-tuned ones (the unpruned sweep)."""
    recs = [{"method": "kmeans", "init": 0, "cr_huffman": 10.0, "acc": 90.0, "acc_ft": 95.0},
            {"method": "kmeans", "init": 1, "cr_huffman": 20.0, "acc": 96.0}]
    assert analysis.best_ratio(recs, "kmeans", 95.0, 0.5, finetuned=True) == 10.0
    assert analysis.best_ratio(recs, "kmeans", 95.0, 0.5, finetuned=False) == 20.0


def test_headline_net_first_and_table1_paper_value_per_net() -> None:
    from repro.quant.claims import headline_order, paper_value_for

    nets = {"lenet_mnist": {"enabled": True, "model": "lenet5"}, "alexnet_imagenet": {"enabled": False, "model": "alexnet"},
            "resnet32_cifar10": {"enabled": True, "model": "resnet32"}, "mlp_digits": {"enabled": True, "model": "mlp"}}
    assert headline_order(nets) == ["resnet32_cifar10", "lenet_mnist", "mlp_digits"]
    on = {"prune": {"enabled": True}, "finetune": {"enabled": True}}
    assert paper_value_for("quant_table1_uniform_best_cr", nets["resnet32_cifar10"], on) == pytest.approx(22.17 / 20.51, abs=1e-4)
    assert paper_value_for("quant_table1_uniform_best_cr", nets["lenet_mnist"], on) == pytest.approx(51.25 / 47.16, abs=1e-4)
    assert paper_value_for("quant_table1_uniform_vs_ecsq", nets["resnet32_cifar10"], on) == pytest.approx(22.17 / 21.01, abs=1e-4)
    assert paper_value_for("quant_table1_uniform_vs_ecsq", nets["alexnet_imagenet"], on) is None  # no ECSQ cell
    off = {"prune": {"enabled": False}, "finetune": {"enabled": True}}
    assert paper_value_for("quant_table1_uniform_best_cr", nets["lenet_mnist"], off) is None


def test_operational_curve_spacing() -> None:
    recs = [{"method": "m", "init": 0, "bits_huffman": b} for b in (1.0, 1.4, 2.0, 2.1, 3.5)]
    assert analysis.max_spacing(recs, "m", 1.5, 2.05) == pytest.approx(0.6)  # 1.4 -> 2.0 -> 2.1
    assert math.isnan(analysis.max_spacing(recs, "m", 0.5, 2.0))


def test_optimal_partition_matches_dynamic_programming_by_hand() -> None:
    """O(M log M) divide-and-conquer layers agree with the plain O(k M^2) recurrence."""
    rng = np.random.default_rng(1)
    w = np.sort(rng.laplace(size=60))
    h = rng.random(60) + 0.1
    sw = prepare(w, h)
    for k in (1, 2, 5, 9):
        _, obj = optimal_partition(sw.s0, sw.s1, sw.s2, k)
        m = len(w)
        d = np.full((k + 1, m + 1), np.inf)
        d[0, 0] = 0.0
        for j in range(1, k + 1):
            for e in range(1, m + 1):
                a = np.arange(e)
                d[j, e] = np.min(d[j - 1, a] + interval_sse(sw, a, np.full(e, e)))
        assert obj == pytest.approx(d[k, m], rel=1e-10, abs=1e-12)


def test_weighted_kmeans_objective_no_worse_than_sklearn() -> None:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    w = np.concatenate([rng.laplace(0, 0.05, 3000), rng.normal(0.2, 0.01, 500)])
    h = np.exp(rng.normal(0, 1, w.size))
    ours = weighted_kmeans_1d(w, h, 8, init="dp")
    with threadpool_limits(1):
        sk = KMeans(8, n_init=3, random_state=0).fit(w[:, None], sample_weight=h)
    assert ours.objective <= sk.inertia_ * (1 + 1e-9)
    # reported objective = the Sec. 3.2 objective evaluated directly; labels are nearest-centre assignments
    assert ours.objective == pytest.approx(_hw_objective(w, h, ours.labels, len(ours.centres)), rel=1e-9)
    nearest = np.argmin(np.abs(w[:, None] - ours.centres[None]), axis=1)
    assert np.array_equal(nearest, ours.labels)


def test_unweighted_kmeans_is_hw_with_unit_weights() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=500)
    a = weighted_kmeans_1d(w, None, 5, init="dp")
    b = weighted_kmeans_1d(w, np.ones_like(w), 5, init="dp")
    assert np.allclose(a.centres, b.centres) and a.objective == pytest.approx(b.objective)


def test_bad_hessian_weights_rejected() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        prepare(np.arange(3.0), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        prepare(np.array([0.0, np.nan]), None)


def test_huffman_code_is_optimal_on_known_distribution__sec4_1() -> None:
    """CLRS's example (45, 13, 12, 16, 9, 5): lengths 1,3,3,3,4,4, mean 2.24 bits, prefix-free."""
    counts = np.array([45, 13, 12, 16, 9, 5])
    lengths = coding.huffman_code_lengths(counts)
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    cost = coding.huffman_cost(counts)
    assert cost.mean_length == pytest.approx(2.24)
    assert coding.is_prefix_free(coding.canonical_codewords(lengths))
    # dyadic probabilities: Huffman lengths are exactly -log2 p, mean length = entropy
    dyadic = np.array([8, 4, 2, 1, 1])
    assert coding.huffman_cost(dyadic).mean_length == pytest.approx(coding.entropy_bits(dyadic))


def test_huffman_matches_brute_force_over_prefix_codes() -> None:
    """No length vector satisfying Kraft's inequality beats Huffman's (so it is optimal)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        counts = rng.integers(1, 50, size=5)
        huff = float((counts * coding.huffman_code_lengths(counts)).sum())
        best = min(float((counts * np.array(ls)).sum()) for ls in itertools.product(range(1, 6), repeat=5)
                   if sum(2.0 ** -l for l in ls) <= 1.0)
        assert huff == pytest.approx(best)


def test_huffman_length_within_entropy_bound_and_decodes() -> None:
    """H <= b_bar < H + 1 (Sec. 4.1) and the canonical code decodes back to the symbols."""
    rng = np.random.default_rng(7)
    for k in (2, 3, 7, 32):
        counts = rng.integers(1, 1000, size=k)
        cost = coding.huffman_cost(counts)
        ent = coding.entropy_bits(counts)
        assert ent - 1e-12 <= cost.mean_length < ent + 1
        words = coding.canonical_codewords(coding.huffman_code_lengths(counts))
        assert coding.is_prefix_free(words)
        symbols = rng.integers(0, k, size=300)
        bits = coding.encode(symbols, words)
        assert np.array_equal(coding.decode(bits, words), symbols)
        assert len(bits) == sum(len(words[s]) for s in symbols)
    assert coding.huffman_code_lengths(np.array([5])).tolist() == [1]
    with pytest.raises(ValueError, match="positive count"):
        coding.huffman_code_lengths(np.array([3, 0]))


def test_compression_ratio_hand_made_case__sec2_1() -> None:
    """N=1000 32-bit weights, 4 clusters of 500/250/125/125: CR = N b / (sum |C_i| b_i + sum b_i + k b)."""
    counts = np.array([500, 250, 125, 125])
    huff = coding.huffman_cost(counts)  # lengths 1, 2, 3, 3
    assert huff.payload_bits == 1750 and huff.table_bits == 9
    assert coding.compression_ratio(1000, huff, 4) == pytest.approx(32000 / (1750 + 9 + 128))
    fixed = coding.fixed_length_cost(counts)  # 2 bits each
    assert coding.compression_ratio(1000, fixed, 4) == pytest.approx(32000 / (2000 + 8 + 128))
    # 100 unquantized parameters are stored at 32 bits
    assert coding.compression_ratio(1100, fixed, 4, n_unquantized=100) == pytest.approx(35200 / (2136 + 3200))


def test_sparse_index_gaps_with_skip_symbols() -> None:
    mask = np.zeros(20, dtype=bool)
    mask[[1, 2, 9, 19]] = True  # gaps 2, 1, 7, 10
    assert coding.index_gap_symbols(mask, max_gap=4).tolist() == [2, 1, 0, 3, 0, 0, 2]
    assert coding.index_cost(np.ones(5, dtype=bool)).payload_bits == 0


def test_uniform_and_ecsq_hit_the_target_entropy__sec4() -> None:
    rng = np.random.default_rng(0)
    w = rng.laplace(0, 0.1, 4000)
    h = np.exp(rng.normal(0, 1.0, w.size))
    for rate in (1.0, 2.0, 3.0):
        u = uniform_quantize(w, h, rate, tol=0.01)
        e = ecsq_quantize(w, h, rate, tol=0.02)
        assert coding.entropy_bits(u.counts) == pytest.approx(rate, abs=0.05)
        assert coding.entropy_bits(e.counts) == pytest.approx(rate, abs=0.05)
        # ECSQ minimizes D_h + lambda H, so at equal rate its Hessian-weighted distortion is lower
        assert hw_distortion(w, h, e) < hw_distortion(w, h, u)
        # uniform: shared values are Hessian-weighted means, levels at multiples of the step (0 is one)
        step = u.info["step"]
        assert np.all(np.diff(np.round(w[np.argsort(w)] / step)) >= 0)
        zero_cell = np.abs(w) < step / 2
        assert len(np.unique(u.labels[zero_cell])) == 1


def _tiny_relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def test_hessian_diagonal_of_quadratic_loss__sec3_1() -> None:
    """L = 1/(2n) sum (x.w - y)^2 has Hessian X^T X / n: its diagonal is mean(x_j^2)."""
    torch.manual_seed(0)
    model = nn.Linear(6, 1, bias=False).double()
    x = torch.randn(50, 6, dtype=torch.float64)
    y = torch.randn(50, 1, dtype=torch.float64)
    expected = (x**2).mean(0)
    for fn in (ggn_diagonal, hvp_diagonal):
        got = fn(model, x, y, loss="mse", batch_size=16)["weight"].flatten()
        assert torch.allclose(got, expected, atol=1e-12)
    est = hutchinson_diagonal(model, x, y, loss="mse", probes=500, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est["weight"].flatten(), expected, rtol=0.15)


def test_ggn_diagonal_is_the_exact_hessian_diagonal_for_relu_nets() -> None:
    """For piecewise-linear nets, diag(J^T S J) equals the exact diagonal (HVP per unit vector)."""
    model = _tiny_relu_net().double()
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    ggn = ggn_diagonal(model, x, y, batch_size=7)
    exact = hvp_diagonal(model, x, y)
    for name in exact:
        assert torch.allclose(ggn[name], exact[name], atol=1e-10), name


def test_adam_based_hessian_is_sqrt_of_bias_corrected_second_moment__sec3_5() -> None:
    model = _tiny_relu_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    grads_sq = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for t in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            grads_sq[n] = 0.99 * grads_sq[n] + 0.01 * p.grad**2
        opt.step()
    got = adam_second_moment_diag(model, opt)
    raw = adam_second_moment_diag(model, opt, bias_correction=False)
    for n in grads_sq:
        assert torch.allclose(got[n], (grads_sq[n] / (1 - 0.99**3)).sqrt(), rtol=1e-5)
        assert torch.allclose(raw[n], grads_sq[n].sqrt(), rtol=1e-5)


def test_finetuning_keeps_the_clusters_and_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = _tiny_relu_net()
    x, y = torch.randn(200, 4), torch.randint(0, 3, (200,))
    masks = {"0.weight": torch.rand(5, 4) > 0.3}
    layout = make_layout(model, [n for n, _ in model.named_parameters()], masks)
    w = flat_values(model, layout).double().numpy()
    q = weighted_kmeans_1d(w, None, 3, init="dp")
    centres = torch.tensor(q.centres, dtype=torch.float32)
    labels = torch.tensor(q.labels)

    def loss(c: torch.Tensor) -> float:
        params = params_from_values(model, layout, c[labels])
        assert torch.all(params["0.weight"][~masks["0.weight"]] == 0)  # pruned entries stay 0
        return float(nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y))

    tuned = finetune_centres(model, layout, centres, labels, x, y, epochs=20, batch_size=50, lr=1e-2, seed=0)
    assert tuned.shape == centres.shape
    assert loss(tuned) < loss(centres)


def test_model_sizes_match_the_paper__sec5() -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(lenet5()) == 431_080  # Sec. 5.1
    assert count(resnet32()) == 464_154  # Sec. 5.2
    assert count(mlp()) == 17_226


def test_layout_roundtrip() -> None:
    model = _tiny_relu_net()
    layout = make_layout(model, ["0.weight", "2.bias"], None)
    assert isinstance(layout, Layout) and int(layout.kept.sum()) == 23
    vals = flat_values(model, layout)
    params = params_from_values(model, layout, vals)
    for n, p in model.named_parameters():
        assert torch.equal(params[n], p.detach())
    expected = float((model[0].weight.sum() + model[2].bias.sum()).detach())
    assert math.isclose(float(vals.sum()), expected, rel_tol=1e-6)
