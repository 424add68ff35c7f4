"""LossTrend, DivergenceGuard and Hypergradient."""

import copy
import math

import pytest
import torch

from adaptlr.controllers import DivergenceGuard, Hypergradient, LossTrend, ReduceOnPlateau, TrainingDiverged


def regression(seed=0, n=64, d=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = x @ torch.randn(d, 1, generator=g, dtype=dtype) + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)
    return model, x, y


def loss_of(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


# ------------------------------------------------------------------------------------------------ LossTrend
def test_loss_trend_rule_and_bounds():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    trend = LossTrend(opt, up=2.0, down=0.5, smoothing=0.0, min_factor=0.25, max_factor=4.0)
    factors = [trend.observe(v) for v in [5, 4, 3, 2, 1, 2, 3, 4, 5, float("nan"), 1]]
    assert factors == [1, 2, 4, 4, 4, 2, 1, 0.5, 0.25, 0.25, 0.5]  # nan: a rise; then 1 < 5
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["adaptlr_lr_scale"] == 0.5


def test_loss_trend_smoothing_and_tolerance():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    trend = LossTrend(opt, up=1.5, down=0.5, smoothing=0.5, tolerance=0.1)
    trend.observe(1.0)  # smoothed 1.0
    assert trend.observe(0.95) == 1.0  # smoothed 0.9667: inside the 10% band
    assert trend.observe(0.5) == 1.5  # smoothed (0.25 + 0.2375 + 0.125) / 0.875 = 0.7 < 0.87


def test_loss_trend_speeds_up_a_too_small_lr():
    results = {}
    for use in (False, True):
        model, x, y = regression()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        trend = LossTrend(opt, up=1.1, down=0.5, smoothing=0.0, max_factor=1000.0) if use else None
        for _ in range(150):
            opt.zero_grad()
            loss = loss_of(model, x, y)
            loss.backward()
            opt.step()
            if trend:
                trend.observe(loss)
        results[use] = loss_of(model, x, y).item()
    assert results[True] < 0.2 * results[False]
    assert math.isfinite(results[True])


def test_loss_trend_on_an_adaptlr_optimizer_uses_lr_scale():
    from adaptlr.optim import Adam

    opt = Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
    trend = LossTrend(opt, up=1.2, smoothing=0.0)
    trend.observe(2.0)
    trend.observe(1.0)
    # group["lr"] is the applied lr (a number): the factor is in it, and recorded in adaptlr_lr_scale
    assert opt.param_groups[0]["lr"] == pytest.approx(0.012) and opt.param_groups[0]["adaptlr_lr_scale"] == 1.2
    assert opt.current_lr() == pytest.approx(0.012)
    again = LossTrend(opt)
    again.load_state_dict(trend.state_dict())
    assert again.state_dict() == trend.state_dict()


# ------------------------------------------------------------------------------------------------ DivergenceGuard
def _state(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {i: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for i, s in opt.state_dict()["state"].items()},
    )


def _assert_state(model, opt, saved):
    params, states = saved
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])
    for i, s in opt.state_dict()["state"].items():
        for k, v in states[i].items():
            assert torch.equal(s[k], v)


def test_guard_restores_exactly_and_cuts_the_lr():
    model, x, y = regression()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    guard = DivergenceGuard(model, opt, snapshot_every=5, factor=0.5)
    saved = None
    for t in range(12):
        loss = loss_of(model, x, y)
        assert guard.observe(loss)
        if guard.snapshot_step == guard.steps:
            saved = _state(model, opt)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert guard.snapshot_step == 11  # at construction, then every 5 steps taken: 6, 11
    assert not guard.observe(torch.tensor(float("inf")))
    _assert_state(model, opt, saved)
    assert guard.factor == 0.5 and opt.param_groups[0]["lr"] == 0.005
    assert not guard.observe(1e6)  # explodes against the median of the recent losses
    _assert_state(model, opt, saved)
    assert guard.factor == 0.25 and guard.rollbacks == 2


