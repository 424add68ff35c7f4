"""The torch.optim.Optimizer contract, for every adaptlr optimizer (one table, tests/_optim_table.py).

The first tests check the table itself: every optimizer adaptlr exports has a row, every torch.optim class a
counterpart row, and every row's oracles resolve.
"""

from __future__ import annotations

import copy
import inspect
import io
import math

import numpy as np
import pytest
import torch
from _optim_table import (
    ENGINES,
    ROWS,
    counterpart_class,
    counterpart_factory,
    interval,
    make,
    reference_class,
    rows,
    shaped,
    step,
    trainable,
    with_engines,
)

import adaptlr


def _optimizer_classes(namespace, names):
    return sorted(
        n
        for n in names
        if inspect.isclass(getattr(namespace, n))
        and issubclass(getattr(namespace, n), torch.optim.Optimizer)
        and getattr(namespace, n) not in (torch.optim.Optimizer, adaptlr.Optimizer)
    )


# ------------------------------------------------------------------------------------------------ the table
def test_every_exported_optimizer_has_a_row():
    exported = _optimizer_classes(adaptlr, adaptlr.__all__)
    missing = [n for n in exported if n not in ROWS]
    assert not missing, (
        f"adaptlr exports {missing} without a row in tests/_optim_table.py: add one (see its docstring) so that "
        "the parity, contract, validation, engine and convergence sweeps run it"
    )
    assert sorted(ROWS) == exported, f"rows for optimizers adaptlr does not export: {sorted(set(ROWS) - set(exported))}"


def test_every_torch_optimizer_has_a_counterpart_row():
    in_torch = _optimizer_classes(torch.optim, dir(torch.optim))
    covered = {r.counterpart.target.split(":")[1] for r in ROWS.values() if r.counterpart and r.counterpart.is_torch}
    missing = sorted(set(in_torch) - covered)
    assert not missing, f"torch {torch.__version__} has {missing}, which no row of tests/_optim_table.py matches"


@pytest.mark.parametrize("row", rows())
def test_row_is_consistent(row):
    """The counterpart and reference exist, the engines are known, every range parses, every argument exists."""
    if row.counterpart is not None and row.counterpart.is_torch:
        assert issubclass(counterpart_class(row), torch.optim.Optimizer)
    if row.reference is not None:
        assert inspect.isclass(reference_class(row))
    assert set(row.engines) <= set(ENGINES)
    signature = inspect.signature(row.cls).parameters
    for key in row.ranges:
        assert key.split("[")[0] in signature, f"{row.name} has no argument {key}"
        interval(row, key)  # (parses; a bound naming another hyperparameter reads its default)
    for key in (*row.counts, *row.example, *row.converge, *row.exact):
        assert key in signature, f"{row.name} has no argument {key}"
    if row.lr_free:
        assert row.lr_free in signature
    assert ("per_group_d" in signature) == (row.per_group_d is not None)
    assert ("process_group" in signature) == row.process_group
    assert hasattr(row.cls, "effective_lr") == (row.effective_lr is not None)
    assert hasattr(row.cls, "eval") == row.schedule_free


