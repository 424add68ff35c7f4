r"""D-Adaptation (Defazio & Mishchenko, 2023): SGD, Adam and AdaGrad with an estimated step size, as in
``dadaptation`` 3.2: float64 NumPy, from the formulas.

>>> import numpy as np
>>> opt = DAdaptAdam([np.array([1.0, -2.0])])
>>> for _ in range(3):
...     opt.step([2 * opt.x[0]])  # the gradient of ||x||^2
>>> bool(opt.d > 1e-6)  # the estimate of the distance to the solution grows from d0
True
"""

from __future__ import annotations

import math

import numpy as np

from .._base import copied_arrays as _arrays
from .._base import dot as _dot

__all__ = ["DAdaptSGD", "DAdaptAdam", "DAdaptAdaGrad"]


class DAdaptSGD:
    r"""D-Adaptation SGD (dual averaging form): ``x_{k+1} = (1-c) x_k + c z_{k+1}``, ``c = 1 - momentum``.

    .. math::
        \lambda_k = d_k \, lr / \|g_0\|, \quad r_k = r_{k-1} + \lambda_k \langle g_k, s_{k-1}\rangle, \quad
        s_k = s_{k-1} + \lambda_k g_k, \quad \hat d = 2 r_k / \|s_k\|_2, \quad
        d_{k+1} = \max(d_k, \min(\hat d, d_k \cdot growth)), \quad z_{k+1} = x_0 - s_k

    ``g`` includes ``weight_decay * x``; as in ``dadaptation`` 3.2, ``||g_0||`` does not (the package adds the
    decay out of place at step 0).
    """

    def __init__(self, params, lr=1.0, momentum=0.0, weight_decay=0.0, d0=1e-6, growth_rate=math.inf):
        self.x = _arrays(params)
        self.lr, self.momentum, self.wd, self.d, self.growth_rate = (
            lr,
            momentum,
            weight_decay,
            d0,
            growth_rate,
        )
        self.k, self.r, self.g0_norm = 0, 0.0, None
        self.x0 = [x.copy() for x in self.x]
        self.s = [np.zeros_like(x) for x in self.x]

    def step(self, grads):
        grads = [np.asarray(g, np.float64) for g in grads]
        if self.k == 0:
            self.g0_norm = math.sqrt(sum(_dot(g, g) for g in grads))
        dlr = self.d * self.lr / self.g0_norm
        g = [gi + self.wd * x for gi, x in zip(grads, self.x, strict=False)]
        for i, gi in enumerate(g):
            self.r += dlr * _dot(gi, self.s[i])
            self.s[i] = self.s[i] + dlr * gi
        s_sq = sum(_dot(s, s) for s in self.s)
        d_hat = 2 * self.r / math.sqrt(s_sq)
        self.d = max(self.d, min(d_hat, self.d * self.growth_rate))
        c = 1 - self.momentum
        for i in range(len(self.x)):
            z = self.x0[i] - self.s[i]
            self.x[i] = self.x[i] * (1 - c) + c * z
        self.k += 1

    @property
    def effective_lr(self):
        """``d * lr / ||g_0||``: the step size on the gradient sum of the next step."""
        return self.d * self.lr / self.g0_norm if self.g0_norm else 0.0


class DAdaptAdam:
    r"""D-Adaptation Adam.

    .. math::
        \lambda_k = d_k\, lr\, bc_k, \quad r_k = \sqrt{\beta_2} r_{k-1} + (1-\sqrt{\beta_2})\,\lambda_k
            \langle g_k, s_{k-1} / (\sqrt{v_{k-1}} + \epsilon)\rangle, \quad
        s_k = \sqrt{\beta_2} s_{k-1} + (1-\sqrt{\beta_2}) \lambda_k g_k

        \hat d = r_k / ((1-\sqrt{\beta_2}) \|s_k\|_1), \quad d_{k+1} = \max(d_k, \min(\hat d, d_k \cdot
        growth))

        m_k = \beta_1 m_{k-1} + (1-\beta_1)\lambda_k g_k, \quad v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2,
        \quad
        x_{k+1} = x_k - m_k / (\sqrt{v_k} + \epsilon)

    (``m`` carries the step size; the package's ``layer_scale`` is 1 here.)
    """

    def __init__(
        self,
        params,
        lr=1.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decouple=False,
        use_bias_correction=False,
        d0=1e-6,
        growth_rate=math.inf,
    ):
        self.x = _arrays(params)
        self.lr, self.betas, self.eps, self.wd, self.decouple = lr, betas, eps, weight_decay, decouple
        self.bias_correction, self.d, self.growth_rate = use_bias_correction, d0, growth_rate
        self.k, self.r = 0, 0.0
        self.s = [np.zeros_like(x) for x in self.x]
        self.m = [np.zeros_like(x) for x in self.x]
        self.v = [np.zeros_like(x) for x in self.x]

    def step(self, grads):
        b1, b2 = self.betas
        sb2 = math.sqrt(b2)
        k = self.k
        bc = math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if self.bias_correction else 1.0
        dlr = self.d * self.lr * bc
        g = [
            np.asarray(gi, np.float64) + (self.wd * x if (self.wd and not self.decouple) else 0.0)
            for gi, x in zip(grads, self.x, strict=False)
        ]
        acc = 0.0
        s_l1 = 0.0
        for i, gi in enumerate(g):
            acc += dlr * _dot(gi, self.s[i] / (np.sqrt(self.v[i]) + self.eps))
            self.m[i] = b1 * self.m[i] + dlr * (1 - b1) * gi
            self.v[i] = b2 * self.v[i] + (1 - b2) * gi * gi
            self.s[i] = sb2 * self.s[i] + dlr * (1 - sb2) * gi
            s_l1 += float(np.abs(self.s[i]).sum())
        self.r = sb2 * self.r + (1 - sb2) * acc
        if s_l1 == 0:
            return
        d_hat = self.r / ((1 - sb2) * s_l1)
        self.d = max(self.d, min(d_hat, self.d * self.growth_rate))
        for i in range(len(self.x)):
            x = self.x[i]
            if self.wd and self.decouple:
                x = x - self.wd * dlr * x
            self.x[i] = x - self.m[i] / (np.sqrt(self.v[i]) + self.eps)
        self.k += 1

    @property
    def effective_lr(self):
        return self.d * self.lr


