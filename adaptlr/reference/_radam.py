"""RAdam, Adam with a rectified adaptive learning rate (torch.optim.RAdam)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["RAdam"]


class RAdam(ReferenceOptimizer):
    r"""RAdam; matches ``torch.optim.RAdam`` (single-tensor path) in float64.

    Liu et al. (2020), "On the variance of the adaptive learning rate and beyond", Algorithm 2.
    With :math:`\beta_1, \beta_2` = ``betas`` and :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize} \\
        p_{t-1} &\leftarrow (1 - \eta\lambda)\, p_{t-1} \text{ (decoupled)}
            \quad\text{or}\quad g_t \leftarrow g_t + \lambda p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,
            \qquad \hat m_t = m_t / (1 - \beta_1^t) \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
            \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}},
            \qquad l_t = \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} \\
        p_t &= p_{t-1} - \eta\, \hat m_t\, r_t\, l_t \quad (\rho_t > 5), \qquad
            p_t = p_{t-1} - \eta\, \hat m_t \quad \text{otherwise}

    Note (torch's semantics): the threshold is :math:`\rho_t > 5` (the paper's Algorithm 2 tests
    :math:`\rho_t > 4`, where :math:`r_t` becomes defined), and :math:`\rho_1 = 1` for every
    :math:`\beta_2`, so the first steps (about five) are bias-corrected momentum SGD with the full ``lr``;
    ``eps`` is added to :math:`\sqrt{v_t}` *before* the bias correction
    :math:`\sqrt{1-\beta_2^t}` is applied, unlike :class:`Adam`.

    State per parameter: ``step`` (int), ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = RAdam([p], lr=0.1)
    >>> opt.step([2 * p])  # rho_1 = 1 <= 5: a plain (bias-corrected) momentum step
    >>> print(np.round(p, 6))
    [ 0.8 -1.6]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("betas[0]", betas[0], 0.0, 1.0, open_high=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, open_high=True)
        check_range("weight_decay", weight_decay)
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.decoupled_weight_decay, self.maximize = decoupled_weight_decay, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        (beta1, beta2), lr = self.betas, self.lr
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                p *= 1 - lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m += (1 - beta1) * (g - m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        v[...] = beta2 * v + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        m_hat = m / bias_correction1
        # Python floats, in torch's order: the branch below must be taken at the same steps as torch's.
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive_lr = math.sqrt(bias_correction2) / (np.sqrt(v) + self.eps)
            p -= m_hat * lr * adaptive_lr * rect
        else:
            p -= m_hat * lr
