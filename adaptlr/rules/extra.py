"""The rest of torch.optim's rules: Rprop, ASGD, SparseAdam, and the elementwise phases of Adafactor and Muon.

Elementwise rules follow the conventions of :mod:`adaptlr.rules.classic` (``p``, ``g``, the state columns, then
per-step scalars, then flags). Adafactor and Muon are not elementwise: each step has a *statistic* of the whole
tensor between two elementwise phases. Their non-elementwise parts are written once here as plain torch code over
one tensor (:func:`adafactor_second_moment`, :func:`newton_schulz`); the optimizer classes run the phases in
order (see ``docs/CONTRACTS.md``, "Non-elementwise rules"):

- Adafactor: ``RMS(p)`` (a sum per tensor) -> :func:`adafactor_second_moment` (row / column means, an outer
  product) -> :func:`adafactor_precondition` (elementwise) -> ``RMS(u)`` (a sum per tensor) ->
  :func:`decayed_step` (elementwise).
- Muon: :func:`muon_momentum` (elementwise) -> :func:`newton_schulz` (matrix products) -> :func:`decayed_step`.
"""

from __future__ import annotations

import torch

from ._elementwise import elementwise
from ._math import maximum, minimum, sign, sqrt, where
from .classic import gradient

__all__ = [
    "adafactor_precondition",
    "adafactor_second_moment",
    "asgd",
    "decayed_step",
    "lerp",
    "muon_momentum",
    "newton_schulz",
    "rprop",
    "sparse_adam",
]


@elementwise
def lerp(a, b, weight, one_minus_weight, small_weight):
    r"""``torch.lerp(a, b, weight)`` in torch's own two forms (the one chosen by ``small_weight = weight < 0.5``).

    a + w (b - a)  if w < 0.5,  else  b - (b - a)(1 - w)
    """
    if small_weight:
        return a + weight * (b - a)
    return b - (b - a) * one_minus_weight


@elementwise
def rprop(p, g, prev, step_size, etaminus, etaplus, step_size_min, step_size_max, maximize):
    r"""Rprop (Riedmiller & Braun, 1993), as in torch.optim.Rprop (the "Rprop-" variant, no weight backtracking).

    s = sign(g_t g_{t-1})      eta_t = clip(eta_{t-1} * (eta+ if s > 0, eta- if s < 0, 1 if s = 0), min, max)
    g_t <- 0 where s < 0       p_t = p_{t-1} - eta_t sign(g_t)        prev <- g_t
    """
    if maximize:
        g = -g
    s = sign(g * prev)
    factor = where(s, etaplus, where(-s, etaminus, 1.0))
    step_size = minimum(maximum(step_size * factor, step_size_min), step_size_max)
    g = where(-s, 0.0, g)
    p = p - sign(g) * step_size
    return p, g, step_size


