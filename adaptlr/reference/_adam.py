"""Adam, with AMSGrad and decoupled weight decay options, and AdamW (torch.optim.Adam, torch.optim.AdamW)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Adam", "AdamW"]


class Adam(ReferenceOptimizer):
    r"""Adam; matches ``torch.optim.Adam`` (single-tensor path) in float64.

    Kingma & Ba (2015), "Adam: a method for stochastic optimization", Algorithm 1, in the form of
    Section 2's last paragraph (:math:`\epsilon` added to the bias-corrected :math:`\sqrt{\hat v}`);
    ``amsgrad`` is Reddi, Kale & Kumar (2018), "On the convergence of Adam and beyond";
    ``decoupled_weight_decay`` is Loshchilov & Hutter (2019), "Decoupled weight decay regularization".
    With :math:`\beta_1, \beta_2` = ``betas`` and :math:`\lambda` = ``weight_decay``:

    .. math::

        g_t &\leftarrow -g_t \text{ if maximize} \\
        p_{t-1} &\leftarrow (1 - \eta\lambda)\, p_{t-1} \text{ (decoupled)}
            \quad\text{or}\quad g_t \leftarrow g_t + \lambda p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (amsgrad)} \quad\text{or}\quad \hat v_t = v_t \\
        p_t &= p_{t-1} - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Note (torch's semantics): AMSGrad keeps the maximum of the *uncorrected* :math:`v_t`
    (``max_exp_avg_sq``) and divides it by the current :math:`\sqrt{1-\beta_2^t}`; decoupled decay
    multiplies by :math:`1 - \eta\lambda` (``lr`` times ``weight_decay``, not the paper's schedule
    multiplier alone), before the moments are updated.

    State per parameter: ``step`` (int), ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`);
    ``max_exp_avg_sq`` if ``amsgrad``.

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = Adam([p], lr=0.1)
    >>> opt.step([2 * p])
    >>> print(np.round(p, 6))  # the first step moves every coordinate by about lr
    [ 0.9 -1.9]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("betas[0]", betas[0], 0.0, 1.0, open_high=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, open_high=True)
        check_range("weight_decay", weight_decay)
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.amsgrad, self.maximize, self.decoupled_weight_decay = amsgrad, maximize, decoupled_weight_decay

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        state: dict[str, Any] = {"step": 0, "exp_avg": np.zeros_like(param)}
        state["exp_avg_sq"] = np.zeros_like(param)
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param)
        return state

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
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = lr / (1 - beta1**t)
        bias_correction2_sqrt = math.sqrt(1 - beta2**t)
        p -= step_size * (m / (np.sqrt(v) / bias_correction2_sqrt + self.eps))


class AdamW(Adam):
    r"""AdamW; matches ``torch.optim.AdamW``: :class:`Adam` with ``decoupled_weight_decay=True``.

    Loshchilov & Hutter (2019), "Decoupled weight decay regularization", Algorithm 2:
    :math:`p \leftarrow (1 - \eta\lambda) p` before the Adam step. Note the default
    ``weight_decay=1e-2`` (Adam's is 0).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = AdamW([p], lr=0.1, weight_decay=0.5)
    >>> opt.step([np.zeros(2)])  # a zero gradient: only the decay acts
    >>> print(p)
    [ 0.95 -1.9 ]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)
