"""Online learning-rate adaptation by hypergradient descent (Baydin et al., 2018)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ._base import Controller, check_number

__all__ = ["Hypergradient"]


class Hypergradient(Controller):
    r"""Hypergradient descent on each group's learning rate (Baydin, Cornish, Martínez Rubio, Schmidt & Wood,
    "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018), for any optimizer whose step is
    :math:`\theta_t = \theta_{t-1} - \alpha_{t-1} u_{t-1}`:

    .. math:: \alpha_t = \alpha_{t-1} + \beta \, \langle g_t, u_{t-1} \rangle

    (the derivative of :math:`f(\theta_{t})` with respect to :math:`\alpha_{t-1}` is
    :math:`-\langle g_t, u_{t-1}\rangle`), summed over the group's parameters and clipped to
    ``[min_lr, max_lr]``. :math:`u` is the optimizer's own direction: the gradient for SGD (SGD-HD), the
    Nesterov direction :math:`g + \mu b` for SGD-Nesterov, :math:`\hat m / (\sqrt{\hat v} + \epsilon)` for
    Adam (Adam-HD). It is measured, not re-derived: the controller keeps :math:`\Delta = \theta_{before} -
    \theta_{after} = \alpha u` of the last step (one buffer per parameter) and uses
    :math:`u = \Delta / \alpha`.
    With ``beta=0`` the base optimizer is reproduced exactly.

    It attaches step hooks to the optimizer (``remove()`` detaches them) and updates ``group["lr"]``, which
    must be a number (not a schedule). Skipped steps (``torch.amp.GradScaler``, ``nonfinite="skip"``) are
    ignored; closures are not supported (the gradient must exist before ``step``).

    Args:
        optimizer: any ``torch.optim`` optimizer. beta: hypergradient learning rate :math:`\beta` (the paper
        uses 1e-3 for SGD and 1e-7 for Adam; default 1e-4). min_lr, max_lr: clip (default 0 and inf).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> hd = Hypergradient(opt, beta=0.01)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
    >>> round(opt.param_groups[0]["lr"], 6)  # 0.1 + 0.01 * (1.6 * 2.0)
    0.132
    """

    def __init__(self, optimizer: torch.optim.Optimizer, beta: float = 1e-4, min_lr: float = 0.0,
                 max_lr: float = math.inf) -> None:
        super().__init__(optimizer)
        self.beta = check_number("beta", beta, 0.0)
        self.min_lr = check_number("min_lr", min_lr, 0.0)
        self.max_lr = check_number("max_lr", max_lr, self.min_lr)
        for i, group in enumerate(optimizer.param_groups):
            if callable(group["lr"]) and not isinstance(group["lr"], torch.Tensor):
                raise TypeError(f"Hypergradient needs a numeric lr, param group {i} has a schedule")
        self.initial_lrs = [self.current_lr(i) for i in range(len(optimizer.param_groups))]
        self._delta: dict[torch.Tensor, torch.Tensor] = {}
        self._lr_used: list[float | None] = [None] * len(optimizer.param_groups)
        self._pending: list[float | None] = [None] * len(optimizer.param_groups)
        self._copied: list[torch.Tensor] = []
        self._handles = [optimizer.register_step_pre_hook(self._pre),
                         optimizer.register_step_post_hook(self._post)]

    def remove(self) -> None:
        """Detach from the optimizer."""
        for h in self._handles:
            h.remove()

    def observe(self, value: Any = None) -> float:
        """Hypergradient needs no metric (it reads gradients); returns the first group's factor."""
        return self.factor

    def _scale(self, group: dict[str, Any]) -> float:
        return float(group.get("lr_scale", 1.0)) if self._native else 1.0

    @torch.no_grad()
    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer
        if closure is not None:
            raise ValueError("Hypergradient does not support closures: call backward() before step()")
        for i, group in enumerate(optimizer.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            lr_prev = self._lr_used[i]
            if lr_prev and self.beta:
                terms = [torch.sum(p.grad * self._delta[p], dtype=torch.float64)
                         for p in params if p in self._delta]
                h = float(torch.stack(terms).sum()) / lr_prev if terms else 0.0
                if math.isfinite(h):
                    lr = min(max(self.current_lr(i) + self.beta * h, self.min_lr), self.max_lr)
                    value = lr / self._scale(group)
                    if isinstance(group["lr"], torch.Tensor):
                        group["lr"].fill_(value)
                    else:
                        group["lr"] = value
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

    def state_dict(self) -> dict[str, Any]:
        """Factors, lrs and the last step's :math:`\\Delta` per parameter (in param-group order)."""
        deltas = [[self._delta.get(p) for p in g["params"]] for g in self.optimizer.param_groups]
        return {**super().state_dict(), "lr_used": list(self._lr_used), "initial_lrs": list(self.initial_lrs),
                "deltas": deltas}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._lr_used, self.initial_lrs = list(state_dict["lr_used"]), list(state_dict["initial_lrs"])
        groups = zip(self.optimizer.param_groups, state_dict["deltas"], strict=True)
        self._delta = {p: d.clone() for g, ds in groups for p, d in zip(g["params"], ds, strict=True)
                       if d is not None}
