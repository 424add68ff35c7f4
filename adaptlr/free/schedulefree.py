"""Schedule-Free SGD, AdamW and RAdam (Defazio et al., 2024) on adaptlr's engines."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from .._validation import check_betas, check_bool, check_count, check_real
from ..optim import ENGINE_DOC, Phase, locals_of
from ..rules.free_schedulefree import schedule_free, schedule_free_swap
from ._base import FreeOptimizer

__all__ = ["ScheduleFreeSGD", "ScheduleFreeAdamW", "ScheduleFreeRAdam", "recalibrate_batchnorm"]

_SF_DOC = r"""
    Schedule-Free keeps two sequences besides the parameters: ``z`` (the base optimizer's iterates) and the
    average ``x`` of the ``z`` (weights :math:`c_{k+1} = w_{k+1}/\sum_i w_i`, :math:`w_k =
    k^r\,lr_{max}^{p}`).
    Gradients are taken at :math:`y = (1-\beta_1) z + \beta_1 x`; in train mode the parameters hold ``y``,
    in eval mode ``x``:

    .. math::
        z_{k+1} = z_k - \gamma_k u_k, \quad x_{k+1} = (1 - c_{k+1}) x_k + c_{k+1} z_{k+1}

    Call ``opt.train()`` / ``opt.eval()`` with ``model.train()`` / ``model.eval()``, or evaluate inside
    ``with opt.evaluating(): ...``. ``eval()`` keeps the exact train-mode parameters (state ``y``, freed by
    ``train()``), so ``eval()`` then ``train()`` gives back bit-identical parameters, and a checkpoint saved
    in either mode resumes identically. Unlike the package, the optimizer starts in train mode (before the
    first step ``x = y = z``, so the modes agree); ``step()`` in eval mode raises, as in the package.
    With ``torch.distributed.checkpoint`` save in train mode: it restores only the state a fresh optimizer
    has, and ``y`` exists in eval mode only (``train()`` would then recompute ``y`` from ``x`` and ``z``,
    equal up to rounding).
    ``effective_lr(i)`` is the scheduled lr of the next step (``lr`` times the warmup or the rectification).
"""


#: x <-> y: the parameters move between the average x (eval) and the gradient point y (train)
_SWAP = Phase(schedule_free_swap, "p z stash", writes="p stash")


class _ScheduleFree(FreeOptimizer):
    adaptive = False
    phases = (
        Phase(
            schedule_free, "y=param g z v=exp_avg_sq", writes="y z v", flags="update_v adaptive decay", name="update"
        ),
    )

    def __init__(self, params, defaults, foreach, fused, nonfinite):
        defaults = {
            **defaults,
            "k": 0,
            "train_mode": True,
            "weight_sum": 0.0,
            "lr_max": -1.0,
            "scheduled_lr": 0.0,
        }
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def _present_states(self, group):
        return ("z", "exp_avg_sq" if self.adaptive else None)

    def _init_state(self, group, p, state):
        state["z"] = p.detach().clone(memory_format=torch.preserve_format)
        if self.adaptive:
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _beta(self, group):
        return group["betas"][0] if "betas" in group else group["momentum"]

    def _schedule(self, group, k):
        warmup = group["warmup_steps"]
        return (k + 1) / warmup if k < warmup else 1.0

    def _direction_flags(self, group, k):
        """(update_v, adaptive) for the step with index ``k``."""
        return self.adaptive, self.adaptive

    # --------------------------------------------------------------------------------------- modes
    @torch.no_grad()
    def _swap(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta = self._beta(group)
            ps = [p for p in group["params"] if "z" in self.state[p]]
            if to_train:
                restored = [p for p in ps if "y" in self.state[p]]
                if restored:
                    ys = [self.state[p].pop("y") for p in restored]
                    torch._foreach_copy_(locals_of(restored), locals_of(ys))  # (DTensor has no foreach rules)
                rest = [p for p in ps if "y" not in self.state[p] and not any(p is q for q in restored)]
                if rest:  # no exact copy (e.g. a checkpoint of the package): recompute y = lerp(x, z, 1 - beta)
                    columns = {"p": rest, "z": [self.state[p]["z"] for p in rest], "stash": 0.0}
                    _SWAP.apply(columns, dict(w=1 - beta), prefer=self._engine(group))
            elif ps:
                for p in ps:
                    self.state[p]["y"] = torch.empty_like(p, memory_format=torch.preserve_format)
                columns = {"p": ps, "z": [self.state[p]["z"] for p in ps], "stash": [self.state[p]["y"] for p in ps]}
                _SWAP.apply(columns, dict(w=1 - 1 / beta), prefer=self._engine(group))
            group["train_mode"] = to_train

    def train(self) -> None:
        """Put the parameters at ``y``, where gradients are taken (before training steps)."""
        self._swap(True)

    def eval(self) -> None:
        """Put the parameters at the average ``x`` (before evaluating or saving the model)."""
        self._swap(False)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """``with opt.evaluating(): ...`` runs the block at the averaged point, then restores the mode."""
        was_training = all(g["train_mode"] for g in self.param_groups)
        self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    # ---------------------------------------------------------------------------------------- the step
    def _begin(self, group):
        if not group["train_mode"]:
            raise RuntimeError(
                "Optimizer was not in train mode when step is called; call opt.train() "
                "before training and opt.eval() before evaluating"
            )
        return super()._begin(group)

    def _values(self, phase, ctx, key):
        return ctx.update or self._prepare(ctx)

    def _after(self, phase, ctxs):
        for ctx in ctxs:
            if ctx.update is None:  # a group without gradients still advances its averaging weights
                self._prepare(ctx)
        self._count_step(ctxs)
        return None

    def _prepare(self, ctx):
        """The group's averaging weight and the step's values (once per step, for every group)."""
        group = ctx.group
        k = group["k"]
        beta = self._beta(group)
        lr = float(self._lr(group)) * self._schedule(group, k)
        group["scheduled_lr"] = lr
        lr_max = group["lr_max"] = max(lr, group["lr_max"])
        weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
        weight_sum = group["weight_sum"] = group["weight_sum"] + weight
        ckp1 = weight / weight_sum if weight_sum else 0.0
        update_v, adaptive = self._direction_flags(group, k)
        beta2 = group["betas"][1] if self.adaptive else 0.0
        wd = group["weight_decay"]
        ctx.update = dict(
            lr=lr,
            ckp1=ckp1,
            y_coef=lr * (beta * (1 - ckp1) - 1),
            beta2=beta2,
            v_coef=1 - beta2,
            eps=group.get("eps", 0.0),
            bc2=1 - beta2 ** (k + 1),
            weight_decay=wd,
            update_v=update_v,
            adaptive=adaptive,
            decay=wd != 0,
        )
        return ctx.update

    def effective_lr(self, group_index: int = 0) -> float:
        group = self.param_groups[group_index]
        return float(self._lr(group)) * self._schedule(group, group["k"])


_SGD = object()  # (ScheduleFreeSGD has no betas and no eps)


def _check_sf(weight_decay, warmup_steps, r, weight_lr_power, betas=_SGD, eps=None):
    """The shared arguments; ``betas`` and ``eps`` of the adaptive variants (AdamW, RAdam)."""
    check_real("weight_decay", weight_decay, 0.0)
    check_count("warmup_steps", warmup_steps)
    check_real("r", r, 0.0)
    check_real("weight_lr_power", weight_lr_power, 0.0)
    if betas is not _SGD:  # (betas=None is refused by check_betas, naming it)
        check_betas(betas)
        if betas[0] == 0:
            raise ValueError(f"Invalid betas[0]: {betas[0]!r} (Schedule-Free needs beta1 > 0)")
        check_real("eps", eps, 0.0)


class ScheduleFreeSGD(_ScheduleFree):
    __doc__ = (
        r"""Schedule-Free SGD; matches ``schedulefree.SGDScheduleFree`` 1.4.

    Base step: :math:`u = g + wd\,y`. Args: lr (default 1.0), momentum (:math:`\beta_1`, default 0.9),
    weight_decay (default 0), warmup_steps (linear warmup, default 0), r (polynomial weighting power,
    default 0), weight_lr_power (default 2).
    """
        + _SF_DOC
        + ENGINE_DOC
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_sf(weight_decay, warmup_steps, r, weight_lr_power)
        check_real("momentum", momentum, 0.0, 1.0, low_open=True, high_open=True)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)


class ScheduleFreeAdamW(_ScheduleFree):
    __doc__ = (
        r"""Schedule-Free AdamW; matches ``schedulefree.AdamWScheduleFree`` 1.4.

    Base step: :math:`v = \beta_2 v + (1-\beta_2) g^2`, :math:`u = g / (\sqrt{v / (1-\beta_2^k)} + \epsilon)
    + wd\,y`. Args: lr (default 0.0025), betas (default (0.9, 0.999)), eps (default 1e-8), weight_decay
    (default 0), warmup_steps (default 0), r (default 0), weight_lr_power (default 2).
    """
        + _SF_DOC
        + ENGINE_DOC
    )

    adaptive = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_sf(weight_decay, warmup_steps, r, weight_lr_power, betas, eps)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)


class ScheduleFreeRAdam(_ScheduleFree):
    __doc__ = (
        r"""Schedule-Free RAdam; matches ``schedulefree.RAdamScheduleFree`` 1.4.

    The lr is multiplied by RAdam's rectification term; while :math:`\rho_k \le 4` the step is on the raw
    gradient with lr factor 0 (``silent_sgd_phase=True``, default) or 1. No ``warmup_steps`` (the
    rectification is the warmup). Args: lr (default 0.0025), betas, eps, weight_decay, r, weight_lr_power.
    """
        + _SF_DOC
        + ENGINE_DOC
    )

    adaptive = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        silent_sgd_phase: bool = True,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        _check_sf(weight_decay, 0, r, weight_lr_power, betas, eps)
        check_bool("silent_sgd_phase", silent_sgd_phase)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            r=r,
            weight_lr_power=weight_lr_power,
            silent_sgd_phase=silent_sgd_phase,
        )
        super().__init__(params, defaults, foreach, fused, nonfinite)

    @staticmethod
    def _rho(beta2, k):
        step = k + 1
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        return rho_inf, rho_inf - 2 * step * beta2_t / (1 - beta2_t)

    def _schedule(self, group, k):
        rho_inf, rho_t = self._rho(group["betas"][1], k)
        if rho_t > 4.0:
            return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return float(not group["silent_sgd_phase"])

    def _direction_flags(self, group, k):
        return True, self._rho(group["betas"][1], k)[1] > 4.0


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, optimizer: _ScheduleFree, batches: Iterable[Any]) -> None:
    """Recompute the batch-norm running statistics of ``model`` at the averaged point ``x``.

    Batch-norm statistics collected during training belong to the points ``y`` where gradients were taken;
    evaluating at ``x`` needs its own. This resets every batch-norm layer, runs ``model`` in train mode on
    ``batches`` (each a tensor, or a tuple whose first item is the input) at ``x`` with a cumulative average
    (``momentum=None``), restores the layers' momentum and the model's and optimizer's modes. Evaluate with
    ``with opt.evaluating(): ...`` afterwards.

    >>> recalibrate_batchnorm(model, opt, itertools.islice(train_loader, 50))  # doctest: +SKIP
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with optimizer.evaluating():
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