@elementwise
def asgd(p, g, ax, eta, decay, mu, weight_decay, maximize, coupled_decay, averaging):
    r"""Averaged SGD (Polyak & Juditsky, 1992), as in torch.optim.ASGD (single-tensor form).

    p_t = p_{t-1} (1 - lambda eta_t) - eta_t g_t          (``decay = 1 - lambda eta_t``)
    ax_t = ax_{t-1} + mu_t (p_t - ax_{t-1})  if mu_t != 1,  else  ax_t = p_t  (``averaging = mu_t != 1``)
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    p = p * decay - eta * g
    if averaging:
        ax = ax + (p - ax) * mu
    else:
        ax = p
    return p, ax


@elementwise
def sparse_adam(p, g, exp_avg, exp_avg_sq, neg_step_size, beta1, beta2, eps, maximize):
    r"""Adam on the gathered values of a sparse gradient, as in torch.optim.SparseAdam (the masked "lazy" Adam).

    Every column holds only the entries the gradient touches; with ``neg_step_size = -lr sqrt(1 - b2^t) / (1 - b1^t)``:
    m <- m + (1 - b1)(g - m)     v <- v + (1 - b2)(g^2 - v)     p <- p + neg_step_size m / (sqrt(v) + eps)
    """
    if maximize:
        g = -g
    dm = (g - exp_avg) * (1 - beta1)
    dv = (g * g - exp_avg_sq) * (1 - beta2)
    numer = dm + exp_avg
    denom = sqrt(dv + exp_avg_sq) + eps
    p = p + neg_step_size * (numer / denom)
    return p, exp_avg + dm, exp_avg_sq + dv


@elementwise
def decayed_step(p, u, step, decay, use_decay):
    r"""p_t = p_{t-1} (1 - lr lambda) - step u_t: the last phase of Adafactor and Muon (``decay = 1 - lr lambda``)."""
    if use_decay:
        p = p * decay
    p = p - step * u
    return (p,)


@elementwise
def adafactor_precondition(u, g, variance, one_minus_beta2, eps1_sq, maximize, factored):
    r"""Adafactor's preconditioned gradient and its square (Shazeer & Stern, 2018, Alg. 4-5; torch.optim.Adafactor).

    factored:    ``u`` holds the factored estimate V_t = R_t C_t / mean(R_t) on entry
    unfactored:  v_t = v_{t-1} + (1 - beta2_t)(g^2 - v_{t-1}),  V_t = v_t
    u_t = g_t / sqrt(max(V_t, eps1^2))           returns (u_t, v_t)
    """
    if maximize:
        g = -g
    if not factored:
        variance = variance + (g * g - variance) * one_minus_beta2
        u = variance
    u = g / sqrt(maximum(u, eps1_sq))
    return u, variance


@elementwise
def muon_momentum(update, g, buf, momentum, one_minus_momentum, nesterov, small_dampening, small_momentum):
    r"""Muon's momentum (Jordan et al., 2024), as in torch.optim.Muon.

    B_t = B_{t-1} + (1 - mu)(g_t - B_{t-1})       update = g_t + mu (B_t - g_t)  (nesterov)  or  B_t
    (both as ``torch.lerp``: ``small_dampening = 1 - mu < 0.5``, ``small_momentum = mu < 0.5``)
    """
    buf = lerp(buf, g, one_minus_momentum, momentum, small_dampening)
    if nesterov:
        update = lerp(g, buf, momentum, one_minus_momentum, small_momentum)
    else:
        update = buf
    return update, buf


# ------------------------------------------------------------------------------- non-elementwise parts
def adafactor_second_moment(
    grad: torch.Tensor, row_var: torch.Tensor, col_var: torch.Tensor, one_minus_beta2: float, eps1: float
) -> torch.Tensor:
    r"""Adafactor's factored second moment of a tensor with ``ndim >= 2`` (its last two dims are the matrix).

    .. math::
        R_t = \hat\beta_{2t} R_{t-1} + (1 - \hat\beta_{2t}) \operatorname{mean}_{-1}(g_t^2), \quad
        C_t = \hat\beta_{2t} C_{t-1} + (1 - \hat\beta_{2t}) \operatorname{mean}_{-2}(g_t^2), \quad
        V_t = R_t C_t / \max(\operatorname{mean}_{-2} R_t, \epsilon_1)

    ``row_var`` (shape ``[..., m, 1]``) and ``col_var`` (``[..., 1, n]``) are updated in place; returns
    :math:`V_t`, a new tensor of ``grad``'s shape (torch.optim.Adafactor's ``var_estimate``, same ops).
    """
    row_mean = torch.norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1))
    row_var.lerp_(row_mean, one_minus_beta2)
    col_mean = torch.norm(grad, dim=-2, keepdim=True).square_().div_(grad.size(-2))
    col_var.lerp_(col_mean, one_minus_beta2)
    var_estimate = row_var @ col_var
    return var_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))


def newton_schulz(
    grad: torch.Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    r"""The quintic Newton–Schulz iteration that orthogonalises a matrix (Jordan et al., 2024; torch.optim.Muon).

    .. math::
        X_0 = G / \max(\|G\|_F, \epsilon), \quad A_k = X_k X_k^\top, \quad
        X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

    run on the wide orientation of ``G`` (transposed when it has more rows than columns) in ``dtype``
    (torch's is bfloat16); after ``steps`` iterations the singular values of :math:`X` lie near 1 (roughly in
    [0.7, 1.2], not exactly 1: the coefficients maximise the slope at 0). Returns a new ``dtype`` tensor.
    """
    if grad.ndim != 2:
        raise ValueError(f"newton_schulz: expected a 2-D matrix, got shape {tuple(grad.shape)}")
    a, b, c = coefficients
    x = grad.to(dtype, copy=True)  # (a copy even when grad is already in dtype: grad is never written)
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x
