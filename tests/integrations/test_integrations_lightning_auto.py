"""adaptlr.integrations.lightning.AutoLR (the real Lightning package): Auto's race inside a Lightning fit."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from _integrations import importable_torchvision
from torch.nn import functional as F

importable_torchvision()
if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
    pytest.skip("the integrations extra (pytorch-lightning) is not installed", allow_module_level=True)

from adaptlr.integrations import lightning as al  # noqa: E402

pl = al.pl

import adaptlr  # noqa: E402
from adaptlr.auto import Auto  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*(does not have many workers|log_every_n_steps|LeafSpec).*")

STEPS = 100


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


class _Module(pl.LightningModule):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.net = _net(seed)
        self.lightning_steps = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return adaptlr.AdamW(self.parameters(), lr=1e-3, weight_decay=0.01)


class _Record(pl.Callback):
    """The lr every Lightning optimizer step uses (group["lr"] as the step reads it) at its global step."""

    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append((trainer.global_step, float(optimizer.param_groups[0]["lr"]), optimizer.current_lr(0)))


def _data(n_train: int, batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + 32, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n_train + 32, 1, generator=g)
    ds = torch.utils.data.TensorDataset
    train = torch.utils.data.DataLoader(ds(x[:n_train], y[:n_train]), batch_size=batch)
    val = torch.utils.data.DataLoader(ds(x[n_train:], y[n_train:]), batch_size=16)
    return train, val


def _trainer(callbacks, steps=STEPS, **kw):
    return pl.Trainer(
        **kw,
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


def _cosine(step, peak, total):
    """Auto's schedule from its docstring: a linear warmup over w = round(0.05 T) steps from peak / w, then a cosine
    from peak to 0 over the T - w steps left."""
    w = round(0.05 * total)
    if step < w:
        return peak / w + (peak - peak / w) * step / w
    return peak * 0.5 * (1 + math.cos(math.pi * min(step - w, total - w) / (total - w)))


def _val_fn(val):
    batches = [tuple(b) for b in val]

    def score(net):
        total = sum(float(F.mse_loss(net(x), y)) * len(x) for x, y in batches)
        return total / sum(len(x) for x, _ in batches)

    return score


def _reference(train, val, seed=0):
    """Auto.fit on the same batches, scored like validation_step's logged val_loss, at the same fixed val cost."""
    net = _net(seed)
    result = Auto().fit(net, F.mse_loss, [tuple(b) for b in train], _val_fn(val), steps=STEPS, val_cost=1.0)
    return net, result


def _fit(train, val, seed=0, extra=(), trainer_kw=None, module=None):
    module = _Module(seed) if module is None else module
    cb, rec = al.AutoLR(val_cost=1.0), _Record()
    trainer = _trainer([*extra, rec, cb], **(trainer_kw or {}))
    trainer.fit(module, train, val)
    return module, cb, rec, trainer


def test_minibatches_same_choice_as_auto_fit_schedule_and_cost():
    train, val = _data(64, 16)
    _, ref = _reference(train, val)
    module, cb, rec, trainer = _fit(train, val)
    # the race is Auto's own code on the same batches: the same plan, scores and choice, bit for bit
    assert cb.result.committed == "race"
    assert cb.plan == ref.plan.as_dict()
    assert [(r.lr, r.scores) for r in cb.result.racers] == [(r.lr, r.scores) for r in ref.racers]
    assert cb.lr == ref.lr
    s2 = cb.plan["rung2"]
    # Lightning trained exactly the rest of the budget, on the committed schedule, on the run's clock
    assert trainer.global_step == STEPS
    assert [s for s, _, _ in rec.lrs] == list(range(s2, STEPS))
    for step, lr, current in rec.lrs:
        assert lr == current == pytest.approx(_cosine(step, cb.lr, STEPS), rel=1e-12, abs=1e-15)
    opt = trainer.optimizers[0]
    assert opt.param_groups[0]["adaptlr_steps"] == STEPS
    # the same accounting as Auto.fit (race + remaining steps + the keep-best pass), within the 1.5 budget
    assert cb.cost == pytest.approx(ref.cost, rel=1e-12)
    assert cb.cost <= 1.5
    assert cb.committed in ("final", "branch")