@pytest.mark.parametrize("row", rows(lambda r: r.counterpart is not None and r.counterpart.is_torch))
def test_signature_is_torchs(row):
    """torch's arguments, in torch's order and kinds, with torch's defaults; adaptlr's extras are keyword-only."""
    ours = inspect.signature(row.cls).parameters
    theirs = inspect.signature(counterpart_class(row)).parameters
    positional = [a for a, p in theirs.items() if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert list(ours)[: len(positional)] == positional and set(theirs) <= set(ours)
    for arg, p in theirs.items():
        assert ours[arg].default == p.default, f"{row.name}.{arg}: default {ours[arg].default!r} != {p.default!r}"
        assert ours[arg].kind == p.kind, f"{row.name}.{arg}: {ours[arg].kind} != {p.kind}"
    for arg in set(ours) - set(theirs):
        assert ours[arg].kind == inspect.Parameter.KEYWORD_ONLY, f"{row.name}.{arg} should be keyword-only"


# --------------------------------------------------------------------------------------------- checkpoints
def model_and_data(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)
    x = torch.randn(32, 6, dtype=dtype)
    y = torch.randn(32, 1, dtype=dtype)
    return model, x, y


def train(model, opt, x, y, steps, row=None, hook=None):
    """``steps`` steps on the mean squared error (through ``row``'s harness: a closure, sparse gradients)."""
    for _ in range(steps):
        if row is None:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        else:
            step(row, opt, lambda: torch.nn.functional.mse_loss(model(x), y), hook)


def kwargs_for(row, seed=1):
    kw = row.draw(np.random.default_rng(seed))
    kw.pop("maximize", None)
    return kw


def same(a, b):
    """Equal values, recursively (tensors bit for bit; nan equals nan)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _transpose_first_weight(model):
    """The same values in a transposed layout (a non-contiguous parameter)."""
    w = model[0].weight
    w.data = w.data.t().contiguous().t()
    assert not w.is_contiguous()


@pytest.mark.parametrize(("row", "engine"), with_engines())
def test_state_dict_round_trip_is_bit_identical(row, engine):
    """Save at step 50, load (weights_only) into a fresh optimizer and model, continue 50: identical to an
    uninterrupted run (the first weight non-contiguous, in both)."""
    kw = {**kwargs_for(row), **ENGINES[engine]}
    model, x, y = model_and_data()
    _transpose_first_weight(model)
    opt = make(row, model.parameters(), **kw)
    train(model, opt, x, y, 50, row)
    saved_model = copy.deepcopy(model.state_dict())
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(opt.state_dict()), buffer)
    train(model, opt, x, y, 50, row)

    resumed, _, _ = model_and_data(seed=123)
    _transpose_first_weight(resumed)
    resumed.load_state_dict(saved_model)
    assert [r.stride() for r in resumed.parameters()] == [p.stride() for p in model.parameters()]
    opt2 = make(row, resumed.parameters(), **kw)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    train(resumed, opt2, x, y, 50, row)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    if row.effective_lr is not None:
        assert opt.effective_lr() == opt2.effective_lr() and math.isfinite(opt.effective_lr())


def _interchange_cases():
    out = []
    for row in ROWS.values():
        for direction in row.counterpart.checkpoints if row.counterpart else ():
            key = f"interchange-{direction}"
            marks = [pytest.mark.xfail(strict=True, reason=row.known[key])] if key in row.known else []
            out.append(pytest.param(row, direction, id=f"{row.name}-{direction}", marks=marks))
    return out


@pytest.mark.parametrize(("row", "direction"), _interchange_cases())
def test_state_dict_interchange_with_the_counterpart(row, direction):
    """A checkpoint moves between adaptlr.X and its counterpart (torch.optim.X, the paper's package) both ways, and
    training continues the same: as the uninterrupted run, or as the counterpart's own resume where that is not
    exact (``own_resume_inexact``: torch.optim.ASGD's load changes eta's dtype). The first weight is non-contiguous
    (unless the counterpart takes contiguous parameters only)."""
    kw = kwargs_for(row, seed=2)

    def ours(params):
        return make(row, params, **kw)

    def theirs(params):
        return counterpart_factory(row, **kw)(trainable(row, params))

    first, second = (ours, theirs) if direction == "to" else (theirs, ours)
    transposed = not row.counterpart.contiguous_only
    model, x, y = model_and_data()
    if transposed:
        _transpose_first_weight(model)
    opt = first(model.parameters())
    train(model, opt, x, y, 30, row)
    state = copy.deepcopy(opt.state_dict())
    params = copy.deepcopy(model.state_dict())
    train(model, opt, x, y, 30, row)
    expected = model
    if direction == "to" and row.counterpart.own_resume_inexact:
        expected, _, _ = model_and_data()
        if transposed:
            _transpose_first_weight(expected)
        expected.load_state_dict(params)
        twin = theirs(expected.parameters())
        twin.load_state_dict(copy.deepcopy(state))
        train(expected, twin, x, y, 30, row)

    resumed, _, _ = model_and_data()
    if transposed:
        _transpose_first_weight(resumed)
    resumed.load_state_dict(params)
    opt2 = second(resumed.parameters())
    opt2.load_state_dict(state)
    train(resumed, opt2, x, y, 30, row)
    for a, b in zip(expected.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if row.counterpart.own_state_layout:
        return
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert set(s1["state"]) == set(s2["state"])
    for k in s1["state"]:
        assert set(s1["state"][k]) == set(s2["state"][k])


def test_load_state_dict_casts_to_param_dtype():
    model, x, y = model_and_data(dtype=torch.float64)
    opt = adaptlr.Adam(model.parameters())
    train(model, opt, x, y, 3)
    model32 = copy.deepcopy(model).float()
    opt32 = adaptlr.Adam(model32.parameters())
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[next(model32.parameters())]["exp_avg"].dtype == torch.float32
    train(model32, opt32, x.float(), y.float(), 3)


@pytest.mark.parametrize("row", rows(lambda r: r.counterpart is not None and r.counterpart.is_torch and r.param_groups))
def test_param_groups_and_add_param_group(row):
    """Two groups with different hyperparameters, one added later, equal torch's."""
    results = []
    for cls in (row.cls, counterpart_class(row)):
        model, x, y = model_and_data()
        first, second = model[0], model[2]
        opt = cls([{"params": trainable(row, first.parameters()), "lr": 0.01}], lr=0.02)
        train(model, opt, x, y, 3, row)
        opt.add_param_group({"params": trainable(row, second.parameters()), "lr": 0.005})
        train(model, opt, x, y, 5, row)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("row", rows())
def test_params_without_grad_are_skipped(row):
    model, x, y = model_and_data()
    frozen = model[0].weight
    before = frozen.detach().clone()
    opt = make(row, model.parameters())
    train(model, opt, x, y, 3, row, hook=lambda: setattr(frozen, "grad", None))
    assert torch.equal(frozen, before)
    if not row.state_on_first_param:  # (torch's L-BFGS keeps its state under params[0]: the frozen one)
        assert frozen not in opt.state or row.eager_state  # torch's Adagrad creates state eagerly


def test_closure_is_called_and_loss_returned():
    model, x, y = model_and_data()
    opt = adaptlr.SGD(model.parameters(), lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [1] and isinstance(loss, torch.Tensor)


def test_zero_grad_and_hooks():
    model, x, y = model_and_data()
    opt = adaptlr.Adam(model.parameters())
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: seen.append("post"))
    train(model, opt, x, y, 2)
    assert seen == ["pre", "post", "pre", "post"]
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_lr_forms_float_tensor_schedule_and_scale():
    """A 0-dim tensor lr equals the float; a schedule is called with the completed steps; lr_scale multiplies."""
    results = {}
    seen_steps = []

    def schedule(step):
        seen_steps.append(step)
        return 0.01 * (0.5**step)

    def doubled(step):
        return 0.02 * (0.5**step)

    for form in ("float", "tensor", "schedule", "scaled"):
        model, x, y = model_and_data()
        lr = {
            "float": 0.01,
            "tensor": torch.tensor(0.01, dtype=torch.float64),
            "schedule": schedule,
            "scaled": doubled,
        }[form]
        opt = adaptlr.Adam(model.parameters(), lr=lr)
        if form == "scaled":  # the controllers' factor multiplies the schedule; group["lr"] is the product
            opt.param_groups[0]["adaptlr_lr_scale"] = 0.5
            opt.refresh_lr()
            assert opt.current_lr() == pytest.approx(0.01) == opt.param_groups[0]["lr"]
        for i in range(4):
            if form in ("float", "tensor"):
                value = 0.01 * (0.5**i)
                if form == "tensor":
                    opt.param_groups[0]["lr"].fill_(value)
                else:
                    opt.param_groups[0]["lr"] = value
            if form in ("schedule", "scaled"):  # group["lr"] is always the number the next step uses
                assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * (0.5**i))
            train(model, opt, x, y, 1)
        results[form] = [p.detach().clone() for p in model.parameters()]
    assert seen_steps == [0, 1, 2, 3, 4]  # at construction, then after each applied step (the next step's lr)
    for form in ("tensor", "schedule", "scaled"):
        for a, b in zip(results["float"], results[form]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("row", rows())
def test_nonfinite_skip_changes_nothing(row):
    """An inf and a nan in the gradients: parameters, state, group state (the clock, d, ...) all unchanged."""
    model, x, y = model_and_data()
    opt = make(row, model.parameters(), nonfinite="skip")
    train(model, opt, x, y, 2, row)
    params = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())

    def poison():
        model[0].weight.grad[0, 0] = math.inf
        model[2].bias.grad[0] = math.nan

    train(model, opt, x, y, 1, row, hook=poison)
    assert opt.last_step_skipped
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])
    after = opt.state_dict()
    assert same(after["state"], state["state"])
    assert same(after["param_groups"], state["param_groups"])
    train(model, opt, x, y, 1, row)
    assert not opt.last_step_skipped


