"""adaptlr's optimizers against the NumPy float64 references (adaptlr.reference), on every engine.

The references are written from the formulas and share no code with adaptlr.optim / adaptlr.rules, so this
is an independent oracle (tests/test_reference.py checks the references against torch.optim). Each case:
random hyperparameters, parameters of several shapes (0-dim included), 100 steps on a noisy quadratic whose
gradient is computed from each optimizer's own parameters; parameters and state must agree to 1e-10.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from _reference_cases import DRAWS, N_STEPS, make_problem, quadratic_gradient

import adaptlr
from adaptlr import reference

N_DRAWS = 3
RTOL, ATOL = 1e-10, 1e-13
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}
CASES = [
    pytest.param(name, i, engine, id=f"{name}-draw{i}-{engine}")
    for name in DRAWS
    for i in range(N_DRAWS)
    for engine in ENGINES
]


@pytest.fixture(autouse=True)
def float64_default():
    """As in test_reference.py: torch.optim keeps NAdam's mu_product in the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize(("name", "draw", "engine"), CASES)
def test_optimizer_matches_reference(name, draw, engine):
    seed = zlib.crc32(f"optim-{name}-{draw}".encode())
    kwargs = DRAWS[name](np.random.default_rng(seed))
    init = make_problem(seed)[0]
    grad = quadratic_gradient(seed, kwargs.get("maximize", False))

    ref_params = [x.copy() for x in init]
    ref = getattr(reference, name)(ref_params, **kwargs)
    params = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    opt = getattr(adaptlr, name)(params, **kwargs, **ENGINES[engine])
    for t in range(N_STEPS):
        ref.step(grad(ref_params, t))
        for p, g in zip(params, grad([p.detach().numpy() for p in params], t), strict=True):
            p.grad = torch.from_numpy(g)
        opt.step()

    what = f"{name} [{engine}] {kwargs}"
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


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(DRAWS))
def test_param_groups_schedule_and_lr_scale(name, engine):
    """Two groups with different hyperparameters; group 0's lr is a schedule, group 1 has lr_scale = 0.5.

    The reference is one instance per group whose ``lr`` is set before each step: schedule(completed steps)
    for group 0, 0.5 * lr for group 1 (the contract: effective lr = lr value x group["lr_scale"]).
    """
    seed = zlib.crc32(f"groups-{name}".encode())
    rng = np.random.default_rng(seed)
    kw0, kw1 = DRAWS[name](rng), DRAWS[name](rng)
    kw1["maximize"] = kw0.get("maximize", False)  # one objective for both groups
    init = make_problem(seed)[0]
    grad = quadratic_gradient(seed, kw0.get("maximize", False))
    base0, base1 = kw0.pop("lr"), kw1.pop("lr")

    def schedule(step):
        return base0 / (1 + step % 5)

    ref_params = [x.copy() for x in init]
    refs = [getattr(reference, name)(ref_params[:2], **kw0), getattr(reference, name)(ref_params[2:], **kw1)]
    params = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    groups = [dict(params=params[:2], lr=schedule, **kw0), dict(params=params[2:], lr=base1, **kw1)]
    opt = getattr(adaptlr, name)(groups, **ENGINES[engine])
    opt.param_groups[1]["lr"] *= 0.5  # (a controller's cut lands in group["lr"] of a number-lr group)
    for t in range(30):
        refs[0].lr, refs[1].lr = schedule(t), 0.5 * base1
        g = grad(ref_params, t)
        refs[0].step(g[:2])
        refs[1].step(g[2:])
        for p, g in zip(params, grad([p.detach().numpy() for p in params], t), strict=True):
            p.grad = torch.from_numpy(g)
        opt.step()
    for i, (r, p) in enumerate(zip(ref_params, params, strict=True)):
        np.testing.assert_allclose(
            p.detach().numpy(), r, rtol=RTOL, atol=ATOL, err_msg=f"{name} [{engine}] {kw0} / {kw1}: param {i}"
        )
