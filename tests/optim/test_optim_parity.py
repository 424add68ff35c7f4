"""Parity of every adaptlr optimizer with its torch.optim counterpart, on every engine, in float64 and float32; and
every engine equal to every other (one table, tests/_optim_table.py).

For each row with a torch counterpart: ``row.draws`` random hyperparameter draws (lr log-uniform, betas, eps,
weight decay, momentum, nesterov, amsgrad, centered, maximize, decoupled_weight_decay, ...), ``row.steps`` steps
on a problem whose gradients depend on the parameters (sparse ones for a row that takes sparse gradients only),
with tensors of several shapes including 0-dim (where the row takes them) and a non-contiguous one.
"""

from __future__ import annotations

import inspect
import zlib

import numpy as np
import pytest
import torch
from _optim_table import ENGINES, counterpart_class, rows, step
from _reference_cases import sparse_support

N_ENGINE_DRAWS, N_ENGINE_STEPS = 3, 30
SHAPES = [(), (5,), (3, 4), (2, 3, 2)]
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def relative_error(actual, expected):
    actual, expected = (torch.view_as_real(t) if t.is_complex() else t for t in (actual, expected))
    return float((actual.double() - expected.double()).norm()) / max(float(expected.double().norm()), 1e-30)


def assert_close(actual, expected, what, exact=None):
    """float64: elementwise rtol 1e-10.

    float32: relative error in norm ``||a - b|| <= 1e-5 ||b||``; for a row with ``float32_truth`` (where torch's
    own float32 roundings over 100 steps exceed that: RMSprop's momentum buffer sums g / sqrt(v) with weight
    1 / (1 - momentum)), ours may instead be no farther than torch's from ``exact``, the same run in float64 (our
    fused kernel computes in float64 and rounds once, so it usually is closer).
    """
    if expected.dtype == torch.float64:
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")
        return
    err = relative_error(actual, expected)
    if err <= RTOL[expected.dtype] or exact is None:
        assert err <= RTOL[expected.dtype], f"{what}: relative error {err:.2e}"
        return
    ours, theirs = relative_error(actual, exact()), relative_error(expected, exact())
    assert ours <= 1.5 * theirs + 1e-6, (
        f"{what}: {err:.2e} from torch; from float64: ours {ours:.2e}, torch {theirs:.2e}"
    )


