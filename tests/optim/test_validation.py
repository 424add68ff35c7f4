"""adaptlr._validation, the one module that checks arguments for the whole library.

Each function's accept / refuse table, property tests over random values (hypothesis), one behaviour across the
layers (a wrong type is a ``TypeError``, a value out of range or non-finite a ``ValueError``, infinity only where
it means "no limit"), and a scan of the source: no layer keeps a check of its own.
"""

from __future__ import annotations

import ast
import enum
import fractions
import importlib
import importlib.util
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import adaptlr
from adaptlr import _validation as V
from adaptlr import schedules as S
from adaptlr.controllers import DivergenceGuard, Hypergradient, LossTrend, ReduceOnPlateau

ROOT = pathlib.Path(adaptlr.__file__).parent
WRONG_TYPES = ["0.5", None, True, False, 1j, [0.5], (0.5,), object()]


# ------------------------------------------------------------------------------------------------ check_real
@pytest.mark.parametrize(
    "kwargs,value,expected",
    [
        ({}, 0.5, 0.5),
        ({}, -1e300, -1e300),
        ({}, 3, 3.0),  # an int is a real number
        ({}, np.float32(0.25), 0.25),
        ({}, fractions.Fraction(1, 4), 0.25),
        ({"low": 0.0}, 0.0, 0.0),  # closed ends by default
        ({"low": 0.0, "high": 1.0}, 1.0, 1.0),
        ({"low": 0.0, "high": 1.0, "high_open": True}, 0.999, 0.999),
        ({"low": 1.0, "allow_inf": True}, math.inf, math.inf),
        ({"allow_inf": True}, -math.inf, -math.inf),
        pytest.param({"low": 1.0, "allow_inf": True}, 10**400, math.inf, id="an int beyond the floats: inf"),
    ],
)
def test_check_real_accepts(kwargs, value, expected):
    out = V.check_real("x", value, **kwargs)
    assert out == expected and type(out) is float


@pytest.mark.parametrize(
    "kwargs,value,message",
    [
        ({}, math.nan, r"Invalid x: nan is outside \(-inf, inf\)"),
        ({}, math.inf, r"Invalid x: inf is outside \(-inf, inf\)"),  # infinity: only with allow_inf
        ({}, -math.inf, r"Invalid x: -inf is outside"),
        ({"low": 0.0}, -0.1, r"Invalid x: -0.1 is outside \[0, inf\)"),
        ({"low": 0.0, "low_open": True}, 0.0, r"Invalid x: 0.0 is outside \(0, inf\)"),
        ({"low": 0.0, "high": 1.0, "high_open": True}, 1.0, r"Invalid x: 1.0 is outside \[0, 1\)"),
        ({"low": 0.0, "high": 1.0}, 1.5, r"Invalid x: 1.5 is outside \[0, 1\]"),
        ({"low": 1.0, "allow_inf": True}, math.nan, r"Invalid x: nan is outside \[1, inf\]"),
        ({"low": 1.0, "allow_inf": True}, -math.inf, r"Invalid x: -inf is outside \[1, inf\]"),
        ({"low": 1.0, "high_open": True, "allow_inf": True}, math.inf, r"outside \[1, inf\)"),
        pytest.param({"low": 0.0}, -(10**400), r"Invalid x: -1000.* is outside \[0, inf\)", id="-huge-int"),
    ],
)
def test_check_real_refuses_out_of_range_with_value_error(kwargs, value, message):
    with pytest.raises(ValueError, match=message):
        V.check_real("x", value, **kwargs)


@pytest.mark.parametrize("value", WRONG_TYPES + [torch.tensor(0.5), np.array([0.5])])
def test_check_real_refuses_a_wrong_type_with_type_error(value):
    with pytest.raises(TypeError, match=r"Invalid x: .* \(expected a real number in \[0, 1\], got \w+\)"):
        V.check_real("x", value, 0.0, 1.0)


_ENDS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(-math.inf), st.just(math.inf))
_VALUES = st.one_of(
    st.floats(),
    st.integers(),
    st.sampled_from([0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, 2**1023, 10**400, -(10**400)]),
)


