from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_betas, check_lr, check_real
from ..engines import check_columns, is_dtensor
from ._base import ENGINE_DOC, Optimizer
from ._phase import Phase

#: the rule, run on the rows the sparse gradient touches (gathered, stepped, scattered back)
_PHASE = Phase(rules.sparse_adam, "p g exp_avg exp_avg_sq", writes="p exp_avg exp_avg_sq", flags="maximize")


class SparseAdam(Optimizer):
    __doc__ = (
        r"""Adam for sparse gradients (the masked, "lazy" Adam); matches ``torch.optim.SparseAdam``.

    Only the entries a gradient touches are updated: their moments, and the parameter there (Kingma & Ba, 2015,
    Algorithm 1 restricted to the gradient's support; the step count :math:`t` is per parameter tensor):

    .. math::
        m_i \leftarrow \beta_1 m_i + (1 - \beta_1) g_i, \quad v_i \leftarrow \beta_2 v_i + (1 - \beta_2) g_i^2,
        \quad p_i \leftarrow p_i - \gamma \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
              \frac{m_i}{\sqrt{v_i} + \epsilon} \qquad (i \in \operatorname{supp}(g_t))

    The gradients must be sparse (``nn.Embedding(..., sparse=True)``); the parameters dense and real. The rule
    (:func:`adaptlr.rules.sparse_adam`) runs on the gathered values of the gradient's support, on any engine.

    Args:
        lr: :math:`\gamma > 0` (default 1e-3). betas: :math:`(\beta_1, \beta_2)` in :math:`[0, 1)` (default
        (0.9, 0.999)). eps: :math:`\epsilon > 0` (default 1e-8). maximize (default False).
    """
        + ENGINE_DOC
        + r"""
    State: ``step`` (a Python int, as torch), ``exp_avg``, ``exp_avg_sq``.

    >>> emb = torch.nn.Embedding(1000, 16, sparse=True)  # doctest: +SKIP
    >>> opt = SparseAdam(emb.parameters(), lr=1e-2)  # doctest: +SKIP
    """
    )

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_lr(lr)  # (first: None or a many-element tensor is refused naming lr, before float() sees it)
        if not callable(lr):
            check_real("lr", float(lr), 0.0, math.inf, low_open=True, high_open=True)
        check_real("eps", eps, 0.0, math.inf, low_open=True, high_open=True)
        check_betas(betas)
        defaults = dict(lr=lr, betas=betas, eps=eps, maximize=maximize)
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)
        sparse = [[i, j] for i, g in enumerate(self.param_groups) for j, p in enumerate(g["params"]) if p.is_sparse]
        if sparse:
            raise ValueError(f"Sparse params at indices {sparse}: SparseAdam requires dense parameter tensors")
        complex_ = [
            [i, j] for i, g in enumerate(self.param_groups) for j, p in enumerate(g["params"]) if p.is_complex()
        ]
        if complex_:
            raise ValueError(f"Complex params at indices {complex_}: SparseAdam does not support complex parameters")

    def _has_nonfinite(self) -> bool:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return any(not bool(torch.isfinite(g.coalesce().values() if g.is_sparse else g).all()) for g in grads)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Sparse gradients only; an existing state shaped, typed and placed like its parameter (a checkpoint of
        another model is refused before anything changes: the rows are gathered by index from it)."""
        with_state = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if not p.grad.is_sparse:
                raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")
            if is_dtensor(p):
                raise NotImplementedError(
                    "SparseAdam does not support DTensor (sharded) parameters: a sparse "
                    "gradient's indices address the whole tensor, not a shard"
                )
            if self.state.get(p):
                with_state.append(p)
        if with_state:
            columns = [with_state] + [[self.state[p].get(n) for p in with_state] for n in ("exp_avg", "exp_avg_sq")]
            for name, col in zip(("exp_avg", "exp_avg_sq"), columns[1:]):
                if not all(isinstance(t, torch.Tensor) for t in col):
                    raise RuntimeError(
                        f"SparseAdam: a parameter's state has no tensor {name!r} (a foreign checkpoint?)"
                    )
            check_columns(columns, ("param", "exp_avg", "exp_avg_sq"))

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = float(self._lr(group))
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            grad = p.grad.coalesce()  # the update is not linear in g: each index once
            values = grad._values()
            if values.numel() == 0:
                continue
            index = tuple(grad._indices())
            step = state["step"]
            neg_step_size = -(lr * math.sqrt(1 - beta2**step) / (1 - beta1**step))
            rows = {
                "p": [p[index]],
                "g": [values],
                "exp_avg": [state["exp_avg"][index]],
                "exp_avg_sq": [state["exp_avg_sq"][index]],
            }
            _PHASE.apply(
                rows,
                dict(
                    neg_step_size=neg_step_size, beta1=beta1, beta2=beta2, eps=group["eps"], maximize=group["maximize"]
                ),
                prefer=self._engine(group),
            )
            for target, name in ((p, "p"), (state["exp_avg"], "exp_avg"), (state["exp_avg_sq"], "exp_avg_sq")):
                target.index_put_(index, rows[name][0])
