"""adaptlr's optimizers in timm (the real package): names, layer decay, timm's schedulers and checkpoints."""

from __future__ import annotations

import copy
import io
import math
import os

import pytest
import torch
from _integrations import importable_torchvision

os.environ.setdefault("HF_HUB_OFFLINE", "1")
importable_torchvision()
pytest.importorskip("timm", reason="the integrations extra (timm) is not installed")
import timm  # noqa: E402
import timm.optim  # noqa: E402
import timm.scheduler  # noqa: E402
from timm.models import resume_checkpoint  # noqa: E402
from timm.utils import CheckpointSaver  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr import controllers, schedules  # noqa: E402
from adaptlr.integrations.timm import register_timm  # noqa: E402

NAMES = register_timm()


def _vit(seed=0):
    torch.manual_seed(seed)  # a ViT built from its config: no weights are downloaded
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        num_classes=3,
    )


def _batches(n, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(4, 3, 16, 16, generator=g, dtype=dtype), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)
    ]


def _train_step(model, opt, batch):
    x, y = batch
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_every_name_builds_its_class_and_timm_cannot_split_it():
    model = _vit()
    assert {"adaptlr.adamw", "adaptlr.sgd", "adaptlr.prodigy", "adaptlr.schedulefreeadamw"} <= set(NAMES)
    for name in NAMES:
        assert name.split("_")[-1] == name  # timm reads only the part after the last "_"
        cls = timm.optim.get_optimizer_class(name, bind_defaults=False)
        assert cls.__module__.startswith("adaptlr.")
    opt = timm.optim.create_optimizer_v2(model, "adaptlr.adamw", lr=1e-3, weight_decay=0.05)
    assert type(opt) is adaptlr.AdamW
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]  # timm's no-decay group
    wrapped = timm.optim.create_optimizer_v2(model, "lookahead_adaptlr.adamw", lr=1e-3)
    assert isinstance(wrapped, timm.optim.Lookahead) and type(wrapped._base_optimizer) is adaptlr.AdamW
    # timm's own names are unchanged by register_timm's guard
    assert type(timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3)) is torch.optim.AdamW
    assert type(timm.optim.create_optimizer_v2(model, "lookahead_adamw", lr=1e-3)._base_optimizer) is torch.optim.AdamW
    free = timm.optim.create_optimizer_v2(model, "adaptlr.prodigy")
    assert type(free) is adaptlr.Prodigy and free.param_groups[0]["lr"] == 1.0  # timm passes no lr: its default


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("adaptlr_adamw", "would drop 'adaptlr' and build AdamW from torch.optim"),  # (issue 18) built torch's AdamW
        ("lookahead_adaptlr_adamw", "would drop 'adaptlr' and build AdamW from torch.optim"),
        ("AdaptLR_SGD", "would drop 'adaptlr' and build SGD from torch.optim"),
        ("warm_adaptlr.adamw", "would drop 'warm' and build AdamW from adaptlr"),  # timm drops any prefix
        ("adaptlr_nosuch", "would drop 'adaptlr' and look up 'nosuch', which is not registered"),
        ("adaptlr.nosuch", "'adaptlr.nosuch' is not registered"),
    ],
)
def test_names_timm_would_not_build_as_named_are_refused_with_the_rule(name, says):
    with pytest.raises(ValueError, match="named 'adaptlr.' \\+ the class name in lower case") as info:
        timm.optim.create_optimizer_v2(_vit(), name, lr=1e-3)
    assert says in str(info.value)
    assert "timm splits a name at '_' and builds only the last piece" in str(info.value)


def test_register_timm_guards_the_registry_once():
    create = timm.optim._optim_factory.default_registry.create_optimizer
    assert register_timm() == NAMES
    assert timm.optim._optim_factory.default_registry.create_optimizer is create  # not wrapped twice


def _cosine(t, peak=1e-3, steps=100):
    return peak * 0.5 * (1 + math.cos(math.pi * t / steps))  # (from the formula, not from adaptlr.schedules)


