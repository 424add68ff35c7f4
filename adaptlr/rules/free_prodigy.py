"""Prodigy's elementwise math (Mishchenko & Defazio, 2023): a statistics phase, then the Adam-like update.

The optimizer (:class:`adaptlr.free.Prodigy`) sums the statistics' terms over all parameters, computes
``d`` in Python, then runs the update. Scalars are computed once per step in the optimizer.
"""

from __future__ import annotations

from ._elementwise import elementwise
from ._math import abs, sqrt

__all__ = ["prodigy_stats", "prodigy"]


@elementwise
def prodigy_stats(p, g, p0, s, weight_decay, s_weight, beta3, coupled_decay):
    r"""Phase 1: :math:`s \leftarrow \beta_3 s + w g`; terms :math:`g (p_0 - p)` and :math:`|s|` to be summed.

    ``s_weight`` is ``(d / d0) * d * lr * bc`` (``(d / d0) * d`` with ``safeguard_warmup``).
    """
    if coupled_decay:
        g = g + weight_decay * p
    s = s * beta3 + g * s_weight
    return s, g * (p0 - p), abs(s)


@elementwise
def prodigy(
    p,
    g,
    m,
    v,
    weight_decay,
    beta1,
    m_coef,
    beta2,
    v_coef,
    d_eps,
    decay_coef,
    step_size,
    coupled_decay,
    decoupled_decay,
    use_momentum,
):
    r"""Phase 2 with ``d`` (of the step's start), ``d_eps = d_new * eps`` and ``dlr = d * lr * bc``.

    m = b1 m + d (1 - b1) g      v = b2 v + d^2 (1 - b2) g^2
    p = p (1 - wd dlr) - dlr m / (sqrt(v) + d_eps)
    ``m_coef = d (1 - b1)``, ``v_coef = d^2 (1 - b2)``, ``decay_coef = wd dlr`` (computed in float64 by the
    optimizer); ``step_size`` is ``dlr``, or ``dlr * d_new`` without momentum (``m`` absent: the step is
    on g).
    """
    if coupled_decay:
        g = g + weight_decay * p
    if use_momentum:
        m = m * beta1 + g * m_coef
    v = v * beta2 + g * g * v_coef
    denom = sqrt(v) + d_eps
    if decoupled_decay:
        p = p - decay_coef * p
    if use_momentum:
        p = p - step_size * (m / denom)
    else:
        p = p - step_size * (g / denom)
    return p, m, v
