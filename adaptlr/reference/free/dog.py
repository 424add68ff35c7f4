r"""DoG and LDoG (Ivgi, Hinder & Carmon, 2023), as in ``dog-optimizer`` 1.0.3, and the polynomial-decay iterate
averager they use (Shamir & Zhang, 2013): float64 NumPy, from the formulas.

>>> import numpy as np
>>> opt = DoG([np.array([1.0, -2.0])])
>>> for _ in range(3):
...     opt.step([2 * opt.x[0]])  # the gradient of ||x||^2
>>> bool(opt.rbar > 1e-6 * (1 + np.sqrt(5)))  # the distance travelled grows past the first step's r_eps
True
"""

from __future__ import annotations

import numpy as np

from .._base import copied_arrays as _arrays
from .._base import dot as _dot

__all__ = ["DoG", "LDoG", "PolynomialDecayAverager"]


class DoG:
    r"""DoG, "Distance over Gradients": SGD with step size ``r_bar / sqrt(G)``.

    .. math::
        \bar r_t = \max(r_\epsilon, \max_{i\le t} \|x_i - x_0\|), \quad r_\epsilon = reps\_rel\,(1 +
        \|x_0\|),\quad
        G_t = \epsilon + \sum_{i\le t}\|g_i\|^2, \quad \eta_t = lr\, \bar r_t / \sqrt{G_t}, \quad
        x_{t+1} = x_t - \eta_t g_t

    (``g`` includes ``weight_decay * x``; ``init_eta`` replaces the first step size.)
    The package's ``rbar`` starts at ``r_eps`` and is then ``max(rbar, ||x_t - x_0||)``.
    """

    layerwise = False

    def __init__(self, params, reps_rel=1e-6, lr=1.0, weight_decay=0.0, eps=1e-8, init_eta=None):
        self.x = _arrays(params)
        self.x0 = [x.copy() for x in self.x]
        self.reps_rel = 0.0 if init_eta is not None else reps_rel
        self.lr, self.wd, self.eps, self.init_eta = lr, weight_decay, eps, init_eta
        self.t = 0

    def _norms_sq(self, arrays):
        sq = np.array([_dot(a, a) for a in arrays])
        return sq if self.layerwise else sq.sum()

    def step(self, grads):
        g = [np.asarray(gi, np.float64) + self.wd * x for gi, x in zip(grads, self.x, strict=False)]
        if self.t == 0:
            self.rbar = self.reps_rel * (1 + np.sqrt(self._norms_sq(self.x)))
            self.G = self._norms_sq(g) + self.eps
        else:
            dist = np.sqrt(self._norms_sq([x - x0 for x, x0 in zip(self.x, self.x0, strict=False)]))
            self.rbar = np.maximum(self.rbar, dist)
            self.G = self.G + self._norms_sq(g)
        eta = self.lr * self.rbar / np.sqrt(self.G)
        if self.t == 0 and self.init_eta is not None:
            eta = eta * 0 + self.init_eta
        self.eta = eta
        etas = eta if self.layerwise else [eta] * len(self.x)
        self.x = [x - e * gi for x, e, gi in zip(self.x, etas, g, strict=False)]
        self.t += 1

    @property
    def effective_lr(self):
        """The step size of the last step (per tensor for LDoG)."""
        return self.eta


class LDoG(DoG):
    """Layer-wise DoG: the DoG formula applied to each tensor separately."""

    layerwise = True


class PolynomialDecayAverager:
    r"""Polynomial-decay iterate averaging (Shamir & Zhang, 2013), as in the DoG paper:

    .. math:: \bar x_t = (1 - \tfrac{1+\gamma}{t+\gamma}) \bar x_{t-1} + \tfrac{1+\gamma}{t+\gamma} x_t
    """

    def __init__(self, params, gamma=8.0):
        self.avg = _arrays(params)
        self.gamma, self.t = gamma, 1

    def update(self, params):
        w = (self.gamma + 1) / (self.gamma + self.t)
        self.avg = [a * (1 - w) + w * np.asarray(p, np.float64) for a, p in zip(self.avg, params, strict=False)]
        self.t += 1
