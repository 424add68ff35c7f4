"""How a parsed :class:`~adaptlr.lab.grammar.Method` becomes a running optimizer.

:func:`check_names` says whether every optimizer argument exists,
:func:`validate_method` builds the method once on a throwaway parameter so that values the classes refuse are
refused before any training, and :func:`build_method` constructs the optimizer (with its schedule) and the
controllers of a run: a :class:`MethodBuild`, which the training loop drives (the lr of each step, the lr set by
hand on torch.optim classes, the effective lr it logs). :meth:`Method.validate` and :meth:`Method.build` are
these functions. What they need of a parsed method is :class:`ParsedMethod` (the grammar's :class:`Method` is
one), so building knows nothing of parsing.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import catalog
from .schedule_terms import build_schedule
from .terms import SpecError, Term

__all__ = ["MethodBuild", "ParsedMethod", "build_method", "check_names", "validate_method"]


class ParsedMethod(Protocol):
    """What building needs of a parsed method (:class:`adaptlr.lab.grammar.Method`)."""

    @property
    def optimizer(self) -> Term: ...
    @property
    def schedule(self) -> Term | None: ...
    @property
    def controllers(self) -> tuple[Term, ...]: ...
    @property
    def canonical(self) -> str: ...
    @property
    def tuned(self) -> list[tuple[int, str]]: ...
    def optimizer_kwargs(self) -> dict[str, Any]: ...


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


def validate_method(method: ParsedMethod, total_steps: int | None = None) -> None:
    """:meth:`Method.validate`: check ``method`` by building it once on a throwaway parameter."""
    check_names(method)
    import torch

    cls = catalog.optimizer_class(method.optimizer.name)
    if isinstance(cls, type) and not issubclass(cls, torch.optim.Optimizer):
        # a method with a training loop of its own (``auto``): built from its arguments alone
        try:
            cls(**method.optimizer_kwargs())
        except (TypeError, ValueError) as e:
            raise SpecError(f"{method.canonical}: {e}") from None
        return
    build_method(method, [torch.nn.Parameter(torch.zeros(2, 2))], 1000 if total_steps is None else total_steps)


def check_names(method: ParsedMethod) -> None:
    """Raise :class:`SpecError` unless every optimizer argument of ``method`` exists (and no ``?`` is left);
    its names were looked up when it was parsed."""
    if method.tuned:
        raise SpecError(f"'{method.canonical}' has '?' placeholders; fill them (adaptlr tune does)")
    cls = catalog.optimizer_class(method.optimizer.name)
    if cls is None:
        raise SpecError(f"unknown optimizer {method.optimizer.name!r}")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p != "params"]
        for k in method.optimizer.kwargs:
            if k not in allowed:
                raise SpecError(
                    f"{method.optimizer.name}: unknown argument {k!r}{catalog.did_you_mean(k, allowed)} "
                    f"(arguments: {', '.join(allowed)})"
                )


def build_method(
    method: ParsedMethod, params: Iterable[Any], total_steps: int, higher_is_better: bool = False
) -> MethodBuild:
    """:meth:`Method.build`: the optimizer (with its schedule) and the controllers of ``method``."""
    from adaptlr._validation import check_count

    check_names(method)
    try:
        check_count("total_steps", total_steps, 1)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None
    cls = catalog.optimizer_class(method.optimizer.name)
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
            schedule = build_schedule(method.schedule, base_lr, total_steps)
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
        ccls = catalog.controller_class(c.name)
        ckw = {**catalog.controller_defaults(c.name), **c.kwargs}
        ckw.setdefault("mode", "max" if higher_is_better else "min")
        try:
            controllers.append(ccls(optimizer, **ckw))
        except (TypeError, ValueError) as e:
            raise SpecError(f"{c}: {e}") from None
    manual = not native and (schedule is not None or bool(controllers))
    return MethodBuild(optimizer, schedule, controllers, manual_lr=manual, base_lr=base_lr)