@given(
    low=_ENDS,
    high=_ENDS,
    low_open=st.booleans(),
    high_open=st.booleans(),
    allow_inf=st.booleans(),
    value=_VALUES,
)
def test_check_real_accepts_exactly_the_interval(low, high, low_open, high_open, allow_inf, value):
    """Any real value: accepted (as that float) exactly when it lies in the interval, infinities only with
    ``allow_inf``; else a ValueError that names the argument and shows the value."""
    try:
        v = float(value)
    except OverflowError:  # an int beyond the floats is an infinity
        v = math.inf if value > 0 else -math.inf
    inside = (
        not math.isnan(v)
        and (v > low if low_open else v >= low)
        and (v < high if high_open else v <= high)
        and (allow_inf or math.isfinite(v))
    )
    kwargs = dict(low_open=low_open, high_open=high_open, allow_inf=allow_inf)
    if inside:
        assert V.check_real("arg", value, low, high, **kwargs) == v
    else:
        with pytest.raises(ValueError) as info:
            V.check_real("arg", value, low, high, **kwargs)
        assert str(info.value).startswith(f"Invalid arg: {value!r} is outside ")


@given(value=st.one_of(st.text(), st.none(), st.booleans(), st.complex_numbers(), st.lists(st.floats())))
def test_check_real_refuses_every_non_number(value):
    with pytest.raises(TypeError, match="Invalid arg"):
        V.check_real("arg", value, allow_inf=True)


# ------------------------------------------------------------------------------------------------ check_count
@pytest.mark.parametrize(
    "args,value",
    [((), 0), ((), 10**30), ((1,), 1), ((0, 99), 99), ((), np.int64(3)), ((-5,), -5)],
)
def test_check_count_accepts(args, value):
    out = V.check_count("n", value, *args)
    assert out == value and type(out) is int


@pytest.mark.parametrize(
    "args,value,error,message",
    [
        ((), -1, ValueError, r"Invalid n: -1 \(expected an integer >= 0\)"),
        ((1,), 0, ValueError, r"Invalid n: 0 \(expected an integer >= 1\)"),
        ((0, 99), 100, ValueError, r"Invalid n: 100 \(expected an integer in \[0, 99\]\)"),
        ((), 1.5, TypeError, r"Invalid n: 1.5 \(expected an integer >= 0, got float\)"),
        ((), 2.0, TypeError, r"got float"),  # an integral float is still a float
        ((), math.nan, TypeError, r"Invalid n: nan"),
        ((), math.inf, TypeError, r"Invalid n: inf"),
        ((), True, TypeError, r"got bool"),
        ((), "3", TypeError, r"got str"),
        ((), None, TypeError, r"got NoneType"),
    ],
)
def test_check_count_refuses(args, value, error, message):
    with pytest.raises(error, match=message):
        V.check_count("n", value, *args)


@given(value=st.integers(), minimum=st.integers(-100, 100), span=st.one_of(st.none(), st.integers(0, 100)))
def test_check_count_accepts_exactly_the_range(value, minimum, span):
    maximum = None if span is None else minimum + span
    if value >= minimum and (maximum is None or value <= maximum):
        assert V.check_count("n", value, minimum, maximum) == value
    else:
        with pytest.raises(ValueError, match=rf"Invalid n: {value} \(expected an integer"):
            V.check_count("n", value, minimum, maximum)


@given(value=st.one_of(st.floats(), st.text(), st.booleans(), st.none()))
def test_check_count_refuses_every_non_integer(value):
    with pytest.raises(TypeError, match="Invalid n"):
        V.check_count("n", value)


# ------------------------------------------------------------------------------------------------ choice, bool
class _Mode(str, enum.Enum):
    MIN = "min"


