"""Specs are data (issue 9): nothing in a schedule or method spec is imported, evaluated or called; user
functions are named only through `register_callable`; random specs are either refused with a clear error or
round-trip to an equal schedule whose values are finite and (unless allowed) non-negative."""

import inspect
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptlr import schedules as S
from adaptlr.lab import SpecError, parse_method
from adaptlr.lab.cli import main
from adaptlr.schedules._base import _FACTORIES

MARKER_MODULE = """
import pathlib
pathlib.Path(__file__).with_name("imported.txt").write_text("the spec ran an import")

def f(epoch):
    return 1.0
"""


@pytest.fixture
def booby_trapped_module(tmp_path, monkeypatch):
    """A module on sys.path that leaves a file behind when it is imported."""
    (tmp_path / "adaptlr_trap_mod.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "imported.txt"
    sys.modules.pop("adaptlr_trap_mod", None)


@pytest.mark.parametrize("fn", ["os:_exit", "adaptlr_trap_mod:f", "this:x", "builtins:exec", "adaptlr_trap_mod"])
def test_a_spec_names_no_module(fn, booby_trapped_module):
    for spec in (
        {"name": "from_epochs", "fn": fn, "steps_per_epoch": 1},
        f'from_epochs(fn="{fn}", steps_per_epoch=1)',
        json.dumps({"name": "from_epochs", "fn": fn, "steps_per_epoch": 1}),
    ):
        with pytest.raises(ValueError, match="unknown callable .*register_callable"):
            S.from_spec(spec)
    with pytest.raises(ValueError, match="unknown callable"):
        S.from_epochs(fn, steps_per_epoch=1)
    assert not booby_trapped_module.exists() and "adaptlr_trap_mod" not in sys.modules


def test_plot_schedule_cli_refuses_an_import(booby_trapped_module, tmp_path, capsys):
    """`adaptlr plot-schedule 'from_epochs(fn="os:_exit", steps_per_epoch=1)' --steps 3` used to exit silently."""
    for fn in ("os:_exit", "adaptlr_trap_mod:f"):
        spec = f'from_epochs(fn="{fn}", steps_per_epoch=1)'
        assert main(["plot-schedule", spec, "--steps", "3", "-o", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        assert "unknown callable" in err and err.count("\n") == 1
    assert not booby_trapped_module.exists() and not (tmp_path / "s.png").exists()


def test_register_callable_forms_and_errors():
    def halve(epoch):
        return 0.5**epoch

    assert S.register_callable("test.halve", halve) is halve

    @S.register_callable("test.third")
    def third(epoch):
        return 1 / 3**epoch

    @S.register_callable
    def test_quarter(epoch):
        return 0.25**epoch

    assert {"test.halve", "test.third", "test_quarter"} <= set(S.registered_callables())
    S.register_callable("test.halve", halve)  # the same function again: nothing happens
    with pytest.raises(ValueError, match="already registered as 'test.halve'"):
        S.register_callable("test.halve", third)
    S.register_callable("test.halve", third, replace=True)
    S.register_callable("test.halve", halve, replace=True)
    with pytest.raises(ValueError, match="Invalid name"):
        S.register_callable("", halve)
    with pytest.raises(ValueError, match="Invalid fn"):
        S.register_callable("test.nope", 3)
    # a spec names it; the spec round-trips; an unknown name gets a did-you-mean
    s = S.from_epochs(halve, steps_per_epoch=10)
    assert s.spec == {"name": "from_epochs", "fn": "test.halve", "steps_per_epoch": 10}
    again = S.from_spec(json.loads(json.dumps(s.spec)))
    assert again == s and again(25) == 0.25 and S.from_spec(repr(s)) == s
    with pytest.raises(ValueError, match="did you mean 'test.halve'"):
        S.from_spec({"name": "from_epochs", "fn": "test.halv", "steps_per_epoch": 10})
    # an unregistered function works but has no spec
    unregistered = S.from_epochs(lambda e: 1.0, 5)
    with pytest.raises(ValueError, match="has no spec.*register_callable"):
        _ = unregistered.spec


@pytest.mark.parametrize(
    "spec",
    [
        "adam(lr=__import__('os').system('touch x'))",
        "adam(lr=exec('x = 1'))",
        "adam(lr=os.sep)",
        "__import__('os')",
        "adam + cosine(warmup=open('f'))",
        "adam(lr=(lambda: 1)())",
        "adam(lr=1e-3)[0]",
        "adam(**{'lr': 1})",
        "adam.__class__",
    ],
)
def test_method_specs_evaluate_nothing(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError):
        parse_method(spec).validate()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- random schedule specs
_STRINGS = ["linear", "cosine", "cos", "triangular", "triangular2", "exp_range", "1-sqrt", "x", ""]
_leaf = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-2.0, 2.0),
    st.integers(-3, 400),
    st.booleans(),
    st.none(),
    st.sampled_from(_STRINGS),
)
_NAMES = sorted(n for n in _FACTORIES if n != "from_epochs")


_good = st.one_of(st.floats(0.0, 2.0), st.integers(1, 400), st.floats(0.01, 0.99))
_CHOICES = {
    "mode": ["linear", "cosine", "triangular", "triangular2", "exp_range"],
    "anneal": ["cos", "linear"],
    "cooldown": ["linear", "cosine", "1-sqrt"],
}


def _mostly(good):
    """``good`` nine times in ten, any leaf value otherwise (so that most specs get past validation)."""
    return st.integers(0, 19).flatmap(lambda k: _leaf if k in (1, 10) else good)  # hypothesis favours the ends


def _args(name, children):
    """Arguments for factory ``name``: required ones always, optional ones sometimes; mostly plausible values,
    sometimes anything (the leaf values); nested specs for the schedule-valued parameters, lists for the
    list-valued ones."""
    required, optional = {}, {}
    for p, param in inspect.signature(_FACTORIES[name]).parameters.items():
        if p == "schedule":
            value = children
        elif p == "schedules":
            value = st.lists(children, min_size=0, max_size=3)
        elif p in ("milestones", "boundaries", "values"):
            value = st.lists(st.one_of(st.integers(-1, 300), st.floats(-1.0, 2.0)), max_size=4)
        elif p == "allow_negative":
            value = st.booleans()
        elif p in _CHOICES:
            value = _mostly(st.sampled_from(_CHOICES[p]))
        else:
            value = _mostly(_good)
        (required if param.default is param.empty else optional)[p] = value
    return st.fixed_dictionaries(required, optional=optional)


def _spec(children):
    return st.sampled_from(_NAMES).flatmap(lambda n: _args(n, children).map(lambda a: {"name": n, **a}))


specs = st.recursive(
    st.sampled_from(_NAMES).flatmap(lambda n: _args(n, st.floats(0.0, 1.0)).map(lambda a: {"name": n, **a})),
    _spec,
    max_leaves=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs)
def test_random_schedule_specs_round_trip_or_are_refused(spec):
    try:
        s = S.from_spec(spec)
    except (ValueError, TypeError) as e:  # refused: the message says what
        assert str(e)
        return
    again = S.from_spec(json.loads(json.dumps(s.spec)))
    assert again == s and S.from_spec(repr(s)) == s
    low, high = s.bounds()
    assert math.isfinite(low) and math.isfinite(high) and (low >= 0 or s.allows_negative())
    for t in (0, 1, 2, 7, 99, 100, 1000, 123_457, 10**9):
        v = s(t)
        assert again(t) == v and math.isfinite(v)
        tol = 1e-9 * (1 + max(abs(low), abs(high)))  # rounding is relative to the operands' scale
        assert low - tol <= v <= high + tol, (t, v, low, high)


@pytest.mark.parametrize(
    "s",
    [
        S.exponential(0.0, 2.0),
        S.exponential(1.0, 2.0, final=10.0),
        S.step(0.0, 1, 2.0),
        S.cosine_restarts(0.0, 5, decay=2.0),
        S.cyclic(0.1, 0.1, 5, mode="exp_range", gamma=2.0),
        S.cyclic(0.0, 1.0, 1, mode="triangular2"),
    ],
    ids=repr,
)
def test_capped_or_zero_growth_never_overflows(s):
    """Found by the property test above: `0 * 2.0 ** 1e9` and `1 / 2.0 ** 1e9` raised OverflowError."""
    assert [s(t) for t in (0, 10, 10**9)] == pytest.approx(
        [s(0), s(10), s.bounds()[1] if s.params.get("final") else s(0)]
    )


@pytest.mark.parametrize(
    "s",
    [
        S.exponential(1.0, 1, final=0.0),
        S.exponential(1.0, 0.5, final=0.25, begin=3),
        S.exponential(0.5, 2.0, final=4.0),
        S.one_cycle(1.0, total_steps=10, div_factor=0.5),
        S.cosine(1.625, 1, final=3.0),
    ],
    ids=repr,
)
def test_bounds_hold_every_value(s):
    """Found by the property test: the bounds missed exponential's clip at rate 1 and one_cycle's start above
    its peak (div_factor < 1)."""
    low, high = s.bounds()
    values = [s(t) for t in range(0, 200)]
    assert low <= min(values) and max(values) <= high
    assert min(values) == pytest.approx(low) and max(values) == pytest.approx(high)  # and they are tight here


def test_import_is_the_explicit_way_to_name_your_own_function(tmp_path, monkeypatch, capsys):
    """`--import MODULE` runs the user's module, which registers its function; then a spec may name it."""
    (tmp_path / "adaptlr_user_decay.py").write_text(
        "from adaptlr.schedules import register_callable\n\n\n"
        "@register_callable('user_decay')\ndef user_decay(epoch):\n    return 0.1 * 0.5 ** epoch\n"
    )
    monkeypatch.chdir(tmp_path)
    spec = 'from_epochs(fn="user_decay", steps_per_epoch=10)'
    png = tmp_path / "s.png"
    assert main(["plot-schedule", spec, "--steps", "50", "-o", str(png)]) == 2  # not registered yet
    assert "unknown callable 'user_decay'" in capsys.readouterr().err
    try:
        assert main(["plot-schedule", spec, "--steps", "50", "-o", str(png), "--import", "adaptlr_user_decay"]) == 0
        assert png.stat().st_size > 5000 and S.from_spec(spec)(25) == pytest.approx(0.025)
    finally:
        S._base._CALLABLES.pop("user_decay", None)
        sys.modules.pop("adaptlr_user_decay", None)
