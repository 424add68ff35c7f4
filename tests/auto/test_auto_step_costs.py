"""What a step of Auto costs and how it is counted: a lineage's set-up is the lineage's cost, not the step's; the
run's bookkeeping is the step's, its validation and the user's callbacks are not; the fast paths of a plain step
(a batch already on the model's device, an ``(inputs, targets)`` pair) keep the general path's meaning."""

import math
import statistics
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from adaptlr.auto import (
    Auto,
    Batches,
    Meter,
    Racer,
    TrainStep,
    _lineage,
    _step,
    build_race,
    make_plan,
    move,
    replan_rung2,
    run_cost,
)


def test_a_lineages_first_step_is_a_cost_of_the_lineage_not_of_a_step():
    meter = Meter()
    meter.trained(5.0)  # the first step of the fit: one-off costs, a plain run pays them too
    meter.trained(0.5, sample=False)  # a fresh optimizer's first step sets up its state
    meter.trained(0.1)
    meter.trained(0.3)
    assert meter.warm == 5.0 and meter.train_steps == 4
    assert meter.step_seconds == pytest.approx(0.2)
    meter.validated(0.2, rows=10)
    assert meter.row_cost == pytest.approx(0.1)  # (a row's seconds over a step's)
    only_first = Meter()
    only_first.trained(5.0)
    only_first.trained(0.5, sample=False)  # (nothing else seen: the lineage's first step is the estimate)
    assert only_first.step_seconds == pytest.approx(0.5)
    assert math.isnan(Meter().step_seconds)


def _race(steps=40):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    train = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]
    return build_race(Auto(), nn.Linear(4, 1), train, [(x, y)], steps, TrainStep(loss_fn=F.mse_loss))


def test_a_step_is_the_users_call_and_autos_bookkeeping_is_its_loop_cost(monkeypatch):
    race = _race()
    clock = SimpleNamespace(now=0.0)
    fake = SimpleNamespace(perf_counter=lambda: clock.now)
    monkeypatch.setattr(_lineage, "time", fake)
    monkeypatch.setattr(_step, "time", fake)  # (the batches' fetching on the same clock: it takes none)
    user = race.step.step_fn

    def step_fn(model, batch):
        clock.now += 1.0  # the user's step: what a plain loop's step does, the unit
        return user(model, batch)

    race.step.step_fn = step_fn

    def after(lr):
        clock.now += 0.5  # Auto's own bookkeeping after a step (a watch point's state saved, say)
        clock.now += 2.0  # a validation pass, which the validator counts as validation
        race.meter.val_seconds += 2.0
        clock.now += 3.0  # the user's on_step, timed apart: a plain run pays its own
        race.meter.outside += 3.0

    opt = race.make_optimizer(1e-2)
    race.train(Racer(1e-2), opt, None, (race._steps(1)[0] for _ in range(7)), after)
    meter = race.meter
    assert meter.train_steps == 7 and meter.train_seconds == pytest.approx(7 * 1.0)
    assert meter.step_seconds == pytest.approx(1.0)  # the unit: a step's own work
    assert len(meter._other_times) == 2 and len(meter._step_times) == 5  # (a lineage's first two: its cost)
    assert meter.loop_cost == pytest.approx(1.5)  # Auto's bookkeeping counted in, validation and callbacks not
    assert run_cost([], meter) == pytest.approx(1.5)  # (what the run plans a step at)


def test_the_unit_is_a_typical_step_not_a_warm_up():
    meter = Meter()
    meter.trained(5.0)  # (the fit's first step)
    race = [8.9, 4.1, 2.5, 2.3, 1.9, 1.3, 1.2, 1.4, 1.3, 1.2, 1.3, 1.4, 1.2, 1.3]  # a race's warm-up, then steady
    for seconds in race:
        meter.trained(seconds)
    capped = [2.7, 2.7, 2.5, 2.3, 1.9, 1.3, 1.2, 1.4, 1.3, 1.2, 1.3, 1.4, 1.2, 1.3]  # (at twice the median, 1.35)
    assert meter.step_seconds == pytest.approx(statistics.fmean(capped))
    assert meter.step_seconds < statistics.fmean(race) - 0.3
    skewed = Meter()
    skewed.trained(1.0)
    for seconds in [1.0] * 8 + [1.6, 1.7]:  # a steady run's skew is kept: what a plain run pays on average
        skewed.trained(seconds)
    assert skewed.step_seconds == pytest.approx(11.3 / 10)
    assert Meter().loop_cost == 1.0  # (nothing timed: no cost beyond the steps)