def test_full_batch_run_equals_auto_fit():
    """With one batch per epoch every step sees the same data in both loops: the whole run is Auto.fit's."""
    train, val = _data(64, 64)
    ref_net, ref = _reference(train, val)
    module, cb, _, _ = _fit(train, val)
    assert cb.lr == ref.lr
    assert cb.committed == ref.committed == "final"  # (so the parameters below are Lightning's continuation's)
    assert cb.val_score == ref.val_score
    assert cb.cost == pytest.approx(ref.cost, rel=1e-12)
    for (k, a), b in zip(module.net.state_dict().items(), ref_net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert ref.optimizer.param_groups[0]["adaptlr_steps"] == STEPS


def test_committed_state_and_no_hidden_state():
    train, val = _data(64, 16)
    module, cb, _, trainer = _fit(train, val)
    assert "log" not in module.__dict__ and "log_dict" not in module.__dict__  # the race's log patch is gone
    assert module.training  # (Lightning's mode after fit: the race's eval passes left no mode behind)
    assert cb.result.commit is None  # the race's states (the keep-best copies) are let go once committed
    opt = trainer.optimizers[0]
    assert cb.result.optimizer is opt  # the race's optimizer copy is not kept beside the trainer's
    assert all("adaptlr_auto_lr_scale" not in g for g in opt.param_groups)
    assert all(int(s["step"]) == STEPS for s in opt.state.values())  # the race's s2 steps + Lightning's
    state = cb.state_dict()
    assert {k: state[k] for k in ("lr", "plan", "cost_steps")} == {
        "lr": cb.lr,
        "plan": cb.plan,
        "cost_steps": cb.cost_steps,
    }
    other = al.AutoLR()
    other.load_state_dict(state)
    assert (other.lr, other.plan, other.cost) == (cb.lr, cb.plan, cb.cost)


@pytest.mark.parametrize("watch", [0.0, 0.2])
def test_keep_best_commits_the_branch_or_the_watched_state_when_the_end_validates_worse(watch):
    # unwatched: the winner's annealed branch; watched: the run's best state at a watch point (Lightning drove the
    # run: AutoLR validated it there), which validates better than the branch here
    train, val = _data(64, 16)
    spoil = {"on": False}

    def val_loss(module, batch):
        x, y = batch
        loss = F.mse_loss(module.net(x), y)
        return loss + 1e6 if spoil["on"] else loss

    class _Spoil(pl.Callback):  # runs before AutoLR's on_train_end: the end of the run now validates badly
        def on_train_end(self, trainer, pl_module):
            commit = cb.result.commit
            spoil["on"] = True
            self.history, self.branch_score = list(commit.history), commit.winner.score
            self.best = "watch" if self.history and min(v for _, v in self.history) < self.branch_score else "branch"
            key = commit.winner.key + "-branch" if self.best == "branch" else "watch"
            self.kept = {k: v.clone() for k, v in commit.race.store.model_state(key).items()}
            self.end = {k: v.clone() for k, v in pl_module.state_dict().items()}

    module, spy = _Module(), _Spoil()
    cb = al.AutoLR(Auto(watch=watch), val_loss=val_loss, val_cost=0.1)
    _trainer([spy, cb]).fit(module, train, val)
    assert cb.committed == spy.best == ("watch" if watch else "branch")  # (deterministic: val_cost given)
    watched = [s for s in (20, 40, 60, 80) if s > cb.plan["rung2"]] if watch else []  # (after the branch point)
    assert [s for s, _ in spy.history] == watched
    assert cb.val_score == min([spy.branch_score] + [v for _, v in spy.history])
    assert cb.result.commit is None  # the copies are let go once committed
    assert any(not torch.equal(spy.end[k], spy.kept[k]) for k in spy.end)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, spy.kept[k], rtol=0, atol=0)


def test_trainer_clipping_accumulation_and_precision_are_raced_with():
    """Issue 20: AutoLR raced unclipped whatever gradient_clip_val said."""
    train, val = _data(64, 16)

    class _SGDModule(_Module):
        def __init__(self):
            super().__init__()
            self.autocast = []

        def training_step(self, batch, batch_idx):
            self.autocast.append(torch.is_autocast_enabled("cpu"))
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            return adaptlr.SGD(self.parameters(), lr=0.1)

    auto = Auto(optimizer=adaptlr.SGD, lrs=(0.01, 0.1), extend=0)
    module = _SGDModule()
    start = {k: v.clone() for k, v in module.state_dict().items()}
    cb = al.AutoLR(auto)
    _trainer([cb], steps=40, gradient_clip_val=1e-9, accumulate_grad_batches=2, precision="bf16-mixed").fit(
        module, train, val
    )
    race = cb.result
    assert all(module.autocast)  # every race step under the trainer's precision
    # clipped to a 1e-9 norm, SGD barely moves: every racer scored as the start
    scores = [s for r in race.racers for _, s in r.scores]
    assert max(scores) - min(scores) < 1e-6
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=1e-5)


def test_unsupported_trainer_settings_are_refused_in_one_line():
    train, val = _data(32, 16)
    with pytest.raises(ValueError, match="gradient-norm clipping"):
        _trainer([al.AutoLR()], steps=20, gradient_clip_val=1.0, gradient_clip_algorithm="value").fit(
            _Module(), train, val
        )


def test_requirements_are_checked():
    train, val = _data(32, 16)

    class _SGD(_Module):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="AdamW"):
        _trainer([al.AutoLR()], steps=20).fit(_SGD(), train, val)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[al.AutoLR()],
    )
    with pytest.raises(ValueError, match="max_steps"):
        trainer.fit(_Module(), train, val)
    with pytest.raises(TypeError, match="adaptlr.Auto"):
        al.AutoLR(auto="auto")


@pytest.mark.filterwarnings("ignore:.*(ckpt_path|not resumable).*")
def test_resume_continues_the_committed_schedule_without_racing_again(tmp_path):
    train, val = _data(64, 16)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=50, save_top_k=-1)
    first, rec1 = al.AutoLR(), _Record()
    trainer = pl.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[rec1, first, ckpt],
    )
    trainer.fit(_Module(), train, val)
    path = next(p for p in tmp_path.iterdir() if "step=50" in p.name)
    second, rec2 = al.AutoLR(), _Record()
    _trainer([rec2, second]).fit(_Module(seed=1), train, val, ckpt_path=str(path))
    assert second.result is None and second.lr == first.lr and second.plan == first.plan  # no second race
    assert rec2.lrs == [r for r in rec1.lrs if r[0] >= 50] and rec2.lrs[0][0] == 50
    assert second.cost < first.cost  # (no keep-best pass)
