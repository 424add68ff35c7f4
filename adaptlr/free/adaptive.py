"""Lion, AdaBelief and LAMB: the rest of the adaptive family, on adaptlr's engines."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ..optim._base import ENGINE_DOC
from ..optim._validation import check_betas, check_bool, check_real
from ..rules.free_adaptive import adabelief, lamb, lamb_stats, lion
from ._base import FreeOptimizer

__all__ = ["Lion", "AdaBelief", "LAMB"]


class _Elementwise(FreeOptimizer):
    """One elementwise pass per step, no global sums: subclasses implement :meth:`_update_group`."""

    #: whether groups keep a count of their updates, ``group["step"]`` (bias corrections)
    counts_steps = False

    def __init__(self, params, defaults, foreach, fused, nonfinite):
        if self.counts_steps:
            defaults = {**defaults, "step": 0}
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _reduce(self, groups):
        return []

    def _update(self, groups, sums):
        for group in groups:
            params, grads, states = self._active(group)
            if self.counts_steps:
                group["step"] += 1
            if params:
                self._update_group(group, float(self._lr(group)), params, grads, states)

    def _update_group(self, group, lr, params, grads, states):
        raise NotImplementedError

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


class Lion(_Elementwise):
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

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update_group(self, group, lr, params, grads, states):
        b1, b2 = group["betas"]
        self._apply(
            group,
            lion,
            [params, grads, [s["exp_avg"] for s in states]],
            writes=(0, 2),
            scalars=(1 - lr * group["weight_decay"], lr, b1, 1 - b1, b2, 1 - b2),
        )


class AdaBelief(_Elementwise):
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
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_var"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update_group(self, group, lr, params, grads, states):
        b1, b2 = group["betas"]
        k = group["step"]
        keep, wd, coupled = _decay(group, lr)
        self._apply(
            group,
            adabelief,
            [params, grads, [s["exp_avg"] for s in states], [s["exp_avg_var"] for s in states]],
            writes=(0, 2, 3),
            scalars=(keep, wd, b1, 1 - b1, b2, 1 - b2, group["eps"], math.sqrt(1 - b2**k), lr / (1 - b1**k)),
            flags=(coupled,),
        )


class LAMB(_Elementwise):
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
        + """    The per-tensor norms need one engine call per tensor; under FSDP2 (DTensor parameters) they are
    norms of the whole tensors (the local sums of all tensors all-reduced at once over the mesh). State: ``exp_avg``,
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
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)

    def _init_state(self, group, p, state):
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["trust_ratio"] = 1.0  # (every state key exists from the first step: checkpoints restore it)

    def _update_group(self, group, lr, params, grads, states):
        b1, b2 = group["betas"]
        k, eps = group["step"], group["eps"]
        keep, wd, coupled = _decay(group, lr)
        step_size = lr / (1 - b1**k)
        norms = []  # (||p||^2, ||u||^2) of each tensor: local sums first, whole tensors after one all-reduce
        for p, g, s in zip(params, grads, states, strict=True):
            norms += self._apply(
                group,
                lamb_stats,
                [[p], [g], [s["exp_avg"]], [s["exp_avg_sq"]]],
                writes=(2, 3),
                scalars=(keep, wd, b1, 1 - b1, b2, 1 - b2, eps),
                flags=(coupled,),
                n_sums=2,
            )
        norms = self._allreduce(norms, per_tensor=True)
        for i, (p, s) in enumerate(zip(params, states, strict=True)):
            w_norm, u_norm = min(math.sqrt(norms[2 * i]), self.clamp), math.sqrt(norms[2 * i + 1])
            trust = w_norm / (u_norm + eps) if w_norm != 0 and u_norm != 0 else 1.0
            s["trust_ratio"] = trust
            self._apply(
                group,
                lamb,
                [[p], [s["exp_avg"]], [s["exp_avg_sq"]]],
                writes=(0,),
                scalars=(keep, wd, eps, step_size * (1.0 if group["adam"] else trust)),
                flags=(coupled,),
            )

    def effective_lr(self, group_index: int = 0) -> float:
        group = self.param_groups[group_index]
        k = max(group["step"], 1)
        trusts = [self.state[p]["trust_ratio"] for p in group["params"] if "trust_ratio" in self.state[p]]
        mean_trust = sum(trusts) / len(trusts) if trusts and not group["adam"] else 1.0
        return float(self._lr(group)) / (1 - group["betas"][0] ** k) * mean_trust
