"""Adagrad (torch.optim.Adagrad)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Adagrad"]


class Adagrad(ReferenceOptimizer):
    r"""Adagrad; matches ``torch.optim.Adagrad`` (single-tensor path, dense gradients) in float64.

    Duchi, Hazan & Singer (2011), "Adaptive subgradient methods for online learning and stochastic
    optimization" (JMLR 12), diagonal version. With :math:`\lambda` = ``weight_decay``,
    :math:`\kappa` = ``lr_decay`` and :math:`s_0` = ``initial_accumulator_value``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize};\qquad g_t \leftarrow g_t + \lambda p_{t-1} \\
        \tilde\eta_t &= \eta / (1 + (t - 1)\kappa) \\
        s_t &= s_{t-1} + g_t^2 \\
        p_t &= p_{t-1} - \tilde\eta_t\, g_t / (\sqrt{s_t} + \epsilon)

    Note (torch's semantics): ``eps`` is added *outside* the square root, and the decayed learning rate
    uses the step count before this step (:math:`t - 1`), so the first step uses the full ``lr``.

    State per parameter: ``step`` (int), ``sum`` (:math:`s_t`, starts at ``initial_accumulator_value``).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = Adagrad([p], lr=0.1)
    >>> opt.step([2 * p])
    >>> print(p)  # the first step moves every coordinate by lr (times the sign of the gradient)
    [ 0.9 -1.9]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("lr_decay", lr_decay)
        check_range("weight_decay", weight_decay)
        check_range("initial_accumulator_value", initial_accumulator_value)
        check_range("eps", eps)
        super().__init__(params)
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.initial_accumulator_value, self.eps, self.maximize = initial_accumulator_value, eps, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "sum": np.full_like(param, self.initial_accumulator_value)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t, s = state["step"], state["sum"]
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        clr = self.lr / (1 + (t - 1) * self.lr_decay)
        s += g * g
        p -= clr * (g / (np.sqrt(s) + self.eps))
