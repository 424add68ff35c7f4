"""ReduceOnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau, and composed with schedules."""

import math

import numpy as np
import pytest
import torch

from adaptlr import schedules as S
from adaptlr.controllers import ReduceOnPlateau


def metric_sequence(seed, n=150):
    """A noisy decreasing curve with plateaus and bumps, as validation losses look."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = 1.0 / (1 + t / 20) + 0.3 * (t > 80) * np.exp(-(t - 80) / 30.0)
    vals = base + rng.normal(0, 0.01, n)
    vals[rng.integers(0, n, 10)] = vals[rng.integers(0, n, 10)]  # exact repeats
    return [float(v) for v in vals]


def two_group_sgd():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)


CONFIGS = [
    dict(),
    dict(mode="max", factor=0.5, patience=3),
    dict(patience=2, threshold=0.01, threshold_mode="abs", cooldown=3),
    dict(patience=0, factor=0.3, min_lr=[1e-3, 0.04], cooldown=1),
    dict(patience=1, factor=0.9, eps=2e-3, min_lr=1e-4),
    dict(mode="max", threshold_mode="abs", threshold=0.0, patience=4, cooldown=2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch_reduce_lr_on_plateau(cfg, seed):
    seq = metric_sequence(seed)
    if cfg.get("mode") == "max":
        seq = [-v for v in seq]
    seq[40] = float("nan")  # a nan is never an improvement, in both
    ref_opt, opt = two_group_sgd(), two_group_sgd()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **cfg)
    ours = ReduceOnPlateau(opt, **cfg)
    cuts = 0
    for v in seq:
        ref.step(v)
        cuts += ours.observe(v)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == (
            ref.best,
            ref.num_bad_epochs,
            ref.cooldown_counter,
        ) or np.isnan(v)
    assert cuts > 0
    assert ours.factors[1] == pytest.approx(opt.param_groups[1]["lr"] / 0.5)


def test_validation():
    opt = two_group_sgd()
    for kwargs, name, error in [
        (dict(factor=1.0), "factor", ValueError),
        (dict(mode="mean"), "mode", ValueError),
        (dict(patience=-1), "patience", ValueError),
        (dict(threshold_mode="x"), "threshold_mode", ValueError),
        (dict(min_lr=[0.1]), "min_lr", ValueError),
        (dict(cooldown=1.5), "cooldown", TypeError),  # (a count: a float is the wrong type)
        (dict(eps=-1), "eps", ValueError),
        (dict(eps=math.inf), "eps", ValueError),
    ]:
        with pytest.raises(error, match=f"Invalid {name}"):
            ReduceOnPlateau(opt, **kwargs)


def test_state_dict_round_trip():
    opt = two_group_sgd()
    p = ReduceOnPlateau(opt, patience=2)
    for v in metric_sequence(3)[:60]:
        p.observe(v)
    q = ReduceOnPlateau(two_group_sgd(), patience=2)
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict()


def test_schedule_times_plateau_on_a_torch_optimizer():
    """warmup + cosine (as_torch_scheduler) x reduce-on-plateau, which torch's SequentialLR cannot chain."""
    s = S.warmup(S.cosine(1.0, steps=90), steps=10)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.2)
    sched = S.as_torch_scheduler(opt, s)
    plateau = ReduceOnPlateau(opt, patience=2, factor=0.5)
    losses = [1.0] * 40 + [0.5] * 60
    for t, loss in enumerate(losses):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * s(t) * plateau.factor, rel=1e-12)
        opt.zero_grad()
        w.sum().backward()
        opt.step()
        sched.step()
        plateau.observe(loss)
    assert plateau.factor < 1e-3


def test_schedule_times_plateau_drives_adaptlr_sgd():
    """adaptlr.SGD with a schedule as lr and a plateau factor equals torch SGD given lr = s(t) * factor."""
    from adaptlr.optim import SGD

    s = S.warmup(S.cosine(0.1, steps=50), steps=5)
    torch.manual_seed(0)
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    model = torch.nn.Linear(4, 1).double()
    ref = torch.nn.Linear(4, 1).double()
    ref.load_state_dict(model.state_dict())
    opt = SGD(model.parameters(), lr=s, momentum=0.9, foreach=True)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.0, momentum=0.9)
    plateau = ReduceOnPlateau(opt, patience=1, factor=0.5)
    for t in range(60):
        assert opt.current_lr() == pytest.approx(s(t) * plateau.factor, rel=1e-12)
        ref_opt.param_groups[0]["lr"] = s(t) * plateau.factor
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
        assert opt.param_groups[0]["adaptlr_schedule"] is s  # the schedule is untouched: the factor is apart
        assert opt.param_groups[0]["lr"] == pytest.approx(s(t + 1) * plateau.factor, rel=1e-12)  # the next lr
        plateau.observe(1.0 if t < 20 else 0.5)  # plateaus: cuts at 2, 4, ...
    assert plateau.factor < 0.1
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_composed_schedule_example_runs(tmp_path, monkeypatch):
    """examples/composed_schedule.py (the README picture), shortened."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "composed_schedule.py"
    spec = importlib.util.spec_from_file_location("composed_schedule", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "EPOCHS", 8)
    out = module.main(tmp_path / "c.png")
    assert out.stat().st_size > 10_000
    log = module.run()
    assert len(log["lr"]) == 8 * module.STEPS_PER_EPOCH and log["lr"][:100] == log["schedule"][:100]