def test_a_pause_in_one_lineage_is_not_a_cost_of_every_lineage(monkeypatch):
    """A lineage's cost beyond its steps is the median of the timed segments' (per lineage), plus what fell outside
    every segment shared among the lineages: a pause of the process in one candidate's rung 1 is not held back for
    every lineage to come (with the mean it was 4.7 steps a lineage here, for 0.5)."""
    from adaptlr.auto import _meter

    clock = SimpleNamespace(t=100.0)
    monkeypatch.setattr(_meter.time, "perf_counter", lambda: clock.t)
    meter = Meter(started=clock.t)

    def step() -> None:
        clock.t += 1.0
        meter.trained(1.0)

    step()  # (the fit's first step: its one-offs, the warm-up a plain run pays too)
    clock.t += 1.0  # (outside every segment: the start saved)
    for pause in (0.0, 0.0, 20.0, 0.0, 0.0):
        done = meter.segment()
        clock.t += 0.5 + pause  # (its optimizer built, the start loaded; once, the process paused)
        for _ in range(10):
            step()
        done(1)
    assert meter.step_seconds == pytest.approx(1.0)
    mean = (5 * 0.5 + 20.0 + 1.0) / 5
    assert meter.overhead(0.0, 5) == pytest.approx(0.5 + 1.0 / 5)
    assert meter.overhead(0.0, 5) < mean / 4
    done = meter.segment()  # a finalist's segment races two lineages: its cost halves per lineage
    clock.t += 0.5
    for _ in range(10):
        step()
    done(2)
    assert meter._segments[-1] == (pytest.approx(10.5), 10, 0, 2)
    few = Meter(started=clock.t)  # fewer than three segments timed: the mean, as before
    clock.t += 3.0
    few.trained(1.0)
    assert few.overhead(0.0, 5) == pytest.approx((3.0 - 1.0) / 5)  # (3 s of wall, 1 of them its step: 2 over 5)


def test_a_diverged_step_is_counted_and_ends_the_lineage():
    race = _race()
    racer = Racer(1e-2)
    racer.rule.observe = lambda loss: racer.steps >= 2  # (a rule that calls the third step diverged)
    race.train(racer, race.make_optimizer(1e-2), None, (race._steps(1)[0] for _ in range(6)))
    assert racer.diverged and racer.steps == 3 and race.meter.train_steps == 3 and "step 3" in racer.note


def test_a_plain_batch_on_the_models_device_is_the_same_object_others_move():
    x, y = torch.ones(2, 3), torch.zeros(2)
    cpu = torch.device("cpu")
    pair = (x, y)
    assert move(pair, cpu) is pair and move([x, y], cpu)[1] is y
    moved = move((x, y), torch.device("meta"))
    assert type(moved) is tuple and all(t.device.type == "meta" for t in moved)
    mixed = (x, 3)  # (not all tensors: the general path, which keeps the rest as it is)
    assert move(mixed, torch.device("meta"))[1] == 3


def test_the_pair_fast_path_computes_the_general_paths_loss():
    torch.manual_seed(0)
    model, x, y = nn.Linear(3, 1), torch.randn(5, 3), torch.randn(5, 1)
    step = TrainStep(loss_fn=F.mse_loss)
    expected = F.mse_loss(model(x), y)
    assert torch.equal(step.step_fn(model, (x, y)), expected) and torch.equal(step.step_fn(model, [x, y]), expected)
    with pytest.raises(TypeError, match="step_fn"):
        step.step_fn(model, (x, y, y))


def test_the_training_data_running_out_says_after_how_many_batches():
    batches = Batches(iter(range(3)))
    assert batches.take(2) == [0, 1]
    with pytest.raises(ValueError, match="ran out after 3 batches"):
        batches.take(2)
    assert Batches([7, 8]).take(5) == [7, 8, 7, 8, 7]  # (an iterable is iterated again)


