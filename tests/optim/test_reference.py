"""adaptlr.reference against torch.optim (single-tensor path, float64) over random hyperparameter draws.

Each draw trains a few parameters of different shapes (0-dim included) for 100 steps on a noisy quadratic
whose gradient is computed from each optimizer's *own* current parameters, so the trajectories, not
just fixed gradient sequences, must agree. Failures name the rule and the draw; the message shows the
hyperparameters.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
import zlib

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from _optim_table import ROWS, counterpart_class, kwargs_with, package_style_reference, reference_class, rows
from _reference_cases import N_STEPS, Problem

from adaptlr import reference

N_DRAWS = 24
RTOL, ATOL = 1e-10, 1e-13


def _with_torch(row):
    """A row with a torch counterpart and a reference in adaptlr.reference (the classic rules)."""
    return (
        row.counterpart is not None
        and row.counterpart.is_torch
        and row.reference is not None
        and not package_style_reference(row)
    )


def _runs(row):
    """... that the side-by-side harness runs: no closure, and no argument adaptlr needs to be exact in float64
    that torch lacks (torch.optim.Muon's Newton-Schulz iteration runs in bfloat16)."""
    return _with_torch(row) and not row.needs_closure and not row.exact


CASES = [
    pytest.param(row, i, id=f"{row.name}-draw{i:02d}")
    for (row,) in (p.values for p in rows(_runs))
    for i in range(N_DRAWS)
]


@pytest.fixture
def float64_default():
    """torch keeps scalar state (NAdam's mu_product) in the default dtype: float64 makes it exact."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def run_pair(row, kwargs, seed, n_steps=N_STEPS, lr_at=None):
    """Run the reference and torch.optim side by side; lr_at(t) (optional) sets the lr before step t."""
    problem = Problem(row, seed, kwargs.get("maximize", False))
    ref_params = problem.arrays()
    ref = reference_class(row)(ref_params, **kwargs)
    torch_params = problem.tensors()
    cls = counterpart_class(row)
    engine = dict(foreach=False) if "foreach" in inspect.signature(cls).parameters else {}
    opt = cls(torch_params, **engine, **kwargs)
    for t in range(n_steps):
        if lr_at is not None:
            ref.lr = opt.param_groups[0]["lr"] = lr_at(t)
        ref.step(problem.reference_grads(ref_params, t))
        with torch.no_grad():
            problem.set_grads(torch_params, t)
        opt.step()
    return ref, ref_params, opt, torch_params


@pytest.mark.parametrize(("row", "draw"), CASES)
def test_matches_torch(row, draw, float64_default):
    name = row.name
    seed = zlib.crc32(f"{name}-{draw}".encode())
    kwargs = row.draw(np.random.default_rng(seed))
    ref, ref_params, opt, torch_params = run_pair(row, kwargs, seed)
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
    for (row,) in (p.values for p in rows(_runs)):
        _, ref_params, _, torch_params = run_pair(row, {}, seed=7, n_steps=20)
        for r, p in zip(ref_params, torch_params, strict=True):
            np.testing.assert_allclose(r, p.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=row.name)


@pytest.mark.parametrize("row", rows(_runs))
def test_lr_changed_between_steps(row, float64_default):
    """Setting ``ref.lr`` mid-run acts like setting torch's ``param_groups[0]["lr"]`` (what schedules do)."""
    seed = zlib.crc32(f"{row.name}-lr".encode())
    kwargs = row.draw(np.random.default_rng(seed))
    base = kwargs.pop("lr")
    _, ref_params, _, torch_params = run_pair(row, kwargs, seed, n_steps=40, lr_at=lambda t: base / (1 + t % 7))
    for r, p in zip(ref_params, torch_params, strict=True):
        np.testing.assert_allclose(r, p.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{row.name} {kwargs}")


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


#: modules of references without a docstring example yet (strict xfails)
NO_EXAMPLES: dict[str, str] = {}


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(m, marks=[pytest.mark.xfail(strict=True, reason=NO_EXAMPLES[m])] if m in NO_EXAMPLES else [])
        for m in sorted({reference_class(row).__module__ for row in ROWS.values() if row.reference})
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_package_docstring_example():
    result = doctest.testmod(reference)
    assert result.attempted > 0 and result.failed == 0


def _validation_cases():
    out = []
    for (row,) in (p.values for p in rows(_with_torch)):
        for key in row.ranges:
            known = row.known.get(f"reference-validation {key}")
            marks = [pytest.mark.xfail(strict=True, reason=known)] if known else []
            out.append(pytest.param(row, key, id=f"{row.name}-{key}", marks=marks))
    return out


VALIDATED = _validation_cases()
EDGES = [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1 - 1e-16, 1 + 1e-15, 0.5, 2.0, -2.0]


def _agree(row, key, value):
    """The reference raises exactly when torch.optim raises (only: at least when, for a counterpart that leaves some
    values unchecked, ``validates_all=False``); its message names the parameter and shows the value."""
    kwargs = kwargs_with(row, key, value)
    try:
        counterpart_class(row)([torch.zeros(2, 2)], **kwargs)
        torch_ok = True
    except ValueError:
        torch_ok = False
    try:
        reference_class(row)([np.zeros((2, 2))], **kwargs)
        ref_ok = True
    except ValueError as e:
        ref_ok = False
        name = re.escape(key)  # (a tuple's element as betas[0])
        assert re.search(rf"Invalid .*{name}.*: .*{re.escape(repr(value))}", str(e)), str(e)
    if row.counterpart.validates_all or not torch_ok:
        assert ref_ok == torch_ok, f"{row.name}({kwargs}): torch {'accepts' if torch_ok else 'rejects'} it"


@pytest.mark.parametrize(("row", "key"), VALIDATED)
def test_validation_agrees_with_torch_at_the_edges(row, key):
    for value in EDGES:
        _agree(row, key, value)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(data=st.data())
def test_validation_agrees_with_torch(data):
    """Any single hyperparameter value in [-2, 2]: the reference raises exactly when torch.optim raises.

    (NaN is left out: torch.optim.SGD's ``lr < 0`` checks let NaN through; the reference rejects it.)
    """
    row, key = data.draw(st.sampled_from([p.values for p in VALIDATED if not p.marks]), label="case")
    _agree(row, key, data.draw(st.one_of(st.floats(-2.0, 2.0), st.sampled_from(EDGES))))


def test_every_reference_is_registered_and_lion_adabelief_lamb_sit_beside_the_torch_ones():
    """The registry is every private module's ``__all__`` (a new reference is one module); Lion, AdaBelief and
    LAMB moved out of reference.free (they estimate no step size), which still resolves them with a warning."""
    from adaptlr.reference import free

    for row in ROWS.values():
        if row.reference is not None and "." not in row.reference:
            assert reference.REGISTRY[row.reference] is reference_class(row) is getattr(reference, row.reference)
    assert {"Lion", "AdaBelief", "LAMB"} <= set(reference.__all__)
    with pytest.warns(DeprecationWarning, match="moved to adaptlr.reference.LAMB"):
        assert free.LAMB is reference.LAMB
