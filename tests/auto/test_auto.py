"""adaptlr.Auto: the loop-level contract (commits or restores the model, counts its cost, deterministic with a
given validation cost) and the algorithm's answers to the failure modes of issue 19: validation that fits the
budget, a grid that follows the evidence, divergence on the loss's own scale, failures said out loud."""

import itertools
import math
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import adaptlr
from adaptlr.auto import (
    DEFAULT_LRS,
    Auto,
    Racer,
    TrainStep,
    build_race,
    fit,
    make_plan,
    rank_finalists,
    validation_rows,
    watch_points,
)

pytestmark = pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")


def _problem(seed=0, n=640, dim=8, noise=0.1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g) * scale
    y = x @ w + noise * torch.randn(n, 1, generator=g)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    val = [(x[512:], y[512:])]
    return train, val


def _model(seed=0, dim=8):
    torch.manual_seed(seed)
    return nn.Linear(dim, 1)


def _val_loss(model, val):
    with torch.no_grad():
        return float(F.mse_loss(model(val[0][0]), val[0][1]))


def _race_steps(result):
    """Training steps the race and the run should have spent, from the racers' own records."""
    p = result.plan
    finalists = [r for r in result.racers if len(r.scores) == 2]
    rung1 = sum(min(r.steps, p["rung1"]) for r in result.racers)
    return rung1 + len(finalists) * (p["rung2"] - p["rung1"] + p["branch"]) + (p["steps"] - p["rung2"])


def _watched(result):
    """Validation passes of the committed run at its watch points (after the branch point, within the budget)."""
    assert all(s in watch_points(result.plan.steps) and s > result.plan.rung2 for s, _ in result.watched)
    return len(result.watched)


# ---- the contract ---------------------------------------------------------------------------------------------
def test_cost_counts_every_step_and_validation_row():
    train, val = _problem()
    result = Auto().fit(_model(), F.mse_loss, train, val, steps=200, val_cost=1.0)
    p = result.plan
    assert 1 <= p["rung1"] < p["rung2"] <= 100 and p["branch"] >= 1
    assert result.train_steps == _race_steps(result)
    # 1 validation batch of 128 rows costs 1 step: cost = steps + validation passes (every one reads it all)
    # probe (2), start, every score, the run's watch points, the commit's two
    passes = 3 + sum(not math.isnan(s) for r in result.racers for _, s in r.scores) + _watched(result) + 2
    assert result.cost * 200 == pytest.approx(result.train_steps + passes * 1.0)
    assert result.cost <= 1.5 + 1e-9
    assert result.lr in result.lrs and result.effective_lr() == result.lr
    assert math.isfinite(result.seconds) and result.seconds > 0 and result.wall > 0


def test_deterministic_with_a_given_validation_cost_and_committed():
    train, val = _problem()
    a, b = _model(), _model()
    ra = Auto().fit(a, F.mse_loss, train, val, steps=150, val_cost=1.0)
    rb = Auto().fit(b, F.mse_loss, train, val, steps=150, val_cost=1.0)
    assert ra.lr == rb.lr and ra.committed == rb.committed and ra.plan == rb.plan
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert [r.scores for r in ra.racers] == [r.scores for r in rb.racers]
    assert _val_loss(a, val) == pytest.approx(ra.val_score, rel=1e-6)  # the committed model's own score
    assert isinstance(ra.optimizer, adaptlr.AdamW)
    if ra.committed == "final":
        assert int(ra.optimizer.state[next(iter(a.parameters()))]["step"]) == 150


