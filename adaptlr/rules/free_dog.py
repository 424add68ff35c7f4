"""DoG's elementwise math (Ivgi, Hinder & Carmon, 2023): norms for the step size, then an SGD step."""

from __future__ import annotations

from ._elementwise import elementwise

__all__ = ["dog_stats", "dog", "polynomial_average"]


@elementwise
def dog_stats(p, g, x0, weight_decay, coupled_decay, first):
    """Terms ``(p - x0)^2`` (the distance travelled) and ``g^2``; on the ``first`` step, ``x0 <- p`` and the first
    term is ``p^2`` (for ``||x0||``). (``x0`` returned unchanged is not stored.)"""
    if coupled_decay:
        g = g + weight_decay * p
    if first:
        return p, p * p, g * g
    diff = p - x0
    return x0, diff * diff, g * g


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
