"""The learning rate of a step: a number, a 0-dim tensor or a schedule, the clock that drives a schedule, and the
checks a step makes before it uses an lr (a mixin of :class:`adaptlr.optim.Optimizer`, see its docstring)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_lr

__all__ = ["LR_SCALE", "SCHEDULE", "SCHEDULE_SPEC", "STEPS", "LearningRate"]

#: param-group keys of adaptlr's own (namespaced, so that other tools' keys -- timm's ``lr_scale`` -- mean theirs)
SCHEDULE = "adaptlr_schedule"  # the schedule object (not in state_dict(): its spec is, under SCHEDULE_SPEC)
SCHEDULE_SPEC = "adaptlr_schedule_spec"  # in state_dict(): the schedule's spec (plain data), or None
LR_SCALE = "adaptlr_lr_scale"  # the product of the controllers' factors (1.0 without controllers)
STEPS = "adaptlr_steps"  # the schedule clock: applied steps of the group
_WRITTEN = "adaptlr_lr_written"  # the lr this optimizer last wrote into group["lr"] (to detect other writers)
_OLD_KEYS = {"steps": STEPS, "lr_scale": LR_SCALE}  # checkpoints written before the keys were namespaced


def _is_schedule(lr: Any) -> bool:
    return callable(lr) and not isinstance(lr, torch.Tensor)


class LearningRate:
    """``group["lr"]`` as the number the next step uses: a schedule's value times the controllers' factor, checked
    before a step uses it, and the clock (:data:`STEPS`) that ticks once per applied step, in one place."""

    #: set True on an optimizer (``opt.allow_negative_lr = True``) to let a schedule or controller give a
    #: negative learning rate on purpose (gradient ascent); a non-finite learning rate is always refused
    allow_negative_lr: bool = False
    _state_creating_step: bool = False  # (see step(): torch.distributed.checkpoint's zero step)

    def _scheduled_lr(self, group: dict[str, Any]) -> float:
        """``schedule(clock) x factor`` for a group with a schedule (checked when a step is about to use it)."""
        lr = float(group[SCHEDULE](group.get(STEPS, 0)))
        scale = group.get(LR_SCALE, 1.0)
        return lr * scale if scale != 1.0 else lr

    def _check_lr_value(self, lr: float, source: str | Callable[[], str]) -> float:
        """``lr``, or the error naming where it came from (``source``: a text, or a function writing it: the
        text of a schedule's repr is only made when it is needed, not at every step)."""
        if not math.isfinite(lr) or (lr < 0 and not self.allow_negative_lr):
            source = source() if callable(source) else source
            raise ValueError(
                f"{type(self).__name__}: the learning rate is {lr!r} ({source}); a learning rate must be finite"
                + (
                    ""
                    if not math.isfinite(lr)
                    else " and >= 0 (set optimizer.allow_negative_lr = True to allow negative ones)"
                )
            )
        return lr

    def _refresh_lr(self, group: dict[str, Any]) -> None:
        """Write the next step's lr into ``group["lr"]`` (groups with a schedule; others hold the user's number)."""
        if group.get(SCHEDULE) is None:
            return
        lr = self._scheduled_lr(group)
        group["lr"] = group[_WRITTEN] = lr

    def set_lr(self, lr: Any, group_index: int | None = None) -> None:
        """Give one group (or all) a new learning rate: a number, a 0-dim tensor or a schedule (continuing from the
        group's clock, ``group["adaptlr_steps"]``); ``group["lr"]`` then holds the next step's value."""
        check_lr(lr)
        for group in self.param_groups if group_index is None else [self.param_groups[group_index]]:
            group[SCHEDULE] = lr if _is_schedule(lr) else None
            group.pop(_WRITTEN, None)
            if _is_schedule(lr):
                self._refresh_lr(group)
            else:
                group["lr"] = lr

    def refresh_lr(self, group_index: int | None = None) -> None:
        """Recompute ``group["lr"]`` of one group (or all) after its factor changed (controllers call this)."""
        groups = self.param_groups if group_index is None else [self.param_groups[group_index]]
        for group in groups:
            self._refresh_lr(group)

    def _lr(self, group: dict[str, Any]) -> Any:
        """The lr this step of ``group`` uses: ``group["lr"]`` (a number, or a 0-dim tensor), checked.

        A group driven by an adaptlr schedule refuses a ``group["lr"]`` written by someone else (a torch
        ``LRScheduler`` composed around it would otherwise be silently overwritten or multiplied in)."""
        lr = group["lr"]
        if self._state_creating_step:
            return 0.0  # torch.distributed.checkpoint's zero step on a fresh optimizer (see step())
        if _is_schedule(lr):  # a schedule assigned to group["lr"] by hand (the habit before 0.2): adopt it
            group[SCHEDULE] = lr
            self._refresh_lr(group)
            lr = group["lr"]
        if group.get(SCHEDULE) is not None:
            written = group.get(_WRITTEN)
            if "initial_lr" in group or (written is not lr and written != lr):  # (`is`: a nan written is ours)
                raise RuntimeError(
                    f"{type(self).__name__}: param group lr is driven by the adaptlr schedule {group[SCHEDULE]!r}, "
                    f"but something else changed group['lr'] (to {lr!r}) or attached a torch LRScheduler "
                    "(group['initial_lr'] is set). Use one of the two: drop the torch scheduler, or pass a number "
                    "as lr= and schedule it with torch (adaptlr.schedules.as_torch_scheduler does so for an "
                    "adaptlr schedule)."
                )
            return self._check_lr_value(
                lr,
                lambda: (
                    f"from {group[SCHEDULE]!r} at step {group.get(STEPS, 0)}, times the "
                    f"controllers' factor {group.get(LR_SCALE, 1.0)!r}"
                ),
            )
        if isinstance(lr, torch.Tensor):
            return lr
        return self._check_lr_value(float(lr), "group['lr']")

    def current_lr(self, group_index: int = 0) -> float:
        """The learning rate that the next step of param group ``group_index`` will use (``group["lr"]``)."""
        return float(self._lr(self.param_groups[group_index]))

    def _tick(self) -> None:
        """One applied step: every group's clock advances and its scheduled lr is recomputed (the one place)."""
        compiling = torch.compiler.is_compiling()
        for group in self.param_groups:
            if group.get(SCHEDULE) is None and compiling:
                continue  # a Python int read under torch.compile is a guard: count only where a schedule needs it
            group[STEPS] = group.get(STEPS, 0) + 1
            self._refresh_lr(group)
