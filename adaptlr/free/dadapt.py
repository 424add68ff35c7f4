"""D-Adaptation (Defazio & Mishchenko, 2023): SGD, Adam and AdaGrad with an estimated step size."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .._validation import check_betas, check_bool, check_count, check_real
from ..optim import ENGINE_DOC, Phase
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
            log_every=0,  # (the package's keys, never used here: its checkpoints and ours interchange)
            fsdp_in_use=False,
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

    state_names = ("s", "exp_avg", "exp_avg_sq")
    parameter_steps = True
    phases = (
        Phase(
            dadapt_adam_stats,
            "p g m=exp_avg v=exp_avg_sq s",
            writes="m v s",
            sums="dot l1",
            flags="coupled_decay",
            name="stats",
        ),
        Phase(dadapt_adam, "p m=exp_avg v=exp_avg_sq", writes="p", flags="decoupled_decay", name="update"),
    )

    def _init_state(self, group, p, state):
        state["step"] = 0
        for name in self.state_names:
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _dlr(self, group, lr, d):
        return d * float(lr) * self._bias_correction(group)

    def _values(self, phase, ctx, key):
        group = ctx.group
        if phase.name == "update":
            return ctx.update
        if float(ctx.lr) <= 0:
            return None
        b1, b2 = group["betas"]
        r = group["layer_scale"]
        dlr = ctx.dlr = self._dlr(group, ctx.lr, group["d"])
        return dict(
            weight_decay=group["weight_decay"],
            beta1=b1,
            m_coef=r * dlr * (1 - b1),
            beta2=b2,
            v_coef=1 - b2,
            sqrt_beta2=math.sqrt(b2),
            s_coef=r * dlr * (1 - math.sqrt(b2)),
            eps=group["eps"],
            coupled_decay=group["weight_decay"] != 0 and not group["decouple"],
        )

    def _after(self, phase, ctxs):
        if phase.name == "update":
            self._count_step(ctxs)
            return None
        g0 = ctxs[0].group
        dot = s_l1 = 0.0
        for ctx in ctxs:
            if ctx.dlr is not None:
                r = ctx.group["layer_scale"]
                dot += r * ctx.dlr * ctx.sums["dot"]
                s_l1 += r * ctx.sums["l1"]
        sqrt_beta2 = math.sqrt(g0["betas"][1])
        d_old = d = g0["d"]
        # the weighted numerator is an EMA of the (global) per-step sums: summing it over ranks commutes
        numerator = sqrt_beta2 * g0["numerator_weighted"] + (1 - sqrt_beta2) * dot
        if s_l1 == 0:
            return False  # (no gradient information: nothing moves; the base still ticks the clock)
        if self._any_lr([c.group for c in ctxs]):
            d_hat = numerator / ((1 - sqrt_beta2) * s_l1)
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        for ctx in ctxs:
            group = ctx.group
            group["d"] = d
            group["numerator_weighted"] = numerator
            if ctx.params:
                wd = group["weight_decay"]
                ctx.update = dict(
                    decay_coef=wd * self._dlr(group, ctx.lr, d_old),
                    eps=group["eps"],
                    decoupled_decay=wd != 0 and group["decouple"],
                )
        return None


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
            log_every=0,  # (the package's keys, never used here: its checkpoints and ours interchange)
            fsdp_in_use=False,
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

    phases = (
        Phase(squared, "g", writes="", sums="g_sq", name="g0_norm"),  # (||g_0||, once)
        Phase(dadapt_sgd_stats, "p g s", writes="s", sums="dot s_sq", flags="coupled_decay", name="stats"),
        Phase(dadapt_sgd, "p x0 s", writes="p", name="update"),
    )

    def _init_state(self, group, p, state):
        state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["x0"] = p.detach().clone(memory_format=torch.preserve_format)

    def _skips(self, phase, ctxs):
        return phase.name == "g0_norm" and bool(ctxs[0].group.get("g0_norm"))  # (||g_0|| is measured once)

    def _values(self, phase, ctx, key):
        group = ctx.group
        if phase.name == "g0_norm":  # ||g_0||, on the first step with gradient information
            return {} if float(ctx.lr) > 0 else None
        if phase.name == "update":
            return dict(momentum=group["momentum"], ck=1 - group["momentum"])
        if not group.get("g0_norm") or float(ctx.lr) <= 0:
            return None
        dlr = ctx.dlr = group["d"] * float(ctx.lr) / group["g0_norm"]
        return dict(weight_decay=group["weight_decay"], dlr=dlr, coupled_decay=group["weight_decay"] != 0)

    def _after(self, phase, ctxs):
        g0 = ctxs[0].group
        if phase.name == "g0_norm":
            g_sq = sum(c.sums["g_sq"] for c in ctxs)
            if g_sq > 0:  # (else: measured again on the next step)
                for ctx in ctxs:
                    ctx.group["g0_norm"] = math.sqrt(g_sq)
            return None
        if phase.name == "update":
            self._count_step(ctxs)
            return None
        if not g0.get("g0_norm"):  # no gradient yet (the package divides by zero here)
            return False
        dot = s_sq = 0.0
        for ctx in ctxs:
            if ctx.dlr is not None:
                dot += ctx.dlr * ctx.sums["dot"]
                s_sq += ctx.sums["s_sq"]
        d = g0["d"]
        numerator = g0["numerator_weighted"] + dot
        if self._any_lr([c.group for c in ctxs]) and s_sq > 0:
            d_hat = 2 * numerator / math.sqrt(s_sq)
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        if s_sq == 0:
            return False
        for ctx in ctxs:
            ctx.group["numerator_weighted"] = numerator
            ctx.group["d"] = d
        return None

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
        check_count("log_every", log_every)  # (accepted and unused: the package's logging is not reproduced)
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
            log_every=log_every,  # (the package's key: its checkpoints and ours interchange)
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

    phases = (
        Phase(
            dadapt_adagrad_stats,
            "p g alpha=alphak s=sk",
            writes="alpha s",
            sums="g_sq sksq_change skl1_change",
            flags="coupled_decay",
            name="stats",
        ),
        Phase(dadapt_adagrad, "p x0 alpha=alphak s=sk", writes="p", flags="use_momentum", name="update"),
    )

    def _init_state(self, group, p, state):
        state["alphak"] = torch.full_like(p, 1e-6, memory_format=torch.preserve_format)
        state["sk"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["x0"] = p.detach().clone(memory_format=torch.preserve_format)

    def _values(self, phase, ctx, key):
        group = ctx.group
        if phase.name == "update":
            momentum = group["momentum"]
            return dict(momentum=momentum, ck=1 - momentum, eps=group["eps"], use_momentum=momentum != 0)
        dlr = ctx.dlr = group["d"] * float(ctx.lr)
        return dict(
            weight_decay=group["weight_decay"], dlr=dlr, eps=group["eps"], coupled_decay=group["weight_decay"] != 0
        )

    def _after(self, phase, ctxs):
        if phase.name == "update":
            self._count_step(ctxs)
            return None
        g0 = ctxs[0].group
        g_sq = sksq_change = skl1_change = 0.0
        for ctx in ctxs:
            if ctx.dlr is not None:
                dlr = ctx.dlr
                g_sq += dlr * dlr * ctx.sums["g_sq"]  # the package uses one dlr for all groups: equal unless lrs differ
                sksq_change += ctx.sums["sksq_change"]
                skl1_change += ctx.sums["skl1_change"]
        d = g0["d"]
        sksq = g0["sksq_weighted"] + sksq_change
        skl1 = g0["skl1"] + skl1_change
        if skl1 == 0:
            return False
        gsq = g0["gsq_weighted"] + g_sq
        if self._any_lr([c.group for c in ctxs]):
            d_hat = (sksq - gsq) / skl1
            d = max(d, min(d_hat, d * g0["growth_rate"]))
        for ctx in ctxs:
            ctx.group.update(gsq_weighted=gsq, skl1=skl1, sksq_weighted=sksq, d=d)
        return None
