r"""adaptlr in Lightning: controllers, Schedule-Free, the LR range test and the effective lr of LR-free methods.

Works with the unified ``lightning`` package (``lightning.pytorch``) when it is installed, else with
``pytorch_lightning`` (:data:`PACKAGE` says which); pass these callbacks to a Trainer of that same package.

An adaptlr optimizer with a schedule as ``lr`` needs no scheduler in Lightning: it updates ``group["lr"]``
itself after every step, so ``LearningRateMonitor`` and checkpoints see the true lr. What this module adds:

- :class:`ControllerScheduler`: a controller (:mod:`adaptlr.controllers`) in ``configure_optimizers``'
  ``lr_scheduler`` dict, with ``"monitor": "val_loss"``, as Lightning validates a ``ReduceLROnPlateau``;
- :class:`ControllerCallback`: the same controller fed from a callback, which is what makes a resumed run
  continue bit-identically (see :class:`ControllerScheduler` for why the scheduler slot cannot);
- :class:`ScheduleFree`: the train/eval swap of the Schedule-Free optimizers around validation, testing and
  checkpointing (checkpoints hold the averaged weights ``x``), and batch-norm recalibration at ``x``;
- :class:`LRFinder`: :func:`adaptlr.lr_find` on the LightningModule's own ``training_step`` before training;
- :class:`AutoLR`: :class:`adaptlr.Auto`'s learning-rate race on the module's own ``training_step`` and
  validation data before training, then Lightning trains the winner on its committed schedule;
- :class:`LearningRateMonitor`: Lightning's, plus ``<name>-effective`` = ``optimizer.effective_lr(i)`` for the
  learning-rate-free methods (``d * lr`` for Prodigy and D-Adaptation), whose ``group["lr"]`` is a multiplier.

>>> from adaptlr.integrations.lightning import ControllerScheduler
>>> def configure_optimizers(self):  # doctest: +SKIP
...     opt = adaptlr.AdamW(self.parameters(), lr=schedules.warmup(schedules.cosine(1e-3, 9_000), 1_000))
...     plateau = ControllerScheduler(controllers.ReduceOnPlateau(opt, patience=2))
...     return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

try:  # the unified package first: its Trainer accepts only its own Callback classes
    import lightning.pytorch as pl

    PACKAGE = "lightning.pytorch"
except ImportError:
    import pytorch_lightning as pl

    PACKAGE = "pytorch_lightning"

from .._validation import check_count
from ..controllers import Controller
from ..free import ScheduleFreeAdamW, ScheduleFreeRAdam, ScheduleFreeSGD, recalibrate_batchnorm

__all__ = [
    "PACKAGE",
    "AutoLR",
    "ControllerCallback",
    "ControllerScheduler",
    "LRFinder",
    "LearningRateMonitor",
    "ScheduleFree",
]

_SCHEDULE_FREE = (ScheduleFreeSGD, ScheduleFreeAdamW, ScheduleFreeRAdam)


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [
        float(optimizer.current_lr(i)) if hasattr(optimizer, "current_lr") else float(g["lr"])
        for i, g in enumerate(optimizer.param_groups)
    ]


class ControllerScheduler(ReduceLROnPlateau):
    """A controller in Lightning's scheduler slot: ``{"scheduler": ControllerScheduler(c), "monitor": "val_loss"}``.

    Lightning accepts only ``torch.optim.lr_scheduler`` classes there (any other class needs an overridden
    ``lr_scheduler_step``), and calls ``step(metric)`` with the monitored value for a ``ReduceLROnPlateau``.
    This class is one by type, but has none of its logic: ``step(metric)`` is ``controller.observe(metric)``,
    so the controller's factor multiplies the optimizer's schedule (adaptlr optimizers) or its lr (torch's).
    ``state_dict()`` is the controller's (plain data: it loads with ``torch.load(weights_only=True)``).

    Resuming: Lightning steps a plateau scheduler after ``ModelCheckpoint`` has saved at the end of an epoch,
    and on resume skips that step ("metric-based schedulers require access to metrics and those are not
    currently saved in the checkpoint", ``fit_loop.py``), so a run resumed from an epoch-end checkpoint never
    observes that epoch's metric: its cuts can come one observation later than in the uninterrupted run. Use
    :class:`ControllerCallback` (which observes before the checkpoint is written) where that matters.

    Args:
        controller: any :class:`adaptlr.controllers.Controller` of the optimizer returned beside it.
    """

    def __init__(self, controller: Controller) -> None:  # torch's __init__ is not called: none of its state
        if not isinstance(controller, Controller):
            raise TypeError(f"Invalid controller: {controller!r} (expected an adaptlr.controllers.Controller)")
        self.controller = controller
        self.optimizer = controller.optimizer
        self.last_epoch = 0
        self._last_lr = _lrs(self.optimizer)

    def step(self, metrics: Any = None, epoch: int | None = None) -> None:  # type: ignore[override]
        """Observe ``metrics`` (Lightning passes the monitored value)."""
        if metrics is None:
            raise ValueError(
                "ControllerScheduler.step needs the metric the controller observes: give the "
                "lr_scheduler dict a 'monitor' key"
            )
        self.controller.observe(metrics)
        self.last_epoch += 1
        self._last_lr = _lrs(self.optimizer)

    def get_last_lr(self) -> list[float]:
        """The lr of each param group after the last observation."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.controller.load_state_dict(state_dict["controller"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = _lrs(self.optimizer)


class ControllerCallback(pl.Callback):
    """Feed a controller the monitored metric after every validation of ``fit``, before checkpoints are saved.

    Lightning runs checkpoint callbacks after all others, so the checkpoint of an epoch holds the controller's
    state and the optimizer's lr after that epoch's observation, and ``fit(ckpt_path=...)`` continues
    bit-identically. The controller is saved in the checkpoint's ``callbacks`` entry (plain data). Under DDP,
    log the monitored metric with ``sync_dist=True`` so that every rank observes the same value and cuts alike.

    Args:
        controller: a :class:`~adaptlr.controllers.Controller`, or a function ``optimizer -> Controller`` called
            with ``trainer.optimizers[optimizer_index]`` when fitting starts (the optimizer is built inside
            ``configure_optimizers``, so this is usually the convenient form).
        monitor: the logged metric to observe. Default ``"val_loss"``.
        optimizer_index: which of the trainer's optimizers a factory gets. Default 0.

    >>> ControllerCallback(lambda opt: controllers.ReduceOnPlateau(opt, patience=2))  # doctest: +SKIP
    """

    def __init__(
        self,
        controller: Controller | Callable[[torch.optim.Optimizer], Controller],
        monitor: str = "val_loss",
        optimizer_index: int = 0,
    ) -> None:
        if not (isinstance(controller, Controller) or callable(controller)):
            raise TypeError(f"Invalid controller: {controller!r} (expected a Controller or optimizer -> Controller)")
        self._factory = None if isinstance(controller, Controller) else controller
        self.controller: Controller | None = controller if isinstance(controller, Controller) else None
        self.monitor = monitor
        self.optimizer_index = optimizer_index
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, optimizer_index=self.optimizer_index)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.controller is None:
            assert self._factory is not None
            self.controller = self._factory(trainer.optimizers[self.optimizer_index])
            if not isinstance(self.controller, Controller):
                raise TypeError(f"the controller factory returned {self.controller!r}, not a Controller")
        if self._pending is not None:
            self.controller.load_state_dict(self._pending)
            self._pending = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.controller is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"ControllerCallback: the metric {self.monitor!r} was not logged during validation "
                f"(logged: {sorted(trainer.callback_metrics)})"
            )
        self.controller.observe(value)

    def state_dict(self) -> dict[str, Any]:
        state = self.controller.state_dict() if self.controller is not None else self._pending
        return {"controller": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("controller")
        if state is None:
            return
        if self.controller is None:  # restored before fit starts: loaded into the controller once it is built
            self._pending = state
        else:
            self.controller.load_state_dict(state)


def _schedule_free(trainer: pl.Trainer) -> list[Any]:
    return [o for o in trainer.optimizers if isinstance(o, _SCHEDULE_FREE)]


class ScheduleFree(pl.Callback):
    """The Schedule-Free optimizers' train/eval swap (``opt.train()`` / ``opt.eval()``), done by Lightning's hooks.

    - Before every validation, test and predict loop: ``eval()`` (the parameters hold the average ``x``);
      with ``bn_batches > 0`` the batch-norm statistics are first recomputed at ``x`` on that many training
      batches (:func:`adaptlr.recalibrate_batchnorm`; note that a shuffled loader draws from torch's RNG).
    - At the end of every training epoch: ``eval()`` too, so the epoch's checkpoints hold ``x`` (Lightning
      saves after the other callbacks' hooks).
    - Before every training batch: ``train()`` (the parameters hold ``y``, where gradients are taken); a no-op
      when already in train mode.
    - A checkpoint saved in train mode (``every_n_train_steps``, a manual ``trainer.save_checkpoint``) gets the
      model's and the optimizer's state taken in eval mode, so every checkpoint holds ``x``.

    Training ends in eval mode: the module holds ``x``, the weights to evaluate and ship. Optimizer state saved
    in eval mode keeps the exact ``y``, so a resumed run continues bit-identically.

    Args:
        bn_batches: training batches for batch-norm recalibration before each validation of ``fit``
            (default 0: none).
    """

    def __init__(self, bn_batches: int = 0) -> None:
        self.bn_batches = check_count("bn_batches", bn_batches)

    @staticmethod
    def _eval(trainer: pl.Trainer) -> None:
        for opt in _schedule_free(trainer):
            opt.eval()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for opt in _schedule_free(trainer):
            opt.train()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        for opt in _schedule_free(trainer):
            opt.train()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opts = _schedule_free(trainer)
        if self.bn_batches and opts and not trainer.sanity_checking and trainer.state.fn == "fit":
            batches = (
                trainer.strategy.batch_to_device(b)
                for b in itertools.islice(iter(trainer.train_dataloader), self.bn_batches)
            )
            recalibrate_batchnorm(pl_module, opts[0], batches)
        self._eval(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval(trainer)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        opts = _schedule_free(trainer)
        if not any(g["train_mode"] for o in opts for g in o.param_groups):
            return
        for o in opts:
            o.eval()
        try:
            checkpoint["state_dict"] = {
                k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                for k, v in trainer.strategy.lightning_module_state_dict().items()
            }
            if "optimizer_states" in checkpoint:
                checkpoint["optimizer_states"] = [
                    copy.deepcopy(trainer.strategy.optimizer_state(o)) for o in trainer.optimizers
                ]
        finally:
            for o in opts:
                o.train()


class _TrainingStepLoss(torch.nn.Module):
    """A LightningModule seen as ``batch -> loss`` through its own ``training_step`` (for :func:`adaptlr.lr_find`)."""

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any) -> torch.Tensor:
        out = self.module.training_step(batch, 0)
        return out["loss"] if isinstance(out, dict) else out


class _Batches:
    """The training loader's batches as ``(batch, None)`` pairs, re-iterable (what :func:`adaptlr.lr_find` reads)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[Any, None]]:
        return ((batch, None) for batch in self.loader)


def _no_log(*args: Any, **kwargs: Any) -> None:
    return None


class LRFinder(pl.Callback):
    """Run :func:`adaptlr.lr_find` when training starts, on the module's own ``training_step`` and training data.

    The range test trains ``steps`` batches with the lr growing from ``start`` to ``end`` on the first
    optimizer, then restores the model, the optimizer and torch's RNG exactly (``self.log`` calls inside
    ``training_step`` are dropped meanwhile). With ``apply=True`` the suggestion becomes the first param
    group's lr (the others keep their ratio to it; torch schedulers attached in ``configure_optimizers`` get
    their base lrs scaled alike); an optimizer whose lr is an adaptlr schedule raises then: use ``apply=False``
    and build the schedule from :attr:`result` (``result.schedule(total_steps)``). Not run when resuming from
    a checkpoint.

    Args:
        start, end, steps, mode: the lr range, as :func:`adaptlr.lr_find`. Defaults 1e-7, 10, 100, ``"exp"``.
        apply: set the suggested lr. Default True.
        **kwargs: the other arguments of :func:`adaptlr.lr_find` (``smooth``, ``diverge``, ``accumulation``,
            ``skip_start``, ``skip_end``).

    Attributes:
        result: the :class:`adaptlr.LRFindResult` (None before the test ran).
    """

    def __init__(
        self,
        start: float = 1e-7,
        end: float = 10.0,
        steps: int = 100,
        mode: str = "exp",
        apply: bool = True,
        **kwargs: Any,
    ) -> None:
        self.start, self.end, self.steps, self.mode, self.apply = start, end, steps, mode, apply
        self.kwargs = kwargs
        self.result: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from ..finder import lr_find

        if trainer.ckpt_path is not None:
            return
        opt = trainer.optimizers[0]
        if self.apply and any(g.get("adaptlr_schedule") is not None for g in opt.param_groups):
            raise ValueError(
                "LRFinder(apply=True): the optimizer's lr is an adaptlr schedule, which a single "
                "suggested lr cannot replace; use LRFinder(apply=False) and build the schedule from "
                "its result (finder.result.schedule(total_steps))"
            )
        old = [float(g["lr"]) for g in opt.param_groups]
        patched = {name: pl_module.__dict__.get(name) for name in ("log", "log_dict")}
        pl_module.log = pl_module.log_dict = _no_log
        try:
            self.result = lr_find(
                _TrainingStepLoss(pl_module),
                lambda loss, _: loss,
                _Batches(trainer.train_dataloader),
                opt,
                start=self.start,
                end=self.end,
                steps=self.steps,
                mode=self.mode,
                **self.kwargs,
            )
        finally:
            for name, value in patched.items():
                if value is None:
                    del pl_module.__dict__[name]
                else:
                    pl_module.__dict__[name] = value
        if self.apply:
            self._apply(trainer, opt, old, self.result.lr)

    @staticmethod
    def _apply(trainer: pl.Trainer, opt: torch.optim.Optimizer, old: list[float], lr: float) -> None:
        factors = []
        for group, before in zip(opt.param_groups, old, strict=True):
            new = lr * (before / old[0]) if old[0] else lr
            factors.append(new / before if before else 1.0)
            group["lr"] = new
            if "initial_lr" in group:
                group["initial_lr"] = float(group["initial_lr"]) * factors[-1]
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            if sched.optimizer is opt and hasattr(sched, "base_lrs"):
                sched.base_lrs = [b * f for b, f in zip(sched.base_lrs, factors, strict=True)]


class LearningRateMonitor(pl.callbacks.LearningRateMonitor):
    """Lightning's ``LearningRateMonitor``, which also logs ``<name>-effective`` for adaptlr's LR-free methods.

    Their ``group["lr"]`` is a multiplier (1 by default); the step size they take is
    ``optimizer.effective_lr(i)`` (``d * lr`` for Prodigy and D-Adaptation, the warmup-scaled lr for
    Schedule-Free, ...), logged beside the lr under the same name with ``-effective`` appended. Arguments are
    Lightning's.
    """

    def _get_optimizer_stats(self, optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, float]:
        stats = super()._get_optimizer_stats(optimizer, names)
        effective = getattr(optimizer, "effective_lr", None)
        if callable(effective):
            for i, name in enumerate(names):
                value = float(effective(i))
                self.lrs.setdefault(f"{name}-effective", []).append(value)
                stats[f"{name}-effective"] = value
        return stats


if not callable(getattr(pl.callbacks.LearningRateMonitor, "_get_optimizer_stats", None)):  # pragma: no cover
    raise ImportError(
        f"{PACKAGE}'s LearningRateMonitor has no _get_optimizer_stats (renamed upstream?): "
        "adaptlr.integrations.lightning.LearningRateMonitor needs it"
    )


from .lightning_auto import AutoLR  # noqa: E402  (its own module; importable from here as before)
