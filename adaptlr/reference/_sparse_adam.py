"""SparseAdam, Adam on the support of sparse gradients (torch.optim.SparseAdam)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["SparseAdam"]


class SparseAdam(ReferenceOptimizer):
    r"""The masked ("lazy") Adam for sparse gradients; matches ``torch.optim.SparseAdam`` in float64.

    Kingma & Ba (2015), Algorithm 1, applied only to the rows a gradient touches (as for embedding tables,
    where most rows get no gradient in a step). For the support :math:`S_t` of :math:`g_t`:

    .. math::

        m_i &\leftarrow \beta_1 m_i + (1 - \beta_1) g_i, \qquad v_i \leftarrow \beta_2 v_i + (1 - \beta_2) g_i^2,
        \qquad p_i \leftarrow p_i - \eta \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \frac{m_i}{\sqrt{v_i} + \epsilon}
        \qquad (i \in S_t)

    and nothing changes outside :math:`S_t`. Note (torch's semantics): the bias corrections use the
    parameter's step count :math:`t` (one per ``step`` with a gradient, touched rows or not), and
    :math:`\epsilon` is added to :math:`\sqrt{v}` before the correction factor (which multiplies the step size).

    ``step(grads)`` takes each gradient in coordinate form, ``(indices, values)``: ``indices`` an int array of
    shape ``(k, nnz)`` (the first ``k`` dims), ``values`` of shape ``(nnz, *param.shape[k:])``; repeated
    indices are summed (as ``coalesce``), or ``None`` for no gradient.

    State per parameter: ``step`` (int), ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`).

    >>> import numpy as np
    >>> p = np.zeros(4)
    >>> opt = SparseAdam([p], lr=0.1)
    >>> opt.step([(np.array([[1, 3]]), np.array([2.0, -1.0]))])
    >>> print(np.round(p, 6))  # rows 0 and 2 are untouched
    [ 0.  -0.1  0.   0.1]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        check_range("lr", lr)
        check_range("eps", eps)
        check_range("betas[0]", betas[0], 0.0, 1.0, open_high=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, open_high=True)
        if lr <= 0 or eps <= 0:
            raise ValueError(f"Invalid lr or eps: {lr!r}, {eps!r} (both must be > 0)")
        super().__init__(params)
        self.lr, self.betas, self.eps, self.maximize = lr, tuple(betas), eps, maximize

    def step(self, grads: Sequence[tuple[np.ndarray, np.ndarray] | None]) -> None:  # type: ignore[override]
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, grad) in enumerate(zip(self.params, grads, strict=True)):
            if grad is None:
                continue
            indices, values = np.asarray(grad[0], dtype=np.int64), np.array(grad[1], dtype=np.float64)
            if not self.state[i]:
                self.state[i] = {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
            state = self.state[i]
            state["step"] += 1
            if values.size == 0:
                continue
            # coalesce: one entry per distinct index, repeated ones summed
            keys, inverse = np.unique(indices.T, axis=0, return_inverse=True)
            summed = np.zeros((len(keys),) + values.shape[1:])
            np.add.at(summed, inverse.reshape(-1), values)
            self._update_rows(p, tuple(keys.T), -summed if self.maximize else summed, state)

    def _update_rows(self, p: np.ndarray, rows: tuple[np.ndarray, ...], g: np.ndarray, state: dict[str, Any]) -> None:
        (beta1, beta2), t = self.betas, state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[rows] += (1 - beta1) * (g - m[rows])
        v[rows] += (1 - beta2) * (g * g - v[rows])
        step_size = self.lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        p[rows] -= step_size * (m[rows] / (np.sqrt(v[rows]) + self.eps))