def test_the_plan_counts_the_finalists_steps_at_their_own_cost():
    # a step's seconds may depend on the lr (an RBF network's cost half as much again at lr 1 as at 1e-3): rung 2
    # and the run are planned at the costliest finalist's, never below the race's mean step
    meter = Meter()
    for seconds in (1.0, 0.1, 0.1, 0.1):
        meter.trained(seconds)
    cheap, costly, untimed = Racer(1e-3, seconds=0.2, timed=2), Racer(1.0, seconds=0.6, timed=3), Racer(0.1)
    dearer = Racer(3.0, seconds=0.5, timed=2)
    assert run_cost([costly, dearer], meter) == pytest.approx(2.0)  # (what every finalist shows: the least)
    assert run_cost([cheap, costly], meter) == 1.0  # (one finalist as cheap as the race: a slower machine, not the lr)
    assert run_cost([costly, untimed], meter) == 1.0  # (one not timed: nothing shown)
    assert run_cost([cheap], meter) == 1.0 and run_cost([untimed], meter) == 1.0  # (never below the mean)
    plan = make_plan(1000, 7, 3)
    same = replan_rung2(plan, 300.0, 10.0, (0.035, 0.10, 0.025), 3)
    dearer = replan_rung2(plan, 300.0, 10.0, (0.035, 0.10, 0.025), 3, cost=1.1)
    assert dearer.rung2 < same.rung2 and dearer.branch <= same.branch
    # what the rest costs at the finalists' steps fits what is left of the budget
    x, c = dearer.rung2 - dearer.rung1, dearer.branch
    assert (
        300.0 + 10.0 + 1.1 * (2 * x + 3 * c + (1000 - dearer.rung1)) <= plan.budget * 1000 + 1.1 * 1.5
    )  # (c rounded: at most half a step each)


def _edge_race():
    race = _race(steps=400)
    race.start_score = 1.0
    race.racers = [Racer(lr, scores=[(race.plan.rung1, s)]) for lr, s in ((1e-2, 0.5), (3e-2, 0.4), (1e-1, 0.3))]
    return race


def test_the_grid_extends_past_a_winning_edge_only_when_every_lineage_after_it_is_afforded(monkeypatch):
    from adaptlr.auto import _extend
    from adaptlr.auto._extend import next_edge

    race = _edge_race()
    monkeypatch.setattr(type(race), "spent", lambda self: 100.0)
    monkeypatch.setattr(_extend, "lineage_cost", lambda race: 0.0)
    assert next_edge(race, upward=True, added=0) == 0.32  # (a half-decade past 0.1, rounded as the grid is)
    assert race.warnings == []
    # the budget has 500 steps left: the run's 400 and this candidate's rung 1 fit, but not with fixed costs of 40
    # steps for each lineage still to come (this candidate, the three finalists, the run)
    monkeypatch.setattr(_extend, "lineage_cost", lambda race: 40.0)
    assert next_edge(race, upward=True, added=0) is None
    assert "budget reached" in race.warnings[-1] and "largest" in race.warnings[-1]


def test_the_runs_rollback_points_are_those_the_budget_affords(monkeypatch):
    from adaptlr.auto._commit import Commit, _spread

    assert _spread([10, 20, 30, 40], 100.0, 0.0) == [10, 20, 30, 40]  # (untimed plans: every point)
    assert _spread([10, 20, 30, 40], 2.5, 1.0) == [10, 30]  # (two afforded: evenly spread)
    assert _spread([10, 20, 30, 40], -3.0, 1.0) == []  # (the budget already spent: none)
    race = _race(steps=100)
    commit = Commit(race, Racer(1e-2, steps=race.plan.rung2))
    left = {}
    monkeypatch.setattr(Commit, "_left", lambda self, at, passes: left.setdefault((at, passes), 3.0))
    commit.points = [60, 80]  # (two watch points after step 50: the run's end makes a third pass)
    assert commit._rollback_points(50, cost=1.0) == [60, 70, 80]
    assert list(left) == [(50, 3)]  # (what is left once the run from step 50 and its three passes are paid)
    assert commit._rollback_points(50, cost=2.0) == [60]
    assert commit._rollback_points(50, cost=0.0) == [60, 70, 80, 90]


