"""Lion, AdaBelief and LAMB: adaptive rules beyond torch.optim (their packages' math), on adaptlr's engines."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .._validation import check_betas, check_bool, check_real
from ..rules.adaptive import adabelief, lamb, lamb_stats, lion
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase

__all__ = ["Lion", "AdaBelief", "LAMB"]


class _Adaptive(Optimizer):
    """What the three share: real parameters only (as their packages), no per-parameter ``step`` (AdaBelief and
    LAMB count steps per group, ``group["step"]``, as their package does)."""

    supports_complex = False
    #: whether groups keep a count of their updates, ``group["step"]`` (bias corrections)
    counts_steps = False

    def __init__(self, params, defaults, foreach, fused, nonfinite):
        if self.counts_steps:
            defaults = {**defaults, "step": 0}
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _advance(self, group, params, states):
        return [None] * len(params)

    def _after(self, phase, ctxs):
        if self.counts_steps and phase.name == "update":
            for ctx in ctxs:  # (every group, with or without gradients, as the package)
                ctx.group["step"] += 1
        return None

    def effective_lr(self, group_index: int = 0) -> float:
        return float(self._lr(self.param_groups[group_index]))


def _check_decay(betas, weight_decay, eps, weight_decouple, fixed_decay):
    """The arguments AdaBelief and LAMB share with ``pytorch_optimizer``."""
    check_betas(betas)
    check_real("weight_decay", weight_decay, 0.0)
    check_real("eps", eps, 0.0)
    check_bool("weight_decouple", weight_decouple)
    check_bool("fixed_decay", fixed_decay)


def _decay(group, lr):
    """(keep, wd, coupled) of ``pytorch_optimizer``'s weight decay: decoupled, ``p *= keep`` with keep =
    ``1 - wd * lr`` (``1 - wd`` when ``fixed_decay``); else ``wd * p`` added to the gradient (``coupled``)."""
    wd, decoupled = group["weight_decay"], group["weight_decouple"]
    keep = 1 - wd * (1.0 if group["fixed_decay"] else lr) if decoupled else 1.0
    return keep, wd, wd > 0 and not decoupled


class Lion(_Adaptive):
    __doc__ = (
        r"""Lion, "EvoLved Sign Momentum" (Chen et al., 2023); matches ``lion_pytorch.Lion`` (the paper's
    Algorithm 2, the two agree).

    .. math::
        p_t = p_{t-1}(1 - \gamma\lambda) - \gamma\,\mathrm{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    Args: lr (default 1e-4), betas (default (0.9, 0.99)), weight_decay (decoupled, default 0).
    """
        + ENGINE_DOC
        + """    State: ``exp_avg``. ``effective_lr(i)`` is ``lr``.
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        check_real("weight_decay", weight_decay, 0.0)
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay), foreach, fused, nonfinite)

    phases = (Phase(lion, "p g m=exp_avg", writes="p m", name="update"),)

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _values(self, phase, ctx, key):
        group, lr = ctx.group, float(ctx.lr)
        b1, b2 = group["betas"]
        return dict(decay_keep=1 - lr * group["weight_decay"], lr=lr, beta1=b1, c1=1 - b1, beta2=b2, c2=1 - b2)


class AdaBelief(_Adaptive):
    __doc__ = (
        r"""AdaBelief (Zhuang et al., 2020); matches ``pytorch_optimizer.AdaBelief`` at its defaults
    (which follow the paper's Algorithm 2: ``eps`` added inside ``s`` and to the denominator, both moments
    bias-corrected, decoupled weight decay).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon, \quad
        p_t = p_{t-1}(1 - \gamma\lambda) - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    Args: lr (default 1e-3), betas (default (0.9, 0.999)), weight_decay (default 0), weight_decouple
    (default True), fixed_decay (default False), eps (default 1e-16). Not supported: rectify, ams_bound.
    """
        + ENGINE_DOC
        + """    State: ``exp_avg``, ``exp_avg_var``; group key ``step``. ``effective_lr(i)`` is ``lr``.
    """
    )

    counts_steps = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: float = 1e-16,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_decay(betas, weight_decay, eps, weight_decouple, fixed_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            eps=eps,
            rectify=False,  # (the package's keys, at the values this class implements: checkpoints interchange)
            ams_bound=False,
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)

    phases = (Phase(adabelief, "p g m=exp_avg s=exp_avg_var", writes="p m s", flags="coupled_decay", name="update"),)

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_var"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _values(self, phase, ctx, key):
        group, lr = ctx.group, float(ctx.lr)
        b1, b2 = group["betas"]
        k = group["step"] + 1  # (this step's count: the group's is advanced after it)
        keep, wd, coupled = _decay(group, lr)
        return dict(
            decay_keep=keep,
            weight_decay=wd,
            beta1=b1,
            c1=1 - b1,
            beta2=b2,
            c2=1 - b2,
            eps=group["eps"],
            bc2_sqrt=math.sqrt(1 - b2**k),
            step_size=lr / (1 - b1**k),
            coupled_decay=coupled,
        )


