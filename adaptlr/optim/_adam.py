from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import rules
from .._validation import check_betas, check_bool, check_real
from ..rules import math_ops as _math
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase


class Adam(Optimizer):
    __doc__ = (
        r"""Adam (Kingma & Ba, 2015) with AMSGrad (Reddi et al., 2018); matches ``torch.optim.Adam``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        \hat v_t = \max(\hat v_{t-1}, v_t) \text{ (amsgrad) or } v_t \\
        p_t = p_{t-1}(1 - \gamma\lambda)_{\text{decoupled}} - \frac{\gamma}{1 - \beta_1^t}
              \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Args:
        lr: :math:`\gamma` (default 1e-3). betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon` (default 1e-8). weight_decay: :math:`\lambda` (default 0; added to the gradient,
        or decoupled as in AdamW when ``decoupled_weight_decay=True``). amsgrad (default False).
        maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), as torch.

    >>> opt = Adam(model.parameters(), lr=3e-4)  # doctest: +SKIP
    """
    )

    phases = (
        Phase(
            rules.adam,
            "p g exp_avg exp_avg_sq max_exp_avg_sq",
            writes="p exp_avg exp_avg_sq max_exp_avg_sq",
            flags="maximize coupled_decay decoupled_decay amsgrad",
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        check_bool("amsgrad", amsgrad)
        check_bool("decoupled_weight_decay", decoupled_weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _present_states(self, group):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if group["amsgrad"] else None)

    def _values(self, phase, ctx, step):
        group, lr = ctx.group, ctx.lr
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        return dict(
            step_size=lr / (1 - beta1**step),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            bc2_sqrt=_math.sqrt(1 - beta2**step),
            weight_decay=wd,
            decay_factor=1 - lr * wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0 and not decoupled,
            decoupled_decay=wd != 0 and decoupled,
            amsgrad=group["amsgrad"],
        )


class AdamW(Adam):
    __doc__ = r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay; matches ``torch.optim.AdamW``.

    .. math:: p_t = p_{t-1}(1 - \gamma\lambda) - \frac{\gamma}{1 - \beta_1^t}
              \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Same arguments as :class:`Adam`, with ``weight_decay`` default 1e-2 and always decoupled.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            nonfinite=nonfinite,
        )


class Adamax(Optimizer):
    __doc__ = (
        r"""Adamax (Kingma & Ba, 2015, Algorithm 2); matches ``torch.optim.Adamax``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        p_t = p_{t-1} - \frac{\gamma}{1 - \beta_1^t} \frac{m_t}{u_t}

    Args:
        lr (default 2e-3), betas (default (0.9, 0.999)), eps (default 1e-8), weight_decay (default 0),
        maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``exp_avg``, ``exp_inf``, as torch.
    """
    )

    phases = (Phase(rules.adamax, "p g exp_avg exp_inf", writes="p exp_avg exp_inf", flags="maximize coupled_decay"),)

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _values(self, phase, ctx, step):
        group = ctx.group
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        return dict(
            clr=ctx.lr / (1 - beta1**step),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0,
        )