def test_what_the_run_leaves_holds_back_its_end(monkeypatch):
    from adaptlr.auto import _commit
    from adaptlr.auto._commit import Commit

    race = _race(steps=100)
    commit = Commit(race, Racer(1e-2, steps=race.plan.rung2))
    monkeypatch.setattr(Commit, "_pass_cost", lambda self: 0.0)
    monkeypatch.setattr(Commit, "_run_cost", lambda self: 1.0)
    monkeypatch.setattr(race, "spent", lambda: 100.0)
    monkeypatch.setattr(_commit, "lineage_cost", lambda race: 0.0)
    free = commit._left(60, 1)
    assert free == pytest.approx(race.plan.budget * 100 - 100.0 - 40)  # (the run from step 60 at a step each)
    monkeypatch.setattr(_commit, "lineage_cost", lambda race: 4.0)
    assert commit._left(60, 1) == pytest.approx(free - 4.0)  # (its end: its state saved, the committed one loaded)


def test_rung_1_races_neighbouring_lrs_far_apart_in_time():
    from adaptlr.auto._grid import spread_in_time

    grid = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    order = spread_in_time(grid)
    assert sorted(order) == list(grid) and order[0] == 1e-4  # (every lr once)
    position = {lr: i for i, lr in enumerate(order)}
    assert min(abs(position[a] - position[b]) for a, b in zip(grid, grid[1:])) >= 2  # (no neighbours in a row)
    assert spread_in_time(list(reversed(grid))) == order  # (the same order whatever order the grid comes in)


def test_reserve_holds_back_a_lineages_fixed_cost_for_every_lineage_it_races():
    from adaptlr.auto import reserve
    from adaptlr.auto._plan import RUN_LINEAGES

    nominal = (0.035, 0.10, 0.025)
    plan = make_plan(1000, 7, 3)
    assert reserve(plan, nominal, 0.0) == plan  # (nothing held back: the plan as made)
    held = reserve(plan, nominal, 4.0)
    assert 2 <= held.rung1 < plan.rung1 and held.steps == plan.steps and held.warmup == plan.warmup
    room = (1 - plan.val_share) * (plan.budget - 1) * plan.steps - (7 + 3 + RUN_LINEAGES) * 4.0  # (the run: twice)
    assert plan.race_steps() > room >= held.race_steps()  # ((n - 1) s1 + (k - 1)(s2 - s1) + k c, as make_plan)
    assert reserve(make_plan(60, 7, 3), nominal, 100.0).rung1 == 2  # (the two steps that measured it)


def test_a_timed_race_sizes_rung_1_after_its_first_steps_and_every_candidate_trains_as_long(monkeypatch):
    from adaptlr.auto import _sizing

    held, reserve, fixed_cost = [], _sizing.reserve, {"steps": 0.0}

    def sized(plan, nominal, fixed):  # (the fixed cost as measured recorded; the plan sized at a chosen one)
        held.append(fixed)
        return reserve(plan, nominal, fixed_cost["steps"])

    monkeypatch.setattr(_sizing, "reserve", sized)
    race = _race(steps=400)
    planned = race.plan
    race.rung1()  # (nothing held back: the first candidate goes on past its first two steps)
    assert len(held) == 1 and held[0] > 0  # (sized once, from what the start's snapshot and a lineage cost)
    assert race.plan == planned and len(race._rung1_batches) == planned.rung1 > 2
    assert all(r.steps == planned.rung1 for r in race.racers if not r.diverged)
    assert race.racers[0].timed == planned.rung1 - 2  # (its first two steps, the lineage's set-up, apart: once)
    fixed_cost["steps"] = 1e6  # (far more than the budget: rung 1 at its floor, the two steps that measured it)
    race = _race(steps=400)
    race.rung1()
    assert race.plan.rung1 == 2 and len(race._rung1_batches) == 2
    assert all(r.steps == 2 for r in race.racers if not r.diverged)
    # plans that do not depend on timing (val_cost given) are sized once, before the race
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    train = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]
    step = TrainStep(loss_fn=F.mse_loss)
    fixed = build_race(Auto(), nn.Linear(4, 1), train, [(x, y)], 400, step, val_cost=1.0)
    fixed.rung1()
    assert fixed.plan == Auto().plan(400) and len(fixed._rung1_batches) == fixed.plan.rung1


