from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_betas, check_bool, check_real
from ._base import ENGINE_DOC, Optimizer, scalar_dtype
from ._phase import Phase


class NAdam(Optimizer):
    __doc__ = (
        r"""NAdam (Dozat, 2016); matches ``torch.optim.NAdam``.

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad \Pi_t = \prod_{i \le t} \mu_i, \quad
        d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        p_t = p_{t-1} - \gamma \frac{1 - \mu_t}{1 - \Pi_t} \frac{g_t}{d_t}
              - \gamma \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d_t}

    Args:
        lr (default 2e-3), betas (default (0.9, 0.999)), eps (default 1e-8), weight_decay (default 0),
        momentum_decay: :math:`\psi` (default 4e-3), decoupled_weight_decay (default False), maximize.
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``mu_product`` (float32, as torch), ``exp_avg``, ``exp_avg_sq``.
    """
    )

    phases = (
        Phase(
            rules.nadam,
            "p g exp_avg exp_avg_sq",
            writes="p exp_avg exp_avg_sq",
            flags="maximize coupled_decay decoupled_decay",
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        check_real("momentum_decay", momentum_decay, 0.0)
        check_bool("decoupled_weight_decay", decoupled_weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _init_state(self, group, p, state):
        super()._init_state(group, p, state)
        state["mu_product"] = torch.ones((), dtype=scalar_dtype())

    def _mu(self, group, step):
        return group["betas"][0] * (1.0 - 0.5 * 0.96 ** (step * group["momentum_decay"]))

    def _advance(self, group, params, states):
        steps = super()._advance(group, params, states)
        if torch.compiler.is_compiling():
            products = [s["mu_product"] for s in states]
            torch._foreach_mul_(products, self._mu(group, steps[0]))
            return [(steps[0], products[0])] * len(steps)
        products = self._shared_scalars(group, "mu_product", states)
        if len(set(steps)) == 1:
            products.mul_(self._mu(group, steps[0]))
        else:
            products.mul_(torch.tensor([self._mu(group, t) for t in steps], dtype=products.dtype))
        return list(zip(steps, products.tolist()))

    def _values(self, phase, ctx, key):
        group, lr = ctx.group, ctx.lr
        step, mu_product = key
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        mu, mu_next = self._mu(group, step), self._mu(group, step + 1)
        grad_coef = -lr * (1.0 - mu) / (1.0 - mu_product)
        avg_coef = -lr * mu_next / (1.0 - mu_product * mu_next)
        return dict(
            grad_coef=grad_coef,
            avg_coef=avg_coef,
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            bc2=1 - beta2**step,
            weight_decay=wd,
            decay_factor=1 - lr * wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0 and not decoupled,
            decoupled_decay=wd != 0 and decoupled,
        )


class RAdam(Optimizer):
    __doc__ = (
        r"""RAdam (Liu et al., 2020); matches ``torch.optim.RAdam``.

    .. math::
        \rho_\infty = \frac{2}{1 - \beta_2} - 1, \quad \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},
        \quad r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        p_t = p_{t-1} - \frac{\gamma}{1 - \beta_1^t} m_t \cdot
        \begin{cases} r_t \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\ 1 & \text{otherwise}
        \end{cases}

    Args:
        lr (default 1e-3), betas (default (0.9, 0.999)), eps (default 1e-8), weight_decay (default 0),
        decoupled_weight_decay (default False), maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, as torch.
    """
    )

    phases = (
        Phase(
            rules.radam,
            "p g exp_avg exp_avg_sq",
            writes="p exp_avg exp_avg_sq",
            flags="maximize coupled_decay decoupled_decay rectify",
        ),
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        check_real("eps", eps, 0.0)
        check_real("weight_decay", weight_decay, 0.0)
        check_bool("decoupled_weight_decay", decoupled_weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _values(self, phase, ctx, step):
        group, lr = ctx.group, ctx.lr
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        bc2 = 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bc2
        rectify = rho_t > 5.0
        rect = (
            math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) if rectify else 0.0
        )
        return dict(
            step_size=lr / (1 - beta1**step),
            rect_scale=rect * math.sqrt(bc2),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=wd,
            decay_factor=1 - lr * wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0 and not decoupled,
            decoupled_decay=wd != 0 and decoupled,
            rectify=rectify,
        )
