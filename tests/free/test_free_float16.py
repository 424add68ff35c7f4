"""Prodigy and half precision (issue 9): float16 is refused with the reason; bfloat16 with a ``d0`` below its
resolution is warned about (the weights never move), and trains with ``d0=1e-4``."""

import pytest
import torch

import adaptlr


def test_prodigy_refuses_float16_saying_why():
    model = torch.nn.Linear(4, 1).half()
    with pytest.raises(TypeError, match="float16.*underflow"):
        adaptlr.Prodigy(model.parameters())
    opt = adaptlr.Prodigy(torch.nn.Linear(4, 1).parameters())
    with pytest.raises(TypeError, match="float16"):
        opt.add_param_group({"params": model.parameters()})
    assert len(opt.param_groups) == 1  # the refused group is not left behind


def _train_bfloat16(opt_factory):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1).to(torch.bfloat16)
    opt = opt_factory(model.parameters())
    x = torch.randn(64, 10).to(torch.bfloat16)
    y = x.sum(1, keepdim=True)
    losses = []
    for _ in range(60):
        loss = (model(x) - y).float().pow(2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(model.weight).all()
    return opt, losses


def test_prodigy_bfloat16_small_d0_is_warned_about_and_stalls():
    with pytest.warns(UserWarning, match="bfloat16.*d0=1e-06"):
        opt, losses = _train_bfloat16(adaptlr.Prodigy)
    assert opt.param_groups[0]["d"] == 1e-6 and losses[-1] == losses[0]  # what the warning says


def test_prodigy_trains_in_bfloat16_with_d0_1e_4(recwarn):
    opt, losses = _train_bfloat16(lambda p: adaptlr.Prodigy(p, d0=1e-4))
    assert not [w for w in recwarn if "bfloat16" in str(w.message)]
    assert opt.param_groups[0]["d"] > 1e-3
    assert losses[-1] < 0.01 * losses[0]
