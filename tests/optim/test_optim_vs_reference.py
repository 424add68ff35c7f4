"""adaptlr's optimizers against the NumPy float64 references (adaptlr.reference), on every engine.

The references are written from the formulas and share no code with adaptlr's optimizers / adaptlr.rules, so
this is an independent oracle (tests/test_reference.py checks the references against torch.optim). Each case:
random hyperparameters, parameters of several shapes (0-dim included where the row takes them; the last matrix
non-contiguous), 100 steps on a noisy quadratic whose gradient is computed from each optimizer's own parameters
(on a random support, for a row that takes sparse gradients only); parameters and state must agree to 1e-10.
Every row with a reference in ``adaptlr.reference`` that steps without a closure (tests/_optim_table.py).
"""

from __future__ import annotations

import inspect
import zlib

import numpy as np
import pytest
import torch
from _optim_table import ENGINES, package_style_reference, reference_class, rows
from _reference_cases import N_STEPS, Problem

N_DRAWS = 3
RTOL, ATOL = 1e-10, 1e-13


def _classic_reference(row):
    return row.reference is not None and not package_style_reference(row) and not row.needs_closure


CASES = [
    pytest.param(row, i, engine, id=f"{row.name}-draw{i}-{engine}")
    for (row,) in (p.values for p in rows(_classic_reference))
    for i in range(N_DRAWS)
    for engine in row.engines
]


@pytest.fixture(autouse=True)
def float64_default():
    """As in test_reference.py: torch.optim keeps NAdam's mu_product (and Adafactor its step) in the default
    dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize(("row", "draw", "engine"), CASES)
def test_optimizer_matches_reference(row, draw, engine):
    seed = zlib.crc32(f"optim-{row.name}-{draw}".encode())
    kwargs = row.draw(np.random.default_rng(seed))
    problem = Problem(row, seed, kwargs.get("maximize", False))

    ref_params = problem.arrays()
    ref = reference_class(row)(ref_params, **kwargs)
    params = problem.tensors()
    opt = row.cls(params, **kwargs, **row.exact, **ENGINES[engine])
    for t in range(N_STEPS):
        ref.step(problem.reference_grads(ref_params, t))
        problem.set_grads(params, t)
        opt.step()

    what = f"{row.name} [{engine}] {kwargs}"
    for i, (r, p) in enumerate(zip(ref_params, params, strict=True)):
        assert np.all(np.isfinite(r)), f"{what}: reference param {i} not finite"
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=RTOL, atol=ATOL, err_msg=f"{what}: param {i}")
        state = opt.state[p]
        assert set(state) == set(ref.state[i]), f"{what}: state names of param {i}"
        for key, expected in ref.state[i].items():
            got = state[key]
            got = got.item() if torch.is_tensor(got) and got.ndim == 0 and key in ("step", "mu_product") else got
            if key == "step":
                assert got == expected == N_STEPS, f"{what}: step"
            else:
                got = got.detach().numpy() if torch.is_tensor(got) else np.asarray(got)
                np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"{what}: state {key} of {i}")


@pytest.mark.parametrize(
    ("row", "engine"),
    [
        pytest.param(row, engine, id=f"{row.name}-{engine}")
        for (row,) in (p.values for p in rows(lambda r: _classic_reference(r) and r.param_groups))
        for engine in row.engines
    ],
)
def test_param_groups_schedule_and_lr_scale(row, engine):
    """Two groups with different hyperparameters; group 0's lr is a schedule, group 1's lr is cut by half.

    The reference is one instance per group whose ``lr`` is set before each step: schedule(completed steps)
    for group 0, 0.5 * lr for group 1 (a controller's cut lands in group["lr"] of a number-lr group).
    """
    seed = zlib.crc32(f"groups-{row.name}".encode())
    rng = np.random.default_rng(seed)
    kw0, kw1 = row.draw(rng), row.draw(rng)
    if "maximize" in inspect.signature(row.cls).parameters:
        kw1["maximize"] = kw0.get("maximize", False)  # one objective for both groups
    problem = Problem(row, seed, kw0.get("maximize", False))
    base0, base1 = kw0.pop("lr"), kw1.pop("lr")

    def schedule(step):
        return base0 / (1 + step % 5)

    ref_params = problem.arrays()
    cls = reference_class(row)
    refs = [cls(ref_params[:2], **kw0), cls(ref_params[2:], **kw1)]
    params = problem.tensors()
    groups = [dict(params=params[:2], lr=schedule, **kw0), dict(params=params[2:], lr=base1, **kw1)]
    opt = row.cls(groups, **row.exact, **ENGINES[engine])
    opt.param_groups[1]["lr"] *= 0.5  # (a controller's cut lands in group["lr"] of a number-lr group)
    for t in range(30):
        refs[0].lr, refs[1].lr = schedule(t), 0.5 * base1
        g = problem.reference_grads(ref_params, t)
        refs[0].step(g[:2])
        refs[1].step(g[2:])
        problem.set_grads(params, t)
        opt.step()
    for i, (r, p) in enumerate(zip(ref_params, params, strict=True)):
        np.testing.assert_allclose(
            p.detach().numpy(), r, rtol=RTOL, atol=ATOL, err_msg=f"{row.name} [{engine}] {kw0} / {kw1}: param {i}"
        )