def test_nonfinite_raise():
    model, x, y = model_and_data()
    opt = adaptlr.SGD(model.parameters(), lr=0.1, nonfinite="raise")
    torch.nn.functional.mse_loss(model(x), y).backward()
    model[0].weight.grad[0, 0] = math.nan
    with pytest.raises(FloatingPointError, match="inf or nan"):
        opt.step()


def test_sparse_gradients_raise():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = adaptlr.Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_fused_and_foreach_together_rejected():
    with pytest.raises(ValueError, match="cannot be `True` together"):
        adaptlr.Adam([torch.zeros(2, requires_grad=True)], fused=True, foreach=True)


def test_fused_rejects_unsupported_dtype():
    with pytest.raises(RuntimeError, match="fused=True supports"):
        adaptlr.Adam([torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)], fused=True)


def _converge_cases():
    out = []
    for row in ROWS.values():
        for dtype, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            key = f"converge-{tag}"
            marks = [pytest.mark.xfail(strict=True, reason=row.known[key])] if key in row.known else []
            out.append(pytest.param(row, dtype, id=f"{row.name}-{tag}", marks=marks))
    return out


@pytest.mark.parametrize(("row", "dtype"), _converge_cases())
def test_converges_on_a_tiny_problem(row, dtype):
    """Least squares with 3 unknowns: every optimizer at a sensible lr (``row.converge``; the LR-free methods
    at their defaults) lowers the loss by 10x in 300 steps."""
    torch.manual_seed(0)
    a = torch.randn(64, 3)
    target = torch.tensor([1.0, -2.0, 0.5])
    b = a @ target
    w = torch.zeros(shaped(row, (3,)), dtype=dtype, requires_grad=True)
    opt = make(row, [w], **row.converge)

    def loss():
        return ((a.to(dtype) @ w.reshape(-1) - b.to(dtype)) ** 2).float().mean()

    start = float(loss())
    for _ in range(300):
        step(row, opt, loss)
    assert w.dtype == dtype
    assert float(loss()) < start / 10


