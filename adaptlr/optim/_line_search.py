"""The strong-Wolfe line search (and its cubic interpolation) of L-BFGS, on the flat parameter vector."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._flat_space import FlatSpace

__all__ = ["Objective", "cubic_interpolate", "strong_wolfe"]

#: ``obj(x, t, d)``: the loss and flat gradient at :math:`x + t d` (the parameters are left at ``x``)
Objective = Callable[[list[torch.Tensor], Any, torch.Tensor], tuple[float, torch.Tensor]]


def cubic_interpolate(
    x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
) -> Any:
    r"""The minimiser of the cubic through :math:`(x_1, f_1, f'_1)` and :math:`(x_2, f_2, f'_2)`, clipped to
    ``bounds`` (default: the interval between the points); their midpoint when the cubic has no minimum.

    .. math:: d_1 = g_1 + g_2 - 3\frac{f_1 - f_2}{x_1 - x_2}, \quad d_2 = \sqrt{d_1^2 - g_1 g_2}, \quad
              x = x_2 - (x_2 - x_1)\frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2}

    (Nocedal & Wright, 2006, eq. 3.59; minFunc's ``polyinterp`` for two points, as torch.optim.LBFGS.)
    """
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = d2_square.sqrt() if isinstance(d2_square, torch.Tensor) else math.sqrt(d2_square)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, low), high)


def strong_wolfe(
    obj: Objective,
    x: list[torch.Tensor],
    t: Any,
    d: torch.Tensor,
    f: float,
    g: torch.Tensor,
    gtd: Any,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
    space: FlatSpace | None = None,
) -> tuple[float, torch.Tensor, Any, int]:
    r"""A line search for a step :math:`t` along ``d`` that meets the strong Wolfe conditions
    :math:`f(x + t d) \le f + c_1 t\, g^\top d` and :math:`|\nabla f(x + t d)^\top d| \le c_2 |g^\top d|`.

    Nocedal & Wright (2006), Algorithms 3.5 (bracketing, extrapolating by cubic interpolation within
    :math:`[t + 0.01 (t - t_{prev}), 10 t]`) and 3.6 (zoom, by cubic interpolation kept 10% of the bracket away
    from its ends), as minFunc's ``WolfeLineSearch`` and torch.optim.LBFGS. ``obj(x, t, d)`` returns the loss and
    flat gradient at :math:`x + t d`. Returns the loss, gradient and step of the best point, and the number of
    evaluations.
    """
    space = space or FlatSpace()
    d_norm = space.abs_max(d)
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = obj(x, t, d)
    evals = 1
    gtd_new = space.dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    # 1. bracket an interval that holds a point meeting the conditions
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f, bracket_g, bracket_gtd = [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f, bracket_g, bracket_gtd = [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        low, high = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(low, high))
        f_prev, g_prev, gtd_prev = f_new, g_new.clone(), gtd_new
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = space.dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    # 2. zoom: shrink the bracket until a point meets the conditions
    insufficient_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        b_max, b_min = max(bracket), min(bracket)
        margin = 0.1 * (b_max - b_min)
        if min(b_max - t, t - b_min) < margin:  # too close to an end: step 10% inside, unless progress was made
            if insufficient_progress or t >= b_max or t <= b_min:
                t = b_max - margin if abs(t - b_max) < abs(t - b_min) else b_min + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = space.dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:  # not a new low: it closes the bracket
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.clone(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:  # the old low becomes the high end
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.clone(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals
