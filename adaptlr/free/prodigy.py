"""Prodigy (Mishchenko & Defazio, 2023) on adaptlr's engines."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from ..optim._base import ENGINE_DOC
from ..optim._validation import check_betas, check_bool, check_real
from ..rules.free_prodigy import prodigy, prodigy_stats
from ._base import FREE_DOC, FreeOptimizer
from ._sharding import is_dtensor

__all__ = ["Prodigy"]


class Prodigy(FreeOptimizer):
    __doc__ = (
        r"""Adam with Prodigy step sizes: ``d`` estimates the distance to the solution; leave ``lr=1``.

    Matches ``prodigyopt.Prodigy`` 1.1.x (same arguments, defaults, group keys ``d``, ``d_max``,
    ``d_numerator``, ``k`` and state names). With :math:`\lambda_k = d_k \cdot lr \cdot bc_k`:

    .. math::
        r_k = \beta_3 r_{k-1} + \tfrac{d_k}{d_0}\lambda_k \langle g_k, x_0 - x_k\rangle, \quad
        s_k = \beta_3 s_{k-1} + \tfrac{d_k}{d_0}\lambda_k g_k, \quad
        \hat d = d_{coef}\, r_k / \|s_k\|_1, \quad d_{k+1} = \min(\max_i \hat d_i,\ growth \cdot d_k)

        m_k = \beta_1 m_{k-1} + d_k(1-\beta_1) g_k, \quad v_k = \beta_2 v_{k-1} + d_k^2 (1-\beta_2) g_k^2,
        \quad x_{k+1} = x_k - \lambda_k m_k / (\sqrt{v_k} + d_{k+1}\epsilon)

    Args:
        params: parameters or param groups.
        lr (float or schedule): multiplier of the estimated step size (default 1). Unlike the package, groups
            may use different ``lr`` values (each group's step is ``d * lr_group``).
        betas (tuple): Adam's coefficients (default (0.9, 0.999)). beta3 (float): EMA coefficient of the
            estimate's sums (default None: ``sqrt(beta2)``).
        eps (float): added to the denominator, scaled by ``d`` (default 1e-8).
        weight_decay (float): (default 0); decouple (bool): AdamW-style decay (default True).
        use_bias_correction (bool): Adam's bias correction (default False).
        safeguard_warmup (bool): drop ``lr`` from the weight of ``s`` (default False).
        d0 (float): initial estimate (default 1e-6). d_coef (float): multiplier of the estimate (default 1).
        growth_rate (float): the most ``d`` may grow per step (default inf).
        slice_p (int): compute the estimate's sums on every ``slice_p``-th element (default 1: exact; DTensor
            parameters need 1).

    float16 parameters are refused (``d^2 (1 - beta2) g^2`` and ``eps * d`` underflow to 0 there, and
    ``prodigyopt`` goes NaN). bfloat16 has float32's range, but steps of about ``d0`` are below its resolution:
    with ``d0 < 1e-4`` a warning says so (``d0=1e-4`` trains). Under FSDP2 (DTensor parameters) ``s``
    and ``p0`` are shaped and sharded like their parameter instead of flat, so checkpoints reshard them.
    """
        + FREE_DOC
        + ENGINE_DOC
        + r"""
    ``effective_lr(i)`` is ``d * lr`` of group ``i``.

    >>> opt = Prodigy(model.parameters())  # doctest: +SKIP
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        slice_p: int = 1,
        *,
        per_group_d: bool = False,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_betas(betas)
        if beta3 is not None:
            check_real("beta3", beta3, 0.0, 1.0, high_open=True)
        check_real("eps", eps, 0.0, low_open=True)
        check_real("weight_decay", weight_decay, 0.0)
        check_real("d0", d0, 0.0, low_open=True)
        check_real("d_coef", d_coef, 0.0, low_open=True)
        check_real("growth_rate", growth_rate, 1.0, allow_inf=True)
        for name, flag in (
            ("decouple", decouple),
            ("use_bias_correction", use_bias_correction),
            ("safeguard_warmup", safeguard_warmup),
        ):
            check_bool(name, flag)
        if not isinstance(slice_p, int) or isinstance(slice_p, bool) or slice_p < 1:
            raise ValueError(f"Invalid slice_p: {slice_p!r}; expected an int >= 1")
        defaults = dict(
            lr=lr,
            betas=betas,
            beta3=beta3,
            eps=eps,
            weight_decay=weight_decay,
            d=d0,
            d0=d0,
            d_max=d0,
            d_numerator=0.0,
            d_denom=0.0,
            d_hat=d0,
            d_coef=d_coef,
            k=0,
            growth_rate=growth_rate,
            use_bias_correction=use_bias_correction,
            decouple=decouple,
            safeguard_warmup=safeguard_warmup,
            slice_p=slice_p,
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

    _unshaped_state = ("step", "s", "p0")  # s and p0 are flat (every slice_p-th element)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if any(p.dtype == torch.float16 for p in self.param_groups[-1]["params"]):
            self.param_groups.pop()
            raise TypeError(
                "Prodigy does not support float16 parameters: its second moment d^2 (1 - beta2) g^2 (about "
                "1e-15 at the start, with d0=1e-6) and its denominator eps * d underflow float16 to 0, and "
                "the step divides by 0 (prodigyopt goes NaN silently); keep float32 parameters (under "
                "torch.autocast for float16 compute)"
            )
        d0 = self.param_groups[-1]["d0"]
        if d0 < 1e-4 and any(p.dtype == torch.bfloat16 for p in self.param_groups[-1]["params"]):
            warnings.warn(
                f"Prodigy with bfloat16 parameters and d0={d0:g}: the first steps (about d0 per element) are far "
                "below bfloat16's resolution (2^-8 of a weight), so the weights, and with them the estimate d, "
                "may never move (measured: d0=1e-6 stays at 1e-6, d0=1e-4 trains); use float32 parameters "
                "(torch.autocast for bfloat16 compute) or d0=1e-4",
                stacklevel=3,
            )

    def _init_state(self, group, p, state):
        sp = group["slice_p"]
        state["step"] = 0
        if is_dtensor(p):  # (FSDP2) s and p0 shaped and sharded like p, so that checkpoints reshard them
            if sp != 1:
                raise ValueError(
                    f"Prodigy: slice_p={sp} is not supported for DTensor (FSDP2) parameters, whose shards do not "
                    "start on a multiple of slice_p; use slice_p=1"
                )
            state["s"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["p0"] = p.detach().clone(memory_format=torch.contiguous_format)
        else:  # flat, as in the package
            state["s"] = torch.zeros_like(p.detach().reshape(-1)[::sp])
            state["p0"] = p.detach().reshape(-1)[::sp].clone()
        if group["betas"][0] > 0:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _reduce(self, groups):
        g0 = groups[0]
        beta3 = g0["beta3"] if g0["beta3"] is not None else math.sqrt(g0["betas"][1])
        d, d0 = g0["d"], g0["d0"]
        numerator, denominator = 0.0, 0.0
        for group in groups:
            lr = float(self._lr(group))
            params, grads, states = self._active(group)
            if lr <= 0 or not params:
                continue
            dlr = d * lr * self._bias_correction(group)
            s_weight = (d / d0) * (d if group["safeguard_warmup"] else dlr)
            sp = group["slice_p"]
            for st in states:
                if st["p0"].dim() == 0 and st["s"].numel() > 1:  # prodigyopt's checkpoint of an all-zero p0
                    st["p0"] = st["p0"].expand_as(st["s"]).clone()
            if sp == 1:  # s and p0 are flat, as in the package (or shaped like p: DTensors, see _init_state)
                p_col = [
                    p.detach() if st["s"].shape == p.shape else p.detach().reshape(-1)
                    for p, st in zip(params, states, strict=True)
                ]
                g_col = [g if st["s"].shape == g.shape else g.reshape(-1) for g, st in zip(grads, states, strict=True)]
            else:  # every slice_p-th element, copied contiguous (the engines stream contiguous memory)
                p_col = [p.detach().reshape(-1)[::sp].contiguous() for p in params]
                g_col = [g.reshape(-1)[::sp].contiguous() for g in grads]
            coupled = group["weight_decay"] != 0 and not group["decouple"]
            dot, l1 = self._apply(
                group,
                prodigy_stats,
                [p_col, g_col, [s["p0"] for s in states], [s["s"] for s in states]],
                writes=(3,),
                scalars=(group["weight_decay"], s_weight, beta3),
                flags=(coupled,),
                n_sums=2,
            )
            numerator += (d / d0) * dlr * dot
            denominator += l1
        return [numerator, denominator]

    def _update(self, groups, sums):
        g0 = groups[0]
        beta3 = g0["beta3"] if g0["beta3"] is not None else math.sqrt(g0["betas"][1])
        d_old = d = g0["d"]
        d_max, d0 = g0["d_max"], g0["d0"]
        numerator = g0["d_numerator"] * beta3 + sums[0]
        denominator = sums[1]
        if denominator == 0:  # no gradient information yet (every rank agrees: the sums are global)
            return  # (the base ticks the clock: a step without gradient information still counts)
        d_hat = d
        if self._any_lr(groups):
            d_hat = g0["d_coef"] * numerator / denominator
            if d == d0:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * g0["growth_rate"])
        for group in groups:
            group.update(d_numerator=numerator, d_denom=denominator, d=d, d_max=d_max, d_hat=d_hat)
            params, grads, states = self._active(group)
            if params:
                b1, b2 = group["betas"]
                lr = float(self._lr(group))
                dlr = d_old * lr * self._bias_correction(group)
                wd = group["weight_decay"]
                coupled = wd != 0 and not group["decouple"]
                decoupled = wd != 0 and group["decouple"]
                step_size = dlr if b1 > 0 else dlr * d
                m_col = [s["exp_avg"] for s in states] if b1 > 0 else 0.0
                self._apply(
                    group,
                    prodigy,
                    [params, grads, m_col, [s["exp_avg_sq"] for s in states]],
                    writes=(0, 2, 3),
                    scalars=(
                        wd,
                        b1,
                        d_old * (1 - b1),
                        b2,
                        d_old * d_old * (1 - b2),
                        d * group["eps"],
                        wd * dlr,
                        step_size,
                    ),
                    flags=(coupled, decoupled, b1 > 0),
                )
                for s in states:
                    s["step"] += 1
            group["k"] += 1
