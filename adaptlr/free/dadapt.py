"""D-Adaptation (Defazio & Mishchenko, 2023): SGD, Adam and AdaGrad with an estimated step size."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ..optim._base import ENGINE_DOC
from ..optim._validation import check_betas, check_bool, check_real
from ..rules.free_dadapt import (
    dadapt_adagrad,
    dadapt_adagrad_stats,
    dadapt_adam,
    dadapt_adam_stats,
    dadapt_sgd,
    dadapt_sgd_stats,
    squared,
)
from ._base import FREE_DOC, FreeOptimizer

__all__ = ["DAdaptSGD", "DAdaptAdam", "DAdaptAdaGrad"]

_COMMON = """
        lr (float or schedule): multiplier of the estimated step size (default 1; leave it).
        d0 (float): initial estimate of the distance to the solution (default 1e-6).
        growth_rate (float): the most ``d`` may grow per step (default inf)."""


def _check_common(lr, d0, growth_rate, weight_decay):
    check_real("d0", d0, 0.0, low_open=True)
    check_real("growth_rate", growth_rate, 1.0, allow_inf=True)
    check_real("weight_decay", weight_decay, 0.0)


class DAdaptAdam(FreeOptimizer):
    __doc__ = (
        r"""Adam with D-Adaptation step sizes; matches ``dadaptation.DAdaptAdam`` 3.2.

    .. math::
        \lambda_k = d_k\, lr\, bc_k, \quad
        r_k = \sqrt{\beta_2} r_{k-1} + (1-\sqrt{\beta_2})\lambda_k\langle g_k,
        s_{k-1}/(\sqrt{v_{k-1}}+\epsilon)\rangle,
        \quad s_k = \sqrt{\beta_2} s_{k-1} + (1-\sqrt{\beta_2})\lambda_k g_k

        d_{k+1} = \max(d_k, \min(r_k / ((1-\sqrt{\beta_2})\|s_k\|_1),\ growth \cdot d_k)), \quad
        m_k = \beta_1 m_{k-1} + (1-\beta_1)\lambda_k g_k, \quad x_{k+1} = x_k - m_k / (\sqrt{v_k}+\epsilon)

    Args:
        params: parameters or param groups."""
        + _COMMON
        + r"""
        betas (tuple): (default (0.9, 0.999)). eps (float): (default 1e-8).
        weight_decay (float): (default 0). decouple (bool): AdamW-style decay (default False).
        use_bias_correction (bool): (default False).
    """
        + FREE_DOC
        + ENGINE_DOC
        + r"""
    The package's ``layer_scale`` group key is honoured (a multiplier of the group's step).
    ``effective_lr(i)`` is ``d * lr``.
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = False,
        use_bias_correction: bool = False,
        d0: float = 1e-6,
        growth_rate: float = math.inf,
        *,
        per_group_d: bool = False,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_common(lr, d0, growth_rate, weight_decay)
        check_betas(betas)
        check_real("eps", eps, 0.0, low_open=True)
        check_bool("decouple", decouple)
        check_bool("use_bias_correction", use_bias_correction)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            d=d0,
            k=0,
            layer_scale=1.0,
            numerator_weighted=0.0,
            growth_rate=growth_rate,
            use_bias_correction=use_bias_correction,
            decouple=decouple,
        )
        super().__init__(
            params,
            defaults,
            per_group_d=per_group_d,
            process_group=process_group,
            sharded=sharded,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )

    def _init_state(self, group, p, state):
        state["step"] = 0
        for name in ("s", "exp_avg", "exp_avg_sq"):
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _dlr(self, group, d):
        return d * float(self._lr(group)) * self._bias_correction(group)

    def _reduce(self, groups):
        d = groups[0]["d"]
        numerator, s_l1 = 0.0, 0.0
        for group in groups:
            params, grads, states = self._active(group)
            if float(self._lr(group)) <= 0 or not params:
                continue
            b1, b2 = group["betas"]
            r = group["layer_scale"]
            dlr = self._dlr(group, d)
            coupled = group["weight_decay"] != 0 and not group["decouple"]
            cols = [params, grads] + [[s[n] for s in states] for n in ("exp_avg", "exp_avg_sq", "s")]
            dot, l1 = self._apply(
                group,
                dadapt_adam_stats,
                cols,
                writes=(2, 3, 4),
                scalars=(
                    group["weight_decay"],
                    b1,
                    r * dlr * (1 - b1),
                    b2,
                    1 - b2,
                    math.sqrt(b2),
                    r * dlr * (1 - math.sqrt(b2)),
                    group["eps"],
                ),
                flags=(coupled,),
                n_sums=2,
            )
            numerator += r * dlr * dot
            s_l1 += r * l1
        return [numerator, s_l1]

    def _update(self, groups, sums):
        g0 = groups[0]
        sqrt_beta2 = math.sqrt(g0["betas"][1])
        d_old = d = g0["d"]
        # the weighted numerator is an EMA of the (global) per-step sums: summing it over ranks commutes
        numerator = sqrt_beta2 * g0["numerator_weighted"] + (1 - sqrt_beta2) * sums[0]
        s_l1 = sums[1]
        if s_l1 == 0:
            return  # (the base ticks the clock: a step without gradient information still counts)
        if self._any_lr(groups):
            d_hat = numerator / ((1 - sqrt_beta2) * s_l1)
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        for group in groups:
            group["d"] = d
            group["numerator_weighted"] = numerator
            params, grads, states = self._active(group)
            if params:
                wd = group["weight_decay"]
                self._apply(
                    group,
                    dadapt_adam,
                    [params, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]],
                    writes=(0,),
                    scalars=(wd * self._dlr(group, d_old), group["eps"]),
                    flags=(wd != 0 and group["decouple"],),
                )
                for s in states:
                    s["step"] += 1
            group["k"] += 1


