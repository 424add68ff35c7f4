"""Schedules: specs, validation, properties (hypothesis), the torch adapter (skipped steps, resume), plot."""

import math
import pickle
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptlr import SGD
from adaptlr import schedules as S


@S.register_callable("test_schedules.epoch_fn")
def epoch_fn(epoch):  # registered: its spec is the name
    return 0.5**epoch


EXAMPLES = [
    S.constant(0.3),
    S.linear(0.0, 1.0, 10, begin=2),
    S.polynomial(1.0, 0.1, 20, power=2.0),
    S.exponential(1.0, 0.9, steps=3, staircase=True, final=0.2),
    S.step(0.1, 30, 0.5),
    S.multistep(1.0, [10, 20]),
    S.piecewise_constant([1.0, 0.1], [5]),
    S.inverse_sqrt(1.0, 100),
    S.cosine(0.1, 1000, final=1e-4, exponent=2.0),
    S.cosine_restarts(1.0, 10, mult=2, decay=0.8),
    S.one_cycle(0.1, 1000, three_phase=True),
    S.cyclic(0.01, 0.1, 200, mode="exp_range", gamma=0.999),
    S.wsd(3e-3, 10_000, warmup=0.05, decay=0.2, cooldown="1-sqrt"),
    S.warmup(S.cosine(1.0, 100), 10, start=0.1, mode="cosine"),
    S.join([S.linear(0, 1, 10), S.constant(1.0), S.cosine(1.0, 50)], [10, 30]),
    S.product([S.cosine(1.0, 100), S.cyclic(0.5, 1.0, 10)]),
    S.scale(S.constant(2.0), 0.5),
    S.from_epochs(epoch_fn, steps_per_epoch=10),
    S.from_epochs(S.step(1.0, 2), steps_per_epoch=5),
]


@pytest.mark.parametrize("s", EXAMPLES, ids=lambda s: s.name)
def test_spec_round_trips_and_pickles(s):
    import json

    spec = json.loads(json.dumps(s.spec))
    again = S.from_spec(spec)
    assert again == s and hash(again) == hash(s)
    assert S.from_spec(repr(s)) == s
    assert S.from_spec(json.dumps(spec)) == s
    restored = pickle.loads(pickle.dumps(s))
    assert [restored(t) for t in range(0, 400, 7)] == [s(t) for t in range(0, 400, 7)]


def test_equality_is_by_spec():
    assert S.cosine(0.1, 100) == S.cosine(0.1, 100.0)  # an integral float is read as steps
    assert S.cosine(0.1, 100) != S.cosine(0.1, 101)
    assert S.from_spec(0.5) == S.constant(0.5)
    assert S.from_spec("warmup(cosine(0.1, 90), steps=10)") == S.warmup(S.cosine(0.1, 90), 10)


def test_lambda_without_spec_is_clear():
    fn = lambda e: 1.0 / (e + 1)  # noqa: E731
    s = S.from_epochs(fn, steps_per_epoch=3)
    assert s(7) == 1.0 / 3
    with pytest.raises(ValueError, match="lambdas"):
        _ = s.spec
    with pytest.raises(S.NoSpecError, match="has no spec"):  # (an AttributeError too: getattr(s, "spec", None))
        _ = S.warmup(s, 2).spec
    assert getattr(s, "spec", None) is None and not hasattr(S.join([s, 0.1], [3]), "spec")
    assert repr(s) == "from_epochs(fn=<function <lambda>>, steps_per_epoch=3)"
    assert s == s == S.from_epochs(fn, 3) and s != S.from_epochs(lambda e: 1.0, 3) and s != S.from_epochs(fn, 4)
    assert hash(s) == hash(S.from_epochs(fn, 3))


def test_fractions_of_total_steps():
    assert S.cosine(1.0, 0.5, total_steps=1000).steps == 500
    assert S.multistep(1.0, [0.5, 0.75], total_steps=200).milestones == [100, 150]
    assert S.wsd(1.0, 1000, warmup=0.1, decay=0.25).warmup == 100
    with pytest.raises(ValueError, match="total_steps"):
        S.cosine(1.0, 0.5)
    with pytest.raises(ValueError, match="steps"):
        S.linear(0.0, 1.0, 2.5)