def make_params(row, seed: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """The row's shapes (or :data:`SHAPES`), plus a non-contiguous (transposed) matrix."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=dtype) for s in row.shapes or SHAPES]
    params.append(torch.randn(6, 4, generator=g, dtype=dtype).t())  # non-contiguous (4, 6)
    assert not params[-1].is_contiguous()
    return [p.detach().requires_grad_() for p in params]


def loss_fn(params: list[torch.Tensor], t: int) -> torch.Tensor:
    """A smooth non-quadratic objective with a step-dependent term (so trajectories matter)."""
    return sum(((p - 0.3) ** 2).sum() + 0.1 * torch.sin(3 * p + t).sum() for p in params)


def slope_loss_fn(params: list[torch.Tensor], t: int) -> torch.Tensor:
    """Far from its minimum: |gradient| >= 0.25 for 100 steps, as ``sign(g)``-like adaptive updates near
    g = 0 turn float32 rounding into lr-sized differences (a property of the methods, not of an engine)."""
    loss = 0
    for i, p in enumerate(params):
        slope = 0.5 + 0.1 * ((torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) + i) % 7)
        loss = loss + (slope * p + 0.005 * p**2 + 0.05 * torch.sin(3 * p + t)).sum()
    return loss


def set_sparse_grads(params, seed, t, maximize=False):
    """The gradient of (p - 0.3)^2 + 0.1 sin(3p + t) on a random support (sparse COO, uncoalesced)."""
    for p in params:
        idx = torch.from_numpy(sparse_support(seed, t, p.shape, p.is_contiguous()))
        values = p.detach()[tuple(idx)]
        values = 2 * (values - 0.3) + 0.1 * torch.cos(3 * values + t)
        p.grad = torch.sparse_coo_tensor(idx, -values if maximize else values, p.shape, check_invariants=True)


def run(row, opt_cls, params, kwargs, n_steps, seed, objective=loss_fn, groups=None):
    """``n_steps`` steps of ``opt_cls`` (on ``groups`` of ``params`` if given) on ``objective``."""
    maximize = kwargs.get("maximize", False)
    opt = opt_cls(groups or params, **kwargs)
    for t in range(n_steps):
        if row.sparse_grads:
            set_sparse_grads(params, seed, t, maximize)
            opt.step()
        else:
            step(row, opt, lambda t=t: -objective(params, t) if maximize else objective(params, t))
    return opt


def _parity_cases():
    out = []
    for param in rows(lambda r: r.counterpart is not None and r.counterpart.is_torch and not r.needs_closure):
        row = param.values[0]
        for engine in row.engines:
            for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
                out.append(pytest.param(row, engine, dtype, id=f"{row.name}-{engine}-{tag}"))
    return out


@pytest.mark.parametrize(("row", "engine", "dtype"), _parity_cases())
def test_matches_torch(row, engine, dtype):
    """Parameters and every state entry (names, dtypes, shapes, values) equal torch's."""
    for draw in range(row.draws):
        seed = zlib.crc32(f"parity-{row.name}-{draw}".encode())
        kwargs = row.draw(np.random.default_rng(seed))
        objective = loss_fn if dtype == torch.float64 else slope_loss_fn
        if dtype == torch.float32 and kwargs.get("centered"):
            # centered RMSprop divides by sqrt(v - m^2): on this slope the gradient barely varies, v - m^2 is
            # float32 noise in both implementations, and the runs part; float64 covers centered=True
            kwargs["centered"] = False
        ours = make_params(row, seed, dtype)
        theirs = make_params(row, seed, dtype)
        torch_cls = counterpart_class(row)
        opt = run(row, row.cls, ours, {**kwargs, **ENGINES[engine]}, row.steps, seed, objective)
        ref_kwargs = {**kwargs, "foreach": False} if "foreach" in inspect.signature(torch_cls).parameters else kwargs
        ref = run(row, torch_cls, theirs, ref_kwargs, row.steps, seed, objective)
        exact64 = {}

        def exact(kind, i, key=None):
            if not exact64:
                params64 = make_params(row, seed, torch.float64)
                exact64["params"] = params64
                exact64["opt"] = run(row, torch_cls, params64, ref_kwargs, row.steps, seed, objective)
            p64 = exact64["params"][i]
            return p64.detach() if kind == "param" else exact64["opt"].state[p64][key]

        def truth(*args):
            return (lambda: exact(*args)) if row.float32_truth else None

        for i, (a, b) in enumerate(zip(ours, theirs)):
            what = f"{row.name} {kwargs} param {i} {tuple(a.shape)}"
            assert_close(a.detach(), b.detach(), what, truth("param", i))
            assert set(opt.state[a]) == set(ref.state[b]), f"{what}: state names"
            for key, value in ref.state[b].items():
                got = opt.state[a][key]
                if torch.is_tensor(value):
                    assert got.dtype == value.dtype and got.shape == value.shape, f"{what}: state {key}"
                    assert_close(got, value, f"{what}: state {key}", truth("state", i, key))
                else:
                    assert got == value, f"{what}: state {key}"


@pytest.mark.parametrize("row", rows(lambda r: len(r.engines) > 1))
def test_engines_agree(row):
    """Every engine equals every other in float64 (the math is written once), with two parameter groups: to
    1e-12, or ``row.engine_rtol`` for the methods with global sums, whose summation order differs between
    engines (and an estimate d amplifies it)."""
    for draw in range(N_ENGINE_DRAWS):
        seed = zlib.crc32(f"engines-{row.name}-{draw}".encode())
        kwargs = row.draw(np.random.default_rng(seed))
        results = {}
        for engine in row.engines:
            params = make_params(row, seed, torch.float64)
            groups = [dict(params=params[::2]), dict(params=params[1::2])] if row.param_groups else None
            run(row, row.cls, params, {**kwargs, **ENGINES[engine]}, N_ENGINE_STEPS, seed, groups=groups)
            results[engine] = params
        first, *others = row.engines
        for engine in others:
            for a, b in zip(results[first], results[engine]):
                torch.testing.assert_close(
                    a, b, rtol=row.engine_rtol, atol=row.engine_rtol / 100, msg=lambda m: f"{engine} {kwargs}: {m}"
                )


@pytest.mark.parametrize("row", rows(lambda r: r.complex_ok and r.counterpart is not None and r.counterpart.is_torch))
def test_complex_params_match_torch(row):
    """Complex parameters are updated through view_as_real, as torch does."""
    kwargs = row.draw(np.random.default_rng(7))
    kwargs.pop("maximize", None)
    g = torch.Generator().manual_seed(3)
    init = torch.randn(4, 3, dtype=torch.complex128, generator=g)
    results = []
    for cls in (row.cls, counterpart_class(row)):
        p = init.clone().requires_grad_()
        opt = cls([p], **kwargs)
        for _ in range(20):
            step(row, opt, lambda p=p: (p.abs() ** 2).sum())
        results.append(p)
    assert not torch.equal(results[0], init)
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("row", rows(lambda r: not r.complex_ok))
def test_complex_params_are_refused_saying_so(row):
    """An optimizer that does not update complex parameters refuses them (at construction or at the first step),
    naming the reason, and leaves the parameter as it was."""
    shape = row.shapes[0] if row.shapes else (4, 3)
    p = torch.randn(shape, dtype=torch.complex64).requires_grad_()
    before = p.detach().clone()
    with pytest.raises((RuntimeError, ValueError), match="(?i)complex"):
        opt = row.cls([p], **row.converge)
        step(row, opt, lambda: (p.abs() ** 2).sum())
    assert torch.equal(p.detach(), before)