def test_check_choice():
    assert V.check_choice("mode", "min", ("min", "max")) == "min"
    assert V.check_choice("nonfinite", None, (None, "raise", "skip")) is None
    for bad in ["mean", "MIN", 3, None, ["min"], np.array(["min"])]:
        with pytest.raises(ValueError, match=r"Invalid mode: .* \(expected one of \['min', 'max'\]\)"):
            V.check_choice("mode", bad, ("min", "max"))
    for bad in [True, 1.0]:  # True is not the choice 1, nor is 1.0
        with pytest.raises(ValueError, match="Invalid k"):
            V.check_choice("k", bad, (0, 1))
    assert V.check_choice("k", 1, (0, 1)) == 1 and V.check_choice("flag", True, (True, None)) is True
    assert V.check_choice("mode", _Mode.MIN, ("min", "max")) is _Mode.MIN  # (a str subclass: a StrEnum)


def test_check_nonfinite():
    for ok in (None, "raise", "skip"):
        assert V.check_nonfinite(ok) == ok
    with pytest.raises(ValueError, match=r"Invalid nonfinite: 'ignore' \(expected one of \[None, 'raise', 'skip'\]\)"):
        V.check_nonfinite("ignore")


def test_check_bool():
    assert V.check_bool("maximize", True) is True and V.check_bool("maximize", False) is False
    assert V.check_bool("foreach", None, allow_none=True) is None
    for bad in [1, 0, "yes", np.bool_(True), torch.tensor(True)]:
        with pytest.raises(TypeError, match=r"Invalid maximize: .* \(expected a bool, got"):
            V.check_bool("maximize", bad)
    with pytest.raises(TypeError, match=r"Invalid maximize: None \(expected a bool, got NoneType\)"):
        V.check_bool("maximize", None)
    with pytest.raises(TypeError, match=r"expected a bool or None"):
        V.check_bool("foreach", 1, allow_none=True)


# ------------------------------------------------------------------------------------------------ betas, lr
def test_check_betas():
    assert V.check_betas((0.9, 0.999)) == (0.9, 0.999)
    assert V.check_betas([0.0, 0.5]) == (0.0, 0.5)
    b1 = torch.tensor(0.9)
    assert V.check_betas((b1, 0.999))[0] is b1  # returned as given
    for bad in [0.9, (0.9,), (0.9, 0.99, 0.999), None, "ab"]:
        with pytest.raises(TypeError, match=r"Invalid betas: .* \(expected a pair"):
            V.check_betas(bad)
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 1 \(betas\[1\]\): 1.0 is outside \[0, 1\)"):
        V.check_betas((0.9, 1.0))
    with pytest.raises(ValueError, match=r"betas\[0\]\): -0.1"):
        V.check_betas((-0.1, 0.9))
    with pytest.raises(ValueError, match=r"betas\[0\]\): nan"):
        V.check_betas((math.nan, 0.9))
    with pytest.raises(TypeError, match=r"betas\[1\]"):
        V.check_betas((0.9, "0.99"))
    with pytest.raises(TypeError, match=r"betas\[0\]"):
        V.check_betas((torch.tensor([0.9, 0.9]), 0.99))  # a tensor of two elements is not a beta


