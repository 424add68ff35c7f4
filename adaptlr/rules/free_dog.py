"""DoG's elementwise math (Ivgi, Hinder & Carmon, 2023): norms for the step size, then an SGD step."""

from __future__ import annotations

from ._elementwise import elementwise

__all__ = ["dog_first_stats", "dog_stats", "dog", "polynomial_average"]


@elementwise
def dog_first_stats(p, g, x0, weight_decay, coupled_decay):
    """First step: remember ``x0 = p``; terms ``p^2`` (for ``||x0||``) and ``g^2``."""
    if coupled_decay:
        g = g + weight_decay * p
    return p, p * p, g * g


@elementwise
def dog_stats(p, g, x0, weight_decay, coupled_decay):
    """Terms ``(p - x0)^2`` (the distance travelled) and ``g^2``."""
    if coupled_decay:
        g = g + weight_decay * p
    diff = p - x0
    return diff * diff, g * g


@elementwise
def dog(p, g, weight_decay, eta, coupled_decay):
    r""":math:`p \leftarrow p - \eta (g + wd\, p)`."""
    if coupled_decay:
        g = g + weight_decay * p
    return (p - eta * g,)


@elementwise
def polynomial_average(avg, p, keep, w):
    r""":math:`\bar x \leftarrow (1 - w) \bar x + w x` with :math:`w = (1 + \gamma) / (t + \gamma)`,
    ``keep = 1 - w``."""
    return (avg * keep + p * w,)
