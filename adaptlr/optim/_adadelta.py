from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import rules
from .._validation import check_real
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase


class Adadelta(Optimizer):
    __doc__ = (
        r"""Adadelta (Zeiler, 2012); matches ``torch.optim.Adadelta``.

    .. math::
        v_t = \rho v_{t-1} + (1 - \rho) g_t^2, \quad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \quad
        u_t = \rho u_{t-1} + (1 - \rho) \Delta_t^2, \quad p_t = p_{t-1} - \gamma \Delta_t

    Args:
        lr: :math:`\gamma` (default 1.0). rho: :math:`\rho` (default 0.9). eps (default 1e-6).
        weight_decay (default 0). maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``square_avg``, ``acc_delta``, as torch.
    """
    )

    phases = (
        Phase(
            rules.adadelta, "p g square_avg acc_delta", writes="p square_avg acc_delta", flags="maximize coupled_decay"
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("rho", rho, 0.0, 1.0)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _values(self, phase, ctx, step):
        group = ctx.group
        wd = group["weight_decay"]
        return dict(
            lr=ctx.lr,
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0,
        )