def _fine_tune_at_scale() -> tuple[nn.Module, list[tuple[torch.Tensor, ...]], list[tuple[torch.Tensor, ...]]]:
    """A linear model near its optimum on inputs of scale 1e3 (every lr of the default grid is too large), its
    training batches and its validation batch; the same every call."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 8, generator=g) * 1e3
    w = torch.randn(1, 8, generator=g) * 1e-3
    y = x @ w.T + 0.01 * torch.randn(640, 1, generator=g)
    model = nn.Linear(8, 1)
    with torch.no_grad():
        model.weight.copy_(w + 3e-5 * torch.randn(1, 8, generator=g))
        model.bias.zero_()
    return model, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)], [(x[512:], y[512:])]


def test_a_counted_plan_reads_no_timing(monkeypatch):
    """With ``val_cost`` given, no decision reads the clock: the same fit, on a machine whose loop looks fifty times
    slower than its steps (what the timed plan reads as :attr:`Meter.loop_cost`), tries the same lrs (its grid
    extended past the bottom edge), plans the same rungs and commits the same model."""
    from adaptlr.auto import Meter

    def fitted() -> tuple[adaptlr.auto.AutoResult, nn.Module]:
        model, train, val = _fine_tune_at_scale()
        return Auto().fit(model, F.mse_loss, train, val, steps=200, val_cost=1.0), model

    ra, a = fitted()
    monkeypatch.setattr(Meter, "loop_cost", property(lambda self: 50.0))
    rb, b = fitted()
    assert min(ra.lrs) < 1e-4  # (the extension is what a timed loop cost would have refused)
    assert ra.lrs == rb.lrs and ra.plan == rb.plan and ra.lr == rb.lr and ra.committed == rb.committed
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_fit_function_equals_the_class_and_accepts_options():
    train, val = _problem()
    a, b = _model(), _model()
    ra = fit(a, F.mse_loss, train, val, 120, keep=2, tie=0.0, val_cost=1.0)
    rb = Auto(keep=2, tie=0.0).fit(b, F.mse_loss, train, val, 120, val_cost=1.0)
    assert ra.lr == rb.lr and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_beats_a_bad_fixed_learning_rate():
    train, val = _problem(noise=0.05)
    auto_model, fixed = _model(), _model()
    Auto().fit(auto_model, F.mse_loss, train, val, steps=200)
    opt = torch.optim.AdamW(fixed.parameters(), lr=1e-4)
    for i in range(200):
        x, y = train[i % len(train)]
        opt.zero_grad()
        F.mse_loss(fixed(x), y).backward()
        opt.step()
    good, bad = _val_loss(auto_model, val), _val_loss(fixed, val)
    assert good < 0.1 * bad and good < 0.02  # noise floor 0.0025


def test_model_mode_and_buffers_restored_when_everything_diverges():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 1)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.lin(self.bn(x)) * 1e30

    torch.manual_seed(0)
    model = Exploding()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = _problem()
    with pytest.raises(FloatingPointError, match="diverged"):
        Auto(lrs=(1.0, 10.0), keep=1).fit(model, lambda out, y: (out - y).pow(2).mean() * 1e30, train, val, 60)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_eval_mode_kept_and_batchnorm_buffers_committed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    model.eval()
    train, val = _problem()
    result = Auto().fit(model, F.mse_loss, train, val, steps=100)
    assert not model.training
    assert int(model[1].num_batches_tracked) > 0  # the committed lineage's running statistics
    assert _val_loss(model, val) == pytest.approx(result.val_score, rel=1e-6)


def test_param_groups_and_lr_scale():
    train, val = _problem()
    model = _model()
    bias0 = model.bias.detach().clone()
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr_scale": 0.0, "weight_decay": 0.0}]
    result = Auto(lrs=(1e-3, 1e-2), extend=0).fit(model, F.mse_loss, train, val, steps=100, params=groups)
    assert torch.equal(model.bias.detach(), bias0)  # lr x 0: never moved
    assert result.optimizer.param_groups[1]["weight_decay"] == 0.0
    assert result.optimizer.param_groups[0]["weight_decay"] == 0.01
    assert result.optimizer.param_groups[1]["lr"] == 0.0  # the schedule times the group's scale


def test_val_as_a_function_and_a_dataloader_as_train():
    train, val = _problem()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])),
        batch_size=32,
    )
    calls = []

    def score(m):
        calls.append(m.training)
        return _val_loss(m, val)

    result = Auto().fit(_model(), F.mse_loss, loader, score, steps=100, val_cost=2.0)
    assert calls and not any(calls)  # scored in eval mode
    scored = sum(1 for r in result.racers for _, v in r.scores if not math.isnan(v))  # (a late racer: no rung 1)
    assert len(calls) == 3 + scored + _watched(result) + 2
    assert math.isfinite(result.val_score)


def test_on_step_replays_then_follows_the_winner():
    train, val = _problem()
    seen = []
    result = Auto().fit(
        _model(), F.mse_loss, train, val, steps=100, on_step=lambda s, loss, lr, live: seen.append((s, live, lr))
    )
    assert [s for s, _, _ in seen] == list(range(1, 101))
    assert not any(live for s, live, _ in seen if s <= result.plan["rung2"])
    assert all(live for s, live, _ in seen if s > result.plan["rung2"])
    assert max(lr for _, _, lr in seen) == pytest.approx(result.lr)
    assert seen[-1][2] < 0.1 * result.lr  # the run anneals to near 0
    assert [lr for _, _, lr in seen] == pytest.approx([result.schedule(s - 1) for s, _, _ in seen])


def test_nonfinite_policy_and_validation():
    train, val = _problem()
    result = Auto(nonfinite="skip").fit(_model(), F.mse_loss, train, val, steps=60)
    assert result.optimizer.nonfinite == "skip"
    for kwargs, match in [
        ({"lrs": ()}, "Invalid lrs"),
        ({"lrs": (1e-3, -1.0)}, "Invalid lrs"),
        ({"budget": 1.0}, "Invalid budget"),
        ({"keep": 0}, "Invalid keep"),
        ({"rung1": 0.2, "rung2": 0.1}, "Invalid rungs"),
        ({"warmup": 1.5}, "Invalid warmup"),
        ({"tie": -0.1}, "Invalid tie"),
        ({"nonfinite": "ignore"}, "Invalid nonfinite"),
        ({"tail": "step"}, "Invalid tail"),
        ({"offload": "gpu"}, "Invalid offload"),
        ({"limits": (1.0, 0.1)}, "Invalid limits"),
        ({"val_share": 1.0}, "Invalid val_share"),
    ]:
        with pytest.raises(ValueError, match=match):
            Auto(**kwargs)


def test_near_tie_goes_to_the_lower_learning_rate():
    a, b, c = Racer(1e-3, scores=[(1, 1.01)]), Racer(3e-3, scores=[(1, 1.0)]), Racer(1e-2, scores=[(1, 0.5)])
    assert rank_finalists([a, b], 0.02)[0] is a  # within 2%: the lower lr
    assert rank_finalists([a, b, c], 0.02)[0] is c  # a clear winner stays the winner
    assert rank_finalists([a, b], 0.0)[0] is b


def test_within_one_standard_error_goes_to_the_lower_learning_rate():
    """The one-standard-error rule: a lower lr whose paired difference from the best (the same validation batches)
    is within one standard error is taken; a clear difference on every batch is not noise."""
    from adaptlr.auto._racer import paired_se

    best = Racer(1e-2, scores=[(1, 0.50)], parts=[[0.40, 10], [0.60, 10], [0.45, 10], [0.55, 10]])
    noisy = Racer(3e-3, scores=[(1, 0.53)], parts=[[0.48, 10], [0.56, 10], [0.58, 10], [0.50, 10]])
    clear = Racer(3e-3, scores=[(1, 0.53)], parts=[[0.43, 10], [0.63, 10], [0.48, 10], [0.58, 10]])
    d = [0.08, -0.04, 0.13, -0.05]  # noisy - best, batch by batch
    mean = sum(d) / 4
    assert paired_se(noisy, best) == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in d) / 4 / 3))
    assert paired_se(clear, best) == pytest.approx(0.0, abs=1e-12)  # 0.03 on every batch
    assert rank_finalists([noisy, best], 0.02)[0] is noisy  # 0.03 behind, within one standard error (0.043)
    assert rank_finalists([clear, best], 0.02)[0] is best  # 0.03 behind on every batch: beyond 2% and the error
    unpaired = Racer(3e-3, scores=[(1, 0.53)], parts=[[0.53, 40]])  # (other batches: no pairing, the tie alone)
    assert paired_se(unpaired, best) == 0.0 and rank_finalists([unpaired, best], 0.02)[0] is best


def test_a_race_within_the_noise_of_the_start_goes_up():
    """A race on a plateau: the best finalist beats the start by more than the tie but by less than one standard
    error of the paired difference on the same batches: the race saw no progress, so the largest learning rate
    within reach of the best goes first (as when it stalled within the tie), and the warning says so. Without
    the start's batches (a bare score) the tie alone decides: the smallest within reach."""
    from adaptlr.auto._racer import order_finalists, stalled

    start = Racer(0.0, scores=[(0, 0.72)], parts=[[0.80, 36], [0.64, 36], [0.75, 36], [0.69, 36]])
    a = Racer(1e-4, scores=[(10, 0.70)], parts=[[0.70, 36], [0.72, 36], [0.64, 36], [0.74, 36]])
    b = Racer(1e-2, scores=[(10, 0.71)], parts=[[0.74, 36], [0.66, 36], [0.72, 36], [0.72, 36]])
    assert stalled([a, b], 0.02, start) and not stalled([a, b], 0.02, start.score)
    ranked, note = order_finalists([a, b], 0.02, start, 10)
    assert ranked[0] is b and "within the noise" in note and "largest learning rate within reach" in note
    assert rank_finalists([a, b], 0.02, start.score)[0] is a
    clear = Racer(1e-2, scores=[(10, 0.50)], parts=[[p[0] - 0.22, 36] for p in start.parts])  # 0.22 on every batch
    assert order_finalists([clear], 0.02, start, 10)[1] is None


