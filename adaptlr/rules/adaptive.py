"""Elementwise math of Lion, AdaBelief and LAMB: adaptive rules from their papers' packages, beyond torch.optim."""

from __future__ import annotations

from ._elementwise import elementwise
from ._math import sign, sqrt

__all__ = ["lion", "adabelief", "lamb_stats", "lamb"]


@elementwise
def lion(p, g, m, decay_keep, lr, beta1, c1, beta2, c2):
    r"""Lion (Chen et al., 2023), as ``lion-pytorch``: ``c1 = 1 - beta1``, ``c2 = 1 - beta2``,
    ``decay_keep = 1 - lr * wd``.

    p = p (1 - lr wd) - lr sign(b1 m + (1 - b1) g)        m = b2 m + (1 - b2) g
    """
    p = p * decay_keep
    p = p - lr * sign(m * beta1 + g * c1)
    m = m * beta2 + g * c2
    return p, m


@elementwise
def adabelief(p, g, m, s, decay_keep, weight_decay, beta1, c1, beta2, c2, eps, bc2_sqrt, step_size, coupled_decay):
    r"""AdaBelief (Zhuang et al., 2020), as ``pytorch_optimizer.AdaBelief`` (defaults: no rectification).

    m = lerp(m, g, 1 - b1)     s = b2 s + (1 - b2) (g - m)^2 + eps
    p = p - lr / bc1 * m / (sqrt(s) / sqrt(bc2) + eps)
    """
    if coupled_decay:
        g = g + weight_decay * p
    p = p * decay_keep
    m = m + (g - m) * c1
    r = g - m
    s = s * beta2 + r * r * c2 + eps
    p = p - step_size * (m / (sqrt(s) / bc2_sqrt + eps))
    return p, m, s


@elementwise
def lamb_stats(p, g, m, v, decay_keep, weight_decay, beta1, c1, beta2, c2, eps, coupled_decay):
    r"""LAMB's moments and the terms of ``||p||^2`` and ``||u||^2``, ``u = m / (sqrt(v) + eps) (+ wd p)``."""
    m = m * beta1 + g * c1
    v = v * beta2 + g * g * c2
    p = p * decay_keep
    u = m / (sqrt(v) + eps)
    if coupled_decay:
        u = u + weight_decay * p
    return m, v, p * p, u * u


@elementwise
def lamb(p, m, v, decay_keep, weight_decay, eps, step_size, coupled_decay):
    r""":math:`p \leftarrow p (1 - lr\,wd) - \eta\, \phi\, u`, ``step_size = lr / bc1 * trust_ratio``."""
    p = p * decay_keep
    u = m / (sqrt(v) + eps)
    if coupled_decay:
        u = u + weight_decay * p
    return (p - step_size * u,)
