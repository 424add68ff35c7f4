from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_real
from ._base import ENGINE_DOC, Optimizer, scalar_dtype
from ._phase import Phase


class ASGD(Optimizer):
    __doc__ = (
        r"""Averaged stochastic gradient descent (Polyak & Juditsky, 1992); matches ``torch.optim.ASGD``.

    SGD with a decaying step size, and the running average of the iterates after step :math:`t_0`:

    .. math::
        p_t = p_{t-1}(1 - \lambda\eta_t) - \eta_t (\pm g_t + w p_{t-1}), \qquad
        \bar p_t = \bar p_{t-1} + \mu_t (p_t - \bar p_{t-1}) \\
        \eta_{t+1} = \frac{\gamma}{(1 + \lambda\gamma t)^{\alpha}}, \qquad \mu_{t+1} = \frac{1}{\max(1, t - t_0)}

    with :math:`\eta_1 = \gamma` and :math:`\mu_1 = 1` (so :math:`\bar p_t = p_t` until :math:`t > t_0 + 1`);
    :math:`\gamma` is the group's current ``lr``.

    Args:
        lr: :math:`\gamma` (default 1e-2). lambd: :math:`\lambda`, the decay term (default 1e-4).
        alpha: the power :math:`\alpha` of the step-size decay (default 0.75). t0: the step after which
        averaging starts, :math:`t_0` (default 1e6). weight_decay: L2 penalty :math:`w` (default 0).
        maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step``, ``eta`` (:math:`\eta`), ``mu`` (:math:`\mu`), ``ax`` (the average :math:`\bar p`), as torch.
    (On load, ``eta`` and ``mu`` keep their saved dtype, as every 0-dim state does in adaptlr, so a resumed run
    is bit-identical; torch.optim.ASGD casts them to the parameter's dtype.)

    >>> opt = ASGD(model.parameters(), lr=1e-2, t0=100)  # doctest: +SKIP
    >>> averaged = [opt.state[p]["ax"] for p in model.parameters()]  # doctest: +SKIP
    """
    )

    phases = (Phase(rules.asgd, "p g ax", writes="p ax", flags="maximize coupled_decay averaging"),)

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("lambd", lambd, 0.0, math.inf, high_open=True)
        check_real("alpha", alpha, 0.0, math.inf, high_open=True)
        check_real("t0", t0, 0.0, math.inf, high_open=True)
        check_real("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        defaults = dict(
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _init_state(self, group, p, state):
        dtype = scalar_dtype()
        state["step"] = torch.zeros((), dtype=dtype)
        state["eta"] = torch.as_tensor(float(self._lr(group)), dtype=dtype).clone()
        state["mu"] = torch.ones((), dtype=dtype)
        state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _advance(self, group, params, states):
        """Key = the (eta, mu) this step uses; then step += 1 and the next step's eta and mu, as torch."""
        etas = self._shared_scalars(group, "eta", states)
        mus = self._shared_scalars(group, "mu", states)
        keys = list(zip(etas.tolist(), mus.tolist()))
        steps = self._shared_scalars(group, "step", states)
        steps.add_(1.0)
        lr, lambd, alpha, t0 = float(self._lr(group)), group["lambd"], group["alpha"], group["t0"]
        new: dict[float, tuple[float, float]] = {}
        for step in steps.tolist():
            if step not in new:  # Python floats, in torch's order: lr / (1 + lambd lr t)^alpha, 1 / max(1, t - t0)
                new[step] = (lr / ((1 + lambd * lr * step) ** alpha), 1 / max(1, step - t0))
        values = [new[s] for s in steps.tolist()]
        etas.copy_(torch.tensor([v[0] for v in values], dtype=torch.float64))
        mus.copy_(torch.tensor([v[1] for v in values], dtype=torch.float64))
        return keys

    def _values(self, phase, ctx, key):
        eta, mu = key
        group = ctx.group
        wd = group["weight_decay"]
        return dict(
            eta=eta,
            decay=1 - group["lambd"] * eta,
            mu=mu,
            weight_decay=wd,
            maximize=group["maximize"],
            coupled_decay=wd != 0,
            averaging=mu != 1,
        )