BAD = [
    (S.cosine, dict(init=float("nan"), steps=10), "init"),
    (S.cosine, dict(init=1.0, steps=0), "steps"),
    (S.cosine, dict(init=1.0, steps=10, exponent=0), "exponent"),
    (S.linear, dict(init=0, final=1, steps=-3), "steps"),
    (S.exponential, dict(init=1.0, rate=0.0), "rate"),
    (S.step, dict(init=1.0, step_size=0), "step_size"),
    (S.step, dict(init=1.0, step_size=2, gamma=-1), "gamma"),
    (S.multistep, dict(init=1.0, milestones=[5, 3]), "milestones"),
    (S.piecewise_constant, dict(values=[1.0], boundaries=[3]), "values"),
    (S.one_cycle, dict(peak=1.0, total_steps=100, pct_start=1.5), "pct_start"),
    (S.one_cycle, dict(peak=1.0, total_steps=100, anneal="cosine"), "anneal"),
    (S.one_cycle, dict(peak=-1.0, total_steps=100), "peak"),
    (S.cyclic, dict(base=0.1, peak=1, mode="tri"), "mode"),
    (S.cosine_restarts, dict(init=1.0, period=10, mult=0), "mult"),
    (S.wsd, dict(peak=1.0, steps=10, warmup=8, decay=5), "decay"),
    (S.wsd, dict(peak=1.0, steps=10, cooldown="sqrt"), "cooldown"),
    (S.warmup, dict(schedule=S.constant(1.0), steps=0), "steps"),
    (S.warmup, dict(schedule=object(), steps=5), "schedule"),
    (S.join, dict(schedules=[S.constant(1.0)], boundaries=[3]), "boundaries"),
    (S.from_epochs, dict(fn=3, steps_per_epoch=2), "fn"),
    (S.from_epochs, dict(fn=epoch_fn, steps_per_epoch=0), "steps_per_epoch"),
    (S.inverse_sqrt, dict(init=1.0, timescale=0), "timescale"),
    (S.constant, dict(value=math.nan), "value"),
    (S.polynomial, dict(init=1.0, final=0.0, steps=5, power=0), "power"),
    (S.product, dict(schedules=[]), "schedules"),
    (S.cyclic, dict(base=0.1, peak=1.0, step_size_up=0), "step_size_up"),
    (S.warmup, dict(schedule=S.constant(1.0), steps=3, mode="exp"), "mode"),
    (S.piecewise_constant, dict(values=[1.0, 2.0], boundaries=[-1]), "boundaries"),
    (S.linear, dict(init=0.0, final=1.0, steps=10, begin=-1), "begin"),
    (S.exponential, dict(init=1.0, rate=0.5, staircase=True, steps=0), "steps"),
    (S.scale, dict(schedule=S.constant(1.0), factor=math.inf), "factor"),
]


@pytest.mark.parametrize("factory,kwargs,arg", BAD, ids=[f"{f.__name__}-{a}" for f, _, a in BAD])
def test_validation_names_the_argument(factory, kwargs, arg):
    with pytest.raises(ValueError, match=rf"Invalid {arg}\b"):
        factory(**kwargs)


def test_unknown_spec_names():
    with pytest.raises(ValueError, match="unknown schedule"):
        S.from_spec({"name": "nope"})
    with pytest.raises(ValueError, match="unknown schedule '__import__'"):
        S.from_spec("cosine(init=__import__('os'), steps=3)")  # nothing is evaluated
    with pytest.raises(ValueError, match="only literals"):
        S.from_spec("cosine(init=os.sep, steps=3)")


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=40, deadline=None)
@given(
    init=st.floats(1e-6, 10.0),
    n=st.integers(20, 500),
    pct=st.floats(0.1, 0.45),
    e=st.floats(0.5, 3.0),
    w=st.integers(1, 100),
    t=st.integers(0, 2000),
)
def test_spec_round_trip_property(init, n, pct, e, w, t):
    for s in (
        S.warmup(S.cosine(init, n, final=init / 7, exponent=e), w),
        S.one_cycle(init, n, pct_start=pct),
        S.join([S.wsd(init, n, warmup=pct), S.exponential(init / 10, 0.99)], [n]),
    ):
        again = S.from_spec(s.spec)
        assert again == s and again(t) == s(t)
    # the same composites of an unregistered function: no spec, but equal when rebuilt from the same function
    fn = _decay(init, 1.0 / (1.0 + e))
    for build in (
        lambda f: S.warmup(S.from_epochs(f, n), w),
        lambda f: S.join([S.wsd(init, n, warmup=pct), f], [n]),
        lambda f: S.product([S.one_cycle(init, n, pct_start=pct), f]),
    ):
        s = build(fn)
        assert getattr(s, "spec", None) is None and s == build(fn) and s != build(_decay(init, 0.5))
        assert build(fn)(t) == s(t) and math.isfinite(s(t))


