"""The `Controller` base class: a multiplicative factor on each param group's learning rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._validation import check_real

__all__ = ["Controller"]


def to_float(value: Any) -> float:
    """A metric as a Python float (tensors are detached first)."""
    return float(value.detach() if isinstance(value, torch.Tensor) else value)


class Controller:
    r"""Owns a multiplicative factor :math:`c_i` on the learning rate of each param group ``i``.

    The effective lr is :math:`lr_i = schedule_i(t) \cdot \prod_k c_{k,i}` over the controllers ``k``
    attached to the optimizer. Each controller multiplies its changes into ``group["adaptlr_lr_scale"]``. A
    group whose lr is a number gets the cut in ``group["lr"]`` itself (as torch's ``ReduceLROnPlateau`` does),
    so a state dict moved into ``torch.optim`` keeps it; a group of an adaptlr optimizer driven by a schedule
    gets ``group["lr"] = schedule(t) x factor`` written by the optimizer (``refresh_lr``), and
    :func:`adaptlr.schedules.as_torch_scheduler` multiplies the factor in for torch's optimizers.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        self.optimizer = optimizer
        self._factors = [1.0] * len(optimizer.param_groups)
        self._native = bool(getattr(type(optimizer), "supports_lr_scale", False))

    @property
    def factor(self) -> float:
        """This controller's factor on the lr of the first param group."""
        return self._factors[0]

    @property
    def factors(self) -> list[float]:
        """This controller's factor on each param group's lr."""
        return list(self._factors)

    def current_lr(self, group_index: int = 0) -> float:
        """The lr the next step of a group will use (schedule value x every controller's factor)."""
        if hasattr(self.optimizer, "current_lr"):
            return float(self.optimizer.current_lr(group_index))
        return float(self.optimizer.param_groups[group_index]["lr"])

    def _set_factor(self, index: int, new: float, new_lr: float | None = None) -> None:
        """Move group ``index``'s factor to ``new`` (``new_lr``: the exact lr for torch's optimizers)."""
        old = self._factors[index]
        if new == old:
            return
        ratio = new / old
        group = self.optimizer.param_groups[index]
        group["adaptlr_lr_scale"] = float(group.get("adaptlr_lr_scale", 1.0)) * ratio
        if self._native and group.get("adaptlr_schedule") is not None:
            self.optimizer.refresh_lr(index)  # group["lr"] = schedule(clock) x factor, written by the optimizer
        else:  # a number: the cut goes into group["lr"] itself, as torch's ReduceLROnPlateau does
            lr = float(group["lr"]) * ratio if new_lr is None else new_lr
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._factors[index] = new

    def _set_all(self, new: float) -> None:
        for i in range(len(self._factors)):
            self._set_factor(i, new)

    def state_dict(self) -> dict[str, Any]:
        """The controller's state (plain Python values; loads with ``torch.load(weights_only=True)``)."""
        return {"factors": list(self._factors)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state; the optimizer's own ``load_state_dict`` restores ``lr`` and the factor key.

        All or nothing: the whole state is read and checked first (every key present, numbers where numbers
        belong, one factor per param group of *this* optimizer: a state saved with one group does not load
        into an optimizer with two), and only then assigned, so a ``ValueError`` leaves the controller exactly
        as it was."""
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"not a {type(self).__name__} state: {type(state_dict).__name__}")
        try:
            new = self._read_state(state_dict)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid {type(self).__name__} state for this optimizer: {e}") from None
        for name, value in new.items():
            setattr(self, name, value)
        self._after_load()

    def _read_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to assign, read and checked from ``state_dict`` (a subclass adds its own); raises
        ``KeyError``, ``TypeError`` or ``ValueError`` and changes nothing."""
        factors = [check_real(f"factors[{i}]", f, 0.0, low_open=True) for i, f in enumerate(state_dict["factors"])]
        n = len(self.optimizer.param_groups)
        if len(factors) != n:
            raise ValueError(f"it holds {len(factors)} param group factor(s), this optimizer has {n} param group(s)")
        return {"_factors": factors}

    def _after_load(self) -> None:
        """Called once a state is assigned (nothing may fail here)."""
