"""User functions in schedules need no registration (issue 18).

Every schedule that takes a user function (``from_epochs``, and the composites ``warmup``, ``join``, ``product``,
``scale``, which take any function ``step -> value``) x {an unregistered lambda, a closure, a registered
function} x {step, ``state_dict`` round trip, plot, compose, ``as_torch_scheduler``}. The oracle of each value is
the composition written out from the functions themselves (never the schedule under test); the oracle of a resume
is the uninterrupted run. Registration is needed only where a spec is a string (the lab, the CLI).
"""

import io
import math
import warnings

import pytest
import torch

import adaptlr
from adaptlr import schedules as S


def _decay(e):
    return 0.1 * 0.8**e


REGISTERED = S.register_callable("test_schedules_user_functions.decay", _decay)


def _closure(init, rate):
    def decay(e):  # a closure: a function made at run time, of the values it closes over
        return init * rate**e

    return decay


FUNCTIONS = {
    "lambda": lambda: lambda e: 0.1 * 0.8**e,  # noqa: E731
    "closure": lambda: _closure(0.1, 0.8),
    "registered": lambda: REGISTERED,
}

# name: (build(fn) -> schedule, oracle(fn, t) -> value), the oracle written from the definitions
SPE = 3  # steps per epoch
KINDS = {
    "from_epochs": (lambda fn: S.from_epochs(fn, steps_per_epoch=SPE), lambda fn, t: fn(t // SPE)),
    "warmup": (lambda fn: S.warmup(fn, steps=4), lambda fn, t: fn(0) * t / 4 if t < 4 else fn(t - 4)),
    "join": (lambda fn: S.join([S.constant(0.05), fn], boundaries=[3]), lambda fn, t: 0.05 if t < 3 else fn(t - 3)),
    "product": (
        lambda fn: S.product([S.linear(1.0, 0.5, steps=10), fn]),
        lambda fn, t: (1.0 - 0.05 * min(t, 10)) * fn(t),
    ),
    "scale": (lambda fn: S.scale(fn, 0.5), lambda fn, t: 0.5 * fn(t)),
    "operators": (lambda fn: 2 * (fn * S.constant(0.5)), lambda fn, t: 2 * fn(t) * 0.5),
}
CASES = [(k, f) for k in KINDS for f in FUNCTIONS]
IDS = [f"{k}-{f}" for k, f in CASES]
STEPS = 10


def _save_load(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.fixture(autouse=True)
def _no_warnings():
    """No ceremony: none of this warns (a warning would be a UserWarning turned into an error here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_step_applies_the_functions_value(kind, fn_name):
    """SGD without momentum on a gradient of ones moves the parameter by exactly the lr of each step."""
    build, oracle = KINDS[kind]
    fn = FUNCTIONS[fn_name]()
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = adaptlr.SGD([p], lr=build(fn))
    applied = []
    for _ in range(STEPS):
        before = p.detach().clone()
        p.grad = torch.ones_like(p)
        opt.step()
        applied.append(float(before[0] - p.detach()[0]))
    want = [oracle(fn, t) for t in range(STEPS)]
    assert applied == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert opt.param_groups[0]["lr"] == pytest.approx(oracle(fn, STEPS), rel=1e-15)  # the next step's lr


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_repr_never_raises_and_names_the_function(kind, fn_name):
    fn = FUNCTIONS[fn_name]()
    s = KINDS[kind][0](fn)
    text = repr(s)
    if fn_name == "registered":
        assert "'test_schedules_user_functions.decay'" in text
        assert S.from_spec(text) == s == S.from_spec(s.spec)  # a registered function: a spec that round-trips
    else:
        assert "<function " in text and ("<lambda>" in text if fn_name == "lambda" else "<function decay>" in text)
        assert getattr(s, "spec", None) is None  # no spec, like a plain function
        with pytest.raises(S.NoSpecError, match="has no spec.*register_callable"):
            _ = s.spec


def test_repr_of_the_issue_example():
    s = S.from_epochs(lambda e: 0.1 * 0.5**e, steps_per_epoch=100)
    assert repr(s) == "from_epochs(fn=<function <lambda>>, steps_per_epoch=100)"
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = adaptlr.SGD([p], lr=s)
    opt.step()  # raised ValueError (<function <lambda>> has no spec) before issue 18
    assert torch.equal(p.detach(), torch.full((3,), 0.9))


def _quadratic(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(4, 3, generator=g, dtype=torch.float64)
    return torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64)), target


def _adam_steps(opt, p, target, n):
    for _ in range(n):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_state_dict_is_plain_data_and_resumes_exactly_with_the_same_function(kind, fn_name):
    build, _ = KINDS[kind]
    fn = FUNCTIONS[fn_name]()
    p, target = _quadratic()
    whole = adaptlr.Adam([p], lr=build(fn))
    _adam_steps(whole, p, target, 8)

    q, _ = _quadratic()
    first = adaptlr.Adam([q], lr=build(fn))
    _adam_steps(first, q, target, 4)
    state = _save_load(first.state_dict())  # torch.load(weights_only=True): plain data only
    spec = state["param_groups"][0]["adaptlr_schedule_spec"]
    assert spec == (build(fn).spec if fn_name == "registered" else None)

    r = torch.nn.Parameter(q.detach().clone())
    resumed = adaptlr.Adam([r], lr=build(fn))  # the same function, given again (a fresh schedule object)
    resumed.load_state_dict(state)
    assert resumed.param_groups[0]["adaptlr_steps"] == 4
    _adam_steps(resumed, r, target, 4)
    assert torch.equal(r.detach(), p.detach())  # bit for bit


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_plot_draws_the_functions_values(kind, fn_name, tmp_path):
    build, oracle = KINDS[kind]
    fn = FUNCTIONS[fn_name]()
    s = build(fn)
    fig = S.plot(s, 12, path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([oracle(fn, t) for t in range(12)], rel=1e-14)
    assert line.get_label() == (repr(s) if len(repr(s)) < 60 else "_child0")


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_compose_again(kind, fn_name):
    """Each of them composes further: warmup, join, product, scale, and the operators."""
    build, oracle = KINDS[kind]
    fn = FUNCTIONS[fn_name]()
    s = build(fn)
    cos = S.cosine(1.0, steps=20)

    def inner(t):
        return oracle(fn, t)

    composites = {
        "warmup": (S.warmup(s, 2, start=0.01), lambda t: 0.01 + (inner(0) - 0.01) * t / 2 if t < 2 else inner(t - 2)),
        "join": (S.join([s, S.constant(0.2)], [5]), lambda t: inner(t) if t < 5 else 0.2),
        "product": (S.product([s, cos]), lambda t: inner(t) * 0.5 * (1 + math.cos(math.pi * min(t, 20) / 20))),
        "scale": (S.scale(s, 3.0), lambda t: 3.0 * inner(t)),
        "mul": (s * cos, lambda t: inner(t) * 0.5 * (1 + math.cos(math.pi * min(t, 20) / 20))),
        "div": (s / 4, lambda t: inner(t) / 4),
    }
    for name, (c, want) in composites.items():
        assert [c(t) for t in range(25)] == pytest.approx([want(t) for t in range(25)], rel=1e-13), name
        assert c == c and (fn_name == "registered") == hasattr(c, "spec"), name


@pytest.mark.parametrize("kind,fn_name", CASES, ids=IDS)
def test_as_torch_scheduler_runs_and_resumes(kind, fn_name):
    build, oracle = KINDS[kind]
    fn = FUNCTIONS[fn_name]()

    def make():
        p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        opt = torch.optim.SGD([p], lr=2.0)
        return p, opt, S.as_torch_scheduler(opt, build(fn))

    p, opt, sched = make()
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0 * oracle(fn, t) for t in range(6)], rel=1e-14)
    state = _save_load(sched.state_dict())
    _, opt2, again = make()
    again.load_state_dict(state)
    assert again.last_epoch == 6 and opt2.param_groups[0]["lr"] == pytest.approx(2.0 * oracle(fn, 6), rel=1e-14)


def test_a_plain_function_as_lr_of_torch_and_adaptlr():
    """A plain function of the step, no schedule object at all: as_torch_scheduler and adaptlr's lr= alike."""
    fn = _closure(1.0, 0.5)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = S.as_torch_scheduler(opt, fn)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.125)
    fig = S.plot(fn, 5)
    assert fig.axes[0].lines[0].get_label() == "<function decay>"