def test_check_lr():
    t = torch.tensor(0.1)
    assert V.check_lr(0.1) == 0.1 and V.check_lr(0) == 0 and V.check_lr(t) is t
    schedule = S.cosine(0.1, 100)
    assert V.check_lr(schedule) is schedule
    for bad, message in [
        (-0.1, r"Invalid lr: -0.1 is outside \[0, inf\)"),
        (math.nan, r"Invalid lr: nan"),
        (math.inf, r"Invalid lr: inf is outside \[0, inf\)"),
        (torch.tensor(-0.1), r"Invalid lr: -0.1"),
        (torch.tensor(math.inf), r"Invalid lr: inf"),
        (torch.tensor([0.1, 0.2]), r"Invalid lr: a tensor learning rate must have one element, got shape \(2,\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            V.check_lr(bad)
    for bad in ["0.1", None, True]:
        with pytest.raises(TypeError, match=r"Invalid lr"):
            V.check_lr(bad)
    with pytest.raises(ValueError, match=r"Invalid group lr: -1"):
        V.check_lr(-1.0, name="group lr")


# ------------------------------------------------------------------------------------------------ duration
@pytest.mark.parametrize(
    "value,total,minimum,steps",
    [
        (50, None, 1, 50),
        (0.05, 1000, 1, 50),
        (1.0, 1000, 1, 1000),  # the whole run
        (1, 1000, 1, 1),  # one step
        (100.0, None, 1, 100),  # an integral float above 1: steps
        (0.0, None, 0, 0),
        (0, None, 0, 0),
        (np.int64(7), None, 1, 7),
    ],
)
def test_duration_accepts(value, total, minimum, steps):
    assert V.duration("warmup", value, total, minimum=minimum) == steps


@pytest.mark.parametrize(
    "value,total,minimum,error,message",
    [
        (2.5, 100, 1, ValueError, r"Invalid warmup: 2.5 \(expected an int number of steps or a fraction"),
        (-0.1, 100, 1, ValueError, r"Invalid warmup: -0.1"),
        (-3, 100, 0, ValueError, r"Invalid warmup: -3 \(expected an integer >= 0\)"),
        (math.nan, 100, 1, ValueError, r"Invalid warmup: nan"),
        (math.inf, 100, 1, ValueError, r"Invalid warmup: inf"),
        (0, 100, 1, ValueError, r"Invalid warmup: 0 \(expected an integer >= 1\)"),
        (0.001, 100, 1, ValueError, r"the fraction 0.001 of 100 steps gives 0 steps"),
        (0.5, None, 1, ValueError, r"is a fraction of the run, so total_steps is needed"),
        (0.5, 0, 1, ValueError, r"Invalid total_steps: 0"),
        ("10", 100, 1, TypeError, r"Invalid warmup: '10' \(expected .*, got str\)"),
        (True, 100, 1, TypeError, r"Invalid warmup: True"),
        (None, 100, 1, TypeError, r"Invalid warmup: None"),
    ],
)
def test_duration_refuses(value, total, minimum, error, message):
    with pytest.raises(error, match=message):
        V.duration("warmup", value, total, minimum=minimum)


@given(fraction=st.floats(0.0, 1.0, exclude_min=True), total=st.integers(1, 10**6))
def test_duration_of_a_fraction_is_the_rounded_share_of_the_run(fraction, total):
    steps = round(fraction * total)
    if steps >= 1:
        assert V.duration("d", fraction, total) == steps
    else:
        with pytest.raises(ValueError, match="Invalid d: the fraction"):
            V.duration("d", fraction, total)


# ------------------------------------------------------------------------------------------------ one behaviour
def _sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)


def _param():
    return [torch.nn.Parameter(torch.zeros(2, 2))]


#: the same kind of value in every layer: (layer, call with the bad value)
WRONG_TYPE = [
    ("optim", lambda: adaptlr.Adam(_param(), lr="0.1")),
    ("optim", lambda: adaptlr.Adam(_param(), weight_decay=None)),
    ("optim", lambda: adaptlr.SGD(_param(), lr=0.1, maximize=1)),
    ("optim", lambda: adaptlr.LBFGS(_param(), max_iter=2.0)),
    ("free", lambda: adaptlr.Prodigy(_param(), d0="1e-6")),
    ("free", lambda: adaptlr.ScheduleFreeSGD(_param(), warmup_steps=1.5)),
    ("schedules", lambda: S.cosine("0.1", 100)),
    ("schedules", lambda: S.cosine(0.1, "100")),
    ("schedules", lambda: S.exponential(1.0, rate=True)),
    ("controllers", lambda: LossTrend(_sgd(), up="2")),
    ("controllers", lambda: ReduceOnPlateau(_sgd(), patience=2.0)),
    ("controllers", lambda: Hypergradient(_sgd(), beta=None)),
    ("finder", lambda: adaptlr.lr_find(torch.nn.Linear(2, 1), None, [], _sgd(), start="1e-7")),
    ("auto", lambda: adaptlr.Auto(budget="3")),
    ("auto", lambda: adaptlr.Auto(lrs=(1e-3, "1e-2"))),
]

#: right type, out of range or non-finite
OUT_OF_RANGE = [
    ("optim", lambda: adaptlr.Adam(_param(), eps=math.inf)),
    ("optim", lambda: adaptlr.Muon(_param(), ns_steps=100)),
    ("free", lambda: adaptlr.DAdaptAdaGrad(_param(), log_every=-1)),
    ("schedules", lambda: S.cosine(math.nan, 100)),
    ("schedules", lambda: S.one_cycle(1.0, 100, pct_start=1.0)),
    ("controllers", lambda: ReduceOnPlateau(_sgd(), threshold=math.inf)),
    ("controllers", lambda: ReduceOnPlateau(_sgd(), mode="mean")),
    ("controllers", lambda: Hypergradient(_sgd(), min_lr=math.inf)),
    ("controllers", lambda: LossTrend(_sgd(), up=math.inf)),
    ("controllers", lambda: LossTrend(_sgd(), tolerance=math.inf)),
    ("finder", lambda: adaptlr.lr_find(torch.nn.Linear(2, 1), None, [], _sgd(), smooth=math.nan)),
    ("auto", lambda: adaptlr.Auto(limits=(1e-3, 1e-4))),
    ("auto", lambda: adaptlr.Auto(budget=math.inf)),
]

#: infinity where it means "no limit"
NO_LIMIT = [
    lambda: adaptlr.Prodigy(_param(), growth_rate=math.inf),
    lambda: adaptlr.DAdaptAdam(_param(), growth_rate=math.inf),
    lambda: Hypergradient(_sgd(), max_lr=math.inf, max_change=math.inf),
    lambda: LossTrend(_sgd(), max_factor=math.inf),
    lambda: DivergenceGuard(torch.nn.Linear(2, 1), _sgd(), ratio=math.inf),
]


@pytest.mark.parametrize("layer,call", WRONG_TYPE, ids=[f"{layer}-{i}" for i, (layer, _) in enumerate(WRONG_TYPE)])
def test_a_wrong_type_is_a_type_error_in_every_layer(layer, call):
    with pytest.raises(TypeError, match=r"^Invalid "):
        call()


@pytest.mark.parametrize("layer,call", OUT_OF_RANGE, ids=[f"{layer}-{i}" for i, (layer, _) in enumerate(OUT_OF_RANGE)])
def test_a_value_out_of_range_is_a_value_error_in_every_layer(layer, call):
    with pytest.raises(ValueError, match=r"^Invalid "):
        call()


@pytest.mark.parametrize("call", NO_LIMIT)
def test_infinity_where_it_means_no_limit(call):
    call()


def test_integrations_table_counts_its_steps():
    from adaptlr.integrations._table import schedule_table

    assert len(schedule_table(S.constant(1.0), 3)) == 4
    with pytest.raises(TypeError, match=r"Invalid steps: 3.0"):
        schedule_table(S.constant(1.0), 3.0)
    with pytest.raises(ValueError, match=r"Invalid steps: 0 \(expected an integer >= 1\)"):
        schedule_table(S.constant(1.0), 0)


def test_divergence_guard_with_an_infinite_ratio_rolls_back_only_on_a_non_finite_loss():
    model = torch.nn.Linear(2, 1)
    guard = DivergenceGuard(model, _sgd(), ratio=math.inf, min_history=1)
    assert all(guard.observe(v) for v in [1.0, 1.0, 1e30, 0.0, 1e300])
    assert guard.factor == 1.0
    assert not guard.observe(math.nan) and guard.factor == 0.5


def test_a_controller_state_with_a_bad_value_does_not_load():
    trend = LossTrend(_sgd())
    state = trend.state_dict()
    for key, bad in [("count", 1.5), ("avg", "0"), ("avg", math.inf), ("factors", [-1.0])]:
        with pytest.raises(ValueError, match=rf"not a valid LossTrend state for this optimizer: Invalid {key}"):
            trend.load_state_dict({**state, key: bad})
    trend.load_state_dict({**state, "previous": None})


# ------------------------------------------------------------------------------------------------ one module
#: every validation function's name, and the names of the copies it replaced
VALIDATORS = set(V.__all__)
REMOVED = {"check_number", "check_steps", "check_int", "check_positive", "check_nonneg", "check_optional_bool"}
#: modules that keep a check of their own on purpose: the NumPy references reproduce torch.optim's validation (an
#: oracle shares no code with what it tests); lab/store.py runs standalone (no package to import, test_lab_store)
OWN_CHECKS = {"reference", "lab/store.py"}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "_validation.py" or any(rel == o or rel.startswith(o + "/") for o in OWN_CHECKS):
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _calls(function, name):
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == name for n in ast.walk(function))