class DAdaptAdaGrad:
    r"""D-Adaptation AdaGrad (dual averaging form), dense gradients.

    .. math::
        \alpha_k = \alpha_{k-1} + g_k^2 \ (\alpha_0 = 10^{-6}), \quad s_k = s_{k-1} + \lambda_k g_k,\quad
        \lambda_k = d_k\, lr

        \hat d = \Big(\sum \tfrac{s_k^2}{\sqrt{\alpha_k}+\epsilon}
                 - \sum_{i\le k} \lambda_i^2 \sum \tfrac{g_i^2}{\sqrt{\alpha_i}+\epsilon}\Big) / \|s_k\|_1,
        \quad z = x_0 - s_k / (\sqrt{\alpha_k} + \epsilon), \quad x_{k+1} = (1-c) x_k + c z
    """

    def __init__(self, params, lr=1.0, momentum=0.0, weight_decay=0.0, eps=1e-6, d0=1e-6, growth_rate=math.inf):
        self.x = _arrays(params)
        self.lr, self.momentum, self.wd, self.eps, self.d = lr, momentum, weight_decay, eps, d0
        self.growth_rate = growth_rate
        self.k, self.gsq_weighted, self.sksq_weighted, self.skl1 = 0, 0.0, 0.0, 0.0
        self.x0 = [x.copy() for x in self.x]
        self.alpha = [np.full_like(x, 1e-6) for x in self.x]
        self.s = [np.zeros_like(x) for x in self.x]

    def step(self, grads):
        dlr = self.d * self.lr
        g_sq = 0.0
        # the package keeps running totals of sum(s^2 / (sqrt(alpha) + eps)) and ||s||_1, updated by their
        # per-step changes; d_hat subtracts two large numbers, so we accumulate them the same way
        sksq_change = skl1_change = 0.0
        for i, (gi, x) in enumerate(zip(grads, self.x, strict=False)):
            gi = np.asarray(gi, np.float64) + self.wd * x
            old_sksq = float(np.sum(self.s[i] * self.s[i] / (np.sqrt(self.alpha[i]) + self.eps)))
            old_skl1 = float(np.abs(self.s[i]).sum())
            self.alpha[i] = self.alpha[i] + gi * gi
            g_sq += float(np.sum(gi * gi / (np.sqrt(self.alpha[i]) + self.eps)))
            self.s[i] = self.s[i] + dlr * gi
            sksq_change += float(np.sum(self.s[i] * self.s[i] / (np.sqrt(self.alpha[i]) + self.eps))) - old_sksq
            skl1_change += float(np.abs(self.s[i]).sum()) - old_skl1
        self.sksq_weighted += sksq_change
        self.skl1 += skl1_change
        sksq, skl1 = self.sksq_weighted, self.skl1
        self.gsq_weighted += dlr * dlr * g_sq
        d_hat = (sksq - self.gsq_weighted) / skl1
        self.d = max(self.d, min(d_hat, self.d * self.growth_rate))
        c = 1 - self.momentum
        for i in range(len(self.x)):
            z = self.x0[i] - self.s[i] / (np.sqrt(self.alpha[i]) + self.eps)
            self.x[i] = (1 - c) * self.x[i] + c * z if self.momentum else z
        self.k += 1

    @property
    def effective_lr(self):
        return self.d * self.lr
