"""The rest of torch.optim: Adafactor, Muon, SparseAdam and LBFGS against torch.optim and adaptlr.reference.

(Rprop and ASGD are rows of the shared table, tests/_reference_cases.py, and run in the shared sweeps; the few
things about them the table cannot say are at the end.) For each optimizer: random hyperparameters, several
shapes (0-dim and non-contiguous where torch allows them), many steps, every engine (loop, foreach, fused and
the default): float64 parameters and state equal torch's to 1e-10, float32 ones in norm to 1e-5; the NumPy
references agree in float64 to 1e-10; checkpoints move to and from torch.optim, and a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptlr
from adaptlr import reference, rules
from adaptlr.reference._muon import newton_schulz as reference_newton_schulz

ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False), "default": {}}
DTYPES = {"f64": torch.float64, "f32": torch.float32}
N_DRAWS, N_STEPS = 4, 40


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_adafactor(rng):
    return dict(
        lr=_log_uniform(rng, 1e-3, 1e-1),
        beta2_decay=float(rng.uniform(-1.0, -0.5)),
        eps=(None if rng.random() < 0.5 else _log_uniform(rng, 1e-30, 1e-6), _log_uniform(rng, 1e-4, 1e-2)),
        d=float(rng.uniform(1.0, 2.0)),
        weight_decay=0.0 if rng.random() < 0.4 else _log_uniform(rng, 1e-4, 0.1),
        maximize=bool(rng.random() < 0.3),
    )


def draw_muon(rng):
    return dict(
        lr=_log_uniform(rng, 1e-3, 3e-2),
        weight_decay=0.0 if rng.random() < 0.3 else _log_uniform(rng, 1e-3, 0.1),
        momentum=float(rng.choice([0.0, rng.uniform(0.2, 0.5), rng.uniform(0.5, 0.99)])),
        nesterov=bool(rng.random() < 0.6),
        ns_steps=int(rng.integers(1, 7)),
        adjust_lr_fn=[None, "original", "match_rms_adamw"][int(rng.integers(3))],
    )


def draw_sparse_adam(rng):
    return dict(
        lr=_log_uniform(rng, 1e-3, 1e-1),
        betas=(1 - _log_uniform(rng, 0.01, 1.0), 1 - _log_uniform(rng, 1e-4, 0.2)),
        eps=_log_uniform(rng, 1e-10, 1e-3),
        maximize=bool(rng.random() < 0.3),
    )


DRAWS = {"Adafactor": draw_adafactor, "Muon": draw_muon, "SparseAdam": draw_sparse_adam}
SHAPES = {
    "Adafactor": [(), (5,), (3, 4), (2, 3, 2), (1, 7)],
    "Muon": [(3, 4), (5, 2), (1, 6)],
    "SparseAdam": [(8,), (10, 3), (6, 4)],
}


def relative_error(actual, expected):
    actual, expected = (torch.view_as_real(t) if t.is_complex() else t for t in (actual, expected))
    return float((actual.double() - expected.double()).norm()) / max(float(expected.double().norm()), 1e-30)


def assert_close(actual, expected, what):
    if expected.dtype in (torch.float64, torch.complex128):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")
    else:
        err = relative_error(actual, expected)
        assert err <= 1e-5, f"{what}: relative error {err:.2e}"


def make_params(name, seed, dtype):
    """The shapes of ``name``, plus a non-contiguous (transposed) matrix."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=dtype) for s in SHAPES[name]]
    params.append(torch.randn(6, 4, generator=g, dtype=dtype).t())
    assert not params[-1].is_contiguous()
    return [p.detach().requires_grad_() for p in params]


def dense_loss(params, t):
    """Smooth, non-quadratic, step-dependent (so the trajectory matters)."""
    return sum(((p - 0.3) ** 2).sum() + 0.1 * torch.sin(3 * p + t).sum() for p in params)