def test_an_adaptlr_schedule_gets_timm_layer_decay_like_timm_adamw_under_its_scheduler():
    # (issue 18) every group got the same lr: timm's lr_scale was ignored under an adaptlr schedule
    ref_model = _vit().double()
    model = copy.deepcopy(ref_model)
    ref_opt = timm.optim.create_optimizer_v2(ref_model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    ref_sched = timm.scheduler.CosineLRScheduler(ref_opt, t_initial=100, lr_min=0.0, t_in_epochs=False)
    ref_sched.step_update(0)
    lr = schedules.cosine(1e-3, steps=100)
    opt = timm.optim.create_optimizer_v2(model, "adaptlr.adamw", lr=lr, weight_decay=0.05, layer_decay=0.75)
    scales = [g["lr_scale"] for g in opt.param_groups]
    assert sorted(set(scales)) == pytest.approx([0.75**3, 0.75**2, 0.75, 1.0])  # depth 2 + embeddings + head
    for step, batch in enumerate(_batches(8, dtype=torch.float64)):
        want = [_cosine(step) * s for s in scales]
        assert [g["lr"] for g in ref_opt.param_groups] == pytest.approx(want, rel=1e-12)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(want, rel=1e-12)  # group by group
        assert [opt.current_lr(i) for i in range(len(scales))] == [g["lr"] for g in opt.param_groups]
        _train_step(ref_model, ref_opt, batch)
        _train_step(model, opt, batch)
        ref_sched.step_update(step + 1)
        for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):  # step by step
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-13)

    # a checkpoint resumes the scaled schedules (plain data, weights_only) into a freshly built optimizer
    sd = opt.state_dict()
    model2 = copy.deepcopy(model)
    opt2 = timm.optim.create_optimizer_v2(model2, "adaptlr.adamw", lr=lr, weight_decay=0.05, layer_decay=0.75)
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([_cosine(8) * s for s in scales], rel=1e-12)

    # a float lr keeps timm's meaning: lr_scale acts through a timm scheduler only, for timm's optimizers and ours
    floats = timm.optim.create_optimizer_v2(_vit(), "adaptlr.adamw", lr=1e-3, layer_decay=0.75)
    assert [g["lr"] for g in floats.param_groups] == [1e-3] * len(scales)

    # timm's Lookahead shares the param groups: the same lrs
    wrapped = timm.optim.create_optimizer_v2(_vit(), "lookahead_adaptlr.adamw", lr=lr, layer_decay=0.75)
    assert [g["lr"] for g in wrapped.param_groups] == pytest.approx([_cosine(0) * s for s in scales], rel=1e-12)


def _with_timm_scheduler(name, model, **kwargs):
    opt = timm.optim.create_optimizer_v2(model, name, lr=0.05, layer_decay=0.5, **kwargs)
    sched = timm.scheduler.create_scheduler_v2(
        opt, sched="cosine", num_epochs=3, warmup_epochs=1, warmup_lr=1e-3, step_on_epochs=False, updates_per_epoch=4
    )[0]
    return opt, sched


def test_layer_decay_and_timm_schedulers_give_timm_per_layer_lr_applied_once():
    ref_model = _vit().double()
    model = copy.deepcopy(ref_model)
    # timm's "momentum" is torch's SGD (nesterov off); momentum 0 makes the applied lr visible: dp = -lr g
    ref_opt, ref_sched = _with_timm_scheduler("momentum", ref_model, momentum=0.0)
    opt, sched = _with_timm_scheduler("adaptlr.sgd", model, momentum=0.0)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # depth 2 + embeddings + head: 0.5 ** (3 - layer)
    for step, batch in enumerate(_batches(12, dtype=torch.float64)):
        want = [g["lr"] for g in ref_opt.param_groups]
        assert [g["lr"] for g in opt.param_groups] == want
        assert [opt.current_lr(i) for i in range(len(want))] == want
        before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
        _train_step(ref_model, ref_opt, batch)
        _train_step(model, opt, batch)
        for group, old, lr in zip(opt.param_groups, before, want, strict=True):
            for p, p0 in zip(group["params"], old, strict=True):
                if p.grad is not None and p.grad.abs().max() > 0:
                    torch.testing.assert_close(p0 - p, lr * p.grad, rtol=1e-9, atol=1e-15)
        ref_sched.step_update(step + 1)
        sched.step_update(step + 1)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_adamw_matches_torch_under_layer_decay():
    ref_model = _vit().double()
    model = copy.deepcopy(ref_model)
    ref_opt, ref_sched = _with_timm_scheduler("adamw", ref_model, weight_decay=0.05)
    opt, sched = _with_timm_scheduler("adaptlr.adamw", model, weight_decay=0.05)
    for step, batch in enumerate(_batches(8, dtype=torch.float64)):
        _train_step(ref_model, ref_opt, batch)
        _train_step(model, opt, batch)
        ref_sched.step_update(step + 1)
        sched.step_update(step + 1)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


