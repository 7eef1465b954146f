"""LARS (1708.03888 Algorithm 1) and its warm-up + poly(2) schedule against hand computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from repro.lars.optim import LARS, trust_ratios, warmup_poly_factor, warmup_poly_schedule


def _reference_step(params, grads, bufs, *, lr, momentum, beta, eta, eps=1e-9):
    """Algorithm 1 written out per tensor with Python floats for the norms (the reference)."""
    out_p, out_b = [], []
    for w, g, v in zip(params, grads, bufs):
        wn, gn = float(w.norm()), float(g.norm())
        lam = eta * wn / (gn + beta * wn + eps) if wn > 0 else eta
        v = momentum * v + lr * lam * (g + beta * w)
        out_p.append(w - v)
        out_b.append(v)
    return out_p, out_b


def test_one_step_equals_hand_computation__alg1() -> None:
    # w = (3, 4): ||w|| = 5; g = (0.6, 0.8): ||g|| = 1; beta = 0.1, eta = 0.01, gamma = 2
    # lambda = 0.01 * 5 / (1 + 0.1 * 5) = 1/30
    # v = gamma * lambda * (g + beta w) = (2/30) * (0.9, 1.2) = (0.06, 0.08); w' = (2.94, 3.92)
    w = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))  # a separate "layer": own lambda
    opt = LARS([w, b], lr=2.0, momentum=0.9, weight_decay=0.1, trust_coefficient=0.01, eps=0.0)
    w.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    b.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([2.94, 3.92], dtype=torch.float64), atol=1e-12)
    # bias: ||w|| = 1, ||g|| = 0.5: lambda = 0.01 / 0.6; v = 2 * lambda * (0.5 - 0.1) = 0.04 / 3
    assert b.item() == pytest.approx(-1.0 - 2 * (0.01 / 0.6) * 0.4, abs=1e-12)
    # second step: momentum carries v = (0.06, 0.08); same gradient
    w.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    b.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    wn = math.hypot(2.94, 3.92)  # 4.9
    lam = 0.01 * wn / (1.0 + 0.1 * wn)
    v = [0.9 * 0.06 + 2 * lam * (0.6 + 0.1 * 2.94), 0.9 * 0.08 + 2 * lam * (0.8 + 0.1 * 3.92)]
    assert torch.allclose(w.detach(), torch.tensor([2.94 - v[0], 3.92 - v[1]], dtype=torch.float64), atol=1e-12)


def test_foreach_update_matches_per_tensor_reference__alg1() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    params = list(model.parameters())
    opt = LARS(params, lr=3.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=1e-3)
    ref_p = [p.detach().clone() for p in params]
    ref_b = [torch.zeros_like(p) for p in params]
    for _ in range(4):
        loss = model(torch.randn(8, 3, 6, 6)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.detach().clone() for p in params]
        # the reference starts from the optimizer's current weights, so only the update is compared
        ref_p, ref_b = _reference_step([p.detach().clone() for p in params], grads, ref_b,
                                       lr=3.0, momentum=0.9, beta=5e-4, eta=1e-3)
        opt.step()
        for p, r in zip(params, ref_p):
            assert torch.allclose(p.detach(), r, atol=1e-6, rtol=1e-5)


def test_relative_update_is_gamma_eta_without_momentum__sec3() -> None:
    """||dw|| / ||w|| = gamma * eta * ||g + beta w|| / (||g|| + beta ||w||) ~ gamma * eta per layer."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.bias)  # non-zero biases: the formula, not the zero-norm rule
    gamma, eta = 5.0, 1e-3
    opt = LARS(model.parameters(), lr=gamma, momentum=0.0, weight_decay=5e-4, trust_coefficient=eta)
    model(torch.randn(16, 20)).pow(2).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    for w0, p in zip(before, model.parameters()):
        ratio = float((p.detach() - w0).norm() / w0.norm())
        assert ratio == pytest.approx(gamma * eta, rel=0.02), ratio  # within the beta*||w|| term
    # with beta = 0 it is exact
    opt0 = LARS(model.parameters(), lr=gamma, momentum=0.0, weight_decay=0.0, trust_coefficient=eta)
    model.zero_grad()
    model(torch.randn(16, 20)).pow(2).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt0.step()
    for w0, p in zip(before, model.parameters()):
        assert float((p.detach() - w0).norm() / w0.norm()) == pytest.approx(gamma * eta, rel=1e-5)


