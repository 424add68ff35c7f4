r"""Schedule-Free SGD, AdamW and RAdam (Defazio et al., 2024), as in ``schedulefree`` 1.4: float64 NumPy, from
the formulas.

>>> import numpy as np
>>> opt = ScheduleFreeSGD([np.array([1.0, -2.0])], lr=0.1)
>>> for _ in range(3):
...     opt.step([2 * opt.y[0]])  # gradients are taken at y; x is the average of the z iterates
>>> bool(np.abs(opt.x[0]).max() < 2.0)
True
"""

from __future__ import annotations

import math

import numpy as np

from .._base import copied_arrays as _arrays

__all__ = ["ScheduleFreeSGD", "ScheduleFreeAdamW", "ScheduleFreeRAdam"]


class _ScheduleFree:
    r"""Schedule-Free (Defazio et al., 2024): interpolate ``y``, average ``x``, take base steps at ``z``.

    .. math::
        c_{k+1} = w_{k+1} / \sum_{i \le k+1} w_i, \quad w_k = k^r \cdot lr_{max,k}^{p}, \qquad
        y_k = (1-\beta) z_k + \beta x_k \ (\text{the point where the gradient is taken})

        z_{k+1} = z_k - \gamma_k u_k, \quad x_{k+1} = (1-c_{k+1}) x_k + c_{k+1} z_{k+1}

    where ``u`` is the base direction (the gradient for SGD, ``g / (sqrt(v / bc2) + eps)`` for AdamW) plus
    ``weight_decay * y``. Only ``y`` and ``z`` are stored: the parameters hold ``y`` in train mode and
    ``x`` in eval mode; ``x = (y - (1-beta) z) / beta``. In terms of ``y`` the step is
    ``y <- lerp(y, z, c) + lr (beta (1-c) - 1) u``, ``z <- z - lr u`` (the packages' update).
    """

    def __init__(self, params, lr, beta, weight_decay, warmup_steps, r, weight_lr_power):
        self.y = _arrays(params)  # the parameters, in train mode
        self.z = [y.copy() for y in self.y]
        self.lr, self.beta, self.wd, self.warmup_steps = lr, beta, weight_decay, warmup_steps
        self.r, self.weight_lr_power = r, weight_lr_power
        self.k, self.lr_max, self.weight_sum = 0, -1.0, 0.0

    def _schedule(self):
        return (self.k + 1) / self.warmup_steps if self.k < self.warmup_steps else 1.0

    def step(self, grads):
        lr = self.lr * self._schedule()
        self.scheduled_lr = lr
        self.lr_max = max(lr, self.lr_max)
        weight = (self.k + 1) ** self.r * self.lr_max**self.weight_lr_power
        self.weight_sum += weight
        c = weight / self.weight_sum if self.weight_sum else 0.0
        for i, (gi, y) in enumerate(zip(grads, self.y, strict=False)):
            u = self._direction(i, np.asarray(gi, np.float64)) + self.wd * y
            self.y[i] = y + c * (self.z[i] - y) + lr * (self.beta * (1 - c) - 1) * u
            self.z[i] = self.z[i] - lr * u
        self.k += 1

    @property
    def x(self):
        """The averaged point (what eval mode puts in the parameters)."""
        return [(y - (1 - self.beta) * z) / self.beta for y, z in zip(self.y, self.z, strict=False)]

    @property
    def effective_lr(self):
        return self.scheduled_lr


class ScheduleFreeSGD(_ScheduleFree):
    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0):
        super().__init__(params, lr, momentum, weight_decay, warmup_steps, r, weight_lr_power)

    def _direction(self, i, g):
        return g


class ScheduleFreeAdamW(_ScheduleFree):
    def __init__(
        self,
        params,
        lr=0.0025,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        warmup_steps=0,
        r=0.0,
        weight_lr_power=2.0,
    ):
        super().__init__(params, lr, betas[0], weight_decay, warmup_steps, r, weight_lr_power)
        self.beta2, self.eps = betas[1], eps
        self.v = [np.zeros_like(y) for y in self.y]

    def _direction(self, i, g):
        self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g * g
        bc2 = 1 - self.beta2 ** (self.k + 1)
        return g / (np.sqrt(self.v[i] / bc2) + self.eps)


class ScheduleFreeRAdam(_ScheduleFree):
    r"""Schedule-Free RAdam: the lr is multiplied by RAdam's rectification; while ``rho_t <= 4`` the
    direction is the raw gradient and the lr factor is ``0`` (``silent_sgd_phase``) or ``1``. No warmup
    parameter."""

    def __init__(
        self,
        params,
        lr=0.0025,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        r=0.0,
        weight_lr_power=2.0,
        silent_sgd_phase=True,
    ):
        super().__init__(params, lr, betas[0], weight_decay, 0, r, weight_lr_power)
        self.beta2, self.eps, self.silent = betas[1], eps, silent_sgd_phase
        self.v = [np.zeros_like(y) for y in self.y]

    def _rho(self):
        step = self.k + 1
        b2t = self.beta2**step
        rho_inf = 2 / (1 - self.beta2) - 1
        return rho_inf, rho_inf - 2 * step * b2t / (1 - b2t)

    def _schedule(self):
        rho_inf, rho_t = self._rho()
        if rho_t > 4.0:
            return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return float(not self.silent)

    def _direction(self, i, g):
        self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g * g
        if self._rho()[1] <= 4.0:
            return g
        bc2 = 1 - self.beta2 ** (self.k + 1)
        return g / (np.sqrt(self.v[i] / bc2) + self.eps)
