"""RMSprop, plain or centered, with optional momentum (torch.optim.RMSprop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["RMSprop"]


class RMSprop(ReferenceOptimizer):
    r"""RMSprop; matches ``torch.optim.RMSprop`` (single-tensor path) in float64.

    Hinton, Srivastava & Swersky (2012), Coursera "Neural networks for machine learning", lecture 6e;
    the centered variant and the momentum form are from Graves (2013), "Generating sequences with
    recurrent neural networks", eqs. (38)-(41). With :math:`\alpha` = ``alpha``, :math:`\mu` =
    ``momentum``, :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize};\qquad g_t \leftarrow g_t + \lambda p_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) g_t \quad\text{(centered only)} \\
        d_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \text{ (centered)}
            \quad\text{or}\quad d_t = \sqrt{v_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t / d_t, \qquad p_t = p_{t-1} - \eta b_t \quad (\mu > 0) \\
        p_t &= p_{t-1} - \eta\, g_t / d_t \quad (\mu = 0)

    Note (torch's semantics): no bias correction (so early steps are large: :math:`v_1 = (1-\alpha) g_1^2`),
    ``eps`` outside the square root, and the momentum buffer holds the *normalised* gradient, without the
    learning rate and without a :math:`(1 - \mu)` factor.

    State per parameter: ``step`` (int), ``square_avg``; ``momentum_buffer`` if ``momentum > 0``;
    ``grad_avg`` if ``centered``.

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = RMSprop([p], lr=0.01)
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6))  # lr / sqrt(1 - alpha) = 0.1 per coordinate on the first step
    [ 0.9 -1.9]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("momentum", momentum)
        check_range("weight_decay", weight_decay)
        check_range("alpha", alpha)
        super().__init__(params)
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered, self.maximize = momentum, centered, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "square_avg": np.zeros_like(param)}
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(param)
        if self.centered:
            state["grad_avg"] = np.zeros_like(param)
        return state

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        alpha, v = self.alpha, state["square_avg"]
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v[...] = alpha * v + (1 - alpha) * g * g
        if self.centered:
            m = state["grad_avg"]
            m += (1 - alpha) * (g - m)  # torch: grad_avg.lerp_(grad, 1 - alpha)
            denom = np.sqrt(v - m * m) + self.eps
        else:
            denom = np.sqrt(v) + self.eps
        if self.momentum > 0:
            b = state["momentum_buffer"]
            b[...] = self.momentum * b + g / denom
            p -= self.lr * b
        else:
            p -= self.lr * (g / denom)