def test_rung_one_within_the_noise_of_the_start_keeps_the_largest():
    """Rung 1 on a plateau: its best candidate beats the start by more than the tie but by less than one standard
    error of their paired difference (rung 1's rows); the survivors are then the largest lrs within reach, as at
    rung 2 -- not the smallest, which a shorter rung 1 makes all the survivors on a plateau."""
    from adaptlr.auto._racer import survivors

    start = Racer(0.0, scores=[(0, 0.72)], parts=[[0.80, 36], [0.64, 36], [0.75, 36], [0.69, 36]])
    small = Racer(3e-5, scores=[(9, 0.70)], parts=[[0.70, 36], [0.72, 36], [0.64, 36], [0.74, 36]])
    mid = Racer(1e-3, scores=[(9, 0.705)], parts=[[0.72, 36], [0.70, 36], [0.66, 36], [0.74, 36]])
    large = Racer(3e-2, scores=[(9, 0.71)], parts=[[0.74, 36], [0.66, 36], [0.72, 36], [0.72, 36]])
    assert [r.lr for r in survivors([small, mid, large], start, 0.02)] == [3e-2, 1e-3, 3e-5]
    assert [r.lr for r in survivors([small, mid, large], start.score, 0.02)] == [3e-5, 1e-3, 3e-2]  # (the tie alone)


