"""Drive any ``torch.optim`` optimizer with an adaptlr schedule (LambdaLR semantics, resume-safe)."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from .._validation import check_choice
from ._base import Schedule, ScheduleLike

__all__ = ["ScheduleLR", "as_torch_scheduler"]

_MISMATCH = ("raise", "keep", "rescale")


def _spec_of(schedule: ScheduleLike) -> dict[str, Any] | None:
    """The schedule's spec; ``None`` for a user function, or a schedule of one that was not registered."""
    return getattr(schedule, "spec", None) if isinstance(schedule, Schedule) else None


class ScheduleLR(LRScheduler):
    r"""A ``torch.optim.lr_scheduler.LRScheduler`` that sets each group's lr to
    :math:`lr_i = base\_lr_i \cdot s(t) \cdot lr\_scale_i` where :math:`t` counts *applied* optimizer steps.

    Build it with :func:`as_torch_scheduler`. ``lr_scale`` is the product of the adaptlr controllers' factors
    (``group["adaptlr_lr_scale"]``), for torch's optimizers and adaptlr's alike. A step that
    ``torch.amp.GradScaler`` skipped (the optimizer's ``step`` was never called) or that an adaptlr optimizer
    skipped (``optimizer.last_step_skipped``) does not advance the schedule. ``state_dict()`` stores the
    schedule's spec (``None`` for a user function: any function ``step -> value`` works, registered or not,
    as in ``LambdaLR``); see :meth:`load_state_dict`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: ScheduleLike,
        *,
        count: str = "applied",
        on_mismatch: str = "raise",
        last_epoch: int = -1,
    ) -> None:
        if not callable(schedule):
            raise ValueError(f"Invalid schedule: {schedule!r} (expected a callable step -> value)")
        for i, group in enumerate(optimizer.param_groups):
            if group.get("adaptlr_schedule") is not None or (
                callable(group["lr"]) and not isinstance(group["lr"], torch.Tensor)
            ):
                raise ValueError(
                    f"param group {i} already has a schedule as lr: an adaptlr optimizer runs "
                    "it itself, no torch scheduler is needed"
                )
        self.schedule = schedule
        self.count = check_choice("count", count, ("applied", "calls"))
        self.on_mismatch = check_choice("on_mismatch", on_mismatch, _MISMATCH)
        self._applied = 0
        self._hook = optimizer.register_step_post_hook(self._after_optimizer_step)
        super().__init__(optimizer, last_epoch)

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not getattr(optimizer, "last_step_skipped", False):
            self._applied += 1

    def get_lr(self) -> list[float]:  # type: ignore[override]
        value = self.schedule(self.last_epoch)
        return [
            float(base) * value * self._group_scale(group)
            for base, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True)
        ]

    def step(self, epoch: int | None = None) -> None:
        """Advance by one step if an optimizer step was applied since the last call (``count="applied"``)."""
        if epoch is None and self.count == "applied" and self._step_count >= 1 and self._applied == 0:
            return
        self._applied = 0
        super().step(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
            "spec": _spec_of(self.schedule),
            "count": self.count,
        }

    def load_state_dict(self, state_dict: dict[str, Any], on_mismatch: str | None = None) -> None:
        """Load a state; if its spec differs from this scheduler's schedule, ``on_mismatch`` decides:

        ``"raise"`` (default) a ``ValueError`` showing both specs; ``"keep"`` keeps this schedule and the
        saved step count (the lr jumps to this schedule's value); ``"rescale"`` keeps this schedule and
        rescales the base lrs so that the lr continues from the saved one:
        :math:`base_i = lr_i^{saved} / s(t)`.

        Everything is checked before anything is changed: a state that does not fit (missing keys, another
        number of param groups, a schedule mismatch) raises and leaves the scheduler and the optimizer as
        they were. A schedule without a spec (a user function that was not registered) cannot be compared: it
        loads as torch's ``LambdaLR`` does, and continues exactly when it is the same function.
        """
        mode = check_choice("on_mismatch", on_mismatch or self.on_mismatch, _MISMATCH)
        n = len(self.optimizer.param_groups)
        try:
            last_epoch, step_count = int(state_dict["last_epoch"]), int(state_dict["_step_count"])
            base_lrs = [float(x) for x in state_dict["base_lrs"]]
            last_lr = [float(x) for x in state_dict.get("_last_lr", base_lrs)]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"not a ScheduleLR state: {e!r} (expected last_epoch, _step_count, base_lrs, _last_lr and spec)"
            ) from None
        if len(base_lrs) != n or len(last_lr) != n:
            raise ValueError(f"the state is for {len(base_lrs)} param group(s), this optimizer has {n}")
        saved, mine = state_dict.get("spec"), _spec_of(self.schedule)
        if saved is not None and mine is not None and saved != mine:
            if mode == "raise":
                raise ValueError(
                    "the checkpoint's schedule differs from this scheduler's:\n"
                    f"  saved:   {saved}\n  current: {mine}\n"
                    "pass on_mismatch='keep' (use the new schedule from the saved step) or "
                    "on_mismatch='rescale' (also rescale it to continue from the saved lr)"
                )
            if mode == "rescale":
                value = self.schedule(last_epoch)
                if value == 0:
                    raise ValueError("cannot rescale: the new schedule is 0 at the saved step")
                base_lrs = [
                    lr / (value * self._group_scale(g))
                    for lr, g in zip(last_lr, self.optimizer.param_groups, strict=True)
                ]
        values = [
            b * float(self.schedule(last_epoch)) * self._group_scale(g)
            for b, g in zip(base_lrs, self.optimizer.param_groups, strict=True)
        ]
        # nothing above changed the scheduler or the optimizer; from here on nothing can fail
        self.last_epoch, self._step_count, self.base_lrs = last_epoch, step_count, base_lrs
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = values
        self._applied = 0

    @staticmethod
    def _group_scale(group: dict[str, Any]) -> float:
        """The controllers' factor, multiplied in: a group driven by this scheduler has a number as its lr, and
        the controllers' cut of a number lr lives in ``group["lr"]`` itself, which this scheduler rewrites."""
        return float(group.get("adaptlr_lr_scale", 1.0))


def as_torch_scheduler(
    optimizer: torch.optim.Optimizer, schedule: ScheduleLike, *, count: str = "applied", on_mismatch: str = "raise"
) -> ScheduleLR:
    r"""Drive a ``torch.optim`` optimizer with a schedule used as a multiplier of each group's base lr
    (``LambdaLR`` semantics): :math:`lr_i(t) = base\_lr_i \cdot s(t)`, ``t`` = applied optimizer steps.

    Call ``scheduler.step()`` after ``optimizer.step()`` (or ``scaler.step(optimizer)``) as usual; skipped
    steps do not advance it (``count="calls"`` advances on every call, as torch's schedulers do).

    >>> import torch
    >>> from adaptlr import schedules
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = schedules.as_torch_scheduler(opt, schedules.cosine(1.0, steps=100))
    >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 6)
    0.099975
    """
    return ScheduleLR(optimizer, schedule, count=count, on_mismatch=on_mismatch)
