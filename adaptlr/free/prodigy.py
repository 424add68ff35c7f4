"""Prodigy (Mishchenko & Defazio, 2023) on adaptlr's engines."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from .._validation import check_betas, check_bool, check_count, check_real
from ..engines import is_dtensor
from ..optim import ENGINE_DOC, Phase
from ..rules.free_prodigy import prodigy, prodigy_stats
from ._base import FREE_DOC, FreeOptimizer

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
        check_count("slice_p", slice_p, 1)
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
            fsdp_in_use=False,  # (the package's key, never used here: its checkpoints and ours interchange)
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

    #: s and p0 are flat (every slice_p-th element), so they are not among the state shaped like the parameter
    state_names = ("exp_avg", "exp_avg_sq")
    parameter_steps = True
    phases = (
        Phase(
            prodigy_stats, "p=p_slice g=g_slice p0 s", writes="s", sums="dot l1", flags="coupled_decay", name="stats"
        ),
        Phase(
            prodigy,
            "p g m=exp_avg v=exp_avg_sq",
            writes="p m v",
            flags="coupled_decay decoupled_decay use_momentum",
            name="update",
        ),
    )

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

    def _present_states(self, group):
        return ("exp_avg" if group["betas"][0] > 0 else None, "exp_avg_sq")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for st in self.state.values():
            p0, s = st.get("p0"), st.get("s")
            if isinstance(p0, torch.Tensor) and p0.dim() == 0 and s.numel() > 1:  # prodigyopt's all-zero p0
                st["p0"] = p0.expand_as(s).clone()

    def _extra_columns(self, phase, ctx):
        """The parameters and gradients as s and p0 are laid out: flat (as in the package; shaped like p for
        DTensors, see _init_state), or every slice_p-th element, copied contiguous (the engines stream memory)."""
        sp = ctx.group["slice_p"]
        if sp == 1:
            pairs = [
                (p, g) if st["s"].shape == p.shape else (p.reshape(-1), g.reshape(-1))
                for p, g, st in zip(ctx.params, ctx.grads, ctx.states)
            ]
            return {"p_slice": [p.detach() for p, _ in pairs], "g_slice": [g for _, g in pairs]}
        return {
            "p_slice": [p.detach().reshape(-1)[::sp].contiguous() for p in ctx.params],
            "g_slice": [g.reshape(-1)[::sp].contiguous() for g in ctx.grads],
        }

    def _values(self, phase, ctx, key):
        if phase.name == "update":
            return ctx.update
        group = ctx.group
        lr = float(ctx.lr)
        if lr <= 0:
            return None
        d, d0 = group["d"], group["d0"]
        dlr = ctx.dlr = d * lr * self._bias_correction(group)
        beta3 = group["beta3"] if group["beta3"] is not None else math.sqrt(group["betas"][1])
        return dict(
            weight_decay=group["weight_decay"],
            s_weight=(d / d0) * (d if group["safeguard_warmup"] else dlr),
            beta3=beta3,
            coupled_decay=group["weight_decay"] != 0 and not group["decouple"],
        )

    def _after(self, phase, ctxs):
        if phase.name == "update":
            self._count_step(ctxs)
            return None
        g0 = ctxs[0].group
        beta3 = g0["beta3"] if g0["beta3"] is not None else math.sqrt(g0["betas"][1])
        d_old = d = g0["d"]
        d_max, d0 = g0["d_max"], g0["d0"]
        dot = denominator = 0.0
        for ctx in ctxs:
            if ctx.dlr is not None:
                dot += (d / d0) * ctx.dlr * ctx.sums["dot"]
                denominator += ctx.sums["l1"]
        numerator = g0["d_numerator"] * beta3 + dot
        if denominator == 0:  # no gradient information yet (every rank agrees: the sums are global)
            return False  # (the base still ticks the clock: a step without gradient information counts)
        d_hat = d
        if self._any_lr([c.group for c in ctxs]):
            d_hat = g0["d_coef"] * numerator / denominator
            if d == d0:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * g0["growth_rate"])
        for ctx in ctxs:
            group = ctx.group
            group.update(d_numerator=numerator, d_denom=denominator, d=d, d_max=d_max, d_hat=d_hat)
            if ctx.params:
                b1, b2 = group["betas"]
                dlr = d_old * float(ctx.lr) * self._bias_correction(group)
                wd = group["weight_decay"]
                ctx.update = dict(
                    weight_decay=wd,
                    beta1=b1,
                    m_coef=d_old * (1 - b1),
                    beta2=b2,
                    v_coef=d_old * d_old * (1 - b2),
                    d_eps=d * group["eps"],
                    decay_coef=wd * dlr,
                    step_size=dlr if b1 > 0 else dlr * d,
                    coupled_decay=wd != 0 and not group["decouple"],
                    decoupled_decay=wd != 0 and group["decouple"],
                    use_momentum=b1 > 0,
                )
        return None
