r"""adaptlr in the Hugging Face ``Trainer``: the optimizer's own schedule, controllers fed ``eval_loss``, LR-free lr.

The Trainer always drives an lr scheduler: with ``optimizers=(opt, None)`` it builds its default (a linear decay,
``lr_scheduler_type="linear"``), a ``LambdaLR`` that rewrites ``group["lr"]``. Around an adaptlr optimizer whose
``lr`` is a schedule that would multiply two schedules, so adaptlr refuses it at the first step.
:func:`optimizers` fills the scheduler slot with :class:`OptimizerSchedule`, which leaves the lr to the optimizer::

    opt = adaptlr.AdamW(model.parameters(), lr=schedules.warmup(schedules.cosine(3e-4, 9_000), 1_000))
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., optimizers=optimizers(opt),
                      callbacks=[ControllerCallback("ReduceOnPlateau", patience=2)])

With ``optimizer_cls_and_kwargs`` the Trainer builds the optimizer (passing only the given keyword arguments: no
``args.learning_rate``) and its own scheduler from ``args``; give the optimizer a number as ``lr`` and let the
Trainer schedule it, and for LR-free methods ask for a constant schedule, so that they keep their default lr 1::

    Trainer(..., args=TrainingArguments(..., lr_scheduler_type="constant"),
            optimizer_cls_and_kwargs=(adaptlr.Prodigy, {}))

:class:`ControllerCallback` observes ``eval_loss`` after every evaluation, so its cuts multiply the schedule;
with the Trainer's own ``LambdaLR`` schedulers (every ``lr_scheduler_type`` but ``"reduce_lr_on_plateau"``) it
makes them multiply in too (a controller on a torch optimizer otherwise never lands: the ``LambdaLR`` rewrites
``group["lr"]`` every step). Its state is saved in the checkpoint's ``trainer_state.json`` and restored on
``train(resume_from_checkpoint=...)``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .. import controllers as _controllers

__all__ = ["ControllerCallback", "OptimizerSchedule", "optimizers"]


def _inner(optimizer: Any) -> torch.optim.Optimizer:
    """The optimizer under accelerate's (or another) wrapper that keeps it as ``.optimizer``."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class OptimizerSchedule:
    """The Trainer's lr-scheduler slot for an optimizer that schedules its own lr: ``step()`` changes nothing.

    ``get_last_lr()`` is what the Trainer logs as ``learning_rate`` right after ``optimizer.step()``: the lr of
    each param group that step used (recorded by a step pre-hook; before the first step, the next step's lr).
    ``state_dict()`` is plain data (the number of steps).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = _inner(optimizer)
        self.last_epoch = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]
        self._hook = self.optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Count the step; the optimizer already moved its lr."""
        self.last_epoch += 1

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])


def optimizers(optimizer: torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, OptimizerSchedule]:
    """``(optimizer, OptimizerSchedule(optimizer))``, for ``Trainer(optimizers=...)``: the optimizer's own
    schedule (or its constant lr, e.g. an LR-free method's 1) runs alone, with no Trainer decay multiplied in."""
    return optimizer, OptimizerSchedule(optimizer)


def _controller_class(name: str) -> type[_controllers.Controller]:
    cls = getattr(_controllers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, _controllers.Controller)) or cls is _controllers.Controller:
        known = sorted(
            n
            for n in _controllers.__all__
            if isinstance(getattr(_controllers, n), type)
            and issubclass(getattr(_controllers, n), _controllers.Controller)
            and n != "Controller"
        )
        raise ValueError(f"Invalid controller: {name!r} (expected one of {known})")
    return cls