def sparse_support(seed, t, p):
    """The rows (1-D, 2-D hybrid "embedding" gradients) or entries (the transposed matrix) touched at step t."""
    rng = np.random.default_rng(zlib.crc32(f"{seed}-{t}-{tuple(p.shape)}".encode()))
    if p.ndim == 2 and p.is_contiguous() and p.shape[1] != 4:
        k = int(rng.integers(1, p.shape[0]))
        return torch.from_numpy(rng.choice(p.shape[0], k, replace=False))[None]
    dims = p.ndim
    k = int(rng.integers(1, p.numel()))
    flat = rng.choice(p.numel(), k, replace=False)
    if rng.random() < 0.3:  # repeated indices: coalesce sums them
        flat = np.concatenate([flat, flat[: max(1, k // 3)]])
    return torch.from_numpy(np.stack(np.unravel_index(flat, tuple(p.shape)))[:dims])


def set_sparse_grads(params, seed, t, maximize=False):
    for p in params:
        idx = sparse_support(seed, t, p)
        values = p.detach()[tuple(idx)]
        values = 2 * (values - 0.3) + 0.1 * torch.cos(3 * values + t)
        p.grad = torch.sparse_coo_tensor(idx, -values if maximize else values, p.shape, check_invariants=True)


def run_dense(cls, params, kwargs, steps, maximize=False):
    opt = cls(params, **kwargs)
    for t in range(steps):
        opt.zero_grad()
        loss = dense_loss(params, t)
        (-loss if maximize else loss).backward()
        opt.step()
    return opt


def run_sparse(cls, params, kwargs, steps, seed, maximize=False):
    opt = cls(params, **kwargs)
    for t in range(steps):
        set_sparse_grads(params, seed, t, maximize)
        opt.step()
    return opt


def run(name, cls, params, kwargs, steps, seed):
    maximize = kwargs.get("maximize", False)
    if name == "SparseAdam":
        return run_sparse(cls, params, kwargs, steps, seed, maximize)
    return run_dense(cls, params, kwargs, steps, maximize)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name", list(DRAWS))
def test_matches_torch(name, engine, dtype):
    for draw in range(N_DRAWS):
        seed = zlib.crc32(f"extra-{name}-{draw}".encode())
        kwargs = DRAWS[name](np.random.default_rng(seed))
        ours, theirs = make_params(name, seed, DTYPES[dtype]), make_params(name, seed, DTYPES[dtype])
        opt = run(name, getattr(adaptlr, name), ours, {**kwargs, **ENGINES[engine]}, N_STEPS, seed)
        ref = run(name, getattr(torch.optim, name), theirs, kwargs, N_STEPS, seed)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a.detach(), b.detach(), f"{name} {kwargs} param {i} {tuple(a.shape)}")
            assert set(opt.state[a]) == set(ref.state[b])
            for key, value in ref.state[b].items():
                got = opt.state[a][key]
                if torch.is_tensor(value):
                    assert got.dtype == value.dtype and got.shape == value.shape, f"{name} state {key}"
                    assert_close(got, value, f"{name} {kwargs} state {key} of param {i}")
                else:
                    assert got == value, f"{name} state {key}"


def _reference_sparse_grads(params, arrays, seed, t, maximize):
    """The coordinate-form gradients of set_sparse_grads (same supports), from the reference's own values."""
    out = []
    for p, a in zip(params, arrays):
        idx = sparse_support(seed, t, p).numpy()
        values = a[tuple(idx)]
        values = 2 * (values - 0.3) + 0.1 * np.cos(3 * values + t)
        out.append((idx, -values if maximize else values))
    return out


def _reference_dense_grads(params, t, maximize):
    grads = [2 * (p - 0.3) + 0.3 * np.cos(3 * p + t) for p in params]
    return [-g for g in grads] if maximize else grads


@pytest.mark.parametrize("engine", ["fused", "foreach", "loop"])
@pytest.mark.parametrize("name", list(DRAWS))
def test_matches_reference(name, engine):
    """float64, 1e-10: the NumPy references share no code with adaptlr.optim (Muon with a float64 iteration)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Adafactor's step count in float64, as the reference's int
    try:
        for draw in range(2):
            seed = zlib.crc32(f"extra-ref-{name}-{draw}".encode())
            kwargs = DRAWS[name](np.random.default_rng(seed))
            params = make_params(name, seed, torch.float64)
            arrays = [p.detach().numpy().copy() for p in params]
            arrays[-1] = np.ascontiguousarray(arrays[-1].T).T  # the same non-contiguous layout
            extra = dict(ns_dtype="float64") if name == "Muon" else {}
            opt = getattr(adaptlr, name)(params, **kwargs, **extra, **ENGINES[engine])
            ref = getattr(reference, name)(arrays, **kwargs)
            maximize = kwargs.get("maximize", False)
            for t in range(N_STEPS):
                if name == "SparseAdam":
                    set_sparse_grads(params, seed, t, maximize)
                    ref.step(_reference_sparse_grads(params, arrays, seed, t, maximize))
                else:
                    for p, g in zip(params, _reference_dense_grads([p.detach().numpy() for p in params], t, maximize)):
                        p.grad = torch.from_numpy(np.ascontiguousarray(g)).reshape(p.shape)
                    ref.step(_reference_dense_grads(arrays, t, maximize))
                opt.step()
            for i, (p, r) in enumerate(zip(params, arrays)):
                assert np.all(np.isfinite(r))
                np.testing.assert_allclose(
                    p.detach().numpy(), r, rtol=1e-10, atol=1e-12, err_msg=f"{name} [{engine}] {kwargs}: param {i}"
                )
                for key, expected in ref.state[i].items():
                    got = opt.state[p][key]
                    got = float(got) if key == "step" else got.detach().numpy()
                    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"{name} state {key}")
    finally:
        torch.set_default_dtype(old)


# ------------------------------------------------------------------------------------ checkpoints
def _kwargs(name, seed=5):
    if name == "LBFGS":
        return dict(lr=0.5, max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    if name in DRAWS:
        return DRAWS[name](np.random.default_rng(seed))
    return {"Rprop": dict(lr=0.01, etas=(0.4, 1.3)), "ASGD": dict(lr=0.02, t0=3, lambd=1e-3)}[name]


def _train(name, opt, params, steps, start=0, seed=9):
    for t in range(start, start + steps):
        if name == "LBFGS":

            def closure():
                opt.zero_grad()
                loss = dense_loss(params, t)
                loss.backward()
                return loss

            opt.step(closure)
        elif name == "SparseAdam":
            set_sparse_grads(params, seed, t, opt.param_groups[0]["maximize"])
            opt.step()
        else:
            opt.zero_grad()
            loss = dense_loss(params, t)
            (-loss if opt.param_groups[0].get("maximize") else loss).backward()
            opt.step()


def _params_for(name, seed=3):
    if name == "LBFGS":  # contiguous: torch.optim.LBFGS views gradients flat (adaptlr's reshapes them)
        return _rosenbrock_params(torch.float64)[:2]
    return make_params(
        "Muon" if name == "Muon" else "SparseAdam" if name == "SparseAdam" else "Adafactor", seed, torch.float64
    )


CHECKPOINTED = ["Adafactor", "Muon", "SparseAdam", "LBFGS"]


@pytest.mark.parametrize("name", CHECKPOINTED)
def test_state_dict_round_trip_is_bit_identical(name):
    """Save after 6 steps, load (weights_only) into a fresh optimizer, continue 6: equal to an uninterrupted run."""
    kw = _kwargs(name)
    params = _params_for(name)
    opt = getattr(adaptlr, name)(params, **kw)
    _train(name, opt, params, 6)
    saved = [p.detach().clone() for p in params]
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    _train(name, opt, params, 6, start=6)

    resumed = [s.clone().requires_grad_() for s in saved]
    assert [r.stride() for r in resumed] == [p.stride() for p in params]
    opt2 = getattr(adaptlr, name)(resumed, **kw)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    _train(name, opt2, resumed, 6, start=6)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("direction", ["adaptlr->torch", "torch->adaptlr"])
@pytest.mark.parametrize("name", CHECKPOINTED + ["ASGD"])
def test_state_dict_interchange_with_torch(name, direction):
    """A checkpoint of either library continues in the other as it would have in its own.

    The comparison is with the checkpoint resumed by the second library's own class... ``torch->torch`` for
    ``adaptlr->torch`` (torch.optim.ASGD's load changes eta's dtype, so torch is compared with itself), and with
    the uninterrupted run otherwise.
    """
    kw = _kwargs(name)
    ours, theirs = getattr(adaptlr, name), getattr(torch.optim, name)
    first, second = (ours, theirs) if direction == "adaptlr->torch" else (theirs, ours)
    params = _params_for(name)
    opt = first(params, **kw)
    _train(name, opt, params, 5)
    state = copy.deepcopy(opt.state_dict())
    saved = [p.detach().clone() for p in params]
    _train(name, opt, params, 5, start=5)
    expected = params
    if name == "ASGD" and direction == "adaptlr->torch":
        expected = [s.clone().requires_grad_() for s in saved]
        twin = theirs(expected, **kw)
        twin_state = copy.deepcopy(state)
        twin.load_state_dict(twin_state)
        _train(name, twin, expected, 5, start=5)

    resumed = [s.clone().requires_grad_() for s in saved]
    opt2 = second(resumed, **kw)
    opt2.load_state_dict(state)
    _train(name, opt2, resumed, 5, start=5)
    for a, b in zip(expected, resumed):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert set(s1["state"]) == set(s2["state"])
    for k in s1["state"]:
        assert set(s1["state"][k]) == set(s2["state"][k])


# ------------------------------------------------------------------------------------ LBFGS
def _rosenbrock_params(dtype, complex_part=False):
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn((), generator=g, dtype=dtype),
        torch.randn(4, generator=g, dtype=dtype),
        torch.randn(3, 6, generator=g, dtype=dtype),
    ]
    if complex_part:
        params.append(
            torch.randn(3, generator=g, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
        )
    return [p.detach().requires_grad_() for p in params]


def _lbfgs_loss(params):
    x = torch.cat([v.reshape(-1) for p in params for v in ((p.real, p.imag) if p.is_complex() else (p,))])
    return (5 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum() + 0.1 * torch.sin(3 * x).sum()


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # torch.optim.LBFGS's float(loss)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_matches_torch(line_search, dtype):
    results = []
    for cls in (adaptlr.LBFGS, torch.optim.LBFGS):
        params = _rosenbrock_params(DTYPES[dtype], complex_part=True)
        kw = dict(lr=1.0 if line_search else 0.05, max_iter=15, history_size=6, line_search_fn=line_search)
        opt = cls(params, **kw)

        def closure():
            opt.zero_grad()
            loss = _lbfgs_loss(params)
            loss.backward()
            return loss

        losses = [float(opt.step(closure).detach()) for _ in range(8)]
        results.append((params, opt, losses))
    (a, oa, la), (b, ob, lb) = results
    start = float(_lbfgs_loss(_rosenbrock_params(DTYPES[dtype], complex_part=True)))
    assert lb[-1] < start / 5  # the problem is solved in part, not stuck at the start
    rtol = 1e-10 if dtype == "f64" else 1e-5
    np.testing.assert_allclose(la, lb, rtol=rtol)
    for x, y in zip(a, b):
        assert_close(x.detach(), y.detach(), "LBFGS param")
    sa, sb = oa.state[a[0]], ob.state[b[0]]
    assert set(sa) == set(sb)
    assert sa["func_evals"] == sb["func_evals"] and sa["n_iter"] == sb["n_iter"]
    for key in ("d", "prev_flat_grad"):
        assert_close(sa[key], sb[key], f"LBFGS state {key}")
    assert len(sa["old_dirs"]) == len(sb["old_dirs"]) <= 6


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_matches_reference(line_search):
    params = _rosenbrock_params(torch.float64)
    arrays = [p.detach().numpy().copy() for p in params]
    kw = dict(lr=1.0 if line_search else 0.05, max_iter=10, history_size=4, line_search_fn=line_search)
    opt = adaptlr.LBFGS(params, **kw)
    ref = reference.LBFGS(arrays, **kw)

    def closure():
        opt.zero_grad()
        loss = _lbfgs_loss(params)
        loss.backward()
        return loss

    def ref_closure(ps):
        ts = [torch.tensor(p, requires_grad=True) for p in ps]
        loss = _lbfgs_loss(ts)
        loss.backward()
        return float(loss), [t.grad.numpy() for t in ts]

    for _ in range(6):
        np.testing.assert_allclose(float(opt.step(closure).detach()), ref.step(ref_closure), rtol=1e-10)
    for p, r in zip(params, arrays):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-10, atol=1e-12)
    assert opt.state[params[0]]["func_evals"] == ref.state["func_evals"]


def test_lbfgs_contract():
    params = _rosenbrock_params(torch.float64)
    with pytest.raises(ValueError, match="per-parameter options"):
        adaptlr.LBFGS([{"params": params[:1]}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="line_search_fn"):
        adaptlr.LBFGS(params, line_search_fn="armijo")
    with pytest.raises(ValueError, match="max_iter"):
        adaptlr.LBFGS(params, max_iter=0)
    opt = adaptlr.LBFGS(params, lr=lambda step: 0.5 / (1 + step), max_iter=5)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step(None)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = _lbfgs_loss(params)
        loss.backward()
        return loss

    assert opt.current_lr() == 0.5
    loss = opt.step(closure)
    assert torch.is_tensor(loss) and len(calls) == opt.state[params[0]]["func_evals"] > 1
    assert opt.current_lr() == 0.25  # one step (of several iterations) is one tick of the schedule clock


# ------------------------------------------------------------------------------------ Muon, Adafactor, SparseAdam
def test_newton_schulz_orthogonalises():
    """NS maps G = U S V^T to U phi^5(S / ||G||) V^T, phi(s) = a s + b s^3 + c s^5: singular values near 1."""
    g = torch.randn(12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    sigma = s / g.norm()
    for _ in range(5):
        sigma = 3.4445 * sigma - 4.7750 * sigma**3 + 2.0315 * sigma**5
    assert float(sigma.min()) > 0.6 and float(sigma.max()) < 1.25
    expected = u @ torch.diag(sigma) @ vh
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
        x = rules.newton_schulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7, dtype)
        assert x.shape == g.shape and x.dtype == dtype
        assert relative_error(x, expected) < tol, dtype
    np.testing.assert_allclose(reference_newton_schulz(g.numpy(), steps=5), expected.numpy(), rtol=1e-9, atol=1e-12)


def test_muon_contract():
    w = torch.zeros(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="2D parameters"):
        adaptlr.Muon([w, torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="not supported"):
        adaptlr.Muon([w], adjust_lr_fn="sqrt")
    with pytest.raises(ValueError, match="ns_steps"):
        adaptlr.Muon([w], ns_steps=100)
    with pytest.raises(ValueError, match="ns_dtype"):
        adaptlr.Muon([w], ns_dtype="int8")
    opt = adaptlr.Muon([w], ns_dtype=torch.float32)
    assert opt.param_groups[0]["ns_dtype"] == "float32"
    assert opt.defaults["lr"] == torch.optim.Muon([w]).defaults["lr"]
    # the lr scales: sqrt(max(1, A/B)) and 0.2 sqrt(max(A, B)), from one step on a zero matrix
    for fn, scale in ((None, math.sqrt(2.0)), ("original", math.sqrt(2.0)), ("match_rms_adamw", 0.2 * math.sqrt(8.0))):
        p = torch.zeros(8, 4, dtype=torch.float64, requires_grad=True)
        opt = adaptlr.Muon(
            [p], lr=0.1, weight_decay=0.0, momentum=0.0, nesterov=False, adjust_lr_fn=fn, ns_dtype="float64"
        )
        p.grad = torch.eye(8, 4, dtype=torch.float64)
        opt.step()
        ortho = rules.newton_schulz(
            torch.eye(8, 4, dtype=torch.float64), (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float64
        )
        torch.testing.assert_close(p.detach(), -0.1 * scale * ortho)


def test_adafactor_factors_and_validation():
    p = torch.randn(2, 3, 4, requires_grad=True)
    opt = adaptlr.Adafactor([p, torch.zeros(5, requires_grad=True)])
    (p**2).sum().backward()
    opt.step()
    state = opt.state[p]
    assert state["row_var"].shape == (2, 3, 1) and state["col_var"].shape == (2, 1, 4) and "variance" not in state
    for bad, match in (
        (dict(beta2_decay=0.5), "beta2_decay"),
        (dict(d=0.5), "clipping threshold"),
        (dict(eps=(-1.0, 1e-3)), "epsilon1"),
        (dict(eps=(None, math.inf)), "epsilon2"),
        (dict(weight_decay=math.nan), "weight_decay"),
    ):
        with pytest.raises(ValueError, match=match):
            adaptlr.Adafactor([p], **bad)
    with pytest.raises(RuntimeError, match="complex"):
        adaptlr.Adafactor([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])


def test_sparse_adam_contract():
    emb = torch.nn.Embedding(20, 4, sparse=True)
    with pytest.raises(ValueError, match="Invalid lr"):
        adaptlr.SparseAdam(emb.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="Invalid eps"):
        adaptlr.SparseAdam(emb.parameters(), eps=math.inf)
    with pytest.raises(ValueError, match="beta"):
        adaptlr.SparseAdam(emb.parameters(), betas=(0.9, 1.0))
    opt = adaptlr.SparseAdam(emb.parameters(), lr=0.1)
    before = emb.weight.detach().clone()
    emb(torch.tensor([3, 3, 7])).sum().backward()
    opt.step()
    changed = (emb.weight.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [3, 7]
    assert opt.state[emb.weight]["step"] == 1
    emb.weight.grad = torch.sparse_coo_tensor(
        torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 4), (20, 4), check_invariants=True
    )
    opt.step()  # an empty gradient counts a step, as torch
    assert opt.state[emb.weight]["step"] == 2
    emb.weight.grad = torch.ones(20, 4)
    with pytest.raises(RuntimeError, match="dense gradients"):
        opt.step()


def test_sparse_adam_nonfinite_skip():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = adaptlr.SparseAdam(emb.parameters(), nonfinite="skip")
    before = emb.weight.detach().clone()
    emb.weight.grad = torch.sparse_coo_tensor(
        torch.tensor([[1, 2]]), torch.tensor([[1.0, math.nan, 0.0]] * 2), (10, 3), check_invariants=True
    )
    opt.step()
    assert opt.last_step_skipped and torch.equal(emb.weight.detach(), before) and len(opt.state) == 0


# ------------------------------------------------------------------------------------ Rprop, ASGD
def test_rprop_lr_is_the_initial_step_size():
    """As torch: lr sets every weight's initial step size; changing it later changes nothing."""
    p = torch.ones(3, requires_grad=True)
    opt = adaptlr.Rprop([p], lr=0.25)
    p.grad = torch.tensor([1.0, -1.0, 0.0])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.75, 1.25, 1.0]))
    opt.param_groups[0]["lr"] = 10.0
    opt.step()  # same signs: the steps grow by eta+ = 1.2
    torch.testing.assert_close(p.detach(), torch.tensor([0.45, 1.55, 1.0]))
    with pytest.raises(ValueError, match="etaplus"):
        adaptlr.Rprop([p], etas=(0.5, 1.0))
    with pytest.raises(ValueError, match="maximal step size"):
        adaptlr.Rprop([p], step_sizes=(1e-3, 1e-4))