pos = st.floats(1e-6, 10.0)
dur = st.integers(1, 300)
steps = st.integers(0, 2000)


def _decay(init, rate, final=0.0):
    """An unregistered closure (the kind of user function that needs no registration): init -> final."""

    def decay(t):
        return final + (init - final) * rate**t

    return decay


@settings(max_examples=60, deadline=None)
@given(init=pos, ratio=st.floats(0.0, 1.0), n=dur, e=st.floats(0.2, 4.0), t=steps)
def test_decays_are_monotone_and_bounded(init, ratio, n, e, t):
    final = init * ratio
    for s in (
        S.cosine(init, n, final, exponent=e),
        S.linear(init, final, n),
        S.polynomial(init, final, n, power=e),
        S.wsd(init, n + 10, warmup=0, decay=n, final=final, cooldown="1-sqrt"),
        S.from_epochs(_decay(init, 1.0 - 1.0 / (1.0 + e), final), n),  # unregistered user functions
        S.from_epochs(lambda epoch: max(final, init - (init - final) * epoch / 3), n),
    ):
        a, b = s(t), s(t + 1)
        assert math.isfinite(a) and final - 1e-12 <= b <= a + 1e-12 <= init + 2e-12


@settings(max_examples=60, deadline=None)
@given(init=pos, gamma=st.floats(0.0, 1.0), size=dur, rate=st.floats(0.01, 1.0), t=steps)
def test_step_decays_are_monotone(init, gamma, size, rate, t):
    for s in (
        S.step(init, size, gamma),
        S.multistep(init, [size, 2 * size + 1], gamma),
        S.exponential(init, rate),
        S.exponential(init, rate, steps=size, staircase=True),
        S.inverse_sqrt(init, size),
        S.from_epochs(lambda epoch: init * gamma**epoch, size),  # an unregistered lambda
        S.scale(_decay(1.0, rate), init),
    ):
        assert 0.0 <= s(t + 1) <= s(t) <= init


@settings(max_examples=60, deadline=None)
@given(
    peak=pos,
    n=st.integers(20, 500),
    pct=st.floats(0.1, 0.45),
    three=st.booleans(),
    t=steps,
    mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
    up=dur,
    mult=st.integers(1, 3),
)
def test_cyclic_family_finite_and_in_range(peak, n, pct, three, t, mode, up, mult):
    for s in (
        S.one_cycle(peak, n, pct_start=pct, three_phase=three),
        S.cyclic(peak / 10, peak, up, mode=mode),
        S.cosine_restarts(peak, up, mult=mult, final=peak / 100),
        S.cyclic(peak / 10, peak, up, mode=mode) * (lambda step: 1.0 / (1.0 + step / up)),  # unregistered
    ):
        v = s(t)
        assert math.isfinite(v) and 0.0 < v <= peak * (1 + 1e-12)


@settings(max_examples=80, deadline=None)
@given(a=st.floats(0, 5), b=pos, c=st.floats(0, 1), n=dur, m=dur, t=steps, user=st.booleans())
def test_join_is_continuous_where_its_pieces_meet(a, b, c, n, m, t, user):
    ramp = (lambda step: a + (b - a) * min(step, n) / n) if user else S.linear(a, b, n)  # unregistered or not
    s = S.join([ramp, S.cosine(b, m, final=b * c)], boundaries=[n])
    assert s(n) == pytest.approx(b, rel=1e-14)  # the second piece starts where the first one ends
    assert abs(s(n) - s(n - 1)) <= abs(b - a) / n * (1 + 1e-9) + 1e-12
    assert math.isfinite(s(t))


@settings(max_examples=80, deadline=None)
@given(start=st.floats(0, 1), peak=pos, w=dur, n=dur, mode=st.sampled_from(["linear", "cosine"]), user=st.booleans())
def test_warmup_reaches_the_wrapped_value_at_its_end(start, peak, w, n, mode, user):
    inner = _decay(peak, 0.5 ** (1 / n)) if user else S.cosine(peak, n)  # an unregistered closure, or not
    s = S.warmup(inner, w, start=start, mode=mode)
    assert s(0) == start and s(w) == inner(0) == pytest.approx(peak, rel=1e-14)
    lo, hi = sorted((start, peak))
    assert all(lo - 1e-12 <= s(t) <= hi + 1e-12 for t in range(w))
    assert s(w + n // 2) == inner(n // 2)


# ------------------------------------------------------------------------------------------------ torch adapter
def _model_and_opt(lr=0.1):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def test_grad_scaler_skipped_steps_do_not_advance_the_schedule():
    model, opt = _model_and_opt()
    sched = S.as_torch_scheduler(opt, S.linear(1.0, 0.0, steps=10))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x = torch.randn(4, 3)
    applied = 0
    for i in range(8):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        if i in (2, 3, 6):  # inf gradients: the scaler skips the optimizer step
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
        applied += changed
        sched.step()
        assert changed == (i not in (2, 3, 6))
        assert sched.last_epoch == applied
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - applied / 10))


