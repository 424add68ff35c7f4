from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_real
from ..engines import is_dtensor
from ._base import Optimizer, scalar_dtype
from ._phase import Phase

#: the elementwise phases (the factored statistics between them are per-tensor torch code, see the class docstring)
_PRECONDITION = Phase(rules.adafactor_precondition, "u g variance", writes="u variance", flags="maximize factored")
_STEP = Phase(rules.decayed_step, "p u", writes="p", flags="use_decay")


class Adafactor(Optimizer):
    r"""Adafactor (Shazeer & Stern, 2018), without momentum; matches ``torch.optim.Adafactor``.

    The second moment of a matrix (the last two dims of a tensor with ``ndim >= 2``) is kept factored, as a
    row and a column mean of :math:`g^2`; vectors and scalars keep it whole. With
    :math:`\hat\beta_{2t} = 1 - t^{c}` (``beta2_decay`` :math:`c`), :math:`\rho_t = \min(\gamma, 1/\sqrt t)`:

    .. math::
        \alpha_t = \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))\,\rho_t, \qquad p_{t-1} \leftarrow p_{t-1}(1 - \gamma\lambda)
        \\
        R_t = \hat\beta_{2t} R_{t-1} + (1 - \hat\beta_{2t}) \operatorname{mean}_{-1}(g_t^2), \quad
        C_t = \hat\beta_{2t} C_{t-1} + (1 - \hat\beta_{2t}) \operatorname{mean}_{-2}(g_t^2), \quad
        V_t = \frac{R_t C_t}{\max(\operatorname{mean}_{-2} R_t, \epsilon_1)} \\
        u_t = \frac{g_t}{\sqrt{\max(V_t, \epsilon_1^2)}}, \qquad
        p_t = p_{t-1} - \frac{\alpha_t}{\max(1, \mathrm{RMS}(u_t) / d)}\, u_t

    (unfactored: :math:`V_t = v_t = \hat\beta_{2t} v_{t-1} + (1 - \hat\beta_{2t}) g_t^2`). As torch, the paper's
    relative step size is used with ``lr`` as an upper bound on :math:`\rho_t`, and :math:`\epsilon_1` is
    squared inside the root. Phases: two sums (:math:`\|p\|^2`, :math:`\|u\|^2`), the factored statistics
    (:func:`adaptlr.rules.adafactor_second_moment`, plain torch), and two elementwise rules
    (:func:`adaptlr.rules.adafactor_precondition`, :func:`adaptlr.rules.decayed_step`).

    Args:
        lr: :math:`\gamma`, the cap on the relative step size (default 1e-2). beta2_decay: :math:`c \le 0`
        (default -0.8). eps: :math:`(\epsilon_1, \epsilon_2)`, :math:`\epsilon_1` = None for the dtype's machine
        epsilon (default (None, 1e-3)). d: the clipping threshold :math:`d \ge 1` (default 1). weight_decay:
        decoupled :math:`\lambda` (default 0). maximize (default False).
        foreach / fused: the engine of the elementwise phases (see :class:`adaptlr.Adam`).

    State: ``step``, and ``row_var`` (shape ``[..., m, 1]``) and ``col_var`` (``[..., 1, n]``) for a tensor with
    ``ndim >= 2``, else ``variance``; as torch.

    For a DTensor (FSDP2) parameter the statistics are those of the whole tensor: the sums are reduced over the
    mesh, and the row / column means are taken on the gathered gradient (``full_tensor()``).

    >>> opt = Adafactor(model.parameters(), lr=1e-2)  # doctest: +SKIP
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("beta2_decay", beta2_decay, -math.inf, 0.0, low_open=True)
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise TypeError(f"Invalid eps: expected a pair (eps1 or None, eps2), got {eps!r}")
        if eps[0] is not None:
            check_real("eps[0] (epsilon1)", eps[0], 0.0, math.inf, high_open=True)
        check_real("eps[1] (epsilon2)", eps[1], 0.0, math.inf, high_open=True)
        check_real("d (clipping threshold)", d, 1.0, math.inf, high_open=True)
        check_real("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if any(p.is_complex() for p in self.param_groups[-1]["params"]):
            raise RuntimeError("Adafactor does not support complex parameters")

    def _check_group(self, group: dict[str, Any]) -> None:
        """An existing state fits its parameter: ``row_var`` / ``col_var`` shaped like the gradient with a 1 in the
        last / second-to-last dimension (matrices), ``variance`` like the gradient (vectors), with its dtype and
        device -- checked before anything changes (a checkpoint of another model is refused)."""
        for i, p in enumerate(group["params"]):
            state = self.state.get(p)
            if p.grad is None or not state:
                continue
            g = p.grad.to_local() if is_dtensor(p.grad) else p.grad
            if p.grad.dim() > 1:
                row, col = list(p.grad.shape), list(p.grad.shape)
                row[-1], col[-2] = 1, 1
                expected = {"row_var": row, "col_var": col}
            else:
                expected = {"variance": list(p.grad.shape)}
            for name, shape in expected.items():
                v = state.get(name)
                local_v = v.to_local() if is_dtensor(v) else v
                if (not isinstance(v, torch.Tensor) or list(v.shape) != shape or local_v.dtype != g.dtype
                        or local_v.device != g.device):  # fmt: skip
                    got = "no tensor" if not isinstance(v, torch.Tensor) else (
                        f"shape {tuple(v.shape)}, dtype {local_v.dtype}, device {local_v.device}"
                    )  # fmt: skip
                    raise RuntimeError(
                        f"Adafactor: state {name!r} of parameter {i} has {got}, but its gradient needs shape "
                        f"{tuple(shape)}, dtype {g.dtype}, device {g.device} (was the state loaded for another model, "
                        "or a parameter's .data replaced?)"
                    )

    def _step_group(self, group: dict[str, Any]) -> None:
        params, states = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Adafactor does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
                if p.grad.dim() > 1:
                    row_shape, col_shape = list(p.grad.shape), list(p.grad.shape)
                    row_shape[-1], col_shape[-2] = 1, 1
                    # a DTensor's factors are whole (plain, replicated) tensors: see _second_moment
                    like = p.grad.to_local() if is_dtensor(p.grad) else p.grad
                    state["row_var"] = like.new_zeros(row_shape)
                    state["col_var"] = like.new_zeros(col_shape)
                else:
                    state["variance"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            params.append(p)
            states.append(state)
        if not params:
            return
        lr = float(self._lr(group))
        steps = self._shared_scalars(group, "step", states)
        steps.add_(1.0)
        eps1, eps2 = group["eps"]
        wd, d, maximize = group["weight_decay"], group["d"], group["maximize"]
        # phase 0 (a sum per tensor): alpha_t = max(eps2, RMS(p)) rho_t, before the weight decay
        rms = [n / (p.numel() ** 0.5) for p, n in zip(params, _norms(params))]
        # phase 1 (per tensor, plain torch): the factored estimate V_t of each matrix; buckets for phase 2
        updates, buckets = [], {}
        for i, (p, state, t) in enumerate(zip(params, states, steps.tolist())):
            e1 = torch.finfo(p.dtype).eps if eps1 is None else eps1
            factored = p.grad.dim() > 1
            if factored:
                grad = -p.grad if maximize else p.grad
                updates.append(_second_moment(grad, state, t ** group["beta2_decay"], e1))
            else:
                updates.append(torch.empty_like(p.grad, memory_format=torch.preserve_format))
            buckets.setdefault((t, e1, factored), []).append(i)
        # phase 2 (elementwise): u_t = g_t / sqrt(max(V_t, eps1^2)) (and the unfactored v_t), one run per bucket
        for (t, e1, factored), idx in buckets.items():
            columns = {
                "u": [updates[i] for i in idx],
                "g": [params[i].grad for i in idx],
                "variance": 0.0 if factored else [states[i]["variance"] for i in idx],
            }
            values = dict(
                one_minus_beta2=t ** group["beta2_decay"], eps1_sq=e1 * e1, maximize=maximize, factored=factored
            )
            _PRECONDITION.apply(columns, values, prefer=self._engine(group))
        # phase 3 (a sum per tensor): the step alpha_t / max(1, RMS(u_t) / d), folded into u_t
        scales = []
        for u, r, n, t in zip(updates, rms, _norms(updates), steps.tolist()):
            alpha = max(eps2, r) * min(lr, 1 / (t**0.5))
            scales.append(alpha / max(1.0, n / ((u.numel() ** 0.5) * d)))
        _scale(updates, scales)
        # phase 4 (elementwise): p_t = p_{t-1} (1 - lr lambda) - u_t, one run for the group
        _STEP.apply(
            {"p": params, "u": updates},
            dict(step=1.0, decay=1 - lr * wd, use_decay=wd != 0),
            prefer=self._engine(group),
        )


def _norms(tensors: list[torch.Tensor]) -> list[float]:
    """The Euclidean norm of each whole tensor (one op and one sync for plain tensors; DTensor: over its mesh)."""
    if any(is_dtensor(t) for t in tensors):
        return [float(n.full_tensor() if is_dtensor(n) else n) for n in (t.norm(2) for t in tensors)]
    return torch.stack(torch._foreach_norm(tensors, 2)).tolist()


def _scale(tensors: list[torch.Tensor], scales: list[float]) -> None:
    """``tensors[i] *= scales[i]`` in place (one foreach op for plain tensors)."""
    if any(is_dtensor(t) for t in tensors):
        for t, c in zip(tensors, scales):
            t.mul_(c)
    else:
        torch._foreach_mul_(tensors, scales)


def _second_moment(grad: torch.Tensor, state: dict[str, Any], one_minus_beta2: float, eps1: float) -> torch.Tensor:
    """The factored estimate V_t of the whole tensor; for a DTensor, from the gathered gradient, as a DTensor
    laid out as ``grad`` (each rank computes the same row / column statistics and keeps its shard)."""
    if not is_dtensor(grad):
        return rules.adafactor_second_moment(grad, state["row_var"], state["col_var"], one_minus_beta2, eps1)
    from torch.distributed.tensor import distribute_tensor

    v = rules.adafactor_second_moment(grad.full_tensor(), state["row_var"], state["col_var"], one_minus_beta2, eps1)
    return distribute_tensor(v, grad.device_mesh, grad.placements, src_data_rank=None)
