from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_real
from ._base import ENGINE_DOC, Optimizer, scalar_dtype
from ._phase import Phase


class Adagrad(Optimizer):
    __doc__ = (
        r"""AdaGrad (Duchi, Hazan & Singer, 2011); matches ``torch.optim.Adagrad``.

    .. math::
        \tilde\gamma_t = \gamma / (1 + (t - 1)\eta), \quad s_t = s_{t-1} + g_t^2, \quad
        p_t = p_{t-1} - \tilde\gamma_t\, g_t / (\sqrt{s_t} + \epsilon)

    Args:
        lr: :math:`\gamma` (default 1e-2). lr_decay: :math:`\eta` (default 0). weight_decay (default 0).
        initial_accumulator_value: :math:`s_0` (default 0). eps: :math:`\epsilon` (default 1e-10).
        maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``sum`` (created at construction, as torch does).
    """
    )

    phases = (Phase(rules.adagrad, "p g state_sum=sum", writes="p state_sum", flags="maximize coupled_decay"),)

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("lr_decay", lr_decay, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        check_real("initial_accumulator_value", initial_accumulator_value, 0.0)
        check_real("eps", eps, 0.0)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(group, p, self.state[p])

    def _init_state(self, group, p, state):
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        init = (
            complex(group["initial_accumulator_value"], group["initial_accumulator_value"])
            if p.is_complex()
            else group["initial_accumulator_value"]
        )
        state["sum"] = torch.full_like(p, init, memory_format=torch.preserve_format)

    def _values(self, phase, ctx, step):
        group = ctx.group
        wd = group["weight_decay"]
        return dict(
            clr=ctx.lr / (1 + (step - 1) * group["lr_decay"]),
            eps=group["eps"],
            weight_decay=wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0,
        )