def test_nonfinite_skip_policy_does_not_advance_the_schedule():
    class SkippingSGD(torch.optim.SGD):  # stands for an adaptlr optimizer with nonfinite="skip"
        last_step_skipped = False

        def step(self, closure=None):
            self.last_step_skipped = any(
                not torch.isfinite(p.grad).all() for g in self.param_groups for p in g["params"]
            )
            return None if self.last_step_skipped else super().step(closure)

    p = torch.nn.Parameter(torch.ones(2))
    opt = SkippingSGD([p], lr=1.0)
    sched = S.as_torch_scheduler(opt, S.exponential(1.0, 0.5))
    for g in ([1.0, 1.0], [math.nan, 1.0], [1.0, 1.0]):
        p.grad = torch.tensor(g)
        opt.step()
        sched.step()
    assert sched.last_epoch == 2 and opt.param_groups[0]["lr"] == 0.25
    calls = S.as_torch_scheduler(torch.optim.SGD([p], lr=1.0), S.exponential(1.0, 0.5), count="calls")
    with pytest.warns(UserWarning, match="before `optimizer.step"):  # torch's own warning, as for LambdaLR
        calls.step()
    assert calls.last_epoch == 1


def test_adaptlr_nonfinite_skip_does_not_advance_the_schedule():
    from adaptlr.optim import SGD

    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = SGD([p], lr=1.0, nonfinite="skip", foreach=True)
    sched = S.as_torch_scheduler(opt, S.exponential(1.0, 0.5))
    for g in ([1.0, 1.0], [math.inf, 1.0], [1.0, 1.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        sched.step()
    assert opt.last_step_skipped is False and sched.last_epoch == 2
    assert p.tolist() == [-0.5, -0.5]  # steps of 1.0 and 0.5; the skipped one changed nothing


def test_as_torch_scheduler_rejects_an_optimizer_that_already_has_a_schedule():
    from adaptlr.optim import SGD

    with pytest.raises(ValueError, match="already has a schedule"):
        S.as_torch_scheduler(SGD([torch.nn.Parameter(torch.ones(1))], lr=S.cosine(0.1, 10)), S.constant(1.0))
    with pytest.raises(ValueError, match="Invalid schedule"):
        S.as_torch_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), 0.5)


def test_schedules_load_with_weights_only():
    s = S.warmup(S.join([S.cosine(1.0, 10), S.constant(0.1)], [10]) * 0.5, 5)
    S.allow_torch_load()
    assert torch.load(_save({"lr": s, "state": 3}), weights_only=True)["lr"] == s


def _train(opt, sched, model, n):
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    for _ in range(n):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()


