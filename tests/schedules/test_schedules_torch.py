"""Schedules against torch.optim.lr_scheduler run side by side, and against optax's values (golden file)."""

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch.optim import lr_scheduler as L

from adaptlr import schedules as S


def torch_lrs(make, n, base=1.0, momentum=0.0):
    """The lr of each of the first n steps under a torch scheduler (read before each optimizer step)."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=base, momentum=momentum)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n):
            out.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
    return out


CASES = {
    "StepLR": (lambda o: L.StepLR(o, step_size=7, gamma=0.5), S.step(1.0, step_size=7, gamma=0.5), 60),
    "MultiStepLR": (lambda o: L.MultiStepLR(o, [5, 12, 30], gamma=0.3), S.multistep(1.0, [5, 12, 30], 0.3), 50),
    "ExponentialLR": (lambda o: L.ExponentialLR(o, gamma=0.95), S.exponential(1.0, rate=0.95), 80),
    "CosineAnnealingLR": (lambda o: L.CosineAnnealingLR(o, T_max=50, eta_min=0.01), S.cosine(1.0, 50, 0.01), 51),
    "WarmRestarts-mult1": (
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=9, eta_min=0.05),
        S.cosine_restarts(1.0, period=9, final=0.05),
        60,
    ),
    "WarmRestarts-mult2": (
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01),
        S.cosine_restarts(1.0, period=5, mult=2, final=0.01),
        160,
    ),
    "LinearLR": (
        lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=10),
        S.linear(0.25, 1.0, steps=10),
        20,
    ),
    "PolynomialLR": (
        lambda o: L.PolynomialLR(o, total_iters=20, power=2.0),
        S.polynomial(1.0, 0.0, steps=20, power=2.0),
        30,
    ),
    "ConstantLR": (lambda o: L.ConstantLR(o, factor=0.5, total_iters=4), S.piecewise_constant([0.5, 1.0], [4]), 10),
    "SequentialLR": (
        lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, total_iters=5), L.ExponentialLR(o, 0.9)], milestones=[5]),
        S.join([S.linear(0.1, 1.0, 5), S.exponential(1.0, 0.9)], [5]),
        30,
    ),
    "SequentialLR-3": (
        lambda o: L.SequentialLR(
            o,
            [L.ConstantLR(o, 0.2, total_iters=3), L.StepLR(o, 4, 0.5), L.CosineAnnealingLR(o, T_max=10)],
            milestones=[6, 20],
        ),
        S.join([S.piecewise_constant([0.2, 1.0], [3]), S.step(1.0, 4, 0.5), S.cosine(1.0, 10)], [6, 20]),
        31,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_scheduler(name):
    make, schedule, n = CASES[name]
    expected = torch_lrs(make, n)
    got = [schedule(t) for t in range(n)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("n,pct", [(100, 0.3), (37, 0.25)])
def test_one_cycle_matches_torch(anneal, three_phase, n, pct):
    make = lambda o: L.OneCycleLR(  # noqa: E731
        o,
        max_lr=2.0,
        total_steps=n,
        pct_start=pct,
        anneal_strategy=anneal,
        three_phase=three_phase,
        div_factor=10.0,
        final_div_factor=100.0,
    )
    expected = torch_lrs(make, n, momentum=0.9)
    s = S.one_cycle(
        2.0, n, pct_start=pct, anneal=anneal, three_phase=three_phase, div_factor=10.0, final_div_factor=100.0
    )
    assert [s(t) for t in range(n)] == pytest.approx(expected, rel=1e-12)
    assert s(n + 5) == s(n - 1)  # holds its final value where torch raises


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_matches_torch(mode):
    make = lambda o: L.CyclicLR(  # noqa: E731
        o,
        base_lr=0.1,
        max_lr=1.0,
        step_size_up=5,
        step_size_down=3,
        mode=mode,
        gamma=0.97,
        cycle_momentum=False,
    )
    expected = torch_lrs(make, 60)
    s = S.cyclic(0.1, 1.0, step_size_up=5, step_size_down=3, mode=mode, gamma=0.97)
    assert [s(t) for t in range(60)] == pytest.approx(expected, rel=1e-12)


def test_as_torch_scheduler_matches_lambda_lr_with_two_groups():
    s = S.warmup(S.cosine(1.0, steps=40, final=0.1), steps=10)

    def run(make):
        a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
        sched, lrs = make(opt), []
        for _ in range(60):
            lrs.append([g["lr"] for g in opt.param_groups])
            (a.sum() + b.sum()).backward()
            opt.step()
            sched.step()
        return lrs

    assert run(lambda o: S.as_torch_scheduler(o, s)) == run(lambda o: L.LambdaLR(o, s))


GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "optax_schedules.json").read_text())


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["optax"])
def test_matches_optax(case):
    s = S.from_spec(case["adaptlr"])
    got = [s(t) for t in range(len(case["values"]))]
    assert got == pytest.approx(case["values"], rel=1e-12, abs=1e-15)
    assert all(math.isfinite(v) for v in got)
