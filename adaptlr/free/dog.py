"""DoG and LDoG (Ivgi, Hinder & Carmon, 2023), and the polynomial-decay iterate averager they use."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch

from .._validation import check_real
from ..optim import ENGINE_DOC, Phase
from ..rules.free_dog import dog, dog_stats, polynomial_average
from ._base import FREE_DOC, FreeOptimizer

__all__ = ["DoG", "LDoG", "PolynomialDecayAverager"]


class DoG(FreeOptimizer):
    __doc__ = (
        r"""DoG, "Distance over Gradients": SGD whose step size is the distance travelled over the root of
    the summed squared gradient norms; matches ``dog-optimizer`` 1.0.3 (``dog.DoG``).

    .. math::
        \bar r_t = \max(r_\epsilon, \max_{i \le t}\|x_i - x_0\|), \quad r_\epsilon = reps\_rel\,(1 + \|x_0\|),
        \quad \eta_t = lr\,\bar r_t / \sqrt{\epsilon + \textstyle\sum_{i \le t}\|g_i\|^2}, \quad
        x_{t+1} = x_t - \eta_t g_t

    Use it with iterate averaging (:class:`PolynomialDecayAverager`), as the paper does.

    Args:
        params: parameters or param groups.
        reps_rel (float): relative size of the first step (default 1e-6; 1e-4 with batch norm).
        lr (float or schedule): the paper's ``c`` (default 1; leave it).
        weight_decay (float): L2 penalty added to the gradient (default 0).
        eps (float): added to the sum of squared gradient norms (default 1e-8).
        init_eta (float, optional): the first step size, overriding ``reps_rel``.
    """
        + FREE_DOC.replace(
            "(default False, as the\n        reference packages)",
            "(default True here: the package keeps one per group)",
        )
        + ENGINE_DOC
        + r"""
    Group keys: ``rbar``, ``G``, ``eta`` (floats; None, None, 0 before the first step); state: ``x0``.
    ``effective_lr(i)`` is ``eta`` of group ``i``.

    >>> opt = DoG(model.parameters())  # doctest: +SKIP
    """
    )

    def __init__(
        self,
        params: Iterable[Any],
        reps_rel: float = 1e-6,
        lr: Any = 1.0,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        init_eta: float | None = None,
        *,
        per_group_d: bool = True,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        if init_eta is not None:
            check_real("init_eta", init_eta, 0.0, low_open=True)
            reps_rel = 0.0
        else:
            check_real("reps_rel", reps_rel, 0.0, low_open=True)
        check_real("weight_decay", weight_decay, 0.0)
        check_real("eps", eps, 0.0)
        # rbar, G, eta: set by the first step (present from the start, so that checkpoints restore them)
        defaults = dict(
            reps_rel=reps_rel, lr=lr, weight_decay=weight_decay, eps=eps, init_eta=init_eta, rbar=None, G=None, eta=0.0
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
        Phase(dog_stats, "p g x0", writes="x0", sums="dist_sq grad_sq", flags="coupled_decay first", name="stats"),
        Phase(dog, "p g", writes="p", flags="coupled_decay", name="update"),
    )

    def _init_state(self, group, p, state):
        # the first step sets x0 = p again; a state created later (a checkpoint without this parameter's state)
        # measures its distance from where this parameter is now -- never from uninitialised memory
        state["x0"] = p.detach().clone(memory_format=torch.preserve_format)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Also loads a checkpoint of the ``dog`` package, which keeps x0 in ``group["init_buffer"]`` (one tensor per
        parameter, in order) and a flag under ``state["_first_step"]``: x0 moves into each parameter's state."""
        super().load_state_dict(state_dict)
        self.state.pop("_first_step", None)
        for group in self.param_groups:
            buffer = group.pop("init_buffer", None)
            if buffer is None:
                continue
            if len(buffer) != len(group["params"]):
                raise ValueError(f"init_buffer holds {len(buffer)} tensors for {len(group['params'])} parameters")
            for p, x0 in zip(group["params"], buffer):
                if x0.shape != p.shape:
                    raise ValueError(f"init_buffer: a tensor of shape {tuple(x0.shape)} for a parameter of shape "
                                     f"{tuple(p.shape)} (a checkpoint of another model?)")  # fmt: skip
                self.state[p]["x0"] = x0.to(dtype=p.dtype, device=p.device).clone()

    def _values(self, phase, ctx, key):
        group = ctx.group
        wd = group["weight_decay"]
        if phase.name == "stats":
            return dict(weight_decay=wd, coupled_decay=wd > 0, first=group.get("rbar") is None)
        eta = ctx.eta
        return dict(weight_decay=wd, eta=eta[key] if phase.per_tensor else eta, coupled_decay=wd > 0)

    @staticmethod
    def _distance(group, dist_sq, grad_sq, rbar=None, G=None):
        """(rbar, G) after a step whose sums are ``dist_sq``, ``grad_sq``; ``rbar``, ``G``: the last (None at
        first)."""
        if rbar is None:
            rbar, G = group["reps_rel"] * (1 + math.sqrt(dist_sq)), grad_sq + group["eps"]
        else:
            rbar, G = max(rbar, math.sqrt(dist_sq)), G + grad_sq
        if not G > 0:
            raise RuntimeError(f"DoG cannot work when G is not strictly positive, got {G}")
        return rbar, G

    def _eta(self, group, rbar, G, first):
        if first and group["init_eta"] is not None:
            return group["init_eta"]
        return float(self._lr(group)) * rbar / math.sqrt(G)

    def _after(self, phase, ctxs):
        if phase.name != "stats":
            return None
        g0 = ctxs[0].group
        first = g0.get("rbar") is None
        dist_sq = grad_sq = 0.0
        for ctx in ctxs:
            dist_sq += ctx.sums["dist_sq"]
            grad_sq += ctx.sums["grad_sq"]
        rbar, G = self._distance(g0, dist_sq, grad_sq, g0.get("rbar"), g0.get("G"))
        for ctx in ctxs:
            eta = ctx.eta = self._eta(ctx.group, rbar, G, first)
            ctx.group.update(rbar=rbar, G=G, eta=eta)
        return None

    def effective_lr(self, group_index: int = 0) -> float:
        """The step size of the last step (0 before the first); for LDoG, the largest over the tensors."""
        eta = self.param_groups[group_index].get("eta", 0.0)
        return float(max(eta)) if isinstance(eta, list) else float(eta)


