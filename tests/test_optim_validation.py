"""Hypothesis: every invalid hyperparameter raises a clear error naming it; every valid one constructs and steps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptlr

BAD_REALS = st.one_of(st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=True), st.just(math.nan))
NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
NONNEG = {  # name -> hyperparameters that must be >= 0
    "SGD": ["lr", "momentum", "weight_decay"],
    "Adagrad": ["lr", "lr_decay", "weight_decay", "eps", "initial_accumulator_value"],
    "RMSprop": ["lr", "alpha", "eps", "weight_decay", "momentum"],
    "Adadelta": ["lr", "eps", "weight_decay"],
    "Adam": ["lr", "eps", "weight_decay"],
    "AdamW": ["lr", "eps", "weight_decay"],
    "Adamax": ["lr", "eps", "weight_decay"],
    "NAdam": ["lr", "eps", "weight_decay", "momentum_decay"],
    "RAdam": ["lr", "eps", "weight_decay"],
}
HAS_BETAS = {"Adam", "AdamW", "Adamax", "NAdam", "RAdam"}


def params():
    return [torch.zeros(3, requires_grad=True)]


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(NAMES), data=st.data(), value=BAD_REALS)
def test_negative_or_nan_hyperparameter_raises_naming_it(name, data, value):
    arg = data.draw(st.sampled_from(NONNEG[name]))
    with pytest.raises(ValueError, match=f"Invalid {arg}") as info:
        getattr(adaptlr, name)(params(), **{arg: value})
    assert repr(value) in str(info.value) or "nan" in str(info.value)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(HAS_BETAS)),
    index=st.integers(0, 1),
    value=st.one_of(st.floats(max_value=-1e-12, allow_nan=False), st.floats(min_value=1.0), st.just(math.nan)),
)
def test_betas_outside_unit_interval_raise(name, index, value):
    betas = [0.9, 0.999]
    betas[index] = value
    with pytest.raises(ValueError, match=rf"betas\[{index}\]"):
        getattr(adaptlr, name)(params(), betas=tuple(betas))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("arg", "value"),
    [("lr", "0.1"), ("weight_decay", None), ("maximize", 1), ("foreach", "yes"), ("nonfinite", "ignore")],
)
def test_wrong_types_raise(name, arg, value):
    with pytest.raises((TypeError, ValueError), match=arg):
        getattr(adaptlr, name)(params(), **{arg: value})


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_valid_hyperparameters_construct_and_step(name, data):
    kwargs = {arg: data.draw(st.floats(0.0, 10.0), label=arg) for arg in NONNEG[name]}
    kwargs["lr"] = data.draw(st.floats(0.0, 1.0), label="lr")
    if name == "Adadelta":
        kwargs["rho"] = data.draw(st.floats(0.0, 1.0), label="rho")
    if name == "RMSprop":
        kwargs["alpha"] = data.draw(st.floats(0.0, 1.0), label="alpha")
    if name in HAS_BETAS:
        kwargs["betas"] = tuple(data.draw(st.floats(0.0, 0.999), label=f"beta{i}") for i in range(2))
    kwargs["eps"] = max(kwargs.get("eps", 1e-8), 1e-8) if name != "SGD" else None
    if kwargs["eps"] is None:
        del kwargs["eps"]
    ps = params()
    opt = getattr(adaptlr, name)(ps, **kwargs, foreach=True)
    ps[0].grad = torch.ones(3)
    opt.step()
    opt.step()
    assert ps[0].shape == (3,)


def test_messages_show_the_range():
    with pytest.raises(ValueError, match=r"Invalid lr: -0.1 is outside \[0, inf\)"):
        adaptlr.Adam(params(), lr=-0.1)
    with pytest.raises(ValueError, match=r"Invalid rho: 1.5 is outside \[0, 1\]"):
        adaptlr.Adadelta(params(), rho=1.5)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        adaptlr.SGD(params(), lr=0.1, nesterov=True)