def test_no_layer_defines_a_validator_of_its_own():
    """No ``check_real``, ``check_count``, ... (nor a removed copy) outside adaptlr/_validation.py; a private
    ``_duration`` is a thin wrapper when it calls ``duration`` (the lab's: the error as a SpecError)."""
    own = [
        f"{rel}:{node.name}"
        for rel, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name.lstrip("_") in VALIDATORS | REMOVED
        and not (node.name.startswith("_") and _calls(node, node.name.lstrip("_")))
    ]
    assert not own, f"validators outside adaptlr/_validation.py: {own}"


_NUMERIC_TYPES = {"int", "float", "bool", "Real", "Integral", "Number"}


def test_no_layer_checks_a_number_by_hand():
    """No ``if isinstance(x, (int, float, bool, numbers.Real, ...)): raise`` outside adaptlr/_validation.py: the
    type of a number is checked once, there (dispatch on a type, with no raise, is fine)."""
    found = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.If) or not any(isinstance(s, ast.Raise) for s in node.body):
                continue
            for call in ast.walk(node.test):
                if (
                    isinstance(call, ast.Call)
                    and getattr(call.func, "id", None) == "isinstance"
                    and len(call.args) == 2
                ):
                    named = {n.id for n in ast.walk(call.args[1]) if isinstance(n, ast.Name)}
                    named |= {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
                    if named & _NUMERIC_TYPES:
                        found.append(f"{rel}:{node.lineno}: {ast.unparse(node.test)}")
    assert not found, "hand-written number checks:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "layer,modules",
    [
        ("optim", ["optim._base", "optim._adam", "optim._sgd", "optim._lbfgs", "optim._muon", "optim._adaptive"]),
        ("free", ["free._base", "free.prodigy", "free.dadapt", "free.dog", "free.schedulefree"]),
        ("schedules", ["schedules._base", "schedules._basic", "schedules._cyclic", "schedules._compose"]),
        ("controllers", ["controllers._base", "controllers.plateau", "controllers.loss_trend"]),
        ("controllers", ["controllers.divergence", "controllers.hypergradient"]),
        ("integrations", ["integrations._table"]),
        ("lab", ["lab.data", "lab.search", "lab.tasks"]),
        ("finder, auto", ["finder", "auto._auto", "auto._plan", "auto._step"]),
    ],
)
def test_every_layer_uses_the_one_module(layer, modules):
    for name in modules:
        module = importlib.import_module(f"adaptlr.{name}")
        used = {n for n in vars(module) if n in VALIDATORS}
        assert used, f"adaptlr.{name} uses no function of adaptlr._validation"
        for n in used:
            assert getattr(module, n) is getattr(V, n), f"adaptlr.{name}.{n} is not adaptlr._validation.{n}"
        assert not {n for n in vars(module) if n in REMOVED}
    assert importlib.util.find_spec("adaptlr.optim._validation") is None  # (the old copy is gone)


def test_the_module_imports_only_the_standard_library():
    """adaptlr/_validation.py alone (no package, no torch): schedules and the lab's workers can use it."""
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('v', {str(ROOT / '_validation.py')!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "m.check_lr(0.1); m.check_betas((0.9, 0.99)); "
        "print(sorted(k for k in ('torch', 'numpy', 'adaptlr') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_doctests():
    import doctest

    result = doctest.testmod(V)
    assert result.attempted > 5 and result.failed == 0