def test_asgd_average_and_validation():
    """After t0 the average ax is the mean of the iterates, with mu = 1 / (t - t0)."""
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = adaptlr.ASGD([p], lr=0.1, lambd=0.0, t0=2)
    iterates = []
    for _ in range(8):
        p.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
        opt.step()
        iterates.append(p.detach().clone())
    # mu_t = 1 / max(1, t - 1 - t0): ax = p_t for t <= 4, then the running mean of p_4, p_5, ...
    torch.testing.assert_close(opt.state[p]["ax"], torch.stack(iterates[3:]).mean(0))
    for bad in (dict(lambd=-1.0), dict(alpha=math.inf), dict(t0=math.nan), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            adaptlr.ASGD([p], **bad)


@pytest.mark.parametrize("name", ["Rprop", "ASGD", "Adafactor", "Muon", "SparseAdam", "LBFGS"])
def test_signature_is_torchs(name):
    """torch's arguments, in torch's order and kinds, with torch's defaults; adaptlr's extras are keyword-only."""
    import inspect

    ours = inspect.signature(getattr(adaptlr, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    positional = [a for a, p in theirs.items() if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert list(ours)[: len(positional)] == positional and set(theirs) <= set(ours)
    for arg, p in theirs.items():
        assert ours[arg].default == p.default, f"{name}.{arg}: default {ours[arg].default!r} != {p.default!r}"
        assert ours[arg].kind == p.kind, f"{name}.{arg}: {ours[arg].kind} != {p.kind}"
    for arg in set(ours) - set(theirs):
        assert ours[arg].kind == inspect.Parameter.KEYWORD_ONLY, f"{name}.{arg} should be keyword-only"


# ------------------------------------------------------------------------------------ validation (hypothesis)
#: name -> {argument: its lowest allowed value (None: > 0 strictly)}; every range is bounded by +inf (excluded)
RANGES = {
    "Rprop": {"lr": 0.0},
    "ASGD": {"lr": 0.0, "lambd": 0.0, "alpha": 0.0, "t0": 0.0, "weight_decay": 0.0},
    "Adafactor": {"lr": 0.0, "d": 1.0, "weight_decay": 0.0},
    "Muon": {"lr": 0.0, "weight_decay": 0.0, "momentum": 0.0, "eps": 0.0},
    "SparseAdam": {"lr": None, "eps": None},
    "LBFGS": {"lr": 0.0, "tolerance_grad": 0.0, "tolerance_change": 0.0},
}
CASES_BAD = [(name, arg) for name, args in RANGES.items() for arg in args]


def _valid_params(name):
    return [torch.zeros(3, 2, requires_grad=True)]


@settings(max_examples=15, deadline=None)
@given(case=st.sampled_from(CASES_BAD), data=st.data())
def test_out_of_range_or_nonfinite_hyperparameter_raises_naming_it(case, data):
    name, arg = case
    low = RANGES[name][arg]
    below = (
        st.floats(max_value=(low if low is not None else 0.0) - 1e-9, allow_nan=False)
        if low != 0.0
        else st.floats(max_value=-1e-12, allow_nan=False)
    )
    value = data.draw(
        st.one_of(below, st.just(math.nan), st.just(math.inf))
        if low is not None
        else st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(math.nan), st.just(math.inf))
    )
    with pytest.raises(ValueError, match=f"Invalid {arg}") as info:
        getattr(adaptlr, name)(_valid_params(name), **{arg: value})
    assert repr(value) in str(info.value) or "nan" in str(info.value)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(sorted(RANGES)), data=st.data())
def test_in_range_hyperparameters_construct_and_step(name, data):
    kwargs = {}
    for arg, low in RANGES[name].items():
        low = 1e-12 if low is None else low
        kwargs[arg] = data.draw(
            st.floats(low, low + (1.0 if arg in ("lr", "momentum", "weight_decay") else 10.0)), label=arg
        )
    ps = _valid_params(name)
    opt = getattr(adaptlr, name)(ps, **kwargs)
    for _ in range(2):
        if name == "SparseAdam":
            ps[0].grad = torch.sparse_coo_tensor(
                torch.tensor([[0, 2]]), torch.ones(2, 2), (3, 2), check_invariants=True
            )
            opt.step()
        elif name == "LBFGS":

            def closure():
                opt.zero_grad()
                loss = ((ps[0] - 1) ** 2).sum()
                loss.backward()
                return loss

            opt.step(closure)
        else:
            ps[0].grad = torch.ones(3, 2)
            opt.step()
    assert ps[0].shape == (3, 2)
