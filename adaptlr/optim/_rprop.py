from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_real
from ._base import ENGINE_DOC, Optimizer, scalar_dtype
from ._phase import Phase


def _check_pair(name: str, value: Any) -> tuple[Any, Any]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"Invalid {name}: expected a pair, got {value!r}")
    return value[0], value[1]


class Rprop(Optimizer):
    __doc__ = (
        r"""Resilient backpropagation (Riedmiller & Braun, 1993); matches ``torch.optim.Rprop``.

    Every weight has its own step size :math:`\eta^i`, adapted from the sign of successive gradients only:

    .. math::
        s = \operatorname{sign}(g^i_t g^i_{t-1}), \quad
        \eta^i_t = \operatorname{clip}\big(\eta^i_{t-1} \cdot (\eta_+ \text{ if } s > 0,\
            \eta_- \text{ if } s < 0,\ 1 \text{ else}), \Gamma_{\min}, \Gamma_{\max}\big) \\
        g^i_t \leftarrow 0 \text{ if } s < 0, \qquad
        p^i_t = p^i_{t-1} - \eta^i_t \operatorname{sign}(g^i_t), \qquad g^i_{prev} \leftarrow g^i_t

    Args:
        lr: the initial step size :math:`\eta_0` of every weight (default 1e-2); it is read only when a
            parameter's state is created (as in torch: a later change of ``lr`` changes nothing).
        etas: :math:`(\eta_-, \eta_+)`, with :math:`0 < \eta_- < 1 < \eta_+` (default (0.5, 1.2)).
        step_sizes: :math:`(\Gamma_{\min}, \Gamma_{\max})`, :math:`0 \le \Gamma_{\min} \le \Gamma_{\max}`
            (default (1e-6, 50)). maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``prev`` (the last gradient, zeroed where its sign flipped), ``step_size``, as torch.

    >>> opt = Rprop(model.parameters(), lr=1e-2)  # doctest: +SKIP
    """
    )

    phases = (Phase(rules.rprop, "p g prev step_size", writes="p prev step_size", flags="maximize"),)

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        etaminus, etaplus = _check_pair("etas", etas)
        check_real("etas[0] (etaminus)", etaminus, 0.0, 1.0, low_open=True, high_open=True)
        check_real("etas[1] (etaplus)", etaplus, 1.0, math.inf, low_open=True, high_open=True)
        low, high = _check_pair("step_sizes", step_sizes)
        check_real("step_sizes[0] (minimal step size)", low, 0.0, math.inf, high_open=True)
        check_real(
            f"step_sizes[1] (maximal step size, at least step_sizes[0] = {low!r})",
            high,
            float(low),
            math.inf,
            high_open=True,
        )
        defaults = dict(
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _init_state(self, group, p, state):
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        state["prev"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        lr = float(self._lr(group))
        state["step_size"] = torch.full_like(
            p, complex(lr, lr) if p.is_complex() else lr, memory_format=torch.preserve_format
        )

    def _advance(self, group, params, states):
        super()._advance(group, params, states)
        return [None] * len(params)  # the rule's scalars do not depend on the step

    def _values(self, phase, ctx, key):
        group = ctx.group
        etaminus, etaplus = group["etas"]
        low, high = group["step_sizes"]
        return dict(
            etaminus=etaminus, etaplus=etaplus, step_size_min=low, step_size_max=high, maximize=group["maximize"]
        )
