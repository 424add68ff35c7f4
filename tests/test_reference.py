"""adaptlr.reference against torch.optim (single-tensor path, float64) over random hyperparameter draws.

Each draw trains a few parameters of different shapes (0-dim included) for 100 steps on a noisy quadratic
whose gradient is computed from each optimizer's *own* current parameters, so the trajectories, not
just fixed gradient sequences, must agree. Failures name the rule and the draw; the message shows the
hyperparameters.
"""

from __future__ import annotations

import doctest
import importlib
import zlib

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from _reference_cases import DRAWS, N_STEPS, make_problem, quadratic_gradient

from adaptlr import reference

N_DRAWS = 24
RTOL, ATOL = 1e-10, 1e-13


CASES = [pytest.param(name, i, id=f"{name}-draw{i:02d}") for name in DRAWS for i in range(N_DRAWS)]


@pytest.fixture
def float64_default():
    """torch keeps scalar state (NAdam's mu_product) in the default dtype: float64 makes it exact."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def run_pair(name, kwargs, seed, n_steps=N_STEPS, lr_at=None):
    """Run the reference and torch.optim side by side; lr_at(t) (optional) sets the lr before step t."""
    init = make_problem(seed)[0]
    grad = quadratic_gradient(seed, kwargs.get("maximize", False))

    ref_params = [x.copy() for x in init]
    ref = getattr(reference, name)(ref_params, **kwargs)
    torch_params = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    opt = getattr(torch.optim, name)(torch_params, foreach=False, **kwargs)
    for t in range(n_steps):
        if lr_at is not None:
            ref.lr = opt.param_groups[0]["lr"] = lr_at(t)
        ref.step(grad(ref_params, t))
        with torch.no_grad():
            for p, g in zip(torch_params, grad([p.detach().numpy() for p in torch_params], t), strict=True):
                p.grad = torch.from_numpy(g)
        opt.step()
    return ref, ref_params, opt, torch_params


@pytest.mark.parametrize(("name", "draw"), CASES)
def test_matches_torch(name, draw, float64_default):
    seed = zlib.crc32(f"{name}-{draw}".encode())
    kwargs = DRAWS[name](np.random.default_rng(seed))
    ref, ref_params, opt, torch_params = run_pair(name, kwargs, seed)
    for i, (r, p) in enumerate(zip(ref_params, torch_params, strict=True)):
        assert np.all(np.isfinite(r)), f"{name} {kwargs}: param {i} not finite"
        np.testing.assert_allclose(r, p.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name} {kwargs}: param {i}")
        torch_state = opt.state[p]
        assert set(ref.state[i]) == set(torch_state), f"{name} {kwargs}: state names"
        for key, value in torch_state.items():
            if key == "step":
                assert ref.state[i]["step"] == N_STEPS and float(value) == N_STEPS
            else:
                np.testing.assert_allclose(
                    ref.state[i][key],
                    np.asarray(value),
                    rtol=RTOL,
                    atol=ATOL,
                    err_msg=f"{name} {kwargs}: state {key} of param {i}",
                )


def test_defaults_match_torch(float64_default):
    """No hyperparameters at all: torch's defaults (AdamW's weight_decay=1e-2, Adadelta's lr=1, ...)."""
    for name in DRAWS:
        _, ref_params, _, torch_params = run_pair(name, {}, seed=7, n_steps=20)
        for r, p in zip(ref_params, torch_params, strict=True):
            np.testing.assert_allclose(r, p.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("name", list(DRAWS))
def test_lr_changed_between_steps(name, float64_default):
    """Setting ``ref.lr`` mid-run acts like setting torch's ``param_groups[0]["lr"]`` (what schedules do)."""
    seed = zlib.crc32(f"{name}-lr".encode())
    kwargs = DRAWS[name](np.random.default_rng(seed))
    base = kwargs.pop("lr")
    _, ref_params, _, torch_params = run_pair(name, kwargs, seed, n_steps=40, lr_at=lambda t: base / (1 + t % 7))
    for r, p in zip(ref_params, torch_params, strict=True):
        np.testing.assert_allclose(r, p.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name} {kwargs}")


def test_radam_takes_both_branches():
    """The rectification threshold rho_t > 5 is crossed within the first steps for any beta2."""
    for beta2 in (0.9, 0.999, 0.9999):
        rho_inf = 2 / (1 - beta2) - 1
        rho = [rho_inf - 2 * t * beta2**t / (1 - beta2**t) for t in range(1, N_STEPS + 1)]
        assert rho[0] == pytest.approx(1.0) and rho[-1] > 5.0


def test_none_gradient_skips_parameter():
    a, b = np.ones(2), np.ones(3)
    opt = reference.Adam([a, b], lr=0.1)
    opt.step([np.ones(2), None])
    assert opt.state[1] == {} and np.all(b == 1.0) and opt.state[0]["step"] == 1
    opt.step([None, np.ones(3)])
    assert opt.state[0]["step"] == 1 and opt.state[1]["step"] == 1 and np.all(b < 1.0)


def test_updates_in_place_and_copies_gradient():
    p = np.array([1.0, 2.0])
    g = np.array([0.5, -0.5])
    view = p[:]
    reference.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True).step([g])
    assert np.array_equal(view, p) and not np.array_equal(p, [1.0, 2.0])
    assert np.array_equal(g, [0.5, -0.5])  # the caller's gradient is untouched


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("SGD", dict(lr=-1.0), "lr"),
        ("SGD", dict(momentum=0.0, nesterov=True), "Nesterov"),
        ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        ("Adagrad", dict(lr_decay=-0.1), "lr_decay"),
        ("Adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        ("RMSprop", dict(alpha=-0.5), "alpha"),
        ("Adadelta", dict(rho=1.5), "rho"),
        ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\]"),
        ("AdamW", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        ("Adamax", dict(eps=-1e-8), "eps"),
        ("NAdam", dict(momentum_decay=-1.0), "momentum_decay"),
        ("RAdam", dict(weight_decay=float("nan")), "weight_decay"),
    ],
)
def test_validation_names_parameter(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(reference, name)([np.zeros(2)], **kwargs)
    with pytest.raises(ValueError):  # torch agrees that the value is invalid
        getattr(torch.optim, name)([torch.zeros(2)], **kwargs)


def test_rejects_non_float64_params():
    with pytest.raises(TypeError, match="float64"):
        reference.Adam([np.zeros(2, dtype=np.float32)])
    with pytest.raises(TypeError, match="float64"):
        reference.Adam([[0.0, 1.0]])
    with pytest.raises(ValueError, match="shape"):
        reference.Adam([np.zeros(2)]).step([np.zeros(3)])


@pytest.mark.parametrize("module", sorted({cls.__module__ for cls in map(lambda n: getattr(reference, n), DRAWS)}))
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_package_docstring_example():
    result = doctest.testmod(reference)
    assert result.attempted > 0 and result.failed == 0


FLOAT_HYPERPARAMETERS = {
    "SGD": ["lr", "momentum", "dampening", "weight_decay"],
    "Adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
    "RMSprop": ["lr", "alpha", "eps", "weight_decay", "momentum"],
    "Adadelta": ["lr", "rho", "eps", "weight_decay"],
    "Adam": ["lr", "eps", "weight_decay", "beta1", "beta2"],
    "AdamW": ["lr", "eps", "weight_decay", "beta1", "beta2"],
    "Adamax": ["lr", "eps", "weight_decay", "beta1", "beta2"],
    "NAdam": ["lr", "eps", "weight_decay", "momentum_decay", "beta1", "beta2"],
    "RAdam": ["lr", "eps", "weight_decay", "beta1", "beta2"],
}


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(data=st.data())
def test_validation_agrees_with_torch(data):
    """Any single hyperparameter value in [-2, 2]: the reference raises exactly when torch.optim raises.

    (NaN is left out: torch.optim.SGD's ``lr < 0`` checks let NaN through; the reference rejects it.)
    """
    name = data.draw(st.sampled_from(list(FLOAT_HYPERPARAMETERS)))
    key = data.draw(st.sampled_from(FLOAT_HYPERPARAMETERS[name]))
    value = data.draw(st.one_of(st.floats(-2.0, 2.0), st.sampled_from([0.0, 1.0, -0.0, 1e-300, 1 - 1e-16])))
    kwargs = {"betas": (value, 0.999) if key == "beta1" else (0.9, value)} if key.startswith("beta") else {key: value}
    try:
        getattr(torch.optim, name)([torch.zeros(2)], **kwargs)
        torch_ok = True
    except ValueError:
        torch_ok = False
    try:
        getattr(reference, name)([np.zeros(2)], **kwargs)
        ref_ok = True
    except ValueError as e:
        ref_ok = False
        shown = {"beta1": "betas[0]", "beta2": "betas[1]"}.get(key, key)
        assert f"Invalid {shown}: {value!r}" in str(e)  # names the parameter and shows the value
    assert ref_ok == torch_ok, f"{name}({kwargs}): torch {'accepts' if torch_ok else 'rejects'} it"
