r"""Float64 NumPy references of the learning-rate-free methods (oracles and teaching code).

Each class holds a list of parameter arrays ``x`` (one group) and takes ``step(grads)``. They are written from
the papers' formulas in the form the reference packages implement them (the packages'
quirks are noted where they matter), with no speed tricks, so that a reader can follow the math:

* :class:`Prodigy` -- Mishchenko & Defazio (2023), Algorithm 4 as in ``prodigyopt`` 1.1.
* :class:`DAdaptSGD`, :class:`DAdaptAdam`, :class:`DAdaptAdaGrad` -- Defazio & Mishchenko (2023), as in
  ``dadaptation`` 3.2.
* :class:`DoG`, :class:`LDoG` -- Ivgi, Hinder & Carmon (2023), as in ``dog-optimizer`` 1.0.3, and
  :class:`PolynomialDecayAverager` (Shamir & Zhang, 2013).
* :class:`Lion`, :class:`AdaBelief`, :class:`LAMB` -- as ``lion-pytorch`` and ``pytorch-optimizer``.
* :class:`ScheduleFreeSGD`, :class:`ScheduleFreeAdamW`, :class:`ScheduleFreeRAdam` -- Defazio et al.
  (2024), as in ``schedulefree`` 1.4.

Notation: ``x`` the parameters, ``g`` the gradient, ``x0`` the initial point, ``d`` the distance estimate
``D ~ ||x0 - x*||``.

>>> import numpy as np
>>> x = np.array([1.0, -2.0])
>>> opt = Prodigy([x])  # leave lr = 1: d is the step size's scale, estimated
>>> for _ in range(3):
...     opt.step([2 * x])  # the gradient of ||x||^2
>>> bool(opt.d > opt.d0)  # the estimate grows from d0 while the gradients keep pointing the same way
True
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "Prodigy",
    "DAdaptSGD",
    "DAdaptAdam",
    "DAdaptAdaGrad",
    "DoG",
    "LDoG",
    "PolynomialDecayAverager",
    "ScheduleFreeSGD",
    "ScheduleFreeAdamW",
    "ScheduleFreeRAdam",
    "Lion",
    "AdaBelief",
    "LAMB",
]


def _arrays(params):
    return [np.array(p, dtype=np.float64, copy=True) for p in params]


def _dot(a, b):
    return float(np.sum(np.asarray(a) * np.asarray(b)))


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
