"""SGD with optional momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["SGD"]


class SGD(ReferenceOptimizer):
    r"""Stochastic gradient descent; matches ``torch.optim.SGD`` (single-tensor path) in float64.

    With :math:`\mu` = ``momentum``, :math:`\tau` = ``dampening``, :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize};\qquad g_t \leftarrow g_t + \lambda p_{t-1} \\
        b_1 &= g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t \quad (t > 1) \\
        d_t &= g_t + \mu b_t \text{ (nesterov)} \quad\text{or}\quad d_t = b_t \\
        p_t &= p_{t-1} - \eta\, d_t

    Heavy-ball momentum is Polyak (1964), "Some methods of speeding up the convergence of iteration
    methods"; the Nesterov variant is written as in Sutskever et al. (2013), "On the importance of
    initialization and momentum in deep learning", rearranged so the gradient is taken at :math:`p`.

    Note (torch's semantics): the first momentum buffer is the gradient itself, *not* dampened by
    :math:`1 - \tau`; weight decay is added before the buffer, so it is accumulated too; and the buffer
    holds gradients, not steps (the lr multiplies it at use), so changing ``lr`` mid-run rescales the
    past momentum as well, unlike Sutskever's :math:`v \leftarrow \mu v - \eta g`. Without momentum,
    the state stays empty.

    State per parameter: ``momentum_buffer`` (only when ``momentum != 0``, after the first step).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.step([2 * p])  # gradient of |p|^2
    >>> print(p)
    [ 0.46 -0.92]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("momentum", momentum)
        check_range("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = np.array(g)  # a copy; b_1 = g_1: no dampening on the first step
            else:
                b = state["momentum_buffer"]
                b[...] = self.momentum * b + (1 - self.dampening) * g
            b = state["momentum_buffer"]
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g
