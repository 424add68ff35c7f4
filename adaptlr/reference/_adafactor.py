"""Adafactor, factored second moments (torch.optim.Adafactor)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Adafactor"]


class Adafactor(ReferenceOptimizer):
    r"""Adafactor without momentum; matches ``torch.optim.Adafactor`` in float64.

    Shazeer & Stern (2018), "Adafactor: adaptive learning rates with sublinear memory cost", Algorithms 4
    (matrices) and 5 (vectors), with the relative step size of Section 8. For a tensor with two or more dims
    (the last two are the matrix :math:`n \times m`), the second moment is kept as its row and column means:

    .. math::

        \hat\beta_{2t} &= 1 - t^{c}, \qquad \rho_t = \min(\gamma, 1/\sqrt t), \qquad
            \alpha_t = \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))\, \rho_t \\
        R_t &= \hat\beta_{2t} R_{t-1} + (1 - \hat\beta_{2t}) \tfrac1m (g_t^2) 1_m, \qquad
        C_t = \hat\beta_{2t} C_{t-1} + (1 - \hat\beta_{2t}) \tfrac1n 1_n^\top (g_t^2) \\
        \hat V_t &= R_t C_t / \max(\tfrac1n 1_n^\top R_t, \epsilon_1) \qquad
            \text{(vectors: } \hat V_t = \hat\beta_{2t} \hat V_{t-1} + (1 - \hat\beta_{2t}) g_t^2) \\
        U_t &= g_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}, \qquad
        p_t = p_{t-1} (1 - \gamma\lambda) - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t) / d)} U_t

    Note (torch's semantics, which differ from the paper): :math:`\epsilon_1` is squared inside the root and
    also bounds the mean of :math:`R`; the paper's step size :math:`\min(10^{-2}, 1/\sqrt t)` uses ``lr`` as the
    cap; there is no first moment; ``eps1=None`` is the float64 machine epsilon here (torch: the parameter's
    dtype's); decoupled weight decay :math:`\lambda` multiplies by :math:`1 - \gamma\lambda`.

    State per parameter: ``step`` (int), and ``row_var`` (:math:`R`, shape ``[..., n, 1]``), ``col_var``
    (:math:`C`, ``[..., 1, m]``) for two or more dims, else ``variance``.

    >>> import numpy as np
    >>> p = np.ones((2, 3))
    >>> opt = Adafactor([p], lr=0.1)
    >>> opt.step([np.ones((2, 3))])  # RMS(p) = 1, rho = min(0.1, 1): every entry moves by 0.1
    >>> print(np.round(p, 6))
    [[0.9 0.9 0.9]
     [0.9 0.9 0.9]]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("-beta2_decay", -beta2_decay)
        if eps[0] is not None:
            check_range("eps[0]", eps[0])
        check_range("eps[1]", eps[1])
        check_range("d", d, 1.0)
        check_range("weight_decay", weight_decay)
        super().__init__(params)
        self.lr, self.beta2_decay, self.eps, self.d = lr, beta2_decay, tuple(eps), d
        self.weight_decay, self.maximize = weight_decay, maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        if param.ndim < 2:
            return {"step": 0, "variance": np.zeros_like(param)}
        return {
            "step": 0,
            "row_var": np.zeros(param.shape[:-1] + (1,)),
            "col_var": np.zeros(param.shape[:-2] + (1, param.shape[-1])),
        }

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t = state["step"]
        if self.maximize:
            g = -g
        eps1 = np.finfo(np.float64).eps if self.eps[0] is None else self.eps[0]
        one_minus_beta2 = t**self.beta2_decay
        rho = min(self.lr, 1 / math.sqrt(t))
        alpha = max(self.eps[1], math.sqrt(np.mean(p * p))) * rho
        p *= 1 - self.lr * self.weight_decay
        if p.ndim >= 2:
            r, c = state["row_var"], state["col_var"]
            r += one_minus_beta2 * (np.mean(g * g, axis=-1, keepdims=True) - r)
            c += one_minus_beta2 * (np.mean(g * g, axis=-2, keepdims=True) - c)
            v = (r @ c) / np.maximum(np.mean(r, axis=-2, keepdims=True), eps1)
        else:
            v = state["variance"]
            v += one_minus_beta2 * (g * g - v)
        u = g / np.sqrt(np.maximum(v, eps1 * eps1))
        rms_u = math.sqrt(np.mean(u * u))
        p -= alpha / max(1.0, rms_u / self.d) * u
