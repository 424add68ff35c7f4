"""Reduce the learning rate when a metric stops improving (torch's ``ReduceLROnPlateau`` as a controller)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_choice, check_count, check_real
from ._base import Controller, to_float

__all__ = ["ReduceOnPlateau"]


class ReduceOnPlateau(Controller):
    r"""Cut the lr by ``factor`` after ``patience`` observations without improvement, with
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s exact semantics, as a factor on top of any schedule.

    A value :math:`a` improves on the best :math:`b` when (``mode="min"``) :math:`a < b(1 - threshold)`
    (``"rel"``) or :math:`a < b - threshold` (``"abs"``); for ``"max"``, :math:`a > b(1 + threshold)` or
    :math:`a > b + threshold`. After more than ``patience`` non-improving observations (none counted during
    ``cooldown`` observations after a cut), each group's lr becomes :math:`\max(lr \cdot factor, min\_lr_i)`,
    unless that changes it by less than ``eps``.

    Args:
        optimizer: any ``torch.optim`` optimizer (the factor is recorded in ``group["adaptlr_lr_scale"]``).
        mode: ``"min"`` or ``"max"``. factor: the cut, in (0, 1). Default 0.1. patience: default 10.
        threshold: default 1e-4. threshold_mode: ``"rel"`` or ``"abs"``. cooldown: default 0.
        min_lr: a floor on the effective lr, one for all groups or one per group. Default 0.
        eps: smallest change applied. Default 1e-8.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> plateau = ReduceOnPlateau(opt, patience=1)
    >>> for loss in [1.0, 1.0, 1.0]:
    ...     _ = plateau.observe(loss)
    >>> round(plateau.factor, 12), round(opt.param_groups[0]["lr"], 12)
    (0.1, 0.01)
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(optimizer)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.reduction = check_real("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_count("patience", patience)
        self.threshold = check_real("threshold", threshold, 0.0)
        self.cooldown = check_count("cooldown", cooldown)
        self.eps = check_real("eps", eps, 0.0)
        n = len(optimizer.param_groups)
        mins = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        if len(mins) != n:
            raise ValueError(f"Invalid min_lr: {len(mins)} values for {n} param groups")
        self.min_lrs = [check_real(f"min_lr[{i}]", m, 0.0) for i, m in enumerate(mins)]
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves on ``best`` (see the class docstring)."""
        if self.mode == "min":
            rel, ab = best * (1.0 - self.threshold), best - self.threshold
            return a < (rel if self.threshold_mode == "rel" else ab)
        rel, ab = best * (1.0 + self.threshold), best + self.threshold
        return a > (rel if self.threshold_mode == "rel" else ab)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def observe(self, value: float | torch.Tensor) -> bool:
        """Record a metric value; return True when it cut the lr."""
        current = to_float(value)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            return True
        return False

    def _reduce(self) -> None:
        for i in range(len(self._factors)):
            old_lr = self.current_lr(i)
            new_lr = max(old_lr * self.reduction, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                self._set_factor(i, self._factors[i] * (new_lr / old_lr), new_lr=new_lr)

    _STATE = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **{k: getattr(self, k) for k in self._STATE}}

    def _read_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **super()._read_state(state_dict),
            "best": check_real("best", state_dict["best"], allow_inf=True),  # (inf before the first metric)
            "num_bad_epochs": check_count("num_bad_epochs", state_dict["num_bad_epochs"]),
            "cooldown_counter": check_count("cooldown_counter", state_dict["cooldown_counter"]),
            "last_epoch": check_count("last_epoch", state_dict["last_epoch"]),
        }
