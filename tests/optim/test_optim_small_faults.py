"""Small faults of issue 18: SparseAdam validates lr before converting it, Muon refuses complex parameters with torch's
RuntimeError, LBFGS trains float16 parameters (its curvature pairs and scalars in float32)."""

import pytest
import torch

import adaptlr


def _embedding_params():
    return list(torch.nn.Embedding(10, 3, sparse=True).parameters())


@pytest.mark.parametrize(
    "lr,error,match",
    [
        (None, TypeError, r"Invalid lr: None"),  # was: float() argument must be a string or a real number
        (torch.tensor([0.1, 0.2]), ValueError, r"Invalid lr: a tensor learning rate must have one element"),
    ],
    ids=["None", "two-element-tensor"],
)
def test_sparse_adam_validates_lr_naming_it(lr, error, match):
    with pytest.raises(error, match=match):
        adaptlr.SparseAdam(_embedding_params(), lr=lr)


def test_sparse_adam_lr_is_refused_like_every_other_optimizer():
    """The same error type as adaptlr.Adam's for the same bad lr (the library's one check_lr); a one-element
    tensor, a number and a schedule are still taken."""
    for lr in (None, torch.tensor([0.1, 0.2])):
        with pytest.raises((TypeError, ValueError)) as adam:
            adaptlr.Adam(_embedding_params(), lr=lr)
        with pytest.raises(adam.type, match="Invalid lr"):
            adaptlr.SparseAdam(_embedding_params(), lr=lr)
    for lr in (torch.tensor(0.05, dtype=torch.float64), 0.05, adaptlr.schedules.cosine(0.05, steps=10)):
        assert float(adaptlr.SparseAdam(_embedding_params(), lr=lr).param_groups[0]["lr"]) == 0.05


def test_muon_refuses_complex_parameters_as_torch_does():
    p = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.complex64))
    with pytest.raises(RuntimeError, match=r"^Muon does not support complex parameters$"):
        adaptlr.Muon([p])
    t = torch.optim.Muon([p])  # torch refuses at the first step, with the same type and text
    p.grad = torch.randn_like(p)
    with pytest.raises(RuntimeError, match=r"^Muon does not support complex parameters$"):
        t.step()


def _quadratic(dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64)
    a = a @ a.T / 8 + torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), torch.linalg.solve(a, b)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_lbfgs_trains_half_precision_parameters(line_search, dtype):
    """A quadratic 0.5 x'Ax - b'x: float16 parameters reach its minimiser A^-1 b to their own precision. Before,
    ro = 1 / y's overflowed float16 after two steps and every parameter turned nan (torch.optim.LBFGS does so)."""
    a, b, solution = _quadratic(dtype)
    x = torch.zeros(8, dtype=dtype, requires_grad=True)
    opt = adaptlr.LBFGS([x], line_search_fn=line_search)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ a @ x - b @ x
        loss.backward()
        return loss

    for _ in range(6):
        opt.step(closure)
    assert x.dtype == dtype and bool(torch.isfinite(x).all())
    eps = torch.finfo(dtype).eps
    assert float((x.detach().double() - solution).abs().max()) <= 40 * eps * float(solution.abs().max())
    state = opt.state[x]
    assert state["d"].dtype == state["prev_flat_grad"].dtype == torch.float32
    assert all(torch.isfinite(torch.as_tensor(r)) and torch.as_tensor(r).dtype == torch.float32 for r in state["ro"])


def test_lbfgs_continues_from_a_float16_checkpoint_of_torch():
    """torch's float16 state (before it overflows) loads; the run continues in float32 to the minimiser."""
    a, b, solution = _quadratic(torch.float16)
    x = torch.zeros(8, dtype=torch.float16, requires_grad=True)

    def closure_of(opt, x):
        def closure():
            opt.zero_grad()
            loss = 0.5 * x @ a @ x - b @ x
            loss.backward()
            return loss

        return closure

    theirs = torch.optim.LBFGS([x], max_iter=2)
    theirs.step(closure_of(theirs, x))
    assert theirs.state[x]["prev_flat_grad"].dtype == torch.float16
    y = x.detach().clone().requires_grad_()
    ours = adaptlr.LBFGS([y], max_iter=2)
    ours.load_state_dict(theirs.state_dict())
    for _ in range(5):
        ours.step(closure_of(ours, y))
    assert bool(torch.isfinite(y).all()) and ours.state[y]["d"].dtype == torch.float32
    eps = torch.finfo(torch.float16).eps
    assert float((y.detach().double() - solution).abs().max()) <= 40 * eps * float(solution.abs().max())