def test_guard_rescues_a_diverging_run_and_never_loses_more_than_snapshot_every():
    model, x, y = regression(1)
    opt = torch.optim.SGD(model.parameters(), lr=3.0, momentum=0.9)  # diverges without help
    guard = DivergenceGuard(model, opt, snapshot_every=10, factor=0.3, min_history=3)
    taken, lost = 0, []
    for _ in range(300):
        loss = loss_of(model, x, y)
        if guard.observe(loss):
            opt.zero_grad()
            loss.backward()
            opt.step()
            taken += 1
        else:
            lost.append(guard.last_lost)
    assert guard.rollbacks == len(lost) >= 1 and guard.factor < 1
    assert max(lost) <= guard.snapshot_every and max(lost) > 0
    assert loss_of(model, x, y).item() < 0.5 * torch.var(y).item()


def test_guard_with_adaptlr_optimizer_and_too_many_rollbacks():
    from adaptlr.optim import SGD

    model, x, y = regression()
    opt = SGD(model.parameters(), lr=0.1)
    guard = DivergenceGuard(model, opt, max_rollbacks=3)
    for _ in range(3):
        assert not guard.observe(float("nan"))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125) and opt.param_groups[0]["adaptlr_lr_scale"] == 0.125
    assert opt.current_lr() == pytest.approx(0.0125)
    with pytest.raises(TrainingDiverged, match="3 times in a row"):
        guard.observe(float("nan"))
    state = guard.state_dict()
    assert state["rollbacks"] == 3 and state["factors"] == [0.125]


def test_guard_validation():
    model, _, _ = regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for kwargs, name in [
        (dict(factor=1.0), "factor"),
        (dict(snapshot_every=0), "snapshot_every"),
        (dict(ratio=1.0), "ratio"),
        (dict(window=0), "window"),
    ]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            DivergenceGuard(model, opt, **kwargs)


# ------------------------------------------------------------------------------------------------ Hypergradient
def _train(make_opt, hd_beta=None, steps=25, seed=0):
    model, x, y = regression(seed)
    opt = make_opt(model.parameters())
    hd = Hypergradient(opt, beta=hd_beta) if hd_beta is not None else None
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    return [p.detach().clone() for p in model.parameters()], lrs, hd


OPTS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
}


@pytest.mark.parametrize("name", list(OPTS))
def test_hypergradient_with_beta_zero_reproduces_the_optimizer(name):
    base, _, _ = _train(OPTS[name])
    hd, lrs, _ = _train(OPTS[name], hd_beta=0.0)
    assert all(torch.equal(a, b) for a, b in zip(base, hd))
    assert set(lrs) == {OPTS[name]([torch.zeros(1, requires_grad=True)]).param_groups[0]["lr"]}


def quad_grad(theta, a):
    return a * theta  # f = 0.5 * sum(a * theta^2)


