"""adaptlr.Auto: the loop-level API's contract (commits or restores the model, counts its cost, deterministic),
its choices on small problems, and the lab method ``auto``."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import adaptlr
from adaptlr.auto import DEFAULT_LRS, Auto, fit


def _problem(seed=0, n=640, dim=8, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g)
    y = x @ w + noise * torch.randn(n, 1, generator=g)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    val = [(x[512:], y[512:])]
    return train, val


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(8, 1)


def _val_loss(model, val):
    with torch.no_grad():
        return float(F.mse_loss(model(val[0][0]), val[0][1]))


def test_cost_within_budget_and_as_planned():
    train, val = _problem()
    auto = Auto()
    result = auto.fit(_model(), F.mse_loss, train, val, steps=200)
    assert result.cost <= 1.5 + 1e-9
    vcost = 128 / (3 * 32)  # 128 validation rows, batches of 32: a forward pass is a third of a step
    assert result.cost == pytest.approx(auto.planned_cost(200, vcost))
    p = result.plan
    assert 1 <= p["rung1"] < p["rung2"] < 200 and p["branch"] >= 1
    # every step counted: 7 racers to rung 1, 3 survivors to rung 2 and their branches, the winner to the end
    steps = 7 * p["rung1"] + 3 * (p["rung2"] - p["rung1"]) + 3 * p["branch"] + (200 - p["rung2"])
    assert result.cost_steps == pytest.approx(steps + (7 + 3 + 1) * vcost)
    assert result.lr in DEFAULT_LRS and result.effective_lr() == result.lr
    # the plan fills the budget whatever the evaluation cost
    for steps, vc in [(100, 0.0), (1000, 5.0), (5000, 50.0)]:
        assert auto.planned_cost(steps, vc) <= 1.5 + 1e-9
        assert auto.planned_cost(steps, vc) > 1.4


def test_deterministic_and_committed():
    train, val = _problem()
    a, b = _model(), _model()
    ra = Auto().fit(a, F.mse_loss, train, val, steps=150)
    rb = Auto().fit(b, F.mse_loss, train, val, steps=150)
    assert ra.lr == rb.lr and ra.committed == rb.committed
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert [r.scores for r in ra.racers] == [r.scores for r in rb.racers]
    # the committed model is the one whose validation score was reported
    assert _val_loss(a, val) == pytest.approx(ra.val_score, rel=1e-6)
    # its optimizer holds the winner's state and is an adaptlr.AdamW (Auto's step is AdamW's)
    assert isinstance(ra.optimizer, adaptlr.AdamW)
    state = ra.optimizer.state[next(iter(a.parameters()))]
    assert int(state["step"]) == 150


def test_fit_function_equals_the_class_and_accepts_options():
    train, val = _problem()
    a, b = _model(), _model()
    ra = fit(a, F.mse_loss, train, val, 120, keep=2, tie=0.0)
    rb = Auto(keep=2, tie=0.0).fit(b, F.mse_loss, train, val, 120)
    assert ra.lr == rb.lr and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert sum(r.state is None for r in ra.racers) == 7  # no racer's copy is kept after fit


def test_beats_a_bad_fixed_learning_rate():
    train, val = _problem(noise=0.05)
    auto_model, fixed = _model(), _model()
    Auto().fit(auto_model, F.mse_loss, train, val, steps=200)
    opt = torch.optim.AdamW(fixed.parameters(), lr=1e-4)  # the same 200 steps at a bad lr
    for i in range(200):
        x, y = train[i % len(train)]
        opt.zero_grad()
        F.mse_loss(fixed(x), y).backward()
        opt.step()
    good, bad = _val_loss(auto_model, val), _val_loss(fixed, val)
    assert good < 0.1 * bad and good < 0.02  # noise floor 0.0025


def test_model_mode_and_buffers_restored_when_everything_diverges():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 1)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.lin(self.bn(x)) * 1e30

    torch.manual_seed(0)
    model = Exploding()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = _problem()
    with pytest.raises(FloatingPointError, match="diverged"):
        Auto(lrs=(1.0, 10.0), keep=1).fit(model, lambda out, y: (out - y).pow(2).mean() * 1e30, train, val, 60)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_eval_mode_kept_and_batchnorm_buffers_committed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    model.eval()
    train, val = _problem()
    result = Auto().fit(model, F.mse_loss, train, val, steps=100)
    assert not model.training
    assert int(model[1].num_batches_tracked) > 0  # the committed lineage's running statistics
    assert _val_loss(model, val) == pytest.approx(result.val_score, rel=1e-6)


def test_param_groups_and_lr_scale():
    train, val = _problem()
    model = _model()
    bias0 = model.bias.detach().clone()
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr_scale": 0.0, "weight_decay": 0.0}]
    result = Auto().fit(model, F.mse_loss, train, val, steps=100, params=groups)
    assert torch.equal(model.bias.detach(), bias0)  # lr x 0: never moved
    assert result.optimizer.param_groups[1]["weight_decay"] == 0.0
    assert result.optimizer.param_groups[0]["weight_decay"] == 0.01


def test_val_as_a_function_and_a_dataloader_as_train():
    train, val = _problem()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])),
        batch_size=32,
    )
    calls = []

    def score(m):
        calls.append(m.training)
        return _val_loss(m, val)

    result = Auto().fit(_model(), F.mse_loss, loader, score, steps=100, val_cost=2.0)
    assert calls and not any(calls)  # scored in eval mode
    assert len(calls) == 7 + 3 + 1
    assert result.cost <= 1.5 + 1e-9 and math.isfinite(result.val_score)


def test_on_step_replays_then_follows_the_winner():
    train, val = _problem()
    seen = []
    result = Auto().fit(
        _model(), F.mse_loss, train, val, steps=100, on_step=lambda s, loss, lr, live: seen.append((s, live, lr))
    )
    assert [s for s, _, _ in seen] == list(range(1, 101))
    assert not any(live for s, live, _ in seen if s <= result.plan["rung2"])
    assert all(live for s, live, _ in seen if s > result.plan["rung2"])
    assert max(lr for _, _, lr in seen) == pytest.approx(result.lr)
    assert seen[-1][2] < 0.1 * result.lr  # the cooldown ends near 0


def test_nonfinite_policy_and_validation():
    train, val = _problem()
    result = Auto(nonfinite="skip").fit(_model(), F.mse_loss, train, val, steps=60)
    assert result.optimizer.nonfinite == "skip"
    for kwargs, match in [
        ({"lrs": ()}, "Invalid lrs"),
        ({"lrs": (1e-3, -1.0)}, "Invalid lrs"),
        ({"budget": 1.0}, "Invalid budget"),
        ({"keep": 0}, "Invalid keep"),
        ({"rung1": 0.2, "rung2": 0.1}, "Invalid rungs"),
        ({"warmup": 1.5}, "Invalid warmup"),
        ({"tie": -0.1}, "Invalid tie"),
        ({"nonfinite": "ignore"}, "Invalid nonfinite"),
    ]:
        with pytest.raises(ValueError, match=match):
            Auto(**kwargs)


def test_near_tie_goes_to_the_lower_learning_rate():
    from adaptlr.auto import Racer

    auto = Auto(tie=0.02)
    a, b, c = Racer(1e-3, scores=[(1, 1.01)]), Racer(3e-3, scores=[(1, 1.0)]), Racer(1e-2, scores=[(1, 0.5)])
    assert auto._choose([a, b]) is a  # within 2%: the lower lr
    assert auto._choose([a, b, c]) is c  # a clear winner stays the winner
    assert Auto(tie=0.0)._choose([a, b]) is b


# ---- in the lab -------------------------------------------------------------------------------------------
def test_lab_method_auto_trains_and_logs_validation():
    from adaptlr.lab.runner import train

    result = train("linreg", "auto", seed=0, steps=100)
    assert result["steps_done"] == 100 and not result["diverged"]
    assert result["cost"] <= 1.5 and result["auto_lr"] in DEFAULT_LRS
    last = result["points"][-1]
    assert last["step"] == 100 and last["metric"] == result["final_metric"]
    assert last["val_metric"] == result["final_val_metric"] and last["val_loss"] is not None
    assert result["final_metric"] < 0.05  # linreg's MSE floor is 0.01


def test_auto_through_adaptlr_compare(tmp_path, capsys):
    from adaptlr.lab.cli import main
    from adaptlr.lab.store import Store

    store = str(tmp_path / "runs.db")
    args = [
        "compare",
        "--task",
        "linreg",
        "--methods",
        "auto(keep=2),adam(lr=0.01)",
        "--seeds",
        "1",
        "--steps",
        "60",
        "--store",
        store,
        "--no-progress",
        "--no-report",
    ]
    assert main(args) == 0
    with Store(store) as st:
        runs = {r["method"]: r for r in st.runs("linreg")}
        assert set(runs) == {"auto(keep=2)", "adam(lr=0.01)"}
        auto = runs["auto(keep=2)"]
        assert auto["final_val_metric"] is not None and auto["final_metric"] is not None
        assert st.points(auto["id"])[-1]["val_metric"] == pytest.approx(auto["final_val_metric"])


def test_warns_when_validation_alone_exceeds_the_budget():
    train, val = _problem()
    with pytest.warns(UserWarning, match="no room"):
        result = Auto().fit(_model(), F.mse_loss, train, val, steps=20, val_cost=5.0)
    assert result.cost > 1.5  # honest accounting: counted, not hidden
    assert Auto(branch=0.0).planned_cost(200, 1.5) <= 1.5  # one-step minimums are trimmed to fit