def test_a_race_that_saw_no_progress_goes_up_one_that_hurt_goes_down():
    """Issue 19: a fine-tune from a good start, where a short horizon sees the smallest lr "win" by not moving."""
    from adaptlr.auto import regime

    a, b, c = Racer(1e-4, scores=[(1, 1.000)]), Racer(1e-3, scores=[(1, 1.005)]), Racer(1e-2, scores=[(1, 1.3)])
    assert regime(1.0, 1.001, 0.02) == "stalled" and regime(0.9, 1.0, 0.02) == "improved"
    assert regime(1.1, 1.0, 0.02) == "hurt" and regime(5.0, math.inf, 0.02) == "improved"
    assert rank_finalists([a, b, c], 0.02, start=1.001)[0] is b  # stalled: the largest within tie
    assert rank_finalists([a, b, c], 0.02, start=1.2)[0] is a  # improved: the smallest within tie
    assert rank_finalists([a, b, c], 0.02, start=0.5)[0] is a  # hurt: the smallest within tie


# ---- validation fits the budget --------------------------------------------------------------------------------
def test_plan_keeps_the_race_whatever_validation_costs():
    """The race's training steps never shrink because of validation: it reads fewer rows instead."""
    for steps in (100, 600, 5000):
        plan = make_plan(steps, 7, 3)
        assert plan.race_steps() >= 0.9 * (1 - plan.val_share) * 0.5 * steps - 7
        cheap = validation_rows(plan, 2400, 1e-4, {"rung1": 7, "rung2": 3, "commit": 2})
        dear = validation_rows(plan, 2400, 0.05, {"rung1": 7, "rung2": 3, "commit": 2})
        assert cheap == {"rung1": 2400, "rung2": 2400, "commit": 2400}
        assert 1 <= dear["rung1"] <= dear["rung2"] == dear["commit"] < 2400
        spent = 7 * dear["rung1"] * 0.05 + 5 * dear["rung2"] * 0.05
        assert spent <= plan.val_allowance * 1.0001 or dear["rung1"] == 1