class ControllerCallback(TrainerCallback, ExportableState):
    """Feed an adaptlr controller the Trainer's ``eval_loss`` (or another metric) after every evaluation.

    The controller is built when training starts, on the Trainer's optimizer:
    ``getattr(adaptlr.controllers, controller)(optimizer, **kwargs)`` (by name, so that the callback is rebuilt
    from its saved arguments: the Trainer's ``ExportableState`` protocol). Its state goes into each
    checkpoint's ``trainer_state.json`` and is loaded back on resume, with or without
    ``args.restore_callback_states_from_checkpoint``.

    With a Trainer-made ``LambdaLR`` scheduler (the Trainer's own schedules), the controller's factor is
    multiplied into its lambdas, so cuts persist through the scheduler's rewrites of ``group["lr"]``; with
    :class:`OptimizerSchedule` the adaptlr optimizer applies the factor itself. The Trainer logs the lr of the
    step just taken, so the first entry after a cut shows it.

    Args:
        controller: the name of a class in :mod:`adaptlr.controllers`. Default ``"ReduceOnPlateau"``.
        metric: the key of the evaluation metrics to observe. Default ``"eval_loss"``.
        **kwargs: the controller's arguments (JSON-able: ``patience=2, factor=0.5``).

    Attributes:
        controller: the controller (None until training starts).
    """

    def __init__(self, controller: str = "ReduceOnPlateau", metric: str = "eval_loss", **kwargs: Any) -> None:
        self._cls = _controller_class(controller)
        self.controller_name = controller
        self.metric = metric
        self.kwargs = kwargs
        try:
            json.dumps(kwargs)
        except TypeError as e:
            raise ValueError(
                f"the controller's arguments must be JSON-able (they are saved in trainer_state.json): {e}"
            ) from None
        self.controller: _controllers.Controller | None = None
        self.controller_state: dict[str, Any] | None = None  # restored by the Trainer's _load_callback_state

    # ---------------------------------------------------------------------- ExportableState
    def _args(self) -> dict[str, Any]:
        return {"controller": self.controller_name, "metric": self.metric, **self.kwargs}

    def state(self) -> dict[str, Any]:
        state = self.controller.state_dict() if self.controller is not None else self.controller_state
        if state is not None:
            try:
                json.dumps(state)
            except TypeError:
                raise TypeError(
                    f"{self.controller_name}'s state is not JSON-able, so it cannot go into "
                    "trainer_state.json; ControllerCallback supports controllers whose state is plain "
                    "numbers (ReduceOnPlateau, LossTrend, ...)"
                ) from None
        return {"args": self._args(), "attributes": {"controller_state": state}}

    def _saved_state(self, state: Any) -> dict[str, Any] | None:
        """This callback's entry in a resumed TrainerState (the one whose arguments are ours)."""
        entries = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and entry.get("args") == self._args():
                return (entry.get("attributes") or {}).get("controller_state")
        return None

    # ------------------------------------------------------------------------------ events
    def _ensure(self, state: Any, optimizer: Any, lr_scheduler: Any) -> _controllers.Controller:
        if self.controller is None:
            if optimizer is None:
                raise RuntimeError("ControllerCallback: the Trainer passed no optimizer to its callbacks")
            self.controller = self._cls(_inner(optimizer), **self.kwargs)
            saved = self.controller_state if self.controller_state is not None else self._saved_state(state)
            if saved is not None:
                self.controller.load_state_dict(saved)
            self._hook_scheduler(lr_scheduler)
        return self.controller

    def _hook_scheduler(self, lr_scheduler: Any) -> None:
        sched = lr_scheduler
        while not isinstance(sched, (torch.optim.lr_scheduler.LRScheduler, OptimizerSchedule)) and hasattr(
            sched, "scheduler"
        ):  # accelerate's AcceleratedScheduler
            sched = sched.scheduler
        self._scheduler = sched
        if sched is None or isinstance(sched, (OptimizerSchedule, torch.optim.lr_scheduler.ReduceLROnPlateau)):
            return
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            controller = self.controller
            lambdas = list(sched.lr_lambdas)

            def scaled(i: int) -> Any:
                def lr_lambda(step: int) -> float:  # a function: LambdaLR's state_dict stores None for it
                    return lambdas[i](step) * controller.factors[i]

                return lr_lambda

            sched.lr_lambdas = [scaled(i) for i in range(len(lambdas))]
            return
        if isinstance(sched, torch.optim.lr_scheduler.LRScheduler):
            raise TypeError(
                f"ControllerCallback: the lr scheduler {type(sched).__name__} would overwrite the "
                "controller's cuts; use a Trainer schedule (lr_scheduler_type), or an adaptlr schedule "
                "as the optimizer's lr with adaptlr.integrations.transformers.optimizers(opt)"
            )

    def on_train_begin(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any
    ) -> None:
        self._ensure(state, optimizer, lr_scheduler)

    def on_step_begin(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any
    ) -> None:
        self._ensure(state, optimizer, lr_scheduler)  # a callback the Trainer rebuilt after on_train_begin

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, float] | None = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        if optimizer is None and self.controller is None:  # evaluate() outside train(): nothing to control
            return
        controller = self._ensure(state, optimizer, lr_scheduler)
        if not metrics or self.metric not in metrics:
            raise KeyError(
                f"ControllerCallback: no {self.metric!r} in the evaluation metrics "
                f"({sorted(metrics or {})}); pass metric= one of them"
            )
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            raise ValueError(f"ControllerCallback: {self.metric} is {value}")
        controller.observe(value)
        sched = getattr(self, "_scheduler", None)
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            # a cut applies from the next step, before the scheduler steps again: it reports that step's lr
            sched._last_lr = [float(g["lr"]) for g in sched.optimizer.param_groups]