def test_the_rest_of_the_race_is_one_formula_and_rung_2_fills_what_is_left():
    from adaptlr.auto import rest_cost

    plan = make_plan(1000, 7, 3)
    s1, o = plan.rung1, 2.0
    # each finalist pays its steps to the branch point and its branch, and two lineages' fixed costs (the branch
    # point's state and the branch's); a late candidate its rung 1 too; the run its steps and two lineages
    want = 4 * (1.1 * (10 + 3) + 2 * o) + 1.1 * s1 + 1.1 * (1000 - s1 - 10) + 2 * o + 7.0
    assert rest_cost(plan, 3, 10, 3, extra=1, overhead=o, cost=1.1, val_rest=7.0) == pytest.approx(want)
    nominal = (0.035, 0.10, 0.025)
    for spent, over, extra in ((300.0, 0.0, 0), (300.0, 3.0, 0), (250.0, 3.0, 1)):
        new = replan_rung2(plan, spent, 10.0, nominal, 3, extra, over, 1.1)
        x = new.rung2 - new.rung1
        rho = nominal[2] / (nominal[1] - nominal[0])
        parts = {"extra": extra, "overhead": over, "cost": 1.1, "val_rest": 10.0}
        fill = spent + rest_cost(new, 3, x, rho * x, **parts)
        assert fill <= plan.budget * 1000 < spent + rest_cost(new, 3, x + 1, rho * (x + 1), **parts)
    # nothing left: rung 2 keeps its one step (the run then costs more; the plan cannot do less)
    assert replan_rung2(plan, 1400.0, 10.0, nominal, 3).rung2 == plan.rung1 + 1


def test_an_extension_leaves_the_rest_of_the_race_its_least(monkeypatch):
    from adaptlr.auto import _extend, rest_cost
    from adaptlr.auto._extend import next_edge

    race = _edge_race()
    plan = race.plan
    monkeypatch.setattr(_extend, "lineage_cost", lambda race: 0.0)
    # this candidate's rung 1, then rung 2 one step long and each branch one step for the three finalists, then
    # the run: what must still fit the budget (linear regression extended to ten candidates where it did not:
    # its rung 2 one step long, 1.55-1.6 runs of a budget of 1.5)
    need = plan.rung1 + rest_cost(plan, 3, 1, 1)
    monkeypatch.setattr(type(race), "spent", lambda self: plan.budget * plan.steps - need)
    assert next_edge(race, upward=True, added=0) == 0.32
    assert next_edge(race, upward=True, added=0, queued=1) is None  # (one already queued in this round)
    assert "budget reached" in race.warnings[-1]
    monkeypatch.setattr(type(race), "spent", lambda self: plan.budget * plan.steps - need + 0.5)
    assert next_edge(race, upward=True, added=0) is None


def test_rung_2_holds_a_late_candidate_only_where_the_rest_still_fits(monkeypatch, tmp_path):
    from adaptlr.auto import _sizing
    from adaptlr.auto._journal import Journal, restore_race
    from adaptlr.auto._sizing import size_rung2

    race = _edge_race()
    alive = list(race.racers)
    monkeypatch.setattr(_sizing, "lineage_cost", lambda race: 0.0)
    monkeypatch.setattr(type(race), "own_cost", lambda self: (0.0, False))
    room = {"steps": 1000.0}
    monkeypatch.setattr(type(race), "spent", lambda self: race.plan.budget * race.plan.steps - room["steps"])
    before = race.plan
    assert size_rung2(race, alive, (0.1, 0.32)) == (0.1, 0.32) and race.late_held and race.warnings == []
    assert race.plan.rung2 > race.plan.rung1 + 1
    # what is left fits the run and three finalists at one step a rung, but not a late candidate's rung 1 besides
    race.plan = before
    room["steps"] = _sizing.rest_cost(before, 3, 1, 1) + 1.0
    assert size_rung2(race, alive, (0.1, 0.32)) is None and not race.late_held
    assert "no budget was left to race one past it (0.32)" in race.warnings[-1] and "largest" in race.warnings[-1]
    # a resumed race keeps the decision (journaled with rung 2's records)
    journal = Journal(tmp_path)
    journal.write(race, "rung2", 0, {"late": race.late_held})
    again = _edge_race()
    restore_race(again, journal.load())
    assert not again.late_held
