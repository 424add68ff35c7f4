"""adaptlr in Lightning (the real package): schedules, controllers, Schedule-Free, LR finder, effective lr."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from _integrations import importable_torchvision

importable_torchvision()
if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
    pytest.skip("the integrations extra (pytorch-lightning) is not installed", allow_module_level=True)

from adaptlr.integrations import lightning as al  # noqa: E402

pl = al.pl

import adaptlr  # noqa: E402
from adaptlr import controllers, schedules  # noqa: E402

# Lightning's advice for real runs (more dataloader workers, log_every_n_steps vs. a 4-batch epoch) is noise here
pytestmark = pytest.mark.filterwarnings("ignore:.*(does not have many workers|log_every_n_steps|LeafSpec).*")

SCHEDULE = schedules.warmup(schedules.cosine(0.05, steps=14), steps=2)
STEPS_PER_EPOCH = 4


class _Logger(pl.loggers.logger.Logger):
    """Keeps every logged metric in memory: {name: [(step, value), ...]}."""

    def __init__(self):
        super().__init__()
        self.metrics = {}

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))


class _Applied(pl.Callback):
    """The lr each training step applied, measured from the first parameter: SGD without momentum moves it by
    exactly -lr * grad (float64)."""

    def __init__(self):
        self.applied, self.val_losses = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = next(pl_module.parameters()).detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        p = next(pl_module.parameters())
        g = p.grad.flatten()
        i = int(torch.argmax(g.abs()))
        self.applied.append(float((self.before.flatten()[i] - p.detach().flatten()[i]) / g[i]))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_losses.append(float(trainer.callback_metrics["val_loss"]))


def _data(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]], dtype=torch.float64) + 0.1 * torch.randn(
        n, 1, generator=g, dtype=torch.float64
    )
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n // STEPS_PER_EPOCH)


class _Module(pl.LightningModule):
    def __init__(self, make_optimizers, bn=False):
        super().__init__()
        torch.manual_seed(0)
        layers = (
            [torch.nn.Linear(4, 8)]
            + ([torch.nn.BatchNorm1d(8)] if bn else [])
            + [torch.nn.Tanh(), torch.nn.Linear(8, 1)]
        )
        self.net = torch.nn.Sequential(*layers).double()
        self.make_optimizers = make_optimizers
        self.val_params = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.val_params.append(torch.cat([p.detach().flatten().clone() for p in self.parameters()]))
        self.log("val_loss", torch.nn.functional.mse_loss(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return self.make_optimizers(self)


def _trainer(tmp_path, epochs, callbacks=(), **kwargs):
    logger = _Logger()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[ckpt, *callbacks],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
        log_every_n_steps=1,
        **kwargs,
    )
    return trainer, logger


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _plateau_oracle(val_losses, **kwargs):
    """The factor after each observation, from torch's own ReduceLROnPlateau."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for v in val_losses:
        sched.step(v)
        out.append(opt.param_groups[0]["lr"])
    return out


PLATEAU = {"mode": "min", "factor": 0.5, "patience": 0, "threshold": 0.3}  # a 30% drop counts: cuts come early


