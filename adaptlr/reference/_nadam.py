"""NAdam, Adam with Nesterov momentum and Dozat's momentum schedule (torch.optim.NAdam)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["NAdam"]


class NAdam(ReferenceOptimizer):
    r"""NAdam; matches ``torch.optim.NAdam`` (single-tensor path) in float64.

    Dozat (2016), "Incorporating Nesterov momentum into Adam" (ICLR workshop), Algorithm 2, with the
    momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`, :math:`\psi` =
    ``momentum_decay``. With :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize} \\
        p_{t-1} &\leftarrow (1 - \eta\lambda)\, p_{t-1} \text{ (decoupled)}
            \quad\text{or}\quad g_t \leftarrow g_t + \lambda p_{t-1} \\
        \mu_t &= \beta_1 (1 - \tfrac12\, 0.96^{t\psi}), \qquad
            \mu_{t+1} = \beta_1 (1 - \tfrac12\, 0.96^{(t+1)\psi}), \qquad
            \Pi_t = \prod_{i \le t} \mu_i \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        d_t &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        p_t &= p_{t-1} - \eta \frac{1 - \mu_t}{1 - \Pi_t} \frac{g_t}{d_t}
            - \eta \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d_t}

    Note (torch's semantics): :math:`m_t` itself uses the constant :math:`\beta_1`; the schedule
    :math:`\mu_t` enters only the two step coefficients. ``decoupled_weight_decay=True`` gives NAdamW.
    torch keeps ``mu_product`` as a 0-dim tensor of torch's *default* dtype (float32 unless
    ``torch.set_default_dtype(torch.float64)``), which limits agreement to about 1e-7 in float32 mode;
    here it is a Python float.

    State per parameter: ``step`` (int), ``mu_product`` (float, :math:`\Pi_t`), ``exp_avg``, ``exp_avg_sq``.

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = NAdam([p], lr=0.1)
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6))  # a little over lr: the Nesterov look-ahead adds mu_2 m_1 to (1 - mu_1) g_1
    [ 0.894355 -1.894355]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("betas[0]", betas[0], 0.0, 1.0, open_high=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, open_high=True)
        check_range("weight_decay", weight_decay)
        check_range("momentum_decay", momentum_decay)
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.momentum_decay, self.decoupled_weight_decay = momentum_decay, decoupled_weight_decay
        self.maximize = maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        zeros = np.zeros_like
        return {"step": 0, "mu_product": 1.0, "exp_avg": zeros(param), "exp_avg_sq": zeros(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        (beta1, beta2), lr, psi = self.betas, self.lr, self.momentum_decay
        if self.maximize:
            g = -g
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                p *= 1 - lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        m += (1 - beta1) * (g - m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        v[...] = beta2 * v + (1 - beta2) * g * g
        denom = np.sqrt(v / (1 - beta2**t)) + self.eps
        p -= lr * (1.0 - mu) / (1.0 - mu_product) * (g / denom)
        p -= lr * mu_next / (1.0 - mu_product * mu_next) * (m / denom)