def test_a_run_that_overfits_commits_its_best_watched_state():
    # 48 noisy rows, 48 features: the longer the run, the worse it validates (it fits the noise)
    g = torch.Generator().manual_seed(2)
    w = torch.randn(48, 1, generator=g) / 48**0.5
    x = torch.randn(304, 48, generator=g)
    y = x @ w + torch.randn(304, 1, generator=g)
    train, val = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)], [(x[48:], y[48:])]
    torch.manual_seed(2)
    model = nn.Linear(48, 1)
    with pytest.warns(UserWarning, match="early stopping"):
        result = Auto().fit(model, F.mse_loss, train, val, steps=400, val_cost=1.0)
    steps = [s for s, _ in result.watched]
    assert steps == sorted(steps) and all(s > result.plan.rung2 for s in steps) and len(steps) >= 2
    best = min(result.watched, key=lambda sv: sv[1])
    assert result.committed == "watch" and result.val_score == best[1] < result.watched[-1][1]
    assert _val_loss(model, val) == pytest.approx(best[1], rel=1e-6)  # the model holds that state
    assert result.cost <= 1.5 + 1e-9
    torch.manual_seed(2)
    unwatched = Auto(watch=0).fit(nn.Linear(48, 1), F.mse_loss, train, val, steps=400, val_cost=1.0)
    assert unwatched.watched == [] and unwatched.committed != "watch" and unwatched.lr == result.lr


def _at_its_optimum(seed=0):
    """A linear model at the population optimum of noisy data: no learning rate improves it, the race is blind."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 1, generator=g)
    x = torch.randn(704, 8, generator=g)
    y = x @ w + torch.randn(704, 1, generator=g)
    train, val = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)], [(x[512:], y[512:])]
    model = _model(seed)
    with torch.no_grad():
        model.weight.copy_(w.T)
        model.bias.zero_()
    return model, train, val


def test_a_race_that_cannot_tell_its_finalists_from_the_start_races_them_on_within_max_budget():
    model, train, val = _at_its_optimum()
    result = Auto(max_budget=2.0).fit(model, F.mse_loss, train, val, steps=300, val_cost=1.0)
    said = [w for w in result.warnings if "raced them on" in w]
    assert len(said) >= 1 and f"to step {result.plan.rung2}" in said[-1]
    finalists = [r for r in result.racers if len(r.scores) >= 3]  # rung 1, rung 2, and each doubling
    assert len(finalists) == 3 and all(r.scores[-1][0] == result.plan.rung2 for r in finalists)
    assert all(b[0] == 2 * a[0] for r in finalists for a, b in zip(r.scores[1:], r.scores[2:]))
    assert 1.5 < result.cost <= 2.0 + 1e-9
    model, train, val = _at_its_optimum()  # by default (max_budget: the budget), never more than the budget
    capped = Auto().fit(model, F.mse_loss, train, val, steps=300, val_cost=1.0)
    assert not any("raced them on" in w for w in capped.warnings) and capped.cost <= 1.5 + 1e-9
    assert capped.plan.rung2 * 2 == result.plan.rung2


def test_a_race_that_sees_progress_does_not_race_on_even_when_allowed():
    train, val = _problem()
    result = Auto(max_budget=2.0).fit(_model(), F.mse_loss, train, val, steps=200, val_cost=1.0)
    assert not any("raced them on" in w for w in result.warnings) and result.cost <= 1.5 + 1e-9


def test_fetching_a_steps_batches_counts_in_its_seconds():
    # a data pipeline slower than the model: a plain run's step is mostly fetching, and so is the budget's unit
    # (counted in compute alone, the race thought it had spent ten runs and starved)
    def slow(batches):
        for b in itertools.cycle(batches):
            time.sleep(0.002)
            yield b

    train, val = _problem()
    result = Auto().fit(_model(), F.mse_loss, slow(train), val, steps=200)
    assert result.wall < 2.5 and result.plan.rung2 >= 10


def test_the_users_callbacks_are_not_counted_as_autos_cost():
    # on_step's logging and evaluations are the user's, paid by a plain run too: timed apart, not counted in
    # Auto's wall (the lab's evaluations made a char LM's own wall 1.73 runs where its true ratio was 1.25)
    seen = []

    def on_step(step, loss, lr, live):
        seen.append(step)
        time.sleep(0.002)

    train, val = _problem()
    result = Auto().fit(_model(), F.mse_loss, train, val, steps=200, on_step=on_step)
    assert seen[-1] == 200 and result.seconds > 200 * 0.002
    assert result.wall < 1.9  # (the sleeps alone are several runs of this model's sub-millisecond steps)


def test_the_budget_clock_starts_after_the_first_optimizer_is_built():
    # the first torch optimizer built in a process imports torch's compiler (seconds on CPU): a plain run pays it
    # too, so it must not count against the race (it starved rung 2 of a fresh process's first race)
    built = []

    class Recording(adaptlr.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(time.perf_counter())

    train, val = _problem()
    race = build_race(Auto(optimizer=Recording), _model(), train, val, 200, TrainStep(loss_fn=F.mse_loss))
    assert len(built) == 1 and race.meter.started >= built[0]


def test_a_large_validation_set_does_not_collapse_the_race():
    """Issue 19, fault 1: 5,000 validation rows against a 300-step budget left races of 1-2 steps."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5_600, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(5_600, 1, generator=g)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    val = [(x[i : i + 50], y[i : i + 50]) for i in range(600, 5_600, 50)]  # 100 batches, 5,000 rows
    # (extend=0: a late candidate past a winning edge, which one race may hold and the other not, is not the point)
    result = Auto(extend=0).fit(_model(), F.mse_loss, train, val, steps=300, val_cost=300 / 3)  # a pass: 1/3 of it
    small = Auto(extend=0).fit(_model(), F.mse_loss, train, val[:2], steps=300, val_cost=300 / 3 / 50)  # 100 rows
    assert result.plan["rung1"] == small.plan["rung1"] == Auto().plan(300).rung1 >= 3
    # validation keeps to its share of the budget (it reads fewer rows), so the race keeps the rest
    allowance = result.plan.val_allowance
    assert result.cost * 300 - result.train_steps <= 1.1 * allowance + 2 * 50 * 300 / 3 / 5000  # (+ the probe)
    assert result.cost >= 1.4
    assert small.train_steps >= result.train_steps  # (what a cheap validation leaves goes to the race)
    assert result.cost <= 1.5 + 1e-6