def reference_hd(kind, theta, a, lr, beta, steps, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """The paper's SGD-HD / SGDN-HD / Adam-HD (Baydin et al. 2018, Algorithms 1-3), float64."""
    u_prev, buf, m, v, lrs = None, torch.zeros_like(theta), torch.zeros_like(theta), torch.zeros_like(theta), []
    for t in range(1, steps + 1):
        g = quad_grad(theta, a)
        if u_prev is not None:
            lr = lr + beta * float(g @ u_prev)
        if kind == "sgd":
            u = g
        elif kind == "nesterov":
            buf = mu * buf + g if t > 1 else g.clone()
            u = g + mu * buf
        else:
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        theta = theta - lr * u
        u_prev = u
        lrs.append(lr)
    return theta, lrs


@pytest.mark.parametrize("kind,lr,beta", [("sgd", 0.01, 1e-3), ("nesterov", 0.005, 1e-4), ("adam", 0.01, 1e-4)])
def test_hypergradient_matches_the_paper(kind, lr, beta):
    a = torch.linspace(0.5, 3.0, 10, dtype=torch.float64)
    theta0 = torch.linspace(-2.0, 2.0, 10, dtype=torch.float64)
    want_theta, want_lrs = reference_hd(kind, theta0.clone(), a, lr, beta, 40)
    p = torch.nn.Parameter(theta0.clone())
    opt = {
        "sgd": lambda: torch.optim.SGD([p], lr=lr),
        "nesterov": lambda: torch.optim.SGD([p], lr=lr, momentum=0.9, nesterov=True),
        "adam": lambda: torch.optim.Adam([p], lr=lr),
    }[kind]()
    Hypergradient(opt, beta=beta, max_change=math.inf)  # the paper's rule, without the guard
    lrs = []
    for _ in range(40):
        p.grad = quad_grad(p.detach(), a)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx(want_lrs, rel=1e-9)
    assert lrs[-1] != lr
    torch.testing.assert_close(p.detach(), want_theta, rtol=1e-9, atol=1e-12)


def test_hypergradient_ignores_skipped_steps_and_rejects_closures():
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    hd = Hypergradient(opt, beta=0.1, max_change=math.inf)
    scaler = torch.amp.GradScaler("cpu")
    for bad in (False, True, False):
        opt.zero_grad()
        loss = (p**2).sum() * (float("inf") if bad else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    # two applied steps: lr = 0.1 + 0.1 * <g1, g0> with g0 = (2, -2), p1 = (0.8, -0.8), g1 = (1.6, -1.6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.1 * 6.4)
    assert hd.factor == pytest.approx(7.4)
    with pytest.raises(ValueError, match="closures"):
        opt.step(lambda: (p**2).sum())
    hd.remove()
    with pytest.raises(TypeError, match="schedule"):
        Hypergradient(_sched_opt(p))


def _sched_opt(p):
    from adaptlr.optim import SGD
    from adaptlr.schedules import cosine

    return SGD([p], lr=cosine(0.1, 10))


def test_hypergradient_on_adaptlr_adam_matches_torch_adam():
    from adaptlr.optim import Adam

    base, lrs_torch, _ = _train(lambda p: torch.optim.Adam(p, lr=0.01), hd_beta=1e-4)
    ours, lrs_ours, hd = _train(lambda p: Adam(p, lr=0.01, foreach=True), hd_beta=1e-4)
    assert lrs_ours == pytest.approx(lrs_torch, rel=1e-9)
    assert lrs_ours[-1] != 0.01
    for a, b in zip(base, ours):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    state = hd.state_dict()
    assert len(state["deltas"][0]) == 4 and state["lr_used"][0] == pytest.approx(lrs_ours[-1])


def test_hypergradient_with_adaptlr_nonfinite_skip():
    from adaptlr.optim import SGD

    p = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    opt = SGD([p], lr=0.1, nonfinite="skip", foreach=True)
    Hypergradient(opt, beta=0.1, max_change=math.inf)
    for g in ([2.0, -2.0], [math.inf, 0.0], [1.0, -1.0], [1.0, -1.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    # the skipped step leaves no direction: the step after it keeps lr 0.1 (p: 0.8 -> 0.7); the last one
    # learns from that step: lr = 0.1 + 0.1 * <(1, -1), (1, -1)> = 0.3, p: 0.7 -> 0.4
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3)
    assert p.tolist() == pytest.approx([0.4, -0.4])


def _mlp_regression(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(256, 10)
    y = x @ torch.randn(10, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    return model, x, y


@pytest.mark.parametrize("beta", [1.0, 1e30])
@pytest.mark.parametrize(
    "make", [lambda p: torch.optim.SGD(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=1e-3)], ids=["sgd", "adam"]
)
def test_hypergradient_with_a_huge_beta_neither_dies_nor_explodes(beta, make):
    """issue 9: beta=1 locked the lr at 0 for ever, beta=1e30 made the parameters NaN, with no warning."""
    model, x, y = _mlp_regression()
    opt = make(model.parameters())
    hd = Hypergradient(opt, beta=beta)
    lrs = []
    with pytest.warns(UserWarning, match=r"beta=1(e\+30)? asked param group 0's lr .* max_change=2"):
        for t in range(300):
            i = torch.arange(32 * t, 32 * t + 32) % 256
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x[i]), y[i]).backward()
            opt.step()
            lrs.append(opt.param_groups[0]["lr"])
    assert all(0 < lr < math.inf for lr in lrs) and hd.clipped > 0
    assert all(b / a <= 2 * (1 + 1e-12) and a / b <= 2 * (1 + 1e-12) for a, b in zip(lrs, lrs[1:]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(model(x), y) < 0.5  # it learned (the variance of y is about 10)


def test_hypergradient_refuses_a_non_finite_beta_and_a_bad_max_change():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    for kwargs, name in [
        (dict(beta=math.inf), "beta"),
        (dict(beta=math.nan), "beta"),
        (dict(beta=-1.0), "beta"),
        (dict(max_change=1.0), "max_change"),
        (dict(max_change=0.5), "max_change"),
    ]:
        with pytest.raises(ValueError, match=rf"Invalid {name}: .* is outside [\[(]"):
            Hypergradient(opt, **kwargs)


def _two_group_opt():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    return torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: LossTrend(o),
        lambda o: ReduceOnPlateau(o, patience=0),
        lambda o: Hypergradient(o, beta=1e-3),
        lambda o: DivergenceGuard(torch.nn.Linear(1, 1), o),
    ],
    ids=["loss_trend", "plateau", "hypergradient", "divergence"],
)
def test_a_failed_load_leaves_the_controller_unchanged(make):
    """issue 9: a state from a 1-group optimizer refuses to load into a 2-group one, and a failed
    load_state_dict changes nothing."""
    one = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    c1 = make(one)
    for v in (1.0, 2.0, 3.0):
        c1.observe(v)
    saved = c1.state_dict()
    two = _two_group_opt()
    c2 = make(two)
    for v in (3.0, 1.0):
        c2.observe(v)
    before = copy.deepcopy({k: v for k, v in vars(c2).items() if k not in ("optimizer", "model", "_handles")})
    with pytest.raises(ValueError, match="1 param group factor.*2 param group"):
        c2.load_state_dict(saved)
    broken = {**c2.state_dict(), "factors": [1.0, "x"]}
    with pytest.raises(ValueError, match="not a valid"):
        c2.load_state_dict(broken)
    missing = {k: v for k, v in c2.state_dict().items() if k != sorted(c2.state_dict())[-1]}
    with pytest.raises(ValueError, match="not a valid"):
        c2.load_state_dict(missing)
    after = {k: v for k, v in vars(c2).items() if k not in ("optimizer", "model", "_handles")}
    assert after.keys() == before.keys()
    for k in before:
        if isinstance(before[k], dict) and before[k] and isinstance(next(iter(before[k].values())), torch.Tensor):
            assert [torch.equal(x, y) for x, y in zip(before[k].values(), after[k].values())] == [True] * len(before[k])
        elif k != "_snapshot":
            assert after[k] == before[k], k
    # a valid state still loads, and round-trips
    c3 = make(_two_group_opt())
    c3.load_state_dict(c2.state_dict())
    assert c3.factors == c2.factors


def test_hypergradient_refuses_deltas_of_another_shape():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    hd = Hypergradient(opt, beta=1e-3)
    for _ in range(2):
        p.grad = torch.ones(3)
        opt.step()
    state = hd.state_dict()
    q = torch.nn.Parameter(torch.ones(4))
    other = Hypergradient(torch.optim.SGD([q], lr=0.1), beta=1e-3)
    with pytest.raises(ValueError, match=r"deltas\[0\]\[0\] is \(3,\), its parameter has shape \(4,\)"):
        other.load_state_dict(state)
    assert other._delta == {} and other.factors == [1.0]
