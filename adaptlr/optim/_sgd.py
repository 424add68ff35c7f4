from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_bool, check_real
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase


class SGD(Optimizer):
    __doc__ = (
        r"""Stochastic gradient descent with momentum and Nesterov momentum; matches ``torch.optim.SGD``.

    .. math::
        g_t \leftarrow \pm g_t + \lambda p_{t-1}, \quad
        b_t = \mu b_{t-1} + (1 - \tau) g_t \ (b_1 = g_1), \quad
        p_t = p_{t-1} - \gamma\,(g_t + \mu b_t \text{ if nesterov else } b_t)

    Args:
        params: parameters or param groups.
        lr (float, Tensor or schedule): learning rate :math:`\gamma` (default 1e-3).
        momentum (float): :math:`\mu` (default 0). dampening (float): :math:`\tau` (default 0).
        weight_decay (float): L2 penalty :math:`\lambda` (default 0).
        nesterov (bool): Nesterov momentum (default False; needs momentum > 0 and dampening 0).
        maximize (bool): maximize the objective (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``momentum_buffer`` (only when momentum != 0), as torch.

    >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)  # doctest: +SKIP
    """
    )

    phases = (
        Phase(
            rules.sgd,
            "p g buf=momentum_buffer",
            writes="p buf",
            flags="maximize coupled_decay use_momentum nesterov first",
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("momentum", momentum, 0.0)
        check_real("dampening", dampening)
        check_real("weight_decay", weight_decay, 0.0)
        check_bool("nesterov", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _init_state(self, group, p, state):
        pass  # torch creates the momentum buffer from the first gradient

    def _present_states(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else (None,)

    def _advance(self, group, params, states):
        if group["momentum"] == 0:
            return [False] * len(params)
        first = []
        for p, s in zip(params, states):
            first.append("momentum_buffer" not in s or s["momentum_buffer"] is None)
            if first[-1]:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return first

    def _values(self, phase, ctx, first):
        group = ctx.group
        wd = group["weight_decay"]
        return dict(
            lr=ctx.lr,
            weight_decay=wd,
            momentum=group["momentum"],
            dampening=group["dampening"],
            maximize=group["maximize"],
            coupled_decay=wd != 0,
            use_momentum=group["momentum"] != 0,
            nesterov=group["nesterov"],
            first=first,
        )
