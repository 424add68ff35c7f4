"""Shared problems and drivers for the learning-rate-free tests (no tests here; their random hyperparameters are
the rows' draws, tests/_optim_table.py)."""

from __future__ import annotations

import numpy as np
import torch

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def make_problem(seed, shapes=SHAPES, n=256, scale=10.0, dtype=torch.float64):
    """A random smooth convex problem coupling all parameters, its optimum far from the start (so the methods
    are still travelling after 200 steps, not oscillating chaotically around the optimum):
    log-cosh regression loss on w = cat(params), with ``||w*|| ~ scale * sqrt(dim)``."""
    rng = np.random.default_rng(seed)
    dim = sum(int(np.prod(s)) for s in shapes)
    X = torch.tensor(rng.normal(size=(n, dim)) / np.sqrt(dim), dtype=dtype)
    target = X @ torch.tensor(rng.normal(size=dim) * scale, dtype=dtype)
    init = [torch.tensor(rng.normal(size=s) * 0.5, dtype=dtype) for s in shapes]

    def loss_fn(params):
        r = X @ torch.cat([p.reshape(-1) for p in params]) - target
        return (torch.nn.functional.softplus(2 * r) - r).mean()  # log(cosh(r)) + log 2

    return init, loss_fn


def grads_at(loss_fn, arrays):
    ps = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    loss_fn(ps).backward()
    return [p.grad.numpy() for p in ps]


def run_torch(make_opt, init, loss_fn, steps, groups=None, dtype=None):
    """Train copies of ``init`` with ``make_opt(params_or_groups)``; returns (params, optimizer)."""
    params = [p.detach().clone().to(dtype or p.dtype).requires_grad_(True) for p in init]
    arg = params if groups is None else [dict(params=[params[i] for i in idx], **kw) for idx, kw in groups]
    opt = make_opt(arg)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(params).backward()
        opt.step()
    return params, opt


def run_reference(ref, loss_fn, steps, attr="x"):
    for _ in range(steps):
        ref.step(grads_at(loss_fn, getattr(ref, attr)))
    return ref


def assert_close(actual, expected, rtol):
    """Elementwise ``rtol``, with an absolute floor of ``rtol`` times the largest entry of all expected tensors
    (so that entries passing near zero are judged on the scale of the parameters)."""

    def np64(t):
        return t.detach().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)

    actual, expected = [np64(a) for a in actual], [np64(e) for e in expected]
    assert len(actual) == len(expected)
    scale = max(float(np.abs(e).max()) for e in expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale)