class DAdaptSGD(FreeOptimizer):
    __doc__ = (
        r"""SGD with D-Adaptation step sizes (dual averaging); matches ``dadaptation.DAdaptSGD`` 3.2.

    .. math::
        \lambda_k = d_k\, lr / \|g_0\|, \quad r_k = r_{k-1} + \lambda_k \langle g_k, s_{k-1}\rangle, \quad
        s_k = s_{k-1} + \lambda_k g_k, \quad d_{k+1} = \max(d_k, \min(2 r_k / \|s_k\|,\ growth \cdot d_k))

        x_{k+1} = (1 - c) x_k + c (x_0 - s_k), \quad c = 1 - momentum

    Args:
        params: parameters or param groups."""
        + _COMMON
        + r"""
        momentum (float): (default 0). weight_decay (float): L2 penalty added to the gradient (default 0;
            as in the package, ``||g_0||`` is measured without it).
    """
        + FREE_DOC
        + ENGINE_DOC
        + r"""
    State: ``s``, ``x0`` (the package also keeps ``z = x0 - s``, which adaptlr does not store).
    ``effective_lr(i)`` is ``d * lr / ||g_0||``, the step size on the gradient.
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        d0: float = 1e-6,
        growth_rate: float = math.inf,
        *,
        per_group_d: bool = False,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_common(lr, d0, growth_rate, weight_decay)
        check_real("momentum", momentum, 0.0, 1.0, high_open=True)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            k=0,
            numerator_weighted=0.0,
            d=d0,
            growth_rate=growth_rate,
            g0_norm=0.0,  # ||g_0||, measured on the first step with a gradient (0: not yet)
        )
        super().__init__(
            params,
            defaults,
            per_group_d=per_group_d,
            process_group=process_group,
            sharded=sharded,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )

    def _init_state(self, group, p, state):
        state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["x0"] = p.detach().clone(memory_format=torch.preserve_format)

    def _step_all(self):
        todo = [groups for groups in self._estimate_sets() if not groups[0].get("g0_norm")]
        if todo:  # ||g_0|| on the first step with gradient information: one more reduction (and all-reduce)
            local = []
            for groups in todo:
                total = 0.0
                for group in groups:
                    params, grads, _ = self._active(group)
                    if float(self._lr(group)) > 0 and params:
                        total += self._apply(group, squared, [grads], writes=(), n_sums=1)[0]
                local.append(total)
            for groups, g_sq in zip(todo, self._allreduce(local), strict=True):
                if g_sq > 0:  # (else: measured again on the next step)
                    for group in groups:
                        group["g0_norm"] = math.sqrt(g_sq)
        super()._step_all()

    def _reduce(self, groups):
        if not groups[0].get("g0_norm"):
            return [0.0, 0.0]
        d = groups[0]["d"]
        numerator = 0.0
        s_sq = 0.0
        for group in groups:
            params, grads, states = self._active(group)
            if float(self._lr(group)) <= 0 or not params:
                continue
            dlr = d * float(self._lr(group)) / group["g0_norm"]
            dot, sq = self._apply(
                group,
                dadapt_sgd_stats,
                [params, grads, [s["s"] for s in states]],
                writes=(2,),
                scalars=(group["weight_decay"], dlr),
                flags=(group["weight_decay"] != 0,),
                n_sums=2,
            )
            numerator += dlr * dot
            s_sq += sq
        return [numerator, s_sq]

    def _update(self, groups, sums):
        g0 = groups[0]
        if not g0.get("g0_norm"):  # no gradient yet (the package divides by zero here)
            return  # (the base ticks the clock: a step without gradient information still counts)
        d = g0["d"]
        numerator = g0["numerator_weighted"] + sums[0]
        s_sq = sums[1]
        if self._any_lr(groups) and s_sq > 0:
            d_hat = 2 * numerator / math.sqrt(s_sq)
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        if s_sq == 0:
            return  # (the base ticks the clock: a step without gradient information still counts)
        for group in groups:
            group["numerator_weighted"] = numerator
            group["d"] = d
            params, grads, states = self._active(group)
            if params:
                self._apply(
                    group,
                    dadapt_sgd,
                    [params, [s["x0"] for s in states], [s["s"] for s in states]],
                    writes=(0,),
                    scalars=(group["momentum"], 1 - group["momentum"]),
                )
            group["k"] += 1

    def effective_lr(self, group_index: int = 0) -> float:
        group = self.param_groups[group_index]
        g0 = group.get("g0_norm")
        return group["d"] * float(self._lr(group)) / g0 if g0 else 0.0


class DAdaptAdaGrad(FreeOptimizer):
    __doc__ = (
        r"""AdaGrad with D-Adaptation step sizes (dual averaging); matches ``dadaptation.DAdaptAdaGrad``
    3.2 on dense gradients.

    .. math::
        \alpha_k = \alpha_{k-1} + g_k^2, \quad s_k = s_{k-1} + \lambda_k g_k, \quad \lambda_k = d_k\, lr,
        \quad
        \hat d = \Big(\sum \tfrac{s_k^2}{\sqrt{\alpha_k}+\epsilon}
                 - \sum_{i \le k} \lambda_i^2 \sum \tfrac{g_i^2}{\sqrt{\alpha_i}+\epsilon}\Big) / \|s_k\|_1

        z = x_0 - s_k / (\sqrt{\alpha_k} + \epsilon), \quad x_{k+1} = (1 - c) x_k + c z, \quad c = 1 -
        momentum

    Args:
        params: parameters or param groups."""
        + _COMMON
        + r"""
        momentum (float): (default 0). weight_decay (float): (default 0). eps (float): (default 1e-6).
        log_every (int): the package's logging interval (default 0); accepted and unused.
    """
        + FREE_DOC
        + ENGINE_DOC
        + r"""
    ``effective_lr(i)`` is ``d * lr``.
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        momentum: float = 0.0,
        log_every: int = 0,
        weight_decay: float = 0.0,
        eps: float = 1e-6,
        d0: float = 1e-6,
        growth_rate: float = math.inf,
        *,
        per_group_d: bool = False,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_common(lr, d0, growth_rate, weight_decay)
        check_real("momentum", momentum, 0.0, 1.0, high_open=True)
        check_real("eps", eps, 0.0)
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 0:
            raise ValueError(
                f"Invalid log_every: {log_every!r}; expected an int >= 0 (accepted and unused, as the "
                "package's logging is not reproduced)"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            eps=eps,
            weight_decay=weight_decay,
            gsq_weighted=0.0,
            sksq_weighted=0.0,
            skl1=0.0,
            d=d0,
            k=0,
            growth_rate=growth_rate,
        )
        super().__init__(
            params,
            defaults,
            per_group_d=per_group_d,
            process_group=process_group,
            sharded=sharded,
            foreach=foreach,
            fused=fused,
            nonfinite=nonfinite,
        )

    def _init_state(self, group, p, state):
        state["alphak"] = torch.full_like(p, 1e-6, memory_format=torch.preserve_format)
        state["sk"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["x0"] = p.detach().clone(memory_format=torch.preserve_format)

    def _reduce(self, groups):
        d = groups[0]["d"]
        g_sq = sksq_change = skl1_change = 0.0
        for group in groups:
            params, grads, states = self._active(group)
            if not params:
                continue
            dlr = d * float(self._lr(group))
            a, b, c = self._apply(
                group,
                dadapt_adagrad_stats,
                [params, grads, [s["alphak"] for s in states], [s["sk"] for s in states]],
                writes=(2, 3),
                scalars=(group["weight_decay"], dlr, group["eps"]),
                flags=(group["weight_decay"] != 0,),
                n_sums=3,
            )
            g_sq += dlr * dlr * a  # the package uses one dlr for all groups: equal unless the lrs differ
            sksq_change += b
            skl1_change += c
        return [g_sq, sksq_change, skl1_change]

    def _update(self, groups, sums):
        g0 = groups[0]
        d = g0["d"]
        sksq = g0["sksq_weighted"] + sums[1]
        skl1 = g0["skl1"] + sums[2]
        if skl1 == 0:
            return  # (the base ticks the clock: a step without gradient information still counts)
        gsq = g0["gsq_weighted"] + sums[0]
        if self._any_lr(groups):
            d_hat = (sksq - gsq) / skl1
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        for group in groups:
            group.update(gsq_weighted=gsq, skl1=skl1, sksq_weighted=sksq, d=d)
            params, grads, states = self._active(group)
            if params:
                momentum = group["momentum"]
                self._apply(
                    group,
                    dadapt_adagrad,
                    [
                        params,
                        [s["x0"] for s in states],
                        [s["alphak"] for s in states],
                        [s["sk"] for s in states],
                    ],
                    writes=(0,),
                    scalars=(momentum, 1 - momentum, group["eps"]),
                    flags=(momentum != 0,),
                )
            group["k"] += 1