# ---- the grid follows the evidence ----------------------------------------------------------------------------
def test_grid_extends_past_a_winning_top_edge_and_warns_at_the_limit():
    """Issue 19, fault 2: a linear model that needs lr > 0.1 got 0.1 and no word."""
    train, val = _problem(scale=30.0, noise=1.0)
    with pytest.warns(UserWarning, match="largest tried.*limit"):
        result = Auto(limits=(1e-4, 1.0)).fit(_model(), F.mse_loss, train, val, steps=200, val_cost=1.0)
    assert max(result.lrs) == pytest.approx(1.0) and result.lr > 0.1
    assert any("largest tried" in w for w in result.warnings)


def test_grid_extends_below_its_bottom_edge():
    """A fine-tune on inputs of scale 1e3 from near the optimum: every lr of the grid is too large. The plan is
    counted in steps (``val_cost``): whether a timed plan affords an extension on steps of a tenth of a millisecond
    depends on the machine (a candidate is raced only where the least rest of the race still fits the budget)."""
    model, train, val = _fine_tune_at_scale()
    result = Auto().fit(model, F.mse_loss, train, val, steps=200, val_cost=1.0)
    assert min(result.lrs) < 1e-4 and result.lr < 1e-4


def test_decoupled_weight_decay_is_held_above_the_grid():
    from adaptlr.auto._grid import make_optimizer

    p = [nn.Parameter(torch.zeros(2))]
    assert make_optimizer(adaptlr.AdamW, [{"params": p}], 1.0, {}, 0.1).param_groups[0]["weight_decay"] == 0.001
    assert make_optimizer(adaptlr.AdamW, [{"params": p}], 0.01, {}, 0.1).param_groups[0]["weight_decay"] == 0.01
    sgd = make_optimizer(adaptlr.SGD, [{"params": p}], 1.0, {"weight_decay": 0.1}, 0.1)
    assert sgd.param_groups[0]["weight_decay"] == 0.1  # coupled: lr x wd does not grow the same way