class LDoG(DoG):
    __doc__ = r"""Layer-wise DoG: the DoG step size computed for each tensor on its own; matches ``dog.LDoG``.

    Same arguments as :class:`DoG`. Group keys ``rbar``, ``G`` and ``eta`` are lists (one entry per tensor
    with a gradient). The per-tensor sums need no all-reduce when whole tensors live on each rank (ZeRO, a
    manual split), so ``process_group`` is accepted and unused; under FSDP2 (DTensor parameters) the local
    sums of every tensor are all-reduced at once over the mesh.
    """

    phases = (
        Phase(
            dog_stats,
            "p g x0",
            writes="x0",
            sums="dist_sq grad_sq",
            flags="coupled_decay first",
            per_tensor=True,
            name="stats",
        ),
        Phase(dog, "p g", writes="p", flags="coupled_decay", per_tensor=True, name="update"),
    )

    def _after(self, phase, ctxs):
        if phase.name != "stats":
            return None
        for ctx in ctxs:
            if not ctx.params:
                continue
            group = ctx.group
            first = group.get("rbar") is None
            per = zip(ctx.sums["dist_sq"], ctx.sums["grad_sq"], strict=True)
            last = [(None, None)] * len(ctx.params) if first else zip(group["rbar"], group["G"], strict=True)
            new = [self._distance(group, a, b, *prev) for (a, b), prev in zip(per, last, strict=True)]
            rbar, G = [r for r, _ in new], [x for _, x in new]
            eta = ctx.eta = [self._eta(group, r, x, first) for r, x in zip(rbar, G, strict=True)]
            group.update(rbar=rbar, G=G, eta=eta)
        return None


#: avg <- (1 - w) avg + w p, over every floating-point entry of the model's state_dict
_AVERAGE = Phase(polynomial_average, "avg p", writes="avg")


class PolynomialDecayAverager:
    r"""Polynomial-decay averaging of a model's weights (Shamir & Zhang, 2013), as the DoG paper uses:

    .. math:: \bar x_t = (1 - w_t)\,\bar x_{t-1} + w_t x_t, \quad w_t = \frac{1 + \gamma}{t + \gamma}

    Matches ``dog.PolynomialDecayAverager``: every floating-point entry of the model's ``state_dict`` is
    averaged, integer buffers (batch-norm counters) are copied.

    >>> averager = PolynomialDecayAverager(model, gamma=8.0)  # doctest: +SKIP
    >>> opt.step(); averager.step()                             # doctest: +SKIP
    >>> evaluate(averager.averaged_model)                       # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, gamma: float = 8.0) -> None:
        check_real("gamma", gamma, 0.0)
        self.model, self.gamma, self.t = model, gamma, 1
        self.av_model = copy.deepcopy(model)

    @torch.no_grad()
    def step(self) -> None:
        w = (self.gamma + 1) / (self.gamma + self.t)
        src, dst = self.model.state_dict(), self.av_model.state_dict()
        avg, cur = [], []
        for k, v in src.items():
            if v.is_floating_point():
                avg.append(dst[k])
                cur.append(v.detach())
            else:
                dst[k].copy_(v)
        if avg:  # (on the local shards of DTensors: FSDP2's state_dict holds DTensors)
            _AVERAGE.apply({"avg": avg, "p": cur}, dict(keep=1 - w, w=w), prefer="foreach")
        self.t += 1

    def reset(self) -> None:
        self.t = 1

    @property
    def averaged_model(self) -> torch.nn.Module:
        return self.av_model

    @property
    def base_model(self) -> torch.nn.Module:
        return self.model

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "av_model": self.av_model.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.t = state_dict["t"]
        self.av_model.load_state_dict(state_dict["av_model"])
