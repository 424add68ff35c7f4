"""How a parsed :class:`~adaptlr.lab.grammar.Method` becomes a running optimizer.

:func:`check_names` says whether every term is offered now and every optimizer argument exists,
:func:`validate_method` builds the method once on a throwaway parameter so that values the classes refuse are
refused before any training, and :func:`build_method` constructs the optimizer (with its schedule) and the
controllers of a run: a :class:`MethodBuild`, which the training loop drives (the lr of each step, the lr set by
hand on torch.optim fallbacks, the effective lr it logs). :meth:`Method.validate` and :meth:`Method.build` are
these functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import _CONTROLLERS, _OPTIMIZERS, _controller_class, _did_you_mean, _resolve_class, _schedule_available
from .grammar import SpecError, _schedule

if TYPE_CHECKING:
    from .grammar import Method

__all__ = ["MethodBuild", "build_method", "check_names", "validate_method"]


def _group_scale(group: Mapping[str, Any]) -> float:
    """The controllers' factor on a param group's lr (``adaptlr_lr_scale``; timm's ``lr_scale`` is not ours)."""
    return float(group.get("adaptlr_lr_scale", 1.0))


@dataclass
class MethodBuild:
    """What the runner needs: the optimizer, the lr schedule it set up, and the controllers to feed."""

    optimizer: Any
    schedule: Any  # callable step -> lr, or None for a constant lr
    controllers: list[Any] = field(default_factory=list)
    manual_lr: bool = False  # True: the runner sets group["lr"] itself each step (torch.optim fallbacks)
    base_lr: float | None = None

    def lr(self, step: int) -> float | None:
        """The scheduled lr of step ``step`` (before any controller's factor)."""
        if self.schedule is not None:
            return float(self.schedule(step))
        return self.base_lr

    def before_step(self, step: int) -> None:
        if not self.manual_lr:
            return
        for group in self.optimizer.param_groups:
            base = self.lr(step)
            if base is not None:
                group["lr"] = base * _group_scale(group)

    def effective_lr(self, step: int) -> float | None:
        """The step size actually used: scheduled lr x controller factor (x a learning-rate-free method's
        estimate, through the optimizer's own ``effective_lr(group)`` readout when it has one)."""
        opt = self.optimizer
        for name in ("effective_lr", "current_lr"):
            fn = getattr(opt, name, None)
            if callable(fn):
                try:
                    return float(fn(0))
                except Exception:  # noqa: BLE001 - an optimizer's own helper; fall back to the group
                    pass
        group = opt.param_groups[0]
        value = group.get("lr")
        if callable(value):
            value = value(step)
        try:
            return float(value) * (1.0 if self.manual_lr else _group_scale(group))
        except (TypeError, ValueError):
            return None


def validate_method(method: Method, total_steps: int | None = None) -> Method:
    """:meth:`Method.validate`: check ``method`` by building it once on a throwaway parameter."""
    check_names(method)
    import torch

    cls = _resolve_class(method.optimizer.name)
    if isinstance(cls, type) and not issubclass(cls, torch.optim.Optimizer):
        # a method with a training loop of its own (``auto``): built from its arguments alone
        try:
            cls(**method.optimizer_kwargs())
        except (TypeError, ValueError) as e:
            raise SpecError(f"{method.canonical}: {e}") from None
        return method
    method.build([torch.nn.Parameter(torch.zeros(2, 2))], 1000 if total_steps is None else total_steps)
    return method


def check_names(method: Method) -> None:
    """Raise :class:`SpecError` unless every term of ``method`` is offered now and every optimizer argument
    exists (and no ``?`` is left)."""
    if method.tuned:
        raise SpecError(f"'{method.canonical}' has '?' placeholders; fill them (adaptlr tune does)")
    cls = _resolve_class(method.optimizer.name)
    if cls is None:
        entry = _OPTIMIZERS.get(method.optimizer.name)
        raise SpecError(
            f"method {method.optimizer.name!r} is not available in this adaptlr "
            f"(adaptlr.{entry.cls if entry else method.optimizer.name} does not exist yet)"
        )
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p != "params"]
        for k in method.optimizer.kwargs:
            if k not in allowed:
                raise SpecError(
                    f"{method.optimizer.name}: unknown argument {k!r}{_did_you_mean(k, allowed)} "
                    f"(arguments: {', '.join(allowed)})"
                )
    if method.schedule is not None and not _schedule_available(method.schedule.name):
        raise SpecError(f"schedule {method.schedule.name!r} is not available (adaptlr.schedules lacks it)")
    for c in method.controllers:
        if _controller_class(c.name) is None:
            raise SpecError(
                f"controller {c.name!r} is not available "
                f"(adaptlr.controllers.{_CONTROLLERS[c.name][0]} does not exist yet)"
            )


def build_method(
    method: Method, params: Iterable[Any], total_steps: int, higher_is_better: bool = False
) -> MethodBuild:
    """:meth:`Method.build`: the optimizer (with its schedule) and the controllers of ``method``."""
    from adaptlr._validation import check_count

    check_names(method)
    try:
        check_count("total_steps", total_steps, 1)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None
    cls = _resolve_class(method.optimizer.name)
    kwargs = method.optimizer_kwargs()
    base_lr = kwargs.get("lr")
    if base_lr is None:
        p = inspect.signature(cls).parameters.get("lr")
        base_lr = p.default if p is not None and p.default is not p.empty else None
    base_lr = float(base_lr) if isinstance(base_lr, (int, float)) else None
    schedule = None
    if method.schedule is not None:
        if base_lr is None:
            raise SpecError(f"{method.optimizer.name} has no lr for the schedule {method.schedule} to scale")
        try:
            schedule = _schedule(method.schedule, base_lr, total_steps)
        except (TypeError, ValueError) as e:
            raise SpecError(f"{method.schedule}: {e}") from None
    native = cls.__module__.startswith("adaptlr")
    if schedule is not None and native:
        kwargs["lr"] = schedule
    try:
        optimizer = cls(params, **kwargs)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{method.canonical}: {e}") from None
    controllers = []
    for c in method.controllers:
        ccls = _controller_class(c.name)
        ckw = {**_CONTROLLERS[c.name][1], **c.kwargs}
        ckw.setdefault("mode", "max" if higher_is_better else "min")
        try:
            controllers.append(ccls(optimizer, **ckw))
        except (TypeError, ValueError) as e:
            raise SpecError(f"{c}: {e}") from None
    manual = not native and (schedule is not None or bool(controllers))
    return MethodBuild(optimizer, schedule, controllers, manual_lr=manual, base_lr=base_lr)
