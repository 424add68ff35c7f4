"""Muon, orthogonalised momentum for matrices (torch.optim.Muon)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._base import ReferenceOptimizer, check_range

__all__ = ["Muon", "newton_schulz"]


def newton_schulz(
    g: np.ndarray,
    coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
    steps: int = 5,
    eps: float = 1e-7,
) -> np.ndarray:
    r"""Approximate :math:`U V^\top` of :math:`G = U \Sigma V^\top` by the quintic Newton–Schulz iteration.

    :math:`X_0 = G / \max(\|G\|_F, \epsilon)` (so every singular value is at most 1), then
    :math:`X_{k+1} = a X_k + b (X_k X_k^\top) X_k + c (X_k X_k^\top)^2 X_k`, which maps each singular value
    :math:`\sigma` through :math:`\varphi(\sigma) = a\sigma + b\sigma^3 + c\sigma^5` (the singular vectors stay).
    The coefficients maximise :math:`\varphi'(0)`, so small singular values grow fast; the iterates then
    oscillate near 1 instead of converging to it. Run on the wide orientation (:math:`X X^\top` is the smaller
    Gram matrix).
    """
    a, b, c = coefficients
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / max(float(np.linalg.norm(x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


class Muon(ReferenceOptimizer):
    r"""Muon; matches ``torch.optim.Muon`` in float64 up to the dtype of the iteration.

    Jordan et al. (2024), "Muon: an optimizer for hidden layers in neural networks"; the
    ``"match_rms_adamw"`` scale is Liu et al. (2025), "Muon is scalable for LLM training". For an
    :math:`A \times B` matrix parameter:

    .. math::

        B_t &= \mu B_{t-1} + (1 - \mu) g_t, \qquad \tilde B_t = g_t + \mu (B_t - g_t) \text{ (nesterov)}
            \text{ or } B_t \\
        O_t &= \mathrm{NS}_k(\tilde B_t) \approx U V^\top \text{ (see } \texttt{newton\_schulz}) \\
        p_t &= p_{t-1} (1 - \gamma\lambda) - \gamma s\, O_t, \qquad
            s = \sqrt{\max(1, A/B)} \text{ ("original") or } 0.2 \sqrt{\max(A, B)} \text{ ("match\_rms\_adamw")}

    Note (torch's semantics): the momentum is an exponential average (``lerp``), not Jordan's
    :math:`B_t = \mu B_{t-1} + g_t`; torch runs the iteration in bfloat16, this reference in float64 (so compare
    it with ``adaptlr.Muon(..., ns_dtype="float64")``, or with torch to bfloat16 precision).

    State per parameter: ``momentum_buffer`` (:math:`B`).

    >>> import numpy as np
    >>> p = np.zeros((2, 2))
    >>> opt = Muon([p], lr=0.1, weight_decay=0.0, ns_steps=30, ns_coefficients=(1.5, -0.5, 0.0))
    >>> opt.step([np.array([[3.0, 0.0], [0.0, 0.5]])])  # the cubic iteration converges: O = U V^T = I
    >>> print(np.round(p, 6))
    [[-0.1  0. ]
     [ 0.  -0.1]]
    """

    def __init__(
        self,
        params: Iterable[np.ndarray],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
    ) -> None:
        check_range("lr", lr)
        check_range("weight_decay", weight_decay)
        check_range("momentum", momentum)
        check_range("eps", eps)
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"Invalid adjust_lr_fn: {adjust_lr_fn!r}")
        super().__init__(params)
        for i, p in enumerate(self.params):
            if p.ndim != 2:
                raise ValueError(f"params[{i}] has shape {p.shape}: Muon updates matrices only")
        self.lr, self.weight_decay, self.momentum, self.nesterov = lr, weight_decay, momentum, nesterov
        self.ns_coefficients, self.eps, self.ns_steps = tuple(ns_coefficients), eps, ns_steps
        self.adjust_lr_fn = adjust_lr_fn

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"momentum_buffer": np.zeros_like(param)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> None:
        buf, mu = state["momentum_buffer"], self.momentum
        buf += (1 - mu) * (g - buf)
        update = g + mu * (buf - g) if self.nesterov else buf
        ortho = newton_schulz(update, self.ns_coefficients, self.ns_steps, self.eps)
        a, b = p.shape
        scale = 0.2 * math.sqrt(max(a, b)) if self.adjust_lr_fn == "match_rms_adamw" else math.sqrt(max(1, a / b))
        p *= 1 - self.lr * self.weight_decay
        p -= self.lr * scale * ortho
