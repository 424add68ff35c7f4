r"""Lion, AdaBelief and LAMB (``adaptlr.Lion``, ``adaptlr.AdaBelief``, ``adaptlr.LAMB``), as ``lion-pytorch`` and
``pytorch-optimizer`` compute them: float64 NumPy, from the papers' formulas.

Unlike the torch.optim references beside them, these follow their packages, which keep no per-parameter state
dicts: each class holds a copy of the parameters, ``x`` (a list of float64 arrays, one group), and takes
``step(grads)`` -- the form of :mod:`adaptlr.reference.free`, where they lived before adaptlr 0.3.

>>> import numpy as np
>>> opt = Lion([np.array([1.0, -2.0])], lr=0.1)
>>> for _ in range(5):
...     opt.step([2 * opt.x[0]])  # the gradient of ||x||^2: every step moves each coordinate by lr
>>> [round(float(v), 6) for v in opt.x[0]]
[0.5, -1.5]
"""

from __future__ import annotations

import numpy as np

from ._base import copied_arrays as _arrays

__all__ = ["Lion", "AdaBelief", "LAMB"]


class Lion:
    r"""Lion (Chen et al., 2023, Algorithm 2):
    :math:`x \leftarrow x(1-\gamma\lambda) - \gamma\,\mathrm{sign}(\beta_1 m + (1-\beta_1) g)`,
    :math:`m \leftarrow \beta_2 m + (1-\beta_2) g`."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        self.x = _arrays(params)
        self.lr, self.betas, self.wd = lr, betas, weight_decay
        self.m = [np.zeros_like(x) for x in self.x]

    def step(self, grads):
        b1, b2 = self.betas
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            self.x[i] = self.x[i] * (1 - self.lr * self.wd) - self.lr * np.sign(b1 * self.m[i] + (1 - b1) * g)
            self.m[i] = b2 * self.m[i] + (1 - b2) * g


class AdaBelief:
    r"""AdaBelief (Zhuang et al., 2020, Algorithm 2) with decoupled weight decay:

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g, \quad s_t = \beta_2 s + (1-\beta_2)(g - m_t)^2 + \epsilon, \quad
        x \leftarrow x(1-\gamma\lambda) - \gamma \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True, eps=1e-16):
        self.x = _arrays(params)
        self.lr, self.betas, self.wd, self.decouple, self.eps = lr, betas, weight_decay, weight_decouple, eps
        self.m = [np.zeros_like(x) for x in self.x]
        self.s = [np.zeros_like(x) for x in self.x]
        self.t = 0

    def step(self, grads):
        b1, b2 = self.betas
        self.t += 1
        for i, g in enumerate(grads):
            x = self.x[i]
            g = np.asarray(g, np.float64) + (0.0 if self.decouple else self.wd * x)
            if self.decouple:
                x = x * (1 - self.lr * self.wd)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.s[i] = b2 * self.s[i] + (1 - b2) * (g - self.m[i]) ** 2 + self.eps
            m_hat = self.m[i] / (1 - b1**self.t)
            self.x[i] = x - self.lr * m_hat / (np.sqrt(self.s[i] / (1 - b2**self.t)) + self.eps)


class LAMB:
    r"""LAMB (You et al., 2020) as ``pytorch_optimizer.Lamb`` computes it at its defaults: ``u = m / (sqrt(v) +
    eps)`` (``v`` not bias-corrected, unlike the paper), trust ratio ``min(||x||, 10) / (||u|| + eps)`` per
    tensor (1 when a norm is 0), step ``lr / (1 - beta1^t)``; decoupled decay, or ``wd x`` added to ``u``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True, eps=1e-6):
        self.x = _arrays(params)
        self.lr, self.betas, self.wd, self.decouple, self.eps = lr, betas, weight_decay, weight_decouple, eps
        self.m = [np.zeros_like(x) for x in self.x]
        self.v = [np.zeros_like(x) for x in self.x]
        self.t = 0

    def step(self, grads):
        b1, b2 = self.betas
        self.t += 1
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            x = self.x[i] * (1 - self.lr * self.wd) if self.decouple else self.x[i]
            u = self.m[i] / (np.sqrt(self.v[i]) + self.eps)
            if not self.decouple:
                u = u + self.wd * x
            w_norm, u_norm = min(float(np.linalg.norm(x)), 10.0), float(np.linalg.norm(u))
            trust = w_norm / (u_norm + self.eps) if w_norm and u_norm else 1.0
            self.x[i] = x - self.lr / (1 - b1**self.t) * trust * u
