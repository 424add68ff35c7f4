"""What the shared sweeps cannot say about the rest of torch.optim: L-BFGS's line search and iteration state against
torch.optim and adaptlr.reference, Newton-Schulz, and the particular contracts of Muon, Adafactor, SparseAdam, Rprop
and ASGD.

(Parity with torch.optim on every engine, the NumPy references, checkpoints moving to and from torch.optim,
bit-identical resumes, signatures and validation: every row of tests/_optim_table.py runs in the shared sweeps,
tests/test_optim_parity.py, test_optim_vs_reference.py, test_optim_contract.py and test_optim_validation.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import adaptlr
from adaptlr import reference, rules
from adaptlr.reference._muon import newton_schulz as reference_newton_schulz

DTYPES = {"f64": torch.float64, "f32": torch.float32}


def relative_error(actual, expected):
    actual, expected = (torch.view_as_real(t) if t.is_complex() else t for t in (actual, expected))
    return float((actual.double() - expected.double()).norm()) / max(float(expected.double().norm()), 1e-30)


def assert_close(actual, expected, what):
    if expected.dtype in (torch.float64, torch.complex128):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")
    else:
        err = relative_error(actual, expected)
        assert err <= 1e-5, f"{what}: relative error {err:.2e}"


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
