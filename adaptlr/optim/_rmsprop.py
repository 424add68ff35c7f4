from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import rules
from .._validation import check_bool, check_real
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase


class RMSprop(Optimizer):
    __doc__ = (
        r"""RMSprop (Hinton, 2012), centered (Graves, 2013) and with momentum; matches ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t, \quad
        d_t = \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered) or}\ \sqrt{v_t} + \epsilon \\
        b_t = \mu b_{t-1} + g_t / d_t,\ p_t = p_{t-1} - \gamma b_t \ \text{(momentum > 0) or}\
        p_t = p_{t-1} - \gamma g_t / d_t

    Args:
        lr: :math:`\gamma` (default 1e-2). alpha: :math:`\alpha` (default 0.99). eps (default 1e-8).
        weight_decay (default 0). momentum: :math:`\mu` (default 0). centered (default False).
        maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered), as torch.
    """
    )

    phases = (
        Phase(
            rules.rmsprop,
            "p g square_avg grad_avg buf=momentum_buffer",
            writes="p square_avg grad_avg buf",
            flags="maximize coupled_decay centered use_momentum",
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("alpha", alpha, 0.0)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        check_real("momentum", momentum, 0.0)
        check_bool("centered", centered)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _present_states(self, group):
        return (
            "square_avg",
            "grad_avg" if group["centered"] else None,
            "momentum_buffer" if group["momentum"] > 0 else None,
        )

    def _values(self, phase, ctx, step):
        group = ctx.group
        wd = group["weight_decay"]
        return dict(
            lr=ctx.lr,
            alpha=group["alpha"],
            eps=group["eps"],
            momentum=group["momentum"],
            weight_decay=wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0,
            centered=group["centered"],
            use_momentum=group["momentum"] > 0,
        )
