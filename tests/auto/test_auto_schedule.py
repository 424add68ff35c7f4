"""Auto's schedule: every candidate races on the run's own schedule and the winner goes on with it, on the batches
a run at its lr takes from the start (a branch trains on the batches its lineage takes next), so the committed run
*is* the plain run at the chosen lr, bit for bit; the shapes match the library's schedules and the lab's specs."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import adaptlr
from adaptlr import schedules as S
from adaptlr.auto import Auto, Plan, branch_schedule, make_plan, run_schedule

pytestmark = pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(640, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 1, generator=g)) + 0.1 * torch.randn(640, 1, generator=g)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]  # 16 batches: the run sees several epochs
    return train, [(x[512:], y[512:])]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def _plain_run(lr, plan, train):
    """A plain loop: adaptlr.AdamW on ``run_schedule(lr, plan)`` over the batches in order, epoch after epoch."""
    model = _model()
    opt = adaptlr.AdamW(model.parameters(), lr=run_schedule(lr, plan))
    for _, (x, y) in zip(range(plan.steps), itertools.cycle(train)):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model


@pytest.mark.parametrize("tail", ["cosine", "wsd", "linear"])
def test_one_candidate_is_the_plain_run_bit_for_bit(tail):
    train, val = _problem()
    model = _model()
    result = Auto(lrs=[3e-2], extend=0, tail=tail, keep_best=False).fit(model, F.mse_loss, train, val, steps=200)
    plain = _plain_run(3e-2, result.plan, train)
    assert result.committed == "final" and result.plan.tail == tail
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_winner_of_a_race_is_the_plain_run_at_its_lr():
    """The race stops the losers early; the winner's lineage (rung 1, rung 2, its branch's batches, the run) is
    the run it would have made alone."""
    train, val = _problem(1)
    model = _model()
    result = Auto(tail="cosine", keep_best=False).fit(model, F.mse_loss, train, val, steps=240, val_cost=1.0)
    assert len(result.lrs) >= 7 and result.committed == "final"
    plain = _plain_run(result.lr, result.plan, train)
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_cosine_schedule_is_the_labs_warmup_cosine():
    from adaptlr.lab import parse_method

    plan = make_plan(1000, 7, 3, tail="cosine")
    lab = parse_method("adamw(lr=0.01) + cosine(warmup=0.05)").build([torch.zeros(1, requires_grad=True)], 1000, False)
    ours = run_schedule(0.01, plan)
    assert plan.warmup == 50 and [ours(t) for t in range(1000)] == [lab.lr(t) for t in range(1000)]


def test_the_shapes():
    plan = make_plan(1000, 7, 3, warmup=0.1, tail="wsd", cooldown=0.3)
    wsd = run_schedule(1.0, plan)
    assert wsd(0) == pytest.approx(0.01) and wsd(50) == pytest.approx(0.01 + 0.99 * 0.5)  # warmup from lr / w
    assert wsd(100) == wsd(699) == 1.0  # constant to the cooldown: the last 30% of the run
    assert wsd(850) == pytest.approx(0.5) and wsd(1000) == 0.0
    linear = run_schedule(1.0, Plan.of({**plan.as_dict(), "tail": "linear"}))
    assert linear(100) == 1.0 and linear(550) == pytest.approx(0.5) and linear(1000) == 0.0
    cosine = run_schedule(1.0, make_plan(1000, 7, 3, warmup=0.1, tail="cosine"))  # (w = 100, then 900 steps)
    assert cosine(0) == pytest.approx(0.01) and cosine(100) == 1.0 and cosine(1000) == 0.0
    assert cosine(550) == pytest.approx(0.5) and cosine(325) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    no_warmup = run_schedule(2.0, make_plan(100, 7, 3, warmup=0.0, tail="cosine"))
    assert no_warmup(0) == 2.0 and no_warmup(50) == pytest.approx(1.0)


def test_a_branch_follows_the_run_then_anneals():
    plan = make_plan(1000, 7, 3, tail="cosine")
    run, c = run_schedule(0.1, plan), plan.branch
    branch = branch_schedule(0.1, plan, 300)
    assert [branch(t) for t in range(300)] == [run(t) for t in range(300)]
    assert branch(300) == pytest.approx(run(299) * c / (c + 1)) and branch(300 + c) == 0.0
    assert branch(301) < branch(300)


def test_a_plan_saved_before_plans_held_their_shape_is_wsd():
    saved = make_plan(200, 7, 3, tail="cosine").as_dict()
    assert Plan.of(saved).tail == "cosine"  # (a plan that holds its shape keeps it)
    old = {k: v for k, v in saved.items() if k not in ("tail", "cooldown")}
    assert Plan.of(old).tail == "wsd" and Plan.of(old, "linear", 0.2).cooldown == 0.2
    with pytest.raises(ValueError, match="Invalid tail"):
        make_plan(200, 7, 3, tail="step")
    assert isinstance(run_schedule(0.1, Plan.of(old)), S.Schedule)  # (the library's schedule objects)
