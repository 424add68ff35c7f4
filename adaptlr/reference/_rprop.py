"""Rprop, resilient backpropagation (torch.optim.Rprop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Rprop"]


class Rprop(ReferenceOptimizer):
    r"""Rprop; matches ``torch.optim.Rprop`` in float64.

    Riedmiller & Braun (1993), "A direct adaptive method for faster backpropagation learning: the RPROP
    algorithm", in the form without weight-backtracking (often called Rprop-). Each weight :math:`i` keeps its
    own step size :math:`\Delta_i`, changed only by the sign of successive partial derivatives:

    .. math::

        s_i &= \operatorname{sign}(g_{t,i}\, g_{t-1,i}) \\
        \Delta_{t,i} &= \min(\eta^+ \Delta_{t-1,i}, \Delta_{\max}) \text{ if } s_i > 0, \quad
            \max(\eta^- \Delta_{t-1,i}, \Delta_{\min}) \text{ if } s_i < 0, \quad \Delta_{t-1,i} \text{ else} \\
        g_{t,i} &\leftarrow 0 \text{ if } s_i < 0 \quad\text{(so the next step does not adapt again)} \\
        p_{t,i} &= p_{t-1,i} - \Delta_{t,i} \operatorname{sign}(g_{t,i})

    Note (torch's semantics): :math:`\Delta_0` = ``lr`` for every weight, fixed when the state is created;
    the clip to :math:`[\Delta_{\min}, \Delta_{\max}]` applies in every case (also when :math:`s_i = 0`).

    State per parameter: ``step`` (int), ``prev`` (:math:`g_{t}` after zeroing), ``step_size`` (:math:`\Delta`).

    >>> import numpy as np
    >>> p = np.array([1.0, -2.0])
    >>> opt = Rprop([p], lr=0.1)
    >>> opt.step([2 * p]); opt.step([2 * p])  # the same sign twice: the step grows by eta+ = 1.2
    >>> print(np.round(p, 6))
    [ 0.78 -1.78]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        for i, (ok, allowed) in enumerate(((0.0 < etas[0] < 1.0, "(0, 1)"), (1.0 < etas[1], "(1, inf)"))):
            if not ok:  # (as torch.optim.Rprop: 0 < etaminus < 1 < etaplus; `not` also refuses nan)
                raise ValueError(f"Invalid etas[{i}]: {etas[i]!r} (allowed: {allowed})")
        check_range("step_sizes[0]", step_sizes[0])
        check_range("step_sizes[1]", step_sizes[1], step_sizes[0])
        super().__init__(params)
        self.lr, self.etas, self.step_sizes, self.maximize = lr, tuple(etas), tuple(step_sizes), maximize

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "prev": np.zeros_like(param), "step_size": np.full_like(param, self.lr)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        if self.maximize:
            g = -g
        (eta_minus, eta_plus), (low, high) = self.etas, self.step_sizes
        same = g * state["prev"]
        delta = state["step_size"]
        delta[same > 0] *= eta_plus
        delta[same < 0] *= eta_minus
        np.clip(delta, low, high, out=delta)
        g = np.where(same < 0, 0.0, g)
        p -= np.sign(g) * delta
        state["prev"][...] = g