def test_state_dict_resume_and_spec_mismatch():
    s1, s2 = S.cosine(1.0, 100), S.linear(1.0, 0.0, 100)
    model, opt = _model_and_opt()
    sched = S.as_torch_scheduler(opt, s1)
    _train(opt, sched, model, 30)
    state = torch.load(_save(sched.state_dict()), weights_only=True)  # plain types only
    assert state["spec"] == s1.spec and state["last_epoch"] == 30

    same = S.as_torch_scheduler(_model_and_opt()[1], s1)
    same.load_state_dict(state)
    assert same.last_epoch == 30 and same.get_last_lr() == pytest.approx([0.1 * s1(30)])

    with pytest.raises(ValueError, match="on_mismatch"):
        S.as_torch_scheduler(_model_and_opt()[1], s2).load_state_dict(state)

    _, o = _model_and_opt()
    keep = S.as_torch_scheduler(o, s2, on_mismatch="keep")
    keep.load_state_dict(state)
    assert o.param_groups[0]["lr"] == pytest.approx(0.1 * s2(30))

    _, o = _model_and_opt()
    res = S.as_torch_scheduler(o, s2)
    res.load_state_dict(state, on_mismatch="rescale")
    assert o.param_groups[0]["lr"] == pytest.approx(0.1 * s1(30))  # continues from the saved lr
    assert res.base_lrs[0] * s2(31) == pytest.approx(0.1 * s1(30) * s2(31) / s2(30))


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_plot_returns_a_figure(tmp_path):
    fig = S.plot(S.warmup(S.cosine(1.0, 90), 10), 100, path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    ys = fig.axes[0].lines[0].get_ydata()
    assert len(ys) == 100 and ys[10] == 1.0
    fig2 = S.plot({"a": S.constant(1.0), "b": S.cosine(1.0, 50)}, 50, log=True, title="t")
    assert len(fig2.axes[0].lines) == 2


def test_import_is_light():
    code = "import sys, adaptlr.schedules; print(sorted({'matplotlib', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _sgd(*sizes, lr=1.0):
    groups = [{"params": [torch.nn.Parameter(torch.ones(n))]} for n in sizes]
    return torch.optim.SGD(groups, lr=lr)


def test_schedule_lr_failed_load_changes_nothing():
    """issue 9: a failed load_state_dict leaves the scheduler (and its optimizer) as they were."""
    opt = _sgd(2)
    sched = S.as_torch_scheduler(opt, S.exponential(1.0, 0.5))
    for _ in range(3):
        opt.step()
        sched.step()
    saved = sched.state_dict()
    two = _sgd(2, 3, lr=0.1)
    other = S.as_torch_scheduler(two, S.exponential(1.0, 0.5))
    opt2 = two
    opt2.step()
    other.step()
    before = (other.state_dict(), [g["lr"] for g in two.param_groups])
    with pytest.raises(ValueError, match="1 param group"):
        other.load_state_dict(saved)  # saved with one group, loaded into two
    mismatch = S.as_torch_scheduler(_sgd(2), S.cosine(1.0, 10))
    mismatch_before = (mismatch.state_dict(), mismatch.optimizer.param_groups[0]["lr"])
    with pytest.raises(ValueError, match="differs"):
        mismatch.load_state_dict(saved)  # used to set last_epoch and base_lrs before raising
    with pytest.raises(ValueError, match="not a ScheduleLR state"):
        other.load_state_dict({"last_epoch": 3})
    assert (other.state_dict(), [g["lr"] for g in two.param_groups]) == before
    assert (mismatch.state_dict(), mismatch.optimizer.param_groups[0]["lr"]) == mismatch_before


def test_schedule_lr_with_a_lambda_needs_no_ceremony():
    """A user function drives a torch optimizer as LambdaLR's does: no warning, no spec, an exact resume."""
    import warnings

    fn = lambda t: 0.5**t  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = _sgd(2)
        sched = S.as_torch_scheduler(opt, fn)
        opt.step()
        sched.step()
        state = torch.load(_save(sched.state_dict()), weights_only=True)
        assert state["spec"] is None
        again = S.as_torch_scheduler(_sgd(2), fn)
        again.load_state_dict(state)
    assert again.last_epoch == sched.last_epoch == 1 and again.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("make", [torch.optim.SGD, SGD], ids=["torch", "adaptlr"])
def test_schedule_lr_keeps_a_controllers_cut(make):
    """The cut of a number lr lives in group["lr"] (as torch's ReduceLROnPlateau's): the scheduler, which
    rewrites group["lr"] every step, multiplies the controllers' factor back in, for adaptlr's optimizers too."""
    from adaptlr.controllers import ReduceOnPlateau

    p = torch.nn.Parameter(torch.ones(2))
    opt = make([p], lr=0.1)
    sched = S.as_torch_scheduler(opt, S.linear(1.0, 0.5, steps=10))
    plateau = ReduceOnPlateau(opt, patience=0, factor=0.5)
    for t in range(4):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
        plateau.observe(1.0)  # flat: a cut after the second observation
    assert plateau.factor == 0.125
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1.0 - 0.05 * 4) * 0.125)


def _package_imports(package):
    """{module: the sibling modules it imports}, lazy (function-level) imports included, read from the source."""
    import ast
    import pathlib

    root = pathlib.Path(S.__file__).parent.parent / package
    graph = {}
    for path in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                deps.update(n.split(".")[0] for n in names)
        graph[path.stem] = deps & {p.stem for p in root.glob("*.py")}
    return graph


def test_schedules_modules_import_in_one_direction():
    """issue 21: no import cycle among the modules of adaptlr.schedules (lazy imports count): _base imports none of
    its siblings, the factories import _base, __init__ imports them all."""
    graph = _package_imports("schedules")
    assert graph["_base"] == set()
    seen, done = [], set()

    def visit(m):
        assert m not in seen, f"import cycle: {' -> '.join([*seen[seen.index(m) :], m])}"
        if m in done:
            return
        seen.append(m)
        for d in sorted(graph[m]):
            visit(d)
        seen.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
