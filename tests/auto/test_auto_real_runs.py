"""adaptlr.Auto in real training code (issue 20): the user's own step on dict batches from a real DataLoader, any
adaptlr optimizer with its own arguments, mixed precision with a real GradScaler, accumulation, clipping, and
where racer states live."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import adaptlr
from adaptlr.auto import GRIDS, Auto, StateStore, TrainStep, move

pytestmark = pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")


class HFStyle(nn.Module):
    """A model called as HF models are: ``model(**batch)`` returns an object with ``.loss``."""

    def __init__(self, dim=8):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 1))
        self.calls = []

    def forward(self, features, labels):
        self.calls.append(torch.is_autocast_enabled("cpu"))
        out = self.net(features)
        return SimpleNamespace(loss=F.mse_loss(out.float(), labels), logits=out)


def _dicts(n=640, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = torch.sin(x @ torch.randn(dim, 1, generator=g)) + 0.05 * torch.randn(n, 1, generator=g)
    rows = [{"features": x[i], "labels": y[i]} for i in range(n)]
    collate = torch.utils.data.default_collate  # dicts of stacked tensors
    train = torch.utils.data.DataLoader(
        rows[:512], batch_size=32, shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(1)
    )
    val = list(torch.utils.data.DataLoader(rows[512:], batch_size=32, collate_fn=collate))
    return train, val


def _step(model, batch):
    return model(**batch).loss


def test_hf_style_model_dict_batches_and_the_users_step():
    train, val = _dicts()
    model = HFStyle()
    result = Auto().fit(model, train, val, steps=120, step_fn=_step, val_cost=1.0)  # (all 128 rows affordable)
    assert result.committed in ("final", "branch", "start") and result.lr in result.lrs
    with torch.no_grad():
        score = sum(float(_step(model, b)) * len(b["labels"]) for b in val) / 128
    assert score == pytest.approx(result.val_score, rel=1e-5)  # val batches scored by the same step
    assert score < 0.5 * float(F.mse_loss(torch.zeros(128, 1), torch.cat([b["labels"] for b in val])))


def test_old_loss_fn_form_still_works_and_wrong_batches_say_how_to_fix():
    train, val = _dicts()
    with pytest.raises(TypeError, match="step_fn"):
        Auto().fit(HFStyle(), F.mse_loss, train, val, 20)
    with pytest.raises(TypeError, match="not both"):
        Auto().fit(HFStyle(), train, val, steps=20, step_fn=_step, loss_fn=F.mse_loss)


def test_batches_move_to_the_model_device_keeping_their_types():
    batch = {"a": torch.ones(2), "b": [torch.zeros(1), (torch.ones(1), 3)], "c": "text"}
    out = move(batch, torch.device("meta"))
    assert out["a"].device.type == "meta" and out["b"][1][0].device.type == "meta"
    assert isinstance(out["b"][1], tuple) and out["b"][1][1] == 3 and out["c"] == "text"


# ---- any inner optimizer --------------------------------------------------------------------------------------
def test_sgd_with_momentum_its_grid_and_its_arguments():
    train, val = _dicts()
    auto = Auto(optimizer=adaptlr.SGD, momentum=0.9, nesterov=True)
    assert auto.lrs == GRIDS["SGD"] == (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    result = auto.fit(HFStyle(), train, val, steps=80, step_fn=_step)
    opt = result.optimizer
    assert isinstance(opt, adaptlr.SGD) and opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["nesterov"]
    assert result.lr in result.lrs


@pytest.mark.parametrize("cls", [adaptlr.Lion, adaptlr.RMSprop, adaptlr.Adafactor, adaptlr.NAdam])
def test_other_adaptlr_optimizers_race(cls):
    train, val = _dicts()
    result = Auto(optimizer=cls, keep=2).fit(HFStyle(), train, val, steps=60, step_fn=_step)
    assert type(result.optimizer) is cls and math.isfinite(result.val_score)
    assert min(result.lrs) <= min(Auto(optimizer=cls).lrs)


def test_learning_rate_free_and_foreign_optimizers_are_refused_with_the_reason():
    for cls in (adaptlr.Prodigy, adaptlr.DAdaptAdam, adaptlr.DoG, adaptlr.ScheduleFreeAdamW):
        with pytest.raises(TypeError, match="learning-rate-free"):
            Auto(optimizer=cls)
    with pytest.raises(TypeError, match="line search"):
        Auto(optimizer=adaptlr.LBFGS)
    with pytest.raises(TypeError, match="not an adaptlr optimizer"):
        Auto(optimizer=torch.optim.AdamW)


# ---- mixed precision, accumulation, clipping ------------------------------------------------------------------
def test_bf16_autocast_in_every_race_and_run_step():
    train, val = _dicts()
    model = HFStyle()
    Auto(lrs=(1e-3, 1e-2), extend=0).fit(model, train, val, steps=40, step_fn=_step, amp=True)
    assert model.calls and all(model.calls)


def test_a_step_the_grad_scaler_skips_is_not_counted():
    """float16 autocast with a real GradScaler: one training step's gradients overflow (a finite loss times 1e36),
    the scaler skips it, Auto takes a fresh batch for that step, and the step is counted once, not twice."""
    train, val = _dicts()
    calls = {"train": 0}

    def step(model, batch):
        loss = model(**batch).loss
        if model.training:
            calls["train"] += 1
            if calls["train"] == 3:
                return loss * 1e36  # finite loss, non-finite scaled gradients
        return loss

    assert TrainStep(step, amp=torch.float16).scaler(torch.device("cpu")) is not None
    result = Auto(lrs=(1e-3, 1e-2), extend=0, keep=1).fit(
        HFStyle(), train, val, steps=40, step_fn=step, amp=torch.float16, val_cost=1.0
    )
    assert calls["train"] == result.train_steps + 1  # the skipped step was taken again, and counted once
    assert all(math.isfinite(p.detach().sum()) for p in result.optimizer.param_groups[0]["params"])


def test_accumulation_takes_that_many_batches_per_step():
    train, val = _dicts()
    sizes = []

    def step(model, batch):
        if model.training:
            sizes.append(len(batch["labels"]))
        return model(**batch).loss

    result = Auto(lrs=(1e-3, 1e-2), extend=0).fit(HFStyle(), train, val, steps=40, step_fn=step, accumulate=3)
    assert len(sizes) == 3 * result.train_steps  # three batches' gradients per optimizer step


def test_clipping_is_applied_in_the_race_and_the_run():
    train, val = _dicts()
    model = HFStyle()
    before = [p.detach().clone() for p in model.parameters()]
    Auto(optimizer=adaptlr.SGD, lrs=(0.1, 1.0), extend=0, keep_best=False).fit(
        model, train, val, steps=40, step_fn=_step, max_grad_norm=1e-8
    )
    moved = max(float((p - q).abs().max()) for p, q in zip(model.parameters(), before, strict=True))
    assert moved < 40 * 1.0 * 1e-8 * 1.01  # no step moves a weight farther than lr x the clipped norm


# ---- where racer states live ----------------------------------------------------------------------------------
def test_host_store_copies_to_cpu_without_sharing_storage():
    model = nn.Linear(4, 2)
    opt = adaptlr.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    store = StateStore("host")
    store.save("a", model, opt)
    tensors = store.tensors()
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    live = {p.untyped_storage().data_ptr() for p in model.parameters()}
    live |= {s.untyped_storage().data_ptr() for st in opt.state.values() for s in st.values() if torch.is_tensor(s)}
    assert not live & {t.untyped_storage().data_ptr() for t in tensors}


@pytest.mark.parametrize("where", ["device", "host", "disk"])
@pytest.mark.parametrize("make", [adaptlr.AdamW, lambda p, lr: adaptlr.SGD(p, lr=lr, momentum=0.9), torch.optim.Adam])
def test_a_loaded_snapshot_is_not_changed_by_the_steps_after_it(where, make, tmp_path):
    # (torch's load_state_dict keeps the tensors it is given where they already fit: training on after a load
    # changed the snapshot in place, so a second rollback to one point restored the first try's moments)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = make(model.parameters(), lr=1e-2)

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            model(torch.randn(3, 4)).pow(2).sum().backward()
            opt.step()

    steps(2)
    store = StateStore(where, tmp_path if where == "disk" else None)
    store.save("mark", model, opt)
    kept = copy.deepcopy(opt.state_dict())
    for _ in range(2):  # (rolled back twice to the same mark)
        store.load("mark", model, opt)
        assert all(
            torch.equal(a, b) if torch.is_tensor(a) else a == b
            for i in kept["state"]
            for a, b in zip(opt.state_dict()["state"][i].values(), kept["state"][i].values(), strict=True)
        )
        steps(3)
    store.close()


def test_disk_offload_keeps_nothing_in_memory_and_races_the_same(tmp_path):
    (train_a, val), (train_b, _) = _dicts(), _dicts()
    held = []
    original = StateStore.save

    def spy(self, key, model, opt=None, scaler=None):
        original(self, key, model, opt, scaler)
        held.append(len(self.tensors()))

    a, b = HFStyle(), HFStyle()
    ra = Auto(offload="device").fit(a, train_a, val, steps=60, step_fn=_step, val_cost=1.0)
    StateStore.save = spy
    try:
        rb = Auto(offload="disk", offload_dir=str(tmp_path)).fit(b, train_b, val, steps=60, step_fn=_step, val_cost=1.0)
    finally:
        StateStore.save = original
    assert held and max(held) == 0  # every snapshot went to a file
    assert not list(tmp_path.iterdir())  # and was removed at the end
    assert ra.lr == rb.lr
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
