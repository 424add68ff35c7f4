r""":class:`AutoLR`: :class:`adaptlr.Auto` in Lightning, on the public race API (:mod:`adaptlr.auto`).

Also importable as ``adaptlr.integrations.lightning.AutoLR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

try:  # the unified package first: its Trainer accepts only its own Callback classes
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover
    import pytorch_lightning as pl

from .._validation import check_real
from ..auto import Auto, Plan, rows, run_schedule, set_schedule

__all__ = ["AutoLR"]

_PRECISION_AMP: dict[str, Any] = {
    "32": None,
    "32-true": None,
    "64": None,
    "64-true": None,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}


class AutoLR(pl.Callback):
    r""":class:`adaptlr.Auto` in Lightning: race the learning-rate grid when training starts, then let Lightning
    train the winner for the rest of ``max_steps`` on Auto's schedule.

    1. At ``on_train_start``: ``Auto.fit(..., race_only=True)`` on the module's own ``training_step`` (its loss,
       or its dict's ``"loss"``) over the trainer's training dataloader, with the trainer's
       ``gradient_clip_val`` (norm clipping), ``accumulate_grad_batches`` and mixed precision (``16-mixed``,
       ``bf16-mixed``) applied in the race exactly as Lightning applies them after it; scored on the validation
       dataloader: the row-weighted mean of the value ``validation_step`` logs under ``monitor`` (or returns),
       or of ``val_loss(module, batch)``. ``self.log`` calls are dropped meanwhile.
    2. Commit: the module holds the winner at the branch point (step ``s2``); the trainer's optimizer gets the
       winner's state and Auto's run schedule (``set_lr``, on the optimizer's own clock); Lightning's
       ``global_step`` is advanced to ``s2`` and Lightning trains the rest.
    3. At ``on_train_end`` (``Auto.keep_best``): the best validated of the end of the run, the winner's annealed
       branch and the start is committed (:meth:`adaptlr.auto.Commit.finish`).

    Requirements (each refused in one clear line otherwise): ``max_steps > 0``; one process; automatic
    optimization; one optimizer of Auto's inner class without an ``lr_scheduler``; one validation dataloader;
    ``gradient_clip_algorithm="norm"``; a precision listed above. Resuming from a checkpoint sets the schedule
    again from this callback's state (the race is not rerun; the keep-best comparison is not made).

    Args:
        auto: the :class:`adaptlr.Auto` (default ``Auto()``). monitor: what ``validation_step`` logs
            (``"val_loss"``). val_loss: ``(module, batch) -> loss`` instead of ``validation_step``.
        val_cost: one validation pass's cost in training steps (default: measured).

    Attributes: ``result`` (the race's :class:`adaptlr.AutoResult`), ``lr``, ``plan``, ``committed``
    (``"final"``, ``"watch"``, ``"branch"`` or ``"start"`` once training ended), ``val_score``, ``watched`` (the
    run's ``(step, score)`` at its watch points), ``cost`` (runs of ``T``).
    """

    def __init__(
        self,
        auto: Any = None,
        monitor: str = "val_loss",
        val_loss: Callable[[pl.LightningModule, Any], torch.Tensor] | None = None,
        val_cost: float | None = None,
    ) -> None:
        auto = Auto() if auto is None else auto
        if not isinstance(auto, Auto):
            raise TypeError(f"Invalid auto: {auto!r} (expected an adaptlr.Auto)")
        if val_cost is not None:
            check_real("val_cost", val_cost, 0.0)
        self.auto, self.monitor, self.val_loss, self.val_cost = auto, monitor, val_loss, val_cost
        self.result: Any = None
        self.lr: float | None = None
        self.plan: dict[str, Any] | None = None
        self.committed: str | None = None
        self.val_score = math.inf
        self.watched: list[tuple[int, float]] = []
        self.cost_steps = 0.0
        self._logged: dict[str, Any] = {}
        self._scales: list[float] = []
        self._tail = (auto.tail, auto.cooldown)

    @property
    def cost(self) -> float:
        return self.cost_steps / self.plan["steps"] if self.plan else 0.0

    # ---- what the trainer says ---------------------------------------------------------------------------
    def _optimizer(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.optim.Optimizer:
        cls = self.auto.inner
        if not pl_module.automatic_optimization:
            raise ValueError("AutoLR needs automatic optimization (it trains through training_step's loss)")
        if trainer.world_size != 1:
            raise ValueError(
                f"AutoLR races in one process (world_size {trainer.world_size}); under DDP use adaptlr.Auto.fit "
                "with process_group= (every rank decides together)"
            )
        if len(trainer.optimizers) != 1 or type(trainer.optimizers[0]) is not cls:
            raise TypeError(
                f"AutoLR needs configure_optimizers to return one {cls.__name__} (Auto's inner "
                f"optimizer), got {[type(o).__name__ for o in trainer.optimizers]}"
            )
        if trainer.lr_scheduler_configs:
            raise ValueError(
                "AutoLR sets the optimizer's lr schedule itself: return no lr_scheduler from configure_optimizers"
            )
        return trainer.optimizers[0]

    def _step(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The trainer's clipping, accumulation and precision as :meth:`Auto.fit`'s step arguments."""
        clip = trainer.gradient_clip_val
        if clip and (trainer.gradient_clip_algorithm or "norm") != "norm":
            raise ValueError(
                f"AutoLR races with gradient-norm clipping only (got gradient_clip_algorithm="
                f"{trainer.gradient_clip_algorithm!r})"
            )
        precision = str(trainer.precision)
        if precision not in _PRECISION_AMP:
            raise ValueError(f"AutoLR races in precision {sorted(_PRECISION_AMP)} (got {precision!r})")

        def step_fn(module: Any, batch: Any) -> torch.Tensor:
            out = pl_module.training_step(batch, 0)
            return out["loss"] if isinstance(out, dict) else out

        return {
            "step_fn": step_fn,
            "amp": _PRECISION_AMP[precision],
            "accumulate": int(trainer.accumulate_grad_batches),
            "max_grad_norm": float(clip) if clip else None,
        }

    def _val_batches(self, trainer: pl.Trainer) -> list[Any]:
        if trainer.val_dataloaders is None:  # (Lightning sets them up before training only if it validates then)
            trainer.validating = True
            try:
                trainer.fit_loop.epoch_loop.val_loop.setup_data()
            finally:
                trainer.training = True
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            if len(loaders) != 1:
                raise ValueError(f"AutoLR scores on one validation dataloader (got {len(loaders)})")
            loaders = loaders[0]
        if loaders is None:
            raise ValueError(
                "AutoLR needs a validation dataloader (val_dataloaders or the module's val_dataloader) to race on"
            )
        batches = [trainer.strategy.batch_to_device(b) for b in loaders]
        if not batches:
            raise ValueError("AutoLR: the validation dataloader is empty")
        return batches

    def _score(self, pl_module: pl.LightningModule, batches: list[Any], logged: dict[str, Any]) -> float:
        total, n = 0.0, 0
        for i, batch in enumerate(batches):
            logged.clear()
            value = self._value(pl_module, batch, i, logged)
            k = rows(batch) or 1
            total, n = total + float(value) * k, n + k
        return total / max(n, 1)

    def _value(self, pl_module: pl.LightningModule, batch: Any, i: int, logged: dict[str, Any]) -> Any:
        if self.val_loss is not None:
            return self.val_loss(pl_module, batch)
        out = pl_module.validation_step(batch, i)
        value = logged.get(self.monitor)
        if value is None:
            value = out.get(self.monitor, out.get("loss")) if isinstance(out, dict) else out
        if value is None:
            raise KeyError(
                f"AutoLR: validation_step neither logged {self.monitor!r} nor returned a loss "
                f"(logged: {sorted(logged)}); pass monitor= or val_loss="
            )
        return value

    # ---- the race and the commit -------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opt = self._optimizer(trainer, pl_module)
        if trainer.ckpt_path is not None:  # resumed: the race ran before; the optimizer state is restored
            if self.lr is None or self.plan is None:
                raise RuntimeError("AutoLR: resuming from a checkpoint without AutoLR's state (the race's choice)")
            plan = Plan.of(self.plan, *self._tail)
            schedule = run_schedule(self.lr, plan)
            set_schedule(opt, schedule, self._scales or None)
            return
        steps = int(trainer.max_steps)
        if steps < 1:
            raise ValueError(f"AutoLR needs Trainer(max_steps=...) > 0, the budget Auto plans (got {steps})")
        if trainer.global_step != 0:
            raise RuntimeError(f"AutoLR: training starts at global_step {trainer.global_step}, not 0")
        strategy = trainer.strategy
        train = _OnDevice(trainer.train_dataloader, strategy)
        val_batches = self._val_batches(trainer)
        groups = [{"params": list(g["params"]), "weight_decay": g["weight_decay"]} for g in opt.param_groups]
        logged: dict[str, Any] = {}
        self._logged = logged
        patched = _patch_log(pl_module, logged)
        try:
            result = self.auto.fit(
                pl_module,
                train,
                lambda _: self._score(pl_module, val_batches, logged),
                steps=steps,
                val_cost=self.val_cost,
                params=groups,
                race_only=True,
                **self._step(trainer, pl_module),
            )
        finally:
            _unpatch(pl_module, patched)
        self.result, self.lr, self.plan = result, result.lr, result.plan.as_dict()
        self.cost_steps = result.cost_steps
        opt.load_state_dict(result.optimizer.state_dict())
        result.optimizer = opt  # the winner's optimizer from here on (the race's copy is let go)
        self._scales = set_schedule(opt, result.schedule, pop=True)
        self._tail = (self.auto.tail, self.auto.cooldown)
        s2 = result.plan.rung2
        loop = trainer.fit_loop.epoch_loop
        progress = loop.automatic_optimization.optim_progress.optimizer.step.total
        progress.ready += s2
        progress.completed += s2
        loop._batches_that_stepped += s2

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.plan is not None:
            self.cost_steps += 1.0 / max(1, int(trainer.accumulate_grad_batches))
        commit = self.result.commit if self.result is not None else None
        if commit is not None and commit.due(int(trainer.global_step)):  # (a watch point of the run)
            rows = commit.race.meter.val_rows
            patched = _patch_log(pl_module, self._logged)
            try:
                commit.observe(pl_module, int(trainer.global_step))
            finally:
                _unpatch(pl_module, patched)
            row_cost = commit.race.validator.row_cost(pl_module.device)
            self.cost_steps += (commit.race.meter.val_rows - rows) * row_cost

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        commit = self.result.commit if self.result is not None else None
        if commit is None:
            self.committed = "final"
            return
        before = commit.race.meter.cost_steps(commit.race.validator.row_cost(pl_module.device))
        patched = _patch_log(pl_module, self._logged)
        try:
            self.committed = commit.finish(pl_module, ended=True)
        finally:
            _unpatch(pl_module, patched)
            commit.race.store.close()
        self.val_score, self.watched = commit.val_score, list(commit.history)
        self.cost_steps += commit.race.meter.cost_steps(commit.race.validator.row_cost(pl_module.device)) - before
        for text in commit.warnings:
            import warnings

            warnings.warn(f"AutoLR: {text}", stacklevel=2)
        self.result.commit = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "plan": dict(self.plan) if self.plan else None,
            "cost_steps": self.cost_steps,
            "tail": list(self._tail),
            "scales": list(self._scales),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.lr, self.plan = state_dict["lr"], state_dict["plan"]
        self.cost_steps = float(state_dict["cost_steps"])
        if "tail" in state_dict:  # (checkpoints of adaptlr 0.2's AutoLR hold lr, plan and cost only)
            self._tail = (str(state_dict["tail"][0]), float(state_dict["tail"][1]))
            self._scales = [float(x) for x in state_dict["scales"]]


class _OnDevice:
    """The trainer's training loader, each batch moved by the strategy (Auto iterates it again per epoch)."""

    def __init__(self, loader: Any, strategy: Any) -> None:
        self.loader, self.strategy = loader, strategy

    def __iter__(self) -> Any:
        return (self.strategy.batch_to_device(b) for b in self.loader)


def _patch_log(pl_module: pl.LightningModule, logged: dict[str, Any]) -> dict[str, Any]:
    def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        logged[name] = value

    def log_dict(values: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        logged.update(values)

    patched = {name: pl_module.__dict__.get(name) for name in ("log", "log_dict")}
    pl_module.log, pl_module.log_dict = log, log_dict
    return patched


def _unpatch(pl_module: pl.LightningModule, patched: dict[str, Any]) -> None:
    for name, value in patched.items():
        if value is None:
            pl_module.__dict__.pop(name, None)
        else:
            pl_module.__dict__[name] = value
