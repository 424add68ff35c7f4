"""Adamax, Adam's infinity-norm variant (torch.optim.Adamax)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Adamax"]


class Adamax(ReferenceOptimizer):
    r"""Adamax; matches ``torch.optim.Adamax`` (single-tensor path) in float64.

    Kingma & Ba (2015), "Adam: a method for stochastic optimization", Section 7.1, Algorithm 2.
    With :math:`\beta_1, \beta_2` = ``betas`` and :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize};\qquad g_t \leftarrow g_t + \lambda p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        u_t &= \max(\beta_2 u_{t-1},\ |g_t| + \epsilon) \\
        p_t &= p_{t-1} - \frac{\eta}{1 - \beta_1^t}\, \frac{m_t}{u_t}

    Note (torch's semantics): ``eps`` is added to :math:`|g_t|` *inside* the maximum (the paper has no
    :math:`\epsilon`), so :math:`u_t \ge \epsilon` and a zero gradient never divides by zero.

    State per parameter: ``step`` (int), ``exp_avg`` (:math:`m`), ``exp_inf`` (:math:`u`).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = Adamax([p], lr=0.1)
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6))
    [ 0.9 -1.9]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("betas[0]", betas[0], 0.0, 1.0, open_high=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, open_high=True)
        check_range("weight_decay", weight_decay)
        super().__init__(params)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay, self.maximize = weight_decay, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "exp_avg": np.zeros_like(param), "exp_inf": np.zeros_like(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t, m, u = state["step"], state["exp_avg"], state["exp_inf"]
        beta1, beta2 = self.betas
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        m += (1 - beta1) * (g - m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        u[...] = np.maximum(beta2 * u, np.abs(g) + self.eps)
        clr = self.lr / (1 - beta1**t)
        p -= clr * (m / u)
