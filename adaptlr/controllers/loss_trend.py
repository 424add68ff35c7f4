"""Adjust the learning rate from how the loss changes: the bold-driver rule on a smoothed loss."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .._validation import check_count, check_real
from ._base import Controller, to_float

__all__ = ["LossTrend"]


class LossTrend(Controller):
    r"""The bold driver (Vogl et al., 1988; Battiti, 1989): grow the lr while the loss falls, cut it when it
    rises, on an exponentially smoothed (bias-corrected) loss :math:`\hat L_t`:

    .. math:: m_t = \beta m_{t-1} + (1 - \beta) L_t,\quad \hat L_t = m_t / (1 - \beta^t)

    .. math:: c \leftarrow \mathrm{clip}(c \cdot up,\ lo,\ hi)
              \text{ if } \hat L_t < \hat L_{t-1} - tol\,|\hat L_{t-1}|,

    .. math:: c \leftarrow \mathrm{clip}(c \cdot down,\ lo,\ hi)
              \text{ if } \hat L_t > \hat L_{t-1} + tol\,|\hat L_{t-1}|

    A non-finite loss counts as a rise (and does not enter the average).

    Args:
        optimizer: any ``torch.optim`` optimizer. up: growth per falling observation (default 1.05).
        down: cut per rising observation (default 0.5, Battiti's value). smoothing: :math:`\beta`
        (default 0.9; 0 is the classic full-batch rule). tolerance: relative dead band (default 0).
        min_factor, max_factor: bounds of the factor, in (0, 1] and [1, inf] (default 1e-3 and 10;
        ``max_factor=math.inf``: no upper bound).

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> trend = LossTrend(opt, up=1.1, down=0.5, smoothing=0.0)
    >>> for loss in [3.0, 2.0, 1.0, 2.0]:
    ...     _ = trend.observe(loss)
    >>> round(trend.factor, 6)
    0.605
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        up: float = 1.05,
        down: float = 0.5,
        smoothing: float = 0.9,
        tolerance: float = 0.0,
        min_factor: float = 1e-3,
        max_factor: float = 10.0,
    ) -> None:
        super().__init__(optimizer)
        self.up = check_real("up", up, 1.0)
        self.down = check_real("down", down, 0.0, 1.0, low_open=True)
        self.smoothing = check_real("smoothing", smoothing, 0.0, 1.0, high_open=True)
        self.tolerance = check_real("tolerance", tolerance, 0.0)
        self.min_factor = check_real("min_factor", min_factor, 0.0, 1.0, low_open=True)
        self.max_factor = check_real("max_factor", max_factor, 1.0, allow_inf=True)  # (inf: no upper bound)
        self.avg, self.count, self.previous = 0.0, 0, None

    def observe(self, value: float | torch.Tensor) -> float:
        """Record a loss; return the new factor."""
        loss = to_float(value)
        if not math.isfinite(loss):
            self._move(self.down)
            return self.factor
        self.count += 1
        self.avg = self.smoothing * self.avg + (1.0 - self.smoothing) * loss
        smoothed = self.avg / (1.0 - self.smoothing**self.count)
        prev, self.previous = self.previous, smoothed
        if prev is not None:
            band = self.tolerance * abs(prev)
            if smoothed < prev - band:
                self._move(self.up)
            elif smoothed > prev + band:
                self._move(self.down)
        return self.factor

    def _move(self, times: float) -> None:
        self._set_all(min(max(self.factor * times, self.min_factor), self.max_factor))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "avg": self.avg, "count": self.count, "previous": self.previous}

    def _read_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **super()._read_state(state_dict),
            "avg": check_real("avg", state_dict["avg"]),
            "count": check_count("count", state_dict["count"]),
            "previous": None if state_dict["previous"] is None else check_real("previous", state_dict["previous"]),
        }
