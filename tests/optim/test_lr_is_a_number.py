"""group["lr"] is always the number the next step uses; checkpoints are plain data (issues 9 and 12)."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

import adaptlr
from adaptlr import schedules
from adaptlr.controllers import ReduceOnPlateau


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def _train(opt, model, steps, plateau=None, loss_value=1.0):
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)), torch.zeros(8, 1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if plateau is not None:
            plateau.observe(loss_value)


@pytest.mark.parametrize("name", ["Adam", "SGD", "Prodigy", "ScheduleFreeAdamW", "Adafactor"])
def test_state_dict_with_a_schedule_and_a_controller_loads_with_weights_only(name):
    model = _model()
    opt = getattr(adaptlr, name)(model.parameters(), lr=schedules.warmup(schedules.cosine(1e-2, 50), 5))
    plateau = ReduceOnPlateau(opt, patience=0)
    _train(opt, model, 6, plateau)
    assert isinstance(opt.param_groups[0]["lr"], float)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "plateau": plateau.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # no allow-listing: plain data only
    assert "adaptlr_schedule" not in loaded["opt"]["param_groups"][0]
    assert loaded["opt"]["param_groups"][0]["adaptlr_schedule_spec"] == opt.param_groups[0]["adaptlr_schedule"].spec
    fresh = getattr(adaptlr, name)(_model().parameters(), lr=0.5)  # built with another lr: the checkpoint wins
    fresh.load_state_dict(loaded["opt"])
    assert fresh.param_groups[0]["adaptlr_schedule"] == opt.param_groups[0]["adaptlr_schedule"]
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_resume_through_weights_only_continues_bit_identically():
    def run(resume_at):
        model = _model()
        opt = adaptlr.AdamW(model.parameters(), lr=schedules.warmup(schedules.cosine(1e-2, 40), 4))
        plateau = ReduceOnPlateau(opt, patience=1)
        for t in range(12):
            if t == resume_at:
                buffer = io.BytesIO()
                torch.save({"m": model.state_dict(), "o": opt.state_dict(), "p": plateau.state_dict()}, buffer)
                buffer.seek(0)
                ck = torch.load(buffer, weights_only=True)
                model = _model()
                model.load_state_dict(ck["m"])
                opt = adaptlr.AdamW(model.parameters(), lr=schedules.warmup(schedules.cosine(1e-2, 40), 4))
                opt.load_state_dict(ck["o"])
                plateau = ReduceOnPlateau(opt, patience=1)
                plateau.load_state_dict(ck["p"])
            _train(opt, model, 1, plateau, loss_value=1.0)
        return [p.detach() for p in model.parameters()], opt.param_groups[0]["lr"]

    (a, lr_a), (b, lr_b) = run(None), run(7)
    assert lr_a == lr_b
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_a_controllers_cut_survives_moving_the_state_dict_into_torch_optim():
    """issue 9: the effective lr jumped from 2.5e-4 back to 1e-3 when the state went to torch.optim."""
    model = _model()
    opt = adaptlr.Adam(model.parameters(), lr=1e-3)
    plateau = ReduceOnPlateau(opt, patience=0, factor=0.5)
    _train(opt, model, 3, plateau)
    assert opt.current_lr() == pytest.approx(2.5e-4)
    ref = torch.optim.Adam(model.parameters(), lr=1e-3)
    ref.load_state_dict(opt.state_dict())
    assert ref.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_a_checkpoint_with_a_schedule_object_in_lr_still_loads_with_a_warning():
    model = _model()
    s = schedules.cosine(1e-2, 20)
    opt = adaptlr.Adam(model.parameters(), lr=s)
    _train(opt, model, 3)
    old = opt.state_dict()  # rewritten as adaptlr 0.1 wrote it: the object in lr, "steps" and "lr_scale"
    group = old["param_groups"][0]
    group["lr"] = group.pop("adaptlr_schedule_spec") and s
    group["steps"], group["lr_scale"] = group.pop("adaptlr_steps"), group.pop("adaptlr_lr_scale")
    group.pop("adaptlr_lr_written", None)
    fresh = adaptlr.Adam(_model().parameters(), lr=1e-3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fresh.load_state_dict(old)
    assert any(issubclass(x.category, DeprecationWarning) for x in w)
    assert fresh.param_groups[0]["adaptlr_schedule"] == s and fresh.param_groups[0]["adaptlr_steps"] == 3
    assert fresh.param_groups[0]["lr"] == pytest.approx(s(3))


def test_a_torch_lr_scheduler_around_a_scheduled_optimizer_raises_instead_of_composing():
    model = _model()
    opt = adaptlr.SGD(model.parameters(), lr=schedules.cosine(0.1, 20))
    torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # sets group["initial_lr"]
    with pytest.raises(RuntimeError, match="LRScheduler"):
        _train(opt, model, 1)
    # a number lr composes with torch's schedulers as in torch
    opt2 = adaptlr.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    _train(opt2, model, 1)
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.05) == opt2.current_lr()


def test_timm_style_lr_scale_is_not_applied_by_adaptlr():
    model = _model()
    opt = adaptlr.SGD([{"params": model.parameters(), "lr_scale": 0.25}], lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    _train(opt, model, 1)
    grads = [p.grad for p in model.parameters()]
    for b, p, g in zip(before, model.parameters(), grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * g)  # the lr is group["lr"]; lr_scale is timm's to apply
