"""The torch.optim.Optimizer contract, for every adaptlr optimizer (one table, tests/_optim_table.py)."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from _optim_table import ENGINES, NAMES
from _reference_cases import DRAWS

import adaptlr


def model_and_data(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)
    x = torch.randn(32, 6, dtype=dtype)
    y = torch.randn(32, 1, dtype=dtype)
    return model, x, y


def train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def kwargs_for(name, seed=1):
    kw = DRAWS[name](np.random.default_rng(seed))
    kw.pop("maximize", None)
    return kw


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_is_bit_identical(name, engine):
    """Save at step 50, load into a fresh optimizer and model, continue 50: identical to an uninterrupted run."""
    kw = {**kwargs_for(name), **ENGINES[engine]}
    cls = getattr(adaptlr, name)
    model, x, y = model_and_data()
    opt = cls(model.parameters(), **kw)
    train(model, opt, x, y, 50)
    saved_model = copy.deepcopy(model.state_dict())
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(opt.state_dict()), buffer)
    train(model, opt, x, y, 50)

    resumed, _, _ = model_and_data(seed=123)
    resumed.load_state_dict(saved_model)
    opt2 = cls(resumed.parameters(), **kw)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    train(resumed, opt2, x, y, 50)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("direction", ["adaptlr->torch", "torch->adaptlr"])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_interchange_with_torch(name, direction):
    """A checkpoint moves between adaptlr.X and torch.optim.X both ways, and training continues the same."""
    if name == "ASGD" and direction == "adaptlr->torch":
        pytest.skip(
            "torch.optim.ASGD's load casts eta to float64, so a resumed torch run differs from an "
            "uninterrupted one by float32 rounding; test_optim_extra checks adaptlr->torch == torch->torch"
        )
    kw = kwargs_for(name, seed=2)
    ours, theirs = getattr(adaptlr, name), getattr(torch.optim, name)
    first, second = (ours, theirs) if direction == "adaptlr->torch" else (theirs, ours)
    model, x, y = model_and_data()
    opt = first(model.parameters(), **kw)
    train(model, opt, x, y, 30)
    state = copy.deepcopy(opt.state_dict())
    params = copy.deepcopy(model.state_dict())
    train(model, opt, x, y, 30)

    resumed, _, _ = model_and_data()
    resumed.load_state_dict(params)
    opt2 = second(resumed.parameters(), **kw)
    opt2.load_state_dict(state)
    train(resumed, opt2, x, y, 30)
    for a, b in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert set(opt2.state_dict()["state"][0]) == set(opt.state_dict()["state"][0])


def test_load_state_dict_casts_to_param_dtype():
    model, x, y = model_and_data(dtype=torch.float64)
    opt = adaptlr.Adam(model.parameters())
    train(model, opt, x, y, 3)
    model32 = copy.deepcopy(model).float()
    opt32 = adaptlr.Adam(model32.parameters())
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[next(model32.parameters())]["exp_avg"].dtype == torch.float32
    train(model32, opt32, x.float(), y.float(), 3)


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_and_add_param_group(name):
    """Two groups with different hyperparameters, one added later, equal torch's."""
    results = []
    for lib in (adaptlr, torch.optim):
        model, x, y = model_and_data()
        first, second = model[0], model[2]
        opt = getattr(lib, name)([{"params": first.parameters(), "lr": 0.01}], lr=0.02)
        train(model, opt, x, y, 3)
        opt.add_param_group({"params": second.parameters(), "lr": 0.005})
        train(model, opt, x, y, 5)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped(name):
    model, x, y = model_and_data()
    frozen = model[0].weight
    before = frozen.detach().clone()
    opt = getattr(adaptlr, name)(model.parameters())
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen, before)
    assert frozen not in opt.state or name == "Adagrad"  # torch's Adagrad creates state eagerly


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


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_skip_changes_nothing(name):
    model, x, y = model_and_data()
    opt = getattr(adaptlr, name)(model.parameters(), nonfinite="skip")
    train(model, opt, x, y, 2)
    params = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    model[0].weight.grad[0, 0] = math.inf
    model[2].bias.grad[0] = math.nan
    opt.step()
    assert opt.last_step_skipped
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])
    after = opt.state_dict()
    for i, s in state["state"].items():
        for k, v in s.items():
            assert torch.equal(after["state"][i][k], v)
    assert after["param_groups"][0]["adaptlr_steps"] == state["param_groups"][0]["adaptlr_steps"]
    train(model, opt, x, y, 1)
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


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_converges_on_a_tiny_problem(name, dtype):
    """Least squares with 3 unknowns: every optimizer at a sensible lr lowers the loss by 10x in 300 steps."""
    torch.manual_seed(0)
    a = torch.randn(64, 3)
    target = torch.tensor([1.0, -2.0, 0.5])
    b = a @ target
    w = torch.zeros(3, dtype=dtype, requires_grad=True)
    lr = {
        "SGD": 0.05,
        "Adagrad": 0.5,
        "RMSprop": 0.01,
        "Adadelta": 5.0,
        "Adam": 0.05,
        "AdamW": 0.05,
        "Adamax": 0.05,
        "NAdam": 0.05,
        "RAdam": 0.05,
        "Rprop": 0.01,
        "ASGD": 0.05,
    }[name]
    opt = getattr(adaptlr, name)([w], lr=lr)

    def loss():
        return ((a.to(dtype) @ w - b.to(dtype)) ** 2).float().mean()

    start = float(loss())
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert w.dtype == dtype
    assert float(loss()) < start / 10


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name", ["Adam", "NAdam", "RAdam", "Adagrad"])
def test_param_joining_later_has_its_own_step_count(name, engine):
    """A parameter whose gradient appears only from step 4 on keeps its own step (and mu_product), as torch."""
    results, steps = [], []
    for cls, extra in ((getattr(adaptlr, name), ENGINES[engine]), (getattr(torch.optim, name), {})):
        model, x, y = model_and_data()
        opt = cls(model.parameters(), lr=0.01, **extra)
        for t in range(8):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            if t < 3:
                model[2].weight.grad = None
            opt.step()
        results.append([p.detach().clone() for p in model.parameters()])
        steps.append([float(opt.state[p]["step"]) for p in model.parameters()])
    assert steps[0] == steps[1] and steps[0][2] == 5.0 and steps[0][0] == 8.0
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