class LAMB(_Adaptive):
    __doc__ = (
        r"""LAMB (You et al., 2020): Adam's direction scaled per tensor by the trust ratio
    :math:`\min(\|p\|, 10) / (\|u\| + \epsilon)`; matches ``pytorch_optimizer.Lamb`` at its defaults.

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g, \quad v_t = \beta_2 v + (1-\beta_2) g^2, \quad
        u = m_t / (\sqrt{v_t} + \epsilon), \quad p \leftarrow p(1-\gamma\lambda) - \frac{\gamma}{1-\beta_1^t}
        \frac{\min(\|p\|, 10)}{\|u\| + \epsilon} u

    Where the package and the paper differ, this follows the package: ``v`` is not bias-corrected (the
    paper corrects both moments), the trust ratio's numerator is clamped at 10 (the paper's :math:`\phi`),
    and the ratio is 1 when either norm is 0.

    Args: lr (default 1e-3), betas (default (0.9, 0.999)), weight_decay (default 0), weight_decouple
    (default True: decoupled; False: added to ``u`` as in the paper), fixed_decay (default False),
    eps (default 1e-6), adam (default False: True drops the trust ratio).
    """
        + ENGINE_DOC
        + """    The per-tensor norms need one engine call per tensor (a ``per_tensor`` phase); under FSDP2 (DTensor
    parameters) they are norms of the whole tensors (the local sums of all tensors all-reduced at once over the
    mesh). State: ``exp_avg``,
    ``exp_avg_sq``, ``trust_ratio`` (a float). ``effective_lr(i)`` is ``lr / (1 - beta1^t)`` times the mean
    trust ratio of the group's last step.
    """
    )

    counts_steps = True
    clamp = 10.0

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        eps: float = 1e-6,
        adam: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_decay(betas, weight_decay, eps, weight_decouple, fixed_decay)
        check_bool("adam", adam)
        defaults = dict(
            lr=lr,
            betas=betas,
            weight_decay=weight_decay,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            eps=eps,
            adam=adam,
            rectify=False,  # (the package's keys, at the values this class implements: checkpoints interchange)
            grad_averaging=True,
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)

    phases = (
        Phase(
            lamb_stats,
            "p g m=exp_avg v=exp_avg_sq",
            writes="m v",
            sums="p_sq u_sq",
            flags="coupled_decay",
            per_tensor=True,
            name="stats",
        ),
        Phase(lamb, "p m=exp_avg v=exp_avg_sq", writes="p", flags="coupled_decay", per_tensor=True, name="update"),
    )

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["trust_ratio"] = 1.0  # (every state key exists from the first step: checkpoints restore it)

    def _values(self, phase, ctx, i):
        group, lr = ctx.group, float(ctx.lr)
        keep, wd, coupled = _decay(group, lr)
        if phase.name == "stats":
            b1, b2 = group["betas"]
            return dict(
                decay_keep=keep,
                weight_decay=wd,
                beta1=b1,
                c1=1 - b1,
                beta2=b2,
                c2=1 - b2,
                eps=group["eps"],
                coupled_decay=coupled,
            )
        trust = 1.0 if group["adam"] else ctx.states[i]["trust_ratio"]
        step_size = lr / (1 - group["betas"][0] ** (group["step"] + 1))
        return dict(
            decay_keep=keep, weight_decay=wd, eps=group["eps"], step_size=step_size * trust, coupled_decay=coupled
        )

    def _after(self, phase, ctxs):
        if phase.name == "stats":  # the trust ratio of each whole tensor, from its norms ||p||^2 and ||u||^2
            for ctx in ctxs:
                eps = ctx.group["eps"]
                for s, p_sq, u_sq in zip(ctx.states, ctx.sums["p_sq"], ctx.sums["u_sq"], strict=True):
                    w_norm, u_norm = min(math.sqrt(p_sq), self.clamp), math.sqrt(u_sq)
                    s["trust_ratio"] = w_norm / (u_norm + eps) if w_norm != 0 and u_norm != 0 else 1.0
        return super()._after(phase, ctxs)

    def effective_lr(self, group_index: int = 0) -> float:
        group = self.param_groups[group_index]
        k = max(group["step"], 1)
        trusts = [self.state[p]["trust_ratio"] for p in group["params"] if "trust_ratio" in self.state[p]]
        mean_trust = sum(trusts) / len(trusts) if trusts and not group["adam"] else 1.0
        return float(self._lr(group)) / (1 - group["betas"][0] ** k) * mean_trust