@pytest.mark.parametrize(
    ("row", "engine"),
    with_engines(lambda r: r.counterpart is not None and r.counterpart.is_torch and not r.needs_closure),
)
def test_param_joining_later_has_its_own_state(row, engine):
    """A parameter whose gradient appears only from step 4 on keeps its own state (its step, NAdam's mu_product,
    ...) as torch: its step count is 5 where the others' is 8."""
    results, states = [], []
    late = None
    for cls, extra in ((row.cls, ENGINES[engine]), (counterpart_class(row), {})):
        model, x, y = model_and_data()
        late = model[2].weight
        opt = cls(trainable(row, model.parameters()), lr=0.01, **extra)
        for t in range(8):
            step(
                row,
                opt,
                lambda: torch.nn.functional.mse_loss(model(x), y),
                hook=(lambda w=late: setattr(w, "grad", None)) if t < 3 else None,
            )
        results.append([p.detach().clone() for p in model.parameters()])
        states.append([(p is late, opt.state[p]) for p in trainable(row, model.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for (is_late, ours), (_, theirs) in zip(*states):
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            if key == "step":
                assert float(ours[key]) == float(value) == (5.0 if is_late else 8.0)
            elif isinstance(value, torch.Tensor):
                torch.testing.assert_close(ours[key].to_dense(), value.to_dense(), rtol=1e-10, atol=1e-12)
