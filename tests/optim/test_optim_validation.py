"""Every invalid hyperparameter raises a clear error naming it; every valid one constructs and steps.

For every row of tests/_optim_table.py: every real-valued hyperparameter of the signature has a range in the row
(so a new argument without one fails here); values just outside each range, nan and the infinities it excludes
raise ``ValueError`` naming the argument and showing the value; so do random values outside (hypothesis); and
random values inside every range at once construct and step.
"""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
from _optim_table import Interval, argument, interval, kwargs_with, rows, step
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptlr


def params():
    return [torch.zeros(3, 2, requires_grad=True)]  # (a matrix: Muon takes nothing else)


def _name_pattern(key):
    """The message names the argument: ``lr``, ``betas[0]`` (or ``eps[0] (epsilon1)``, ``ns_coefficients (a)``)."""
    name, index = argument(key)
    if index is None:
        return rf"Invalid {re.escape(name)}\b"
    return rf"Invalid .*{re.escape(name)}(\[{index}\]| \([a-z]\))"


def _raises(row, key, value, errors=(ValueError,)):
    with pytest.raises(errors, match=_name_pattern(key)) as info:
        row.cls(params(), **kwargs_with(row, key, value))
    shown = str(info.value)
    assert repr(value) in shown or f"{value:g}" in shown or "nan" in shown, shown


def _outside(interval):
    """The values just outside ``interval``, nan, and the infinities it excludes."""
    out = [math.nan]
    low, high = interval.low, interval.high
    if math.isfinite(low):
        out.append(low if interval.low_open else math.nextafter(low, -math.inf))
    if math.isfinite(high):
        out.append(high if interval.high_open else math.nextafter(high, math.inf))
    out += [v for v in (math.inf, -math.inf) if v not in interval]
    return out


@pytest.mark.parametrize("row", rows())
def test_every_real_hyperparameter_has_a_range(row):
    """A number in the signature (a float or int default, or a tuple of them) is in ``row.ranges`` or
    ``row.counts``: a new hyperparameter cannot go unchecked."""
    covered = set(row.ranges) | set(row.counts)
    missing = []
    for name, p in inspect.signature(row.cls).parameters.items():
        default = p.default
        values = default if isinstance(default, tuple) else (default,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers:
            continue
        keys = [f"{name}[{i}]" for i in range(len(values))] if isinstance(default, tuple) else [name]
        missing += [k for k in keys if k not in covered]
    assert not missing, f"{row.name}: no range for {missing} in tests/_optim_table.py"


@pytest.mark.parametrize("row", rows())
def test_values_outside_the_range_raise_naming_the_argument(row):
    """The edges: just below / above each bound (the bound itself where it is open), nan, and the excluded
    infinities (infinity is allowed only where it means "no limit", e.g. growth_rate)."""
    for key in row.ranges:
        for value in _outside(interval(row, key)):
            _raises(row, key, value)
    for key, (low, high) in row.counts.items():
        bad = [low - 1, math.nan, math.inf, -math.inf, low + 0.5] + ([high] if high is not None else [])
        for value in bad:
            with pytest.raises((ValueError, TypeError), match=_name_pattern(key)):
                row.cls(params(), **{key: value})


def _below_or_above(interval):
    strategies = []
    if math.isfinite(interval.low):
        top = interval.low if interval.low_open else math.nextafter(interval.low, -math.inf)
        strategies.append(st.floats(max_value=top, allow_nan=False))
    if math.isfinite(interval.high):
        bottom = interval.high if interval.high_open else math.nextafter(interval.high, math.inf)
        strategies.append(st.floats(min_value=bottom, allow_nan=False, allow_infinity=math.inf not in interval))
    return st.one_of(*strategies, st.just(math.nan))


@pytest.mark.parametrize("row", rows())
def test_random_values_outside_the_range_raise_naming_the_argument(row):
    @settings(max_examples=10, deadline=None)
    @given(data=st.data())
    def check(data):
        key = data.draw(st.sampled_from(sorted(row.ranges)), label="argument")
        _raises(row, key, data.draw(_below_or_above(interval(row, key)), label="value"))

    check()


def _inside(interval, lr=False):
    """Values inside ``interval`` (within 10 of its lower end; an lr within [0, 1])."""
    low = interval.low if math.isfinite(interval.low) else -10.0
    high = min(interval.high, low + (1.0 if lr else 10.0))
    values = st.floats(
        low, high, exclude_min=interval.low_open, exclude_max=interval.high_open and high == interval.high
    )
    return st.one_of(values, st.just(math.inf)) if math.inf in interval else values


def _valid_kwargs(row, data):
    """Every hyperparameter of the row drawn inside its range (None too where that is the default), at once."""
    signature = inspect.signature(row.cls).parameters
    drawn = {}  # key -> value, in the order of row.ranges (a bound may name an earlier key)
    for key in row.ranges:
        name, index = argument(key)
        bounds = Interval.parse(row.ranges[key], lambda other: drawn[other] if other in drawn else _default(row, other))
        value = data.draw(_inside(bounds, lr=name == "lr"), label=key)
        default = signature[name].default if index is None else signature[name].default[index]
        if default is None:
            value = data.draw(st.one_of(st.none(), st.just(value)), label=f"{key} or None")
        drawn[key] = value
    kwargs = {}
    for key, value in drawn.items():
        name, index = argument(key)
        if index is None:
            kwargs[name] = value
        else:
            elements = list(kwargs.get(name, signature[name].default))
            elements[index] = value
            kwargs[name] = tuple(elements)
    for key, (low, high) in row.counts.items():
        kwargs[key] = data.draw(st.integers(low, low + 20 if high is None else min(high - 1, low + 20)), label=key)
    return kwargs


def _default(row, key):
    name, index = argument(key)
    default = inspect.signature(row.cls).parameters[name].default
    return default if index is None else default[index]


@pytest.mark.parametrize("row", rows())
def test_valid_hyperparameters_construct_and_step(row):
    @settings(max_examples=10, deadline=None)
    @given(data=st.data())
    def check(data):
        ps = params()
        opt = row.cls(ps, **_valid_kwargs(row, data))
        for _ in range(2):
            step(row, opt, lambda: ((ps[0] - 1) ** 2).sum())
        assert ps[0].shape == (3, 2)

    check()


@pytest.mark.parametrize("row", rows())
def test_wrong_types_raise(row):
    signature = inspect.signature(row.cls).parameters
    for arg, value in [
        ("lr", "0.1"),
        ("weight_decay", None),
        ("maximize", 1),
        ("foreach", "yes"),
        ("nonfinite", "ignore"),
    ]:
        if arg in signature:
            with pytest.raises((TypeError, ValueError), match=arg):
                row.cls(params(), **{arg: value})


def test_messages_show_the_range():
    with pytest.raises(ValueError, match=r"Invalid lr: -0.1 is outside \[0, inf\)"):
        adaptlr.Adam(params(), lr=-0.1)
    with pytest.raises(ValueError, match=r"Invalid rho: 1.5 is outside \[0, 1\]"):
        adaptlr.Adadelta(params(), rho=1.5)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        adaptlr.SGD(params(), lr=0.1, nesterov=True)
