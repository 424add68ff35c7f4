"""Averaged stochastic gradient descent (torch.optim.ASGD)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["ASGD"]


class ASGD(ReferenceOptimizer):
    r"""Averaged SGD; matches ``torch.optim.ASGD`` (single-tensor path) in float64.

    Polyak & Juditsky (1992), "Acceleration of stochastic approximation by averaging": SGD with a slowly
    decaying step size, whose iterates are averaged; the step-size schedule is Bottou's (2012, "Stochastic
    gradient descent tricks", Section 5.3) :math:`\eta_t = \gamma / (1 + \lambda\gamma t)^{\alpha}`, and the
    average starts after :math:`t_0` steps:

    .. math::

        g_t &\leftarrow \pm g_t + w p_{t-1} \\
        p_t &= p_{t-1} (1 - \lambda \eta_t) - \eta_t g_t \\
        \bar p_t &= \bar p_{t-1} + \mu_t (p_t - \bar p_{t-1}) \\
        \eta_{t+1} &= \gamma / (1 + \lambda \gamma t)^{\alpha}, \qquad \mu_{t+1} = 1 / \max(1, t - t_0)

    with :math:`\eta_1 = \gamma`, :math:`\mu_1 = 1`, so :math:`\bar p_t = p_t` while :math:`\mu_t = 1`.

    Note (torch's semantics): ``eta`` and ``mu`` are computed at the end of a step, for the next one, and
    torch stores them in 0-dim tensors of the default dtype (float32 unless ``torch.set_default_dtype
    (torch.float64)``): compare with torch under a float64 default dtype.

    State per parameter: ``step`` (int), ``eta``, ``mu`` (floats), ``ax`` (:math:`\bar p`).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = ASGD([p], lr=0.1, lambd=0.0)
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6), np.round(opt.state[0]["ax"], 6))
    [ 0.8 -1.6] [ 0.8 -1.6]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        for name, value in (("lr", lr), ("lambd", lambd), ("alpha", alpha), ("t0", t0), ("weight_decay", weight_decay)):
            check_range(name, value)
        super().__init__(params)
        self.lr, self.lambd, self.alpha, self.t0 = lr, lambd, alpha, t0
        self.weight_decay, self.maximize = weight_decay, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "eta": float(self.lr), "mu": 1.0, "ax": np.zeros_like(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        eta, mu = state["eta"], state["mu"]
        p *= 1 - self.lambd * eta
        p -= eta * g
        if mu != 1:
            state["ax"] += (p - state["ax"]) * mu
        else:
            state["ax"][...] = p
        t = state["step"]
        state["eta"] = self.lr / ((1 + self.lambd * self.lr * t) ** self.alpha)
        state["mu"] = 1 / max(1, t - self.t0)
