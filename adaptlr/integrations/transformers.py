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

The lr the Trainer logs is the lr applied. The Trainer logs ``learning_rate`` from its scheduler's
``get_last_lr()``, read right after each ``optimizer.step()``. For a learning-rate-free method (the classes of
:mod:`adaptlr.free`: Prodigy, D-Adaptation, DoG, Schedule-Free) ``group["lr"]`` is a multiplier (1 by default),
not the step size, which is ``optimizer.effective_lr(i)`` (``d * lr`` for Prodigy). So, for those methods,
``learning_rate`` *is* the effective lr of the step just taken, not the multiplier: :class:`OptimizerSchedule`
reports it by itself, and :class:`EffectiveLRCallback` makes the Trainer's own schedulers report it::

    Trainer(..., optimizer_cls_and_kwargs=(adaptlr.Prodigy, {}), callbacks=[EffectiveLRCallback()])

(One key, not a second ``learning_rate_effective`` beside a constant 1: every logger the Trainer reports to
plots ``learning_rate``, and the multiplier is the number the user passed. Lightning's monitor, which logs one
series per param group, keeps both: ``lr-X`` and ``lr-X-effective``.) The methods whose ``lr`` is a step size
(SGD, Adam, LAMB, Lion, ...) log ``group["lr"]``, as torch's optimizers do.

:class:`AutoLRCallback` (in :mod:`adaptlr.integrations.transformers_auto`) runs :class:`adaptlr.Auto`'s race on
the Trainer's own loss and ``eval_dataset`` when training begins, then lets the Trainer train the winner for the
rest of ``max_steps`` on Auto's schedule (through an :class:`OptimizerSchedule` in the scheduler slot)::

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., optimizers=(adaptlr.AdamW(params), None))
    AutoLRCallback(adaptlr.Auto()).attach(trainer)
    trainer.train()
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .. import controllers as _controllers

__all__ = ["ControllerCallback", "EffectiveLRCallback", "OptimizerSchedule", "optimizers"]


def _inner(optimizer: Any) -> torch.optim.Optimizer:
    """The optimizer under accelerate's (or another) wrapper that keeps it as ``.optimizer``."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def _scheduler(lr_scheduler: Any) -> Any:
    """The scheduler under accelerate's ``AcceleratedScheduler`` (which keeps it as ``.scheduler``)."""
    sched = lr_scheduler
    while not isinstance(sched, (torch.optim.lr_scheduler.LRScheduler, OptimizerSchedule)) and hasattr(
        sched, "scheduler"
    ):
        sched = sched.scheduler
    return sched


def _lr_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is one of adaptlr's learning-rate-free methods (its ``lr`` is a multiplier)."""
    from .. import free

    classes = tuple(c for c in (getattr(free, n) for n in free.__all__) if isinstance(c, type))
    return isinstance(optimizer, classes) and callable(getattr(optimizer, "effective_lr", None))


class _AppliedLR:
    """The lr each param group's last ``optimizer.step()`` applied, recorded by step hooks on the optimizer.

    ``group["lr"]`` for most optimizers; ``effective_lr(i)`` for the learning-rate-free ones. Their
    ``effective_lr`` is the step size of the *next* step (Prodigy's and D-Adaptation's ``d * lr``, Schedule-Free's
    warmup-scaled lr), read before the step, except where it is only known after it: DoG's is the step size of
    the *last* step (its ``eta`` needs the step's gradient), and D-Adapt SGD's needs ``||g_0||``, known once its
    first step ran (before it, ``effective_lr`` is 0). Before the first step: the next step's lr.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        from ..free import DAdaptSGD, DoG

        self.optimizer = optimizer
        self.effective = _lr_free(optimizer)
        self._after_step = isinstance(optimizer, DoG)  # (LDoG too)
        self._until_known = isinstance(optimizer, DAdaptSGD)
        self.last = self._read()
        self._hooks = [optimizer.register_step_pre_hook(self._before)]
        if self.effective:
            self._hooks.append(optimizer.register_step_post_hook(self._after))

    def _read(self) -> list[float]:
        if self.effective:
            return [float(self.optimizer.effective_lr(i)) for i in range(len(self.optimizer.param_groups))]
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def _before(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.last = self._read()

    def _after(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        after = self._read()
        if self._after_step:
            self.last = after
        elif self._until_known:
            self.last = [a if b == 0.0 else b for b, a in zip(self.last, after, strict=True)]

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


class OptimizerSchedule:
    """The Trainer's lr-scheduler slot for an optimizer that schedules its own lr: ``step()`` changes nothing.

    ``get_last_lr()`` is what the Trainer logs as ``learning_rate`` right after ``optimizer.step()``: the lr
    each param group's step applied (recorded by step hooks; before the first step, the next step's lr). That is
    ``group["lr"]``, or for a learning-rate-free method (:mod:`adaptlr.free`) its ``effective_lr(i)``, the step
    size that its ``lr`` multiplies. ``state_dict()`` is plain data (the number of steps).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = _inner(optimizer)
        self.last_epoch = 0
        self._applied = _AppliedLR(self.optimizer)

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Count the step; the optimizer already moved its lr."""
        self.last_epoch += 1

    def get_last_lr(self) -> list[float]:
        return list(self._applied.last)

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
        sched = self._scheduler = _scheduler(lr_scheduler)
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


class EffectiveLRCallback(TrainerCallback):
    """Make the Trainer log the lr applied as ``learning_rate`` for a learning-rate-free method under the
    Trainer's own scheduler (``optimizer_cls_and_kwargs=(adaptlr.Prodigy, {})``, or ``optimizers=(opt, None)``).

    The Trainer's schedulers (``LambdaLR``: every ``lr_scheduler_type`` but ``"reduce_lr_on_plateau"``) set
    ``group["lr"]``, which for those methods is a multiplier of the step size they estimate; after each
    optimizer step this callback puts the step's ``effective_lr(i)`` (``d * lr``: the multiplier included) where
    the Trainer reads ``learning_rate``, the scheduler's ``get_last_lr()``. The scheduler's own lr is unchanged
    (its next ``step()`` computes it from its lambdas, as before). With :class:`OptimizerSchedule`, and with any
    optimizer whose ``lr`` is its step size (SGD, Adam, LAMB, ...), it does nothing: they log the lr applied
    already. With ``"reduce_lr_on_plateau"`` the Trainer logs ``group["lr"]`` directly, which no callback may
    change without changing the step, and another scheduler may read what it would change: for those it warns
    and does nothing.
    """

    def __init__(self) -> None:
        self._applied: _AppliedLR | None = None
        self._target: Any = None

    def on_train_begin(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any
    ) -> None:
        if self._applied is not None:
            self._applied.remove()
        self._applied, self._target = None, None
        opt = _inner(optimizer) if optimizer is not None else None
        sched = _scheduler(lr_scheduler)
        if opt is None or not _lr_free(opt) or isinstance(sched, OptimizerSchedule):
            return
        if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            import warnings

            warnings.warn(
                f"EffectiveLRCallback supports the Trainer's LambdaLR schedules, not {type(sched).__name__}: the "
                f"Trainer logs {type(opt).__name__}'s lr multiplier as learning_rate, not its step size "
                "optimizer.effective_lr(i); use a LambdaLR schedule (lr_scheduler_type other than "
                "'reduce_lr_on_plateau') or adaptlr.integrations.transformers.optimizers(opt)",
                stacklevel=2,
            )
            return
        self._applied, self._target = _AppliedLR(opt), sched

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._applied is not None:
            self._target._last_lr = list(self._applied.last)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._applied is not None:
            self._applied.remove()
        self._applied, self._target = None, None
