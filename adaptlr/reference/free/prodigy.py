r"""Prodigy (Mishchenko & Defazio, 2023), Algorithm 4 as in ``prodigyopt`` 1.1: float64 NumPy, from the formulas.

>>> import numpy as np
>>> opt = Prodigy([np.array([1.0, -2.0])])  # leave lr = 1: d is the step size's scale, estimated
>>> for _ in range(3):
...     opt.step([2 * opt.x[0]])  # the gradient of ||x||^2
>>> bool(opt.d > opt.d0)  # the estimate grows from d0 while the gradients keep pointing the same way
True
"""

from __future__ import annotations

import math

import numpy as np

from .._base import copied_arrays as _arrays
from .._base import dot as _dot

__all__ = ["Prodigy"]


class Prodigy:
    r"""Prodigy: Adam whose step size ``d * lr`` is estimated from the distance travelled.

    With :math:`\lambda_k = d_k \cdot lr \cdot bc_k` (``bc = sqrt(1-b2^k)/(1-b1^k)`` or 1):

    .. math::
        r_k = \beta_3 r_{k-1} + \tfrac{d_k}{d_0}\lambda_k \langle g_k, x_0 - x_k\rangle, \qquad
        s_k = \beta_3 s_{k-1} + \tfrac{d_k}{d_0}\lambda_k g_k, \qquad
        \hat d_{k+1} = d_{coef}\, r_k / \|s_k\|_1

        d_{k+1} = \min(\max_{i \le k+1} \hat d_i,\ d_k \cdot growth)

        m_k = \beta_1 m_{k-1} + d_k (1-\beta_1) g_k, \quad v_k = \beta_2 v_{k-1} + d_k^2 (1-\beta_2) g_k^2,
        \quad
        x_{k+1} = x_k - \lambda_k m_k / (\sqrt{v_k} + d_{k+1}\epsilon)

    On the first step ``d`` may jump straight to ``d_hat`` (the ``d == d0`` rule), afterwards it follows
    ``min(d_max, d * growth_rate)``. ``safeguard_warmup`` drops ``lr`` from ``s``'s weight;
    ``slice_p`` estimates ``r`` and ``s`` on every ``slice_p``-th element only.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        betas=(0.9, 0.999),
        beta3=None,
        eps=1e-8,
        weight_decay=0.0,
        decouple=True,
        use_bias_correction=False,
        safeguard_warmup=False,
        d0=1e-6,
        d_coef=1.0,
        growth_rate=math.inf,
        slice_p=1,
    ):
        self.x = _arrays(params)
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.beta3 = math.sqrt(betas[1]) if beta3 is None else beta3
        self.decouple, self.bias_correction, self.safeguard = decouple, use_bias_correction, safeguard_warmup
        self.d0 = self.d = self.d_max = d0
        self.d_coef, self.growth_rate, self.slice_p = d_coef, growth_rate, slice_p
        self.r = 0.0
        self.k = 0
        self.x0 = [x.ravel()[::slice_p].copy() for x in self.x]
        self.s = [np.zeros_like(x0) for x0 in self.x0]
        self.m = [np.zeros_like(x) for x in self.x]
        self.v = [np.zeros_like(x) for x in self.x]

    def step(self, grads):
        b1, b2 = self.betas
        k, d, d0 = self.k, self.d, self.d0
        d_old = d
        bc = math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if self.bias_correction else 1.0
        dlr = d * self.lr * bc
        g = [
            np.asarray(gi, np.float64) + (self.wd * x if (self.wd and not self.decouple) else 0.0)
            for gi, x in zip(grads, self.x, strict=False)
        ]
        s_weight = (d / d0) * (d if self.safeguard else dlr)
        r = self.beta3 * self.r
        s_l1 = 0.0
        for i, (gi, x) in enumerate(zip(g, self.x, strict=False)):
            g_sl = gi.ravel()[:: self.slice_p]
            r += (d / d0) * dlr * _dot(g_sl, self.x0[i] - x.ravel()[:: self.slice_p])
            self.s[i] = self.beta3 * self.s[i] + s_weight * g_sl
            s_l1 += float(np.abs(self.s[i]).sum())
        if s_l1 == 0:  # no gradient yet: the packages skip the step entirely
            return
        d_hat = self.d_coef * r / s_l1
        if d == d0:
            d = max(d, d_hat)
        self.d_max = max(self.d_max, d_hat)
        d = min(self.d_max, d * self.growth_rate)
        self.r, self.d = r, d
        for i, (gi, x) in enumerate(zip(g, self.x, strict=False)):
            # the moments use the d of the start of the step; eps is scaled by the new d
            self.m[i] = b1 * self.m[i] + d_old * (1 - b1) * gi
            self.v[i] = b2 * self.v[i] + d_old * d_old * (1 - b2) * gi * gi
            denom = np.sqrt(self.v[i]) + d * self.eps
            if self.wd and self.decouple:
                x = x - self.wd * dlr * x
            step = dlr * self.m[i] if b1 > 0 else dlr * d * gi
            self.x[i] = x - step / denom
        self.k += 1

    @property
    def effective_lr(self):
        """``d * lr`` (times the bias correction, when on) of the next step."""
        return self.d * self.lr