SCHEDULE = schedules.warmup(schedules.cosine(0.05, steps=16), steps=4)


def test_a_timm_scheduler_around_a_schedule_lr_is_refused_at_the_step():
    model = _vit()
    opt = timm.optim.create_optimizer_v2(model, "adaptlr.adamw", lr=SCHEDULE)
    assert opt.param_groups[0]["lr"] == SCHEDULE(0)  # a number timm's scheduler can read
    sched = timm.scheduler.create_scheduler_v2(
        opt, sched="cosine", num_epochs=2, step_on_epochs=False, updates_per_epoch=4
    )[0]
    sched.step_update(1)
    with pytest.raises(RuntimeError, match="schedule"):
        _train_step(model, opt, _batches(1)[0])


def _run(model, opt, plateau, batches, start, losses, tmp_path=None, save_at=None):
    """Steps ``start..`` with the controller fed ``losses[epoch]`` every 4 steps; returns (applied, lrs)."""
    applied = []
    for i, batch in enumerate(batches[start:], start):
        lr = opt.current_lr(0)
        p = next(model.parameters())
        before = p.detach().clone()
        _train_step(model, opt, batch)
        applied.append(((before - p.detach()) / p.grad).flatten()[0].item())
        assert applied[-1] == pytest.approx(lr, rel=1e-9)
        if (i + 1) % 4 == 0:
            plateau.observe(losses[(i + 1) // 4 - 1])
            if save_at == i + 1:
                CheckpointSaver(model, opt, checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path)).save_checkpoint(
                    epoch=(i + 1) // 4 - 1
                )
                torch.save(plateau.state_dict(), tmp_path / "plateau.pt")
    return applied


def test_schedule_and_controller_survive_timm_checkpoints_bit_identically(tmp_path):
    batches = _batches(20, dtype=torch.float64)
    losses = [1.0, 1.0, 1.0, 0.5, 0.5]  # patience 0: a cut after epochs 2 and 3 (no improvement), none after 4

    def build():
        model = _vit().double()
        opt = timm.optim.create_optimizer_v2(model, "adaptlr.sgd", lr=SCHEDULE, momentum=0.0)
        return model, opt, controllers.ReduceOnPlateau(opt, patience=0, factor=0.5)

    model, opt, plateau = build()
    applied = _run(model, opt, plateau, batches, 0, losses, tmp_path, save_at=12)
    factors = [1.0] * 8 + [0.5] * 4 + [0.25] * 8
    want = [SCHEDULE(t) * f for t, f in zip(range(20), factors, strict=True)]
    assert applied == pytest.approx(want, rel=1e-9)

    model2, opt2, plateau2 = build()
    [path] = [p for p in tmp_path.iterdir() if p.name.startswith("checkpoint")]
    assert resume_checkpoint(model2, str(path), opt2) == 3  # timm's default: torch.load(weights_only=True)
    plateau2.load_state_dict(torch.load(tmp_path / "plateau.pt"))
    assert opt2.current_lr(0) == pytest.approx(want[12], rel=1e-12)
    assert plateau2.factor == 0.25
    resumed = _run(model2, opt2, plateau2, batches, 12, losses)
    assert resumed == applied[12:]
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
