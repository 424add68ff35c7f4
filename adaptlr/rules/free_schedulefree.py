"""Schedule-Free's elementwise math (Defazio et al., 2024), as in ``schedulefree`` 1.4: one pass per step."""

from __future__ import annotations

from ._elementwise import elementwise
from ._math import sqrt

__all__ = ["schedule_free", "schedule_free_swap"]


@elementwise
def schedule_free(y, g, z, v, lr, ckp1, y_coef, beta2, v_coef, eps, bc2, weight_decay, update_v, adaptive, decay):
    r"""One Schedule-Free step on the interpolated point ``y`` (the parameters) and the base iterate ``z``.

    u = g / (sqrt(v / bc2) + eps) (adaptive; v = b2 v + (1 - b2) g^2) or g;  u += wd y
    y = lerp(y, z, c) + lr (beta1 (1 - c) - 1) u  (``y_coef``)       z = z - lr u
    """
    if update_v:
        v = v * beta2 + g * g * v_coef
    if adaptive:
        g = g / (sqrt(v / bc2) + eps)
    if decay:
        g = g + weight_decay * y
    y = y + (z - y) * ckp1
    y = y + g * y_coef
    z = z - g * lr
    return y, z, v


@elementwise
def schedule_free_swap(p, z, stash, w):
    """``p <- lerp(p, z, w)``, keeping the old ``p`` in ``stash`` (eval mode: ``w = 1 - 1 / beta1``)."""
    return p + (z - p) * w, p