# ---- failures said out loud -----------------------------------------------------------------------------------
def test_a_nearly_noiseless_first_batch_does_not_make_everything_diverge():
    """Issue 19, fault 4: a model at its optimum on noisy data, its first minibatch nearly noiseless."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1_200, 4, generator=g)
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    noise = torch.randn(1_200, 1, generator=g)
    noise[:32] *= 1e-4
    y = x @ w + noise
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 1_024, 32)]
    val = [(x[1_024:], y[1_024:])]
    model = nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.copy_(w.T)
        model.bias.zero_()
    result = Auto().fit(model, F.mse_loss, train, val, steps=100)
    assert not any(r.diverged for r in result.racers)
    assert result.val_score <= 1.2  # the noise floor is 1


def test_never_commits_worse_than_the_start_and_says_so():
    """Issue 19, fault 4: a model fitted again (one outlier batch: a spike) ended worse than it came in."""
    train, val = _problem(noise=0.05)
    model = _model()
    Auto().fit(model, F.mse_loss, train, val, steps=200)
    start = _val_loss(model, val)
    x, y = train[3]
    train[3] = (x, y * 30.0)  # one spike in the loss, every epoch
    result = Auto().fit(model, F.mse_loss, train, val, steps=60)
    assert not any(r.diverged for r in result.racers)  # a spike is not a divergence
    assert result.val_score <= start * (1 + 1e-6)
    assert _val_loss(model, val) == pytest.approx(result.val_score, rel=1e-5)
    if result.committed == "start":
        assert any("as it came in" in w for w in result.warnings)


def test_a_winner_that_diverges_after_the_race_rolls_back_and_steps_down():
    train, val = _problem()
    calls = {"n": 0}

    def step(m, batch):
        calls["n"] += 1
        loss = F.mse_loss(m(batch[0]), batch[1])
        return loss * math.nan if calls["n"] == state["blow"] else loss

    state = {"blow": -1}
    probe = Auto(lrs=(1e-2,), keep=1, extend=0).fit(_model(), train, val, steps=200, step_fn=step, val_cost=1.0)
    state["blow"] = calls["n"] + probe.train_steps - 20  # 20 steps before the end of the next identical fit
    with pytest.warns(UserWarning, match="rolled back"):
        result = Auto(lrs=(1e-2,), keep=1, extend=0).fit(_model(), train, val, steps=200, step_fn=step, val_cost=1.0)
    assert result.lr == pytest.approx(1e-2 / math.sqrt(10))
    assert any("rolled back" in w for w in result.warnings)
    assert result.committed in ("final", "branch", "start")


# ---- in the lab -----------------------------------------------------------------------------------------------
def test_lab_method_auto_trains_and_logs_validation():
    from adaptlr.lab.training import train

    result = train("linreg", "auto", seed=0, steps=100)
    assert result["steps_done"] == 100 and not result["diverged"]
    assert result["auto_lr"] in result["auto_lrs"] and result["auto_wall"] > 0
    last = result["points"][-1]
    assert last["step"] == 100 and last["metric"] == result["final_metric"]
    assert last["val_metric"] == result["final_val_metric"] and last["val_loss"] is not None
    assert result["final_metric"] < 0.05  # linreg's MSE floor is 0.01


def test_default_grid_is_the_benchmark_grid():
    assert Auto().lrs == DEFAULT_LRS == (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def test_docstring_examples_run():
    import doctest

    import adaptlr.auto
    import adaptlr.controllers.divergence

    for module in (adaptlr.auto, adaptlr.controllers.divergence):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__


def test_budgets_too_small_to_race_are_refused_or_said():
    train, val = _problem()
    with pytest.raises(ValueError, match="steps"):
        Auto().fit(_model(), F.mse_loss, train, val, steps=3)
    with pytest.warns(UserWarning, match="too small to race"):
        result = Auto().fit(_model(), F.mse_loss, train, val, steps=10, val_cost=1.0)
    assert any("too small to race" in w for w in result.warnings)
    big = [(x, y) for x, y in [(torch.randn(128, 8), torch.randn(128, 1))]]
    with pytest.warns(UserWarning, match="more than its share"):  # one pass of the only batch: 50 steps
        result = Auto().fit(_model(), F.mse_loss, train, big, steps=60, val_cost=50.0)
    assert result.cost > 1.5  # counted, not hidden
