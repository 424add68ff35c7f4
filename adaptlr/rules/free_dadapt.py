"""D-Adaptation's elementwise math (Defazio & Mishchenko, 2023): statistics phases and updates for
D-Adapt SGD, Adam and AdaGrad (as in ``dadaptation`` 3.2). Scalars are computed per step in the optimizers
(:mod:`adaptlr.free`)."""

from __future__ import annotations

from ._elementwise import elementwise
from ._math import abs, sqrt

__all__ = [
    "squared",
    "dadapt_sgd_stats",
    "dadapt_sgd",
    "dadapt_adam_stats",
    "dadapt_adam",
    "dadapt_adagrad_stats",
    "dadapt_adagrad",
]


@elementwise
def squared(g):
    """The term ``g^2`` (its sum is a squared norm)."""
    return (g * g,)


@elementwise
def dadapt_sgd_stats(p, g, s, weight_decay, dlr, coupled_decay):
    r"""Terms :math:`g \cdot s_{k-1}` and :math:`s_k^2`, with :math:`s_k = s_{k-1} + \lambda g`."""
    if coupled_decay:
        g = g + weight_decay * p
    term = g * s
    s = s + g * dlr
    return s, term, s * s


@elementwise
def dadapt_sgd(p, x0, s, momentum, ck):
    r""":math:`x \leftarrow (1 - c) x + c (x_0 - s)` with :math:`c = 1 - momentum`."""
    p = p * momentum + (x0 - s) * ck
    return (p,)


@elementwise
def dadapt_adam_stats(
    p, g, m, v, s, weight_decay, beta1, m_coef, beta2, v_coef, sqrt_beta2, s_coef, eps, coupled_decay
):
    r"""Term :math:`g \cdot s / (\sqrt{v} + \epsilon)` (old ``s``, ``v``), then the EMAs, then :math:`|s|`.

    m = b1 m + dlr (1 - b1) g      v = b2 v + (1 - b2) g^2      s = sqrt(b2) s + dlr (1 - sqrt(b2)) g
    (the coefficients ``m_coef``, ``v_coef``, ``s_coef`` are computed in float64 by the optimizer).
    """
    if coupled_decay:
        g = g + weight_decay * p
    term = g * (s / (sqrt(v) + eps))
    m = m * beta1 + g * m_coef
    v = v * beta2 + g * g * v_coef
    s = s * sqrt_beta2 + g * s_coef
    return m, v, s, term, abs(s)


@elementwise
def dadapt_adam(p, m, v, decay_coef, eps, decoupled_decay):
    r""":math:`p \leftarrow p (1 - \lambda\, wd) - m / (\sqrt{v} + \epsilon)`
    (``m`` carries the step size)."""
    if decoupled_decay:
        p = p - decay_coef * p
    p = p - m / (sqrt(v) + eps)
    return (p,)


@elementwise
def dadapt_adagrad_stats(p, g, alpha, s, weight_decay, dlr, eps, coupled_decay):
    r"""AdaGrad accumulators and the changes of the running sums.

    alpha += g^2,  s += dlr g; terms: g^2 / (sqrt(alpha) + eps), the change of s^2 / (sqrt(alpha) + eps),
    the change of |s|.
    """
    if coupled_decay:
        g = g + weight_decay * p
    old_sq = s * s / (sqrt(alpha) + eps)
    old_l1 = abs(s)
    alpha = alpha + g * g
    denom = sqrt(alpha) + eps
    s = s + g * dlr
    return alpha, s, g * g / denom, s * s / denom - old_sq, abs(s) - old_l1


@elementwise
def dadapt_adagrad(p, x0, alpha, s, momentum, ck, eps, use_momentum):
    r""":math:`z = x_0 - s / (\sqrt{\alpha} + \epsilon)`, :math:`x \leftarrow (1 - c) x + c z` (or ``z``)."""
    z = x0 - s / (sqrt(alpha) + eps)
    if use_momentum:
        p = p * momentum + z * ck
    else:
        p = z
    return (p,)