def _expected(val_losses, epochs):
    factors = [1.0] + _plateau_oracle(val_losses, **PLATEAU)
    return [SCHEDULE(t) * factors[t // STEPS_PER_EPOCH] for t in range(epochs * STEPS_PER_EPOCH)]


def test_controller_scheduler_in_configure_optimizers_applies_and_logs_schedule_times_cuts(tmp_path):
    def make(module):
        opt = adaptlr.SGD(module.parameters(), lr=SCHEDULE)
        plateau = al.ControllerScheduler(controllers.ReduceOnPlateau(opt, **PLATEAU))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}

    applied = _Applied()
    trainer, logger = _trainer(tmp_path, 4, [applied, al.LearningRateMonitor(logging_interval="step")])
    module = _Module(make)
    trainer.fit(module, _data(), _data(1))
    want = _expected(applied.val_losses, 4)
    assert min(want[i] / SCHEDULE(i) for i in range(1, 16)) < 1  # a cut happened
    assert applied.applied == pytest.approx(want, rel=1e-9)  # (1) schedule x controller, step by step
    logged = [v for _, v in logger.metrics["lr-SGD"]]
    assert logged == pytest.approx(want, rel=1e-12)  # (2) LearningRateMonitor logs the lr each step applies
    # (3) the checkpoint loads with Lightning's default torch.load (weights_only=True under torch >= 2.6)
    ckpt = torch.load(tmp_path / "epoch=1.ckpt", weights_only=True)
    # Lightning saves the epoch's checkpoint before it steps plateau schedulers (and skips that step on resume):
    # the scheduler slot's checkpoint holds the controller as it was before epoch 1's observation
    factors = [1.0] + _plateau_oracle(applied.val_losses, **PLATEAU)
    assert ckpt["lr_schedulers"][0]["controller"]["factors"] == [factors[1]]
    assert ckpt["optimizer_states"][0]["param_groups"][0]["adaptlr_lr_scale"] == factors[1]


def test_controller_callback_cuts_survive_resume_bit_identically(tmp_path):
    def make(module):
        return adaptlr.SGD(module.parameters(), lr=SCHEDULE)

    def run(path, epochs, ckpt_path=None):
        applied = _Applied()
        feed = al.ControllerCallback(lambda opt: controllers.ReduceOnPlateau(opt, **PLATEAU))
        trainer, logger = _trainer(path, epochs, [feed, applied, al.LearningRateMonitor(logging_interval="step")])
        module = _Module(make)
        trainer.fit(module, _data(), _data(1), ckpt_path=ckpt_path)
        return module, applied, logger, feed

    full, applied, logger, feed = run(tmp_path / "a", 4)
    want = _expected(applied.val_losses, 4)
    assert feed.controller.factor < 1
    assert applied.applied == pytest.approx(want, rel=1e-9)
    assert [v for _, v in logger.metrics["lr-SGD"]] == pytest.approx(want, rel=1e-12)

    # (3)+(4) resume from the epoch-2 checkpoint (Lightning's default torch.load): same lrs, same weights
    resumed, applied2, logger2, feed2 = run(tmp_path / "b", 4, ckpt_path=tmp_path / "a" / "epoch=1.ckpt")
    assert applied2.applied == applied.applied[8:]
    assert feed2.controller.state_dict() == feed.controller.state_dict()
    assert torch.equal(_params(resumed), _params(full))


def test_schedule_free_callback_swaps_around_validation_and_checkpoints_and_resumes(tmp_path):
    def make(module):
        return adaptlr.ScheduleFreeAdamW(module.parameters(), lr=0.02, warmup_steps=2)

    def run(path, epochs, ckpt_path=None):
        modes = []

        class Modes(pl.Callback):
            def on_validation_batch_start(self, trainer, pl_module, *args):
                modes.append(("val", trainer.optimizers[0].param_groups[0]["train_mode"]))

            def on_train_batch_start(self, trainer, pl_module, *args):
                modes.append(("train", trainer.optimizers[0].param_groups[0]["train_mode"]))

        trainer, _ = _trainer(path, epochs, [al.ScheduleFree(bn_batches=2), Modes()])
        module = _Module(make, bn=True)
        trainer.fit(module, _data(), _data(1), ckpt_path=ckpt_path)
        return module, trainer, modes

    full, trainer, modes = run(tmp_path / "a", 3)
    assert {m for kind, m in modes if kind == "val"} == {False}  # validation at x
    assert {m for kind, m in modes if kind == "train"} == {True}  # training at y
    opt = trainer.optimizers[0]
    assert not opt.param_groups[0]["train_mode"]  # fit ends at x

    # the checkpoint holds x (what validation saw) and batch norm statistics recomputed at x
    ckpt = torch.load(tmp_path / "a" / "epoch=1.ckpt", weights_only=True)
    x = torch.cat([ckpt["state_dict"][k].flatten() for k, _ in full.named_parameters()])
    assert torch.equal(x, full.val_params[1])
    module = _Module(make, bn=True)
    module.load_state_dict(ckpt["state_dict"])
    bn = module.net[1]
    batches = list(_data())[:2]
    with torch.no_grad():
        h = torch.cat([module.net[0](b[0]) for b in batches])
    torch.testing.assert_close(bn.running_mean, h.mean(0), rtol=1e-12, atol=1e-12)

    resumed, _, _ = run(tmp_path / "b", 3, ckpt_path=tmp_path / "a" / "epoch=1.ckpt")
    assert torch.equal(_params(resumed), _params(full))


def test_a_mid_epoch_checkpoint_of_schedule_free_holds_x(tmp_path):
    def make(module):
        return adaptlr.ScheduleFreeSGD(module.parameters(), lr=0.1)

    module = _Module(make)
    trainer, _ = _trainer(tmp_path, 1, [al.ScheduleFree()], limit_val_batches=0)
    trainer.fit(module, _data())
    opt = trainer.optimizers[0]
    opt.train()  # as it would be mid-epoch
    y = _params(module).clone()
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    assert torch.equal(_params(module), y) and opt.param_groups[0]["train_mode"]
    saved = torch.load(tmp_path / "mid.ckpt", weights_only=True)
    with opt.evaluating():
        x = _params(module).clone()
    assert not torch.equal(x, y)
    assert torch.equal(torch.cat([saved["state_dict"][k].flatten() for k, _ in module.named_parameters()]), x)
    assert saved["optimizer_states"][0]["param_groups"][0]["train_mode"] is False


@pytest.mark.parametrize("cls", [torch.optim.SGD, adaptlr.SGD], ids=["torch", "adaptlr"])
def test_lr_finder_callback_runs_the_range_test_and_applies_the_suggestion(tmp_path, cls):
    def make(module):
        return cls(module.parameters(), lr=1e-3)

    finder = al.LRFinder(start=1e-4, end=1.0, steps=20, skip_start=2, skip_end=2)
    seen = {}

    class First(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not seen:
                seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
                seen["params"] = _params(pl_module).clone()

    module = _Module(make)
    start = _params(module).clone()
    trainer, logger = _trainer(tmp_path, 1, [finder, First()])
    trainer.fit(module, _data(), _data(1))
    result = finder.result
    assert len(result.lrs) >= 2 and result.lrs[0] == pytest.approx(1e-4)
    assert seen["lr"] == result.lr  # the suggestion is the lr of the first real step
    assert torch.equal(seen["params"], start)  # the range test left no trace on the model
    assert "train_loss" in logger.metrics  # self.log works again after the test


def test_lr_finder_refuses_to_replace_a_schedule(tmp_path):
    def make(module):
        return adaptlr.SGD(module.parameters(), lr=SCHEDULE)

    trainer, _ = _trainer(tmp_path, 1, [al.LRFinder(steps=5)])
    with pytest.raises(ValueError, match="apply=False"):
        trainer.fit(_Module(make), _data(), _data(1))


def test_lr_free_methods_show_their_effective_lr_in_the_monitor(tmp_path):
    def make(module):
        return adaptlr.Prodigy(module.parameters())

    seen = []

    class Effective(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            opt = trainer.optimizers[0]
            seen.append(opt.param_groups[0]["d"] * opt.param_groups[0]["lr"])

    trainer, logger = _trainer(tmp_path, 2, [Effective(), al.LearningRateMonitor(logging_interval="step")])
    trainer.fit(_Module(make), _data(), _data(1))
    assert [v for _, v in logger.metrics["lr-Prodigy"]] == [1.0] * 8  # group["lr"]: Prodigy's multiplier
    effective = [v for _, v in logger.metrics["lr-Prodigy-effective"]]
    assert effective == pytest.approx(seen, rel=1e-12)
    assert effective[-1] > effective[0] and all(math.isfinite(v) for v in effective)


def test_controller_scheduler_validates_its_arguments():
    opt = adaptlr.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="Controller"):
        al.ControllerScheduler(opt)
    sched = al.ControllerScheduler(controllers.ReduceOnPlateau(opt))
    with pytest.raises(ValueError, match="monitor"):
        sched.step()
    with pytest.raises(ValueError, match="bn_batches"):
        al.ScheduleFree(bn_batches=-1)