def test_zero_norms_behave_as_documented() -> None:
    gamma, eta, beta = 2.0, 1e-3, 5e-4
    # ||w|| = 0 (a zero-initialised bias): lambda = eta, so the step is gamma * eta * g, not zero
    b = nn.Parameter(torch.zeros(3))
    opt = LARS([b], lr=gamma, momentum=0.9, weight_decay=beta, trust_coefficient=eta)
    b.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.step()
    assert torch.allclose(b.detach(), -gamma * eta * torch.tensor([1.0, -2.0, 0.5]))
    # ||g|| = 0 with ||w|| > 0: pure weight decay, shrinking w by gamma * eta of its norm
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = LARS([w], lr=gamma, momentum=0.0, weight_decay=beta, trust_coefficient=eta)
    w.grad = torch.zeros(2)
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) * (1 - gamma * eta), atol=1e-6)
    # both zero, and beta = 0 with ||g|| = 0: nothing moves and nothing becomes NaN
    z = nn.Parameter(torch.zeros(2))
    u = nn.Parameter(torch.ones(2))
    opt = LARS([z, u], lr=gamma, momentum=0.9, weight_decay=0.0, trust_coefficient=eta)
    z.grad, u.grad = torch.zeros(2), torch.zeros(2)
    opt.step()
    assert torch.equal(z.detach(), torch.zeros(2)) and torch.equal(u.detach(), torch.ones(2))
    lam = trust_ratios(torch.tensor([0.0, 5.0, 5.0]), torch.tensor([1.0, 0.0, 1.0]),
                       trust_coefficient=eta, weight_decay=beta, eps=1e-9)
    assert torch.allclose(lam, torch.tensor([eta, eta / beta, eta * 5 / (1 + beta * 5)]), rtol=1e-6)


def test_exclusion_flag_gives_1d_tensors_plain_sgd() -> None:
    torch.manual_seed(2)
    lin = nn.Linear(4, 3)
    bn = nn.BatchNorm1d(3)
    params = list(lin.parameters()) + list(bn.parameters())
    grads = [torch.randn_like(p) for p in params]
    before = [p.detach().clone() for p in params]
    for flag in (False, True):
        for p, b0, g in zip(params, before, grads):
            p.data.copy_(b0)
            p.grad = g.clone()
        LARS(params, lr=2.0, momentum=0.9, weight_decay=5e-4, trust_coefficient=1e-3,
             exclude_bias_and_norm=flag).step()
        ref, _ = _reference_step(before, grads, [torch.zeros_like(b0) for b0 in before],
                                 lr=2.0, momentum=0.9, beta=5e-4, eta=1e-3)
        for p, b0, g, r in zip(params, before, grads, ref):
            if flag and p.ndim == 1:  # bias, BN weight and shift: w - gamma * g, no weight decay
                assert torch.allclose(p.detach(), b0 - 2.0 * g, atol=1e-6)
            else:  # Algorithm 1 (the BN shift starts at 0: lambda = eta)
                assert torch.allclose(p.detach(), r, atol=1e-6)


def test_state_dict_round_trip_continues_identically() -> None:
    torch.manual_seed(3)
    a = nn.Linear(5, 2)
    b = nn.Linear(5, 2)
    b.load_state_dict(a.state_dict())
    oa = LARS(a.parameters(), lr=1.0)
    x = torch.randn(4, 5)
    for _ in range(2):
        oa.zero_grad()
        a(x).sum().backward()
        oa.step()
    b.load_state_dict(a.state_dict())
    ob = LARS(b.parameters(), lr=1.0)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))  # as from a checkpoint file: no shared buffers
    for m, o in ((a, oa), (b, ob)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_invalid_hyperparameters_are_rejected() -> None:
    p = [nn.Parameter(torch.ones(2))]
    for kwargs in ({"lr": -1.0}, {"lr": 1.0, "momentum": 1.0}, {"lr": 1.0, "trust_coefficient": 0.0},
                   {"lr": 1.0, "weight_decay": -1e-4}):
        with pytest.raises(ValueError):
            LARS(p, **kwargs)


@pytest.mark.parametrize(
    "step, total, warmup, start, expected",
    [
        (0, 10, 0, 0.0, 1.0),  # gamma_t = gamma_0 (1 - t/T)^2 (Algorithm 1)
        (5, 10, 0, 0.0, 0.25),
        (9, 10, 0, 0.0, 0.01),
        (10, 10, 0, 0.0, 0.0),
        (0, 10, 4, 0.0, 0.25),  # warm-up ramp (t + 1) / W times the poly factor
        (1, 10, 4, 0.0, 0.5 * 0.81),
        (3, 10, 4, 0.0, 0.49),  # ramp reaches 1 at the last warm-up step
        (4, 10, 4, 0.0, 0.36),
        (0, 10, 4, 0.2, (0.2 + 0.8 * 0.25)),  # ramp from warmup_start
    ],
)
def test_warmup_poly2_factor(step: int, total: int, warmup: int, start: float, expected: float) -> None:
    assert warmup_poly_factor(step, total, warmup, 2.0, start) == pytest.approx(expected)


def test_warmup_poly_schedule_sets_group_lr_per_step() -> None:
    p = nn.Parameter(torch.ones(2))
    opt = LARS([p], lr=10.0)
    sched = warmup_poly_schedule(opt, total_steps=8, warmup_steps=2)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    expected = [10.0 * warmup_poly_factor(t, 8, 2) for t in range(8)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(10.0 * 0.5) and seen[1] == pytest.approx(10.0 * (7 / 8) ** 2)
    with pytest.raises(ValueError):
        warmup_poly_schedule(opt, total_steps=4, warmup_steps=5)
