"""L-BFGS with an optional strong-Wolfe line search (torch.optim.LBFGS)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["LBFGS"]

#: ``closure(params) -> (loss, grads)``: the loss and one gradient array per parameter, at the current params
Closure = Callable[[Sequence[np.ndarray]], tuple[float, Sequence[np.ndarray]]]


def _cubic_min(
    x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds: tuple[float, float] | None = None
) -> float:
    """Nocedal & Wright (2006), eq. (3.59): the minimiser of the cubic interpolating two points and slopes."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (low + high) / 2.0
    d2 = math.sqrt(disc)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, low), high)


class LBFGS:
    r"""L-BFGS on float64 NumPy arrays; matches ``torch.optim.LBFGS`` in float64.

    Liu & Nocedal (1989), "On the limited memory BFGS method for large scale optimization"; the direction is
    Nocedal & Wright (2006), Algorithm 7.4 (two-loop recursion, :math:`H_0 = \frac{s^\top y}{y^\top y} I`), the
    line search their Algorithms 3.5 and 3.6 (strong Wolfe, :math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, cubic
    interpolation), in the details of minFunc (Schmidt, 2005), which torch follows:

    - a pair :math:`(s, y)` is stored only when :math:`y^\top s > 10^{-10}`; at most ``history_size`` pairs;
    - the first step of a run has length :math:`\min(1, 1/\|g\|_1)\,\gamma`, the others :math:`\gamma`;
    - without line search, the step is taken as is and the loss re-evaluated (except after the last iteration);
    - ``step`` stops after ``max_iter`` iterations or ``max_eval`` evaluations, or when
      :math:`\|g\|_\infty \le` ``tolerance_grad``, :math:`g^\top d > -` ``tolerance_change``, or the step or the
      change of the loss falls below ``tolerance_change``.

    ``step(closure)`` returns the loss at the start; ``closure(params)`` returns ``(loss, grads)``. The state is
    a dict with torch's names (``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss``), on flat vectors.

    >>> import numpy as np
    >>> x = np.array([3.0, -1.0])
    >>> opt = LBFGS([x], line_search_fn="strong_wolfe")
    >>> _ = opt.step(lambda ps: (float(ps[0] @ ps[0]), [2 * ps[0]]))  # a quadratic: solved in one step
    >>> print(np.round(x, 8) + 0.0)
    [0. 0.]
    """

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"Invalid lr: {lr!r} (allowed: >= 0)")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"Invalid line_search_fn: {line_search_fn!r}")
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray) or p.dtype != np.float64:
                raise TypeError(f"params[{i}] must be a float64 numpy.ndarray")
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.history_size, self.line_search_fn = history_size, line_search_fn
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}

    # the parameters as one vector x
    def _get(self) -> np.ndarray:
        return np.concatenate([p.reshape(-1) for p in self.params])

    def _set(self, x: np.ndarray) -> None:
        offset = 0
        for p in self.params:
            p[...] = x[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def _eval(self, closure: Closure) -> tuple[float, np.ndarray]:
        loss, grads = closure(self.params)
        return float(loss), np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1) for g in grads])

    def _line_search(
        self,
        closure: Closure,
        x: np.ndarray,
        t: float,
        d: np.ndarray,
        f: float,
        g: np.ndarray,
        gtd: float,
        max_ls: int,
        c1: float = 1e-4,
        c2: float = 0.9,
    ) -> tuple[float, np.ndarray, float, int]:
        def phi(step: float) -> tuple[float, np.ndarray, float]:
            self._set(x + step * d)
            f_s, g_s = self._eval(closure)
            self._set(x)
            return f_s, g_s, float(g_s @ d)

        d_norm = float(np.max(np.abs(d)))
        f_new, g_new, gtd_new = phi(t)
        evals, it, done = 1, 0, False
        t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
        bracket: list[list[Any]] = []  # rows [t, f, g, g.d]
        while it < max_ls:  # Algorithm 3.5: find a bracket
            if f_new > f + c1 * t * gtd or (it > 1 and f_new >= f_prev):  # too long: the minimum is before t
                bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
                break
            if abs(gtd_new) <= -c2 * gtd:  # both conditions hold at t
                bracket, done = [[t, f_new, g_new, gtd_new]], True
                break
            if gtd_new >= 0:  # the slope turned: a minimum lies in [t_prev, t]
                bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
                break
            t_next = _cubic_min(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
            t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
            t = t_next
            f_new, g_new, gtd_new = phi(t)
            evals += 1
            it += 1
        if it == max_ls:
            bracket = [[0.0, f, g, None], [t, f_new, g_new, None]]
        lo, hi = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
        insufficient = False
        while not done and it < max_ls:  # Algorithm 3.6: zoom
            if abs(bracket[1][0] - bracket[0][0]) * d_norm < self.tolerance_change:
                break
            t = _cubic_min(bracket[0][0], bracket[0][1], bracket[0][3], bracket[1][0], bracket[1][1], bracket[1][3])
            b_max, b_min = max(bracket[0][0], bracket[1][0]), min(bracket[0][0], bracket[1][0])
            margin = 0.1 * (b_max - b_min)
            if min(b_max - t, t - b_min) < margin:
                if insufficient or t >= b_max or t <= b_min:
                    t = b_max - margin if abs(t - b_max) < abs(t - b_min) else b_min + margin
                    insufficient = False
                else:
                    insufficient = True
            else:
                insufficient = False
            f_new, g_new, gtd_new = phi(t)
            evals += 1
            it += 1
            if f_new > f + c1 * t * gtd or f_new >= bracket[lo][1]:
                bracket[hi] = [t, f_new, g_new, gtd_new]
                lo, hi = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
            else:
                if abs(gtd_new) <= -c2 * gtd:
                    done = True
                elif gtd_new * (bracket[hi][0] - bracket[lo][0]) >= 0:
                    bracket[hi] = list(bracket[lo])
                bracket[lo] = [t, f_new, g_new, gtd_new]
        t, f_best, g_best, _ = bracket[lo]
        return f_best, g_best, t, evals

    def step(self, closure: Closure) -> float:
        """Run up to ``max_iter`` iterations; return the loss before them."""
        state = self.state
        orig_loss, g = self._eval(closure)
        loss = orig_loss
        state["func_evals"] += 1
        evals = 1
        if np.max(np.abs(g)) <= self.tolerance_grad:
            return orig_loss
        d, t = state.get("d"), state.get("t")
        dirs, stps, ro, h_diag = state.get("old_dirs"), state.get("old_stps"), state.get("ro"), state.get("H_diag")
        prev_g, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d, dirs, stps, ro, h_diag = -g, [], [], [], 1.0
            else:
                y, s = g - prev_g, d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(dirs) == self.history_size:
                        dirs.pop(0), stps.pop(0), ro.pop(0)
                    dirs.append(y), stps.append(s), ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                q, al = -g, [0.0] * len(dirs)
                for i in range(len(dirs) - 1, -1, -1):  # Algorithm 7.4
                    al[i] = float(stps[i] @ q) * ro[i]
                    q = q - al[i] * dirs[i]
                d = q * h_diag
                for i in range(len(dirs)):
                    d = d + (al[i] - float(dirs[i] @ d) * ro[i]) * stps[i]
            prev_g, prev_loss = g.copy(), loss
            t = min(1.0, 1.0 / float(np.sum(np.abs(g)))) * self.lr if state["n_iter"] == 1 else self.lr
            gtd = float(g @ d)
            if gtd > -self.tolerance_change:
                break
            if self.line_search_fn == "strong_wolfe":
                loss, g, t, ls_evals = self._line_search(
                    closure, self._get(), t, d, loss, g, gtd, self.max_eval - evals
                )
                self._set(self._get() + t * d)
                converged = np.max(np.abs(g)) <= self.tolerance_grad
            else:
                self._set(self._get() + t * d)
                ls_evals, converged = 0, False
                if n_iter != self.max_iter:
                    loss, g = self._eval(closure)
                    converged, ls_evals = np.max(np.abs(g)) <= self.tolerance_grad, 1
            evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == self.max_iter or evals >= self.max_eval or converged:
                break
            if np.max(np.abs(d * t)) <= self.tolerance_change or abs(loss - prev_loss) < self.tolerance_change:
                break
        state.update(
            d=d, t=t, old_dirs=dirs, old_stps=stps, ro=ro, H_diag=h_diag, prev_flat_grad=prev_g, prev_loss=prev_loss
        )
        return orig_loss
