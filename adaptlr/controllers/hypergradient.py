"""Online learning-rate adaptation by hypergradient descent (Baydin et al., 2018)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .._validation import check_real
from ._base import Controller

__all__ = ["Hypergradient"]


class Hypergradient(Controller):
    r"""Hypergradient descent on each group's learning rate (Baydin, Cornish, Martínez Rubio, Schmidt & Wood,
    "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018), for any optimizer whose step is
    :math:`\theta_t = \theta_{t-1} - \alpha_{t-1} u_{t-1}`:

    .. math:: \alpha_t = \alpha_{t-1} + \beta \, \langle g_t, u_{t-1} \rangle

    (the derivative of :math:`f(\theta_{t})` with respect to :math:`\alpha_{t-1}` is
    :math:`-\langle g_t, u_{t-1}\rangle`), summed over the group's parameters and clipped, first to
    :math:`[\alpha_{t-1} / c, \alpha_{t-1} c]` with :math:`c` = ``max_change`` (a guard this implementation
    adds: one step moves the lr by at most that factor), then to ``[min_lr, max_lr]``.
    :math:`u` is the optimizer's own direction: the gradient for SGD (SGD-HD), the
    Nesterov direction :math:`g + \mu b` for SGD-Nesterov, :math:`\hat m / (\sqrt{\hat v} + \epsilon)` for
    Adam (Adam-HD). It is measured, not re-derived: the controller keeps :math:`\Delta = \theta_{before} -
    \theta_{after} = \alpha u` of the last step (one buffer per parameter) and uses
    :math:`u = \Delta / \alpha`.
    With ``beta=0`` the base optimizer is reproduced exactly.

    **The guard.** The additive rule has no scale of its own (:math:`\beta` is in units of lr² per loss), so
    a ``beta`` too large for the problem used to drive the lr to the floor 0 in one step, where it stayed for
    ever (the next update is proportional to the last step, which is then 0), or up to values that made the
    parameters NaN. With the relative clip a positive lr stays positive and changes geometrically at most, so a
    too-large ``beta`` becomes a sign-following rule (lr halves or doubles per step with the default
    :math:`c = 2`) instead of a dead or exploding run, and the first time the clip acts a ``UserWarning``
    names ``beta`` and the clipped step. Measured on a 10-32-1 MLP regression (300 steps of SGD at lr 0.05
    or Adam at 1e-3): with ``beta=1`` or ``beta=1e30`` the default trains to a test MSE of 0.03-0.07, while
    ``max_change=100`` goes NaN (SGD) or ends at 1e10 (Adam). ``max_change=math.inf`` is the paper's rule
    exactly (on a steep quadratic SGD-HD with the paper's ``beta=1e-3`` moves the lr 7.6x in one step).

    It attaches step hooks to the optimizer (``remove()`` detaches them) and updates ``group["lr"]``, which
    must be a number (not a schedule). Skipped steps (``torch.amp.GradScaler``, ``nonfinite="skip"``) are
    ignored; closures are not supported (the gradient must exist before ``step``).

    Args:
        optimizer: any ``torch.optim`` optimizer. beta: hypergradient learning rate :math:`\beta`, a finite
        number >= 0 (the paper uses 1e-3 for SGD and 1e-7 for Adam; default 1e-4). min_lr, max_lr: clip
        (default 0 and inf). max_change: the most one step may multiply or divide the lr by, in (1, inf]
        (default 2; ``math.inf``: no guard).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> hd = Hypergradient(opt, beta=0.01)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
    >>> round(opt.param_groups[0]["lr"], 6)  # 0.1 + 0.01 * (1.6 * 2.0)
    0.132
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        beta: float = 1e-4,
        min_lr: float = 0.0,
        max_lr: float = math.inf,
        max_change: float = 2.0,
    ) -> None:
        super().__init__(optimizer)
        self.beta = check_real("beta", beta, 0.0)
        self.max_change = check_real("max_change", max_change, 1.0, low_open=True, allow_inf=True)  # (inf: no guard)
        self.clipped = 0  #: steps on which the max_change guard limited the lr's change
        self.min_lr = check_real("min_lr", min_lr, 0.0)
        self.max_lr = check_real("max_lr", max_lr, self.min_lr, allow_inf=True)  # (inf: no limit)
        for i, group in enumerate(optimizer.param_groups):
            if group.get("adaptlr_schedule") is not None or (
                callable(group["lr"]) and not isinstance(group["lr"], torch.Tensor)
            ):
                raise TypeError(f"Hypergradient needs a numeric lr, param group {i} has a schedule")
        self.initial_lrs = [self.current_lr(i) for i in range(len(optimizer.param_groups))]
        self._delta: dict[torch.Tensor, torch.Tensor] = {}
        self._lr_used: list[float | None] = [None] * len(optimizer.param_groups)
        self._pending: list[float | None] = [None] * len(optimizer.param_groups)
        self._copied: list[torch.Tensor] = []
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    def remove(self) -> None:
        """Detach from the optimizer."""
        for h in self._handles:
            h.remove()

    def observe(self, value: Any = None) -> float:
        """Hypergradient needs no metric (it reads gradients); returns the first group's factor."""
        return self.factor

    @torch.no_grad()
    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
        if closure is not None:
            raise ValueError("Hypergradient does not support closures: call backward() before step()")
        for i, group in enumerate(optimizer.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            lr_prev = self._lr_used[i]
            if lr_prev and self.beta:
                terms = [torch.sum(p.grad * self._delta[p], dtype=torch.float64) for p in params if p in self._delta]
                h = float(torch.stack(terms).sum()) / lr_prev if terms else 0.0
                if math.isfinite(h):
                    lr = min(max(self._guarded(i, self.current_lr(i), self.beta * h), self.min_lr), self.max_lr)
                    if isinstance(group["lr"], torch.Tensor):  # group["lr"] is the applied lr (a number)
                        group["lr"].fill_(lr)
                    else:
                        group["lr"] = lr
            self._pending[i] = self.current_lr(i)
            for p in params:  # reuse the buffer: it holds theta_before until the step is done
                if p in self._delta:
                    self._delta[p].copy_(p)
                else:
                    self._delta[p] = p.detach().clone()
                self._copied.append(p)
            if self.initial_lrs[i]:
                self._factors[i] = self._pending[i] / self.initial_lrs[i]

    @torch.no_grad()
    def _post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        copied, self._copied = self._copied, []
        if getattr(optimizer, "last_step_skipped", False):  # nothing moved: no direction to learn from
            self._lr_used = [None] * len(self._lr_used)
            return
        for p in copied:
            self._delta[p].sub_(p)  # theta_before - theta_after = lr * u
        self._lr_used = list(self._pending)

    def _guarded(self, index: int, lr: float, change: float) -> float:
        """``lr + change``, kept within a factor ``max_change`` of ``lr`` (for a positive ``lr``)."""
        new = lr + change
        if lr <= 0 or math.isinf(self.max_change):
            return new
        low, high = lr / self.max_change, lr * self.max_change
        if low <= new <= high:
            return new
        self.clipped += 1
        if self.clipped == 1:
            warnings.warn(
                f"Hypergradient: beta={self.beta:g} asked param group {index}'s lr to go from {lr:.3g} to "
                f"{new:.3g} in one step; limited to a factor max_change={self.max_change:g} "
                f"(beta is probably too large for this problem: the paper uses 1e-3 for SGD, 1e-7 for "
                "Adam)",
                UserWarning,
                stacklevel=4,
            )
        return min(max(new, low), high)

    def state_dict(self) -> dict[str, Any]:
        """Factors, lrs and the last step's :math:`\\Delta` per parameter (in param-group order)."""
        deltas = [[self._delta.get(p) for p in g["params"]] for g in self.optimizer.param_groups]
        return {
            **super().state_dict(),
            "lr_used": list(self._lr_used),
            "initial_lrs": list(self.initial_lrs),
            "deltas": deltas,
        }

    def _read_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        out = super()._read_state(state_dict)
        groups = self.optimizer.param_groups
        lr_used = [None if v is None else check_real(f"lr_used[{i}]", v) for i, v in enumerate(state_dict["lr_used"])]
        initial = [check_real(f"initial_lrs[{i}]", v) for i, v in enumerate(state_dict["initial_lrs"])]
        deltas = list(state_dict["deltas"])
        if not len(lr_used) == len(initial) == len(deltas) == len(groups):
            raise ValueError(f"it is for {len(deltas)} param group(s), this optimizer has {len(groups)}")
        delta: dict[torch.Tensor, torch.Tensor] = {}
        for i, (g, ds) in enumerate(zip(groups, deltas, strict=True)):
            ds = list(ds)
            if len(ds) != len(g["params"]):
                raise ValueError(f"param group {i} has {len(g['params'])} parameters, the state {len(ds)}")
            for j, (p, d) in enumerate(zip(g["params"], ds, strict=True)):
                if d is None:
                    continue
                if not isinstance(d, torch.Tensor) or d.shape != p.shape:
                    shape = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
                    raise ValueError(f"deltas[{i}][{j}] is {shape}, its parameter has shape {tuple(p.shape)}")
                delta[p] = d.detach().to(device=p.device, dtype=p.dtype, copy=True)
        return {
            **out,
            "_lr_used": lr_used,
            "initial_lrs": initial,
            "_delta": delta,
            "_pending": [None] * len(groups),
            "_copied": [],
        }
