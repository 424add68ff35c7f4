"""Adadelta (torch.optim.Adadelta)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Adadelta"]


class Adadelta(ReferenceOptimizer):
    r"""Adadelta; matches ``torch.optim.Adadelta`` (single-tensor path) in float64.

    Zeiler (2012), "ADADELTA: an adaptive learning rate method", Algorithm 1, with an extra learning-rate
    factor :math:`\eta`. With :math:`\rho` = ``rho``, :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize};\qquad g_t \leftarrow g_t + \lambda p_{t-1} \\
        v_t &= \rho v_{t-1} + (1 - \rho) g_t^2 \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
        p_t &= p_{t-1} - \eta \Delta_t

    Note (torch's semantics): ``lr`` (default 1.0) multiplies the paper's update, and it is applied
    *after* :math:`u_t` is accumulated, so :math:`u` (``acc_delta``) does not depend on ``lr``;
    ``eps`` is inside both square roots, as in the paper.

    State per parameter: ``step`` (int), ``square_avg`` (:math:`v`), ``acc_delta`` (:math:`u`).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = Adadelta([p])
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6))  # the first steps are tiny: sqrt(eps) / sqrt(0.1 g^2) * g
    [ 0.996838 -1.996838]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("rho", rho, 0.0, 1.0)
        check_range("eps", eps)
        check_range("weight_decay", weight_decay)
        super().__init__(params)
        self.lr, self.rho, self.eps, self.weight_decay, self.maximize = lr, rho, eps, weight_decay, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "square_avg": np.zeros_like(param), "acc_delta": np.zeros_like(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        rho, eps, v, u = self.rho, self.eps, state["square_avg"], state["acc_delta"]
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v[...] = rho * v + (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u[...] = rho * u + (1 - rho) * delta * delta
        p -= self.lr * delta
