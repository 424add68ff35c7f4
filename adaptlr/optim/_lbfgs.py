from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .._validation import check_choice, check_count, check_real
from ..engines import is_dtensor
from ._base import Optimizer
from ._flat_space import FlatSpace, flat_space
from ._line_search import strong_wolfe


def _value(loss: Any) -> float:
    """The closure's loss as a float (detached first: no warning for a loss that requires grad)."""
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


def two_loop_direction(
    g: torch.Tensor,
    dirs: list[torch.Tensor],
    steps: list[torch.Tensor],
    ro: list[Any],
    h_diag: Any,
    al: list[Any],
    space: FlatSpace | None = None,
) -> torch.Tensor:
    r"""The L-BFGS direction :math:`-H_t g` by the two-loop recursion (Nocedal & Wright, 2006, Algorithm 7.4),
    with :math:`H_0 = \gamma I`, :math:`\gamma = s^\top y / y^\top y` (``h_diag``); ``dirs`` are the gradient
    differences :math:`y_i`, ``steps`` the steps :math:`s_i`, ``ro`` :math:`1 / y_i^\top s_i`; ``al`` is scratch
    for the :math:`\alpha_i` (kept in the state, as torch)."""
    space = space or FlatSpace()
    q = g.neg()
    for i in range(len(dirs) - 1, -1, -1):
        al[i] = space.dot(steps[i], q) * ro[i]
        q.add_(dirs[i], alpha=-al[i])
    r = torch.mul(q, h_diag)
    for i in range(len(dirs)):
        be_i = space.dot(dirs[i], r) * ro[i]
        r.add_(steps[i], alpha=al[i] - be_i)
    return r


class LBFGS(Optimizer):
    r"""L-BFGS (Liu & Nocedal, 1989) with an optional strong-Wolfe line search; matches ``torch.optim.LBFGS``.

    Each ``step(closure)`` runs up to ``max_iter`` iterations on the flattened parameters :math:`x`:

    .. math::
        d_t = -H_t g_t \ \text{(two-loop recursion over the last } m \text{ pairs } s_i = x_{i+1} - x_i,\
              y_i = g_{i+1} - g_i \text{ with } y_i^\top s_i > 10^{-10}), \qquad x_{t+1} = x_t + \tau_t d_t

    with :math:`H_0 = \frac{s^\top y}{y^\top y} I`; the first step of a run is
    :math:`\tau = \min(1, 1/\|g\|_1)\gamma`, later ones :math:`\tau = \gamma` (``lr``), or the step the strong
    Wolfe line search finds from there (``line_search_fn="strong_wolfe"``). An iteration loop stops at
    ``max_iter`` iterations, ``max_eval`` closure calls, :math:`\|g\|_\infty \le` ``tolerance_grad``, or a change
    in :math:`x` or the loss below ``tolerance_change``.

    Args:
        lr: :math:`\gamma` (default 1). max_iter: iterations per ``step`` (default 20). max_eval: closure calls
        per ``step`` (default ``max_iter * 5 // 4``). tolerance_grad (default 1e-7). tolerance_change (default
        1e-9). history_size: :math:`m` (default 100). line_search_fn: None or ``"strong_wolfe"``.
        nonfinite: checked on the closure's first gradient (see :class:`adaptlr.Adam`).

    Under FSDP2 (DTensor parameters) each rank keeps the flat vectors of its local shards (and of any replicated
    tensor), and every dot product, sum and maximum is all-reduced over the mesh: all ranks take the same
    steps as one process holding everything. The loss the line search compares is the mean of the ranks'
    closure losses (the loss whose gradient FSDP averages); ``step`` returns this rank's own first loss.

    For float16 and bfloat16 parameters the flat vectors and scalars are float32 (torch's, kept in float16,
    overflow: :math:`1 / y^\top s` is inf once :math:`y^\top s < 1.5 \cdot 10^{-5}`, and the parameters turn nan);
    the parameters keep their dtype. A float16 checkpoint of torch's LBFGS loads and continues in float32; the
    other way, torch's LBFGS cannot mix these float32 vectors with its float16 gradients.

    One param group only, and all parameters on one device (as torch). The state is global and kept under the
    first parameter, with torch's names (``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``,
    ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``), so checkpoints move between the two (under
    FSDP2 its vectors are this rank's shards). The learning rate may be a schedule or scaled by a controller, as
    for every adaptlr optimizer: one ``step`` (however many iterations) is one tick of the schedule clock.

    >>> opt = LBFGS(model.parameters(), line_search_fn="strong_wolfe")  # doctest: +SKIP
    >>> def closure():  # doctest: +SKIP
    ...     opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); return loss
    >>> opt.step(closure)  # doctest: +SKIP
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        nonfinite: str | None = None,
    ) -> None:
        check_count("max_iter", max_iter, 1)
        check_count("history_size", history_size, 1)
        if max_eval is not None:
            check_count("max_eval", max_eval, 1)
        check_real("tolerance_grad", tolerance_grad, 0.0, math.inf, high_open=True)
        check_real("tolerance_change", tolerance_change, 0.0, math.inf, high_open=True)
        check_choice("line_search_fn", line_search_fn, (None, "strong_wolfe"))
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults, nonfinite=nonfinite)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]
        self._space = flat_space(self._params)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ the parameters as one flat vector
    def _views(self) -> list[torch.Tensor]:
        """The tensors this rank updates: local shards of DTensors (sharing their memory), real views of complex."""
        views = [p.to_local() if is_dtensor(p) else p for p in self._params]
        return [torch.view_as_real(p) if p.is_complex() else p for p in views]

    def _flat_grad(self) -> torch.Tensor:
        views = []
        for p in self._params:
            grad = p.grad.to_local() if is_dtensor(p.grad) else p.grad
            if grad is None:
                local = p.to_local() if is_dtensor(p) else p
                view = local.new_zeros(local.numel())
            elif grad.is_sparse:
                view = grad.to_dense().view(-1)
            else:
                view = grad.reshape(-1)  # (torch's view(-1) fails for a non-contiguous gradient)
            views.append(torch.view_as_real(view).view(-1) if view.is_complex() else view)
        flat = torch.cat(views, 0)
        # float32 for half-precision parameters: every flat vector (the direction, the curvature pairs, the previous
        # gradient) and scalar (y's, ro = 1 / y's, H_diag) derives from this one. In float16, ro overflows to inf
        # as soon as y's < 1.5e-5 and the next direction is nan (torch.optim.LBFGS goes nan so); the parameters
        # themselves stay in their dtype (each step is added to them there).
        return flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat

    def _add(self, step: Any, direction: torch.Tensor) -> None:
        offset = 0
        for p in self._views():
            n = p.numel()
            p.add_(direction[offset : offset + n].view_as(p), alpha=step)
            offset += n

    def _evaluate_at(
        self, closure: Callable[[], Any], x: list[torch.Tensor], t: Any, d: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """Loss and flat gradient at ``x + t d``; the parameters are left at ``x``."""
        self._add(t, d)
        loss = self._space.mean_loss(_value(closure()))
        flat_grad = self._flat_grad()
        for p, saved in zip(self._params, x):
            p.copy_(saved)
        return loss, flat_grad

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the model and returns the loss."""
        if closure is None:
            raise RuntimeError("LBFGS requires a closure (it re-evaluates the loss during the step)")
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr = float(self._lr(group))
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]

        orig_loss = closure()
        loss = self._space.mean_loss(_value(orig_loss))
        flat_grad = self._flat_grad()
        space = self._space
        if self.nonfinite is not None and not space.all_finite(flat_grad):
            if self.nonfinite == "raise":
                raise FloatingPointError("LBFGS: a gradient holds inf or nan (nonfinite='raise')")
            self.last_step_skipped = True
            return orig_loss
        self.last_step_skipped = False
        state = self.state[self._params[0]]  # the global state lives under the first parameter, as in torch
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        state["func_evals"] += 1
        current_evals = 1
        self._tick()
        if space.abs_max(flat_grad) <= tol_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        if prev_flat_grad is not None and prev_flat_grad.dtype != flat_grad.dtype:  # a float16 checkpoint (torch's)
            d, prev_flat_grad = d.to(flat_grad.dtype), prev_flat_grad.to(flat_grad.dtype)
            old_dirs, old_stps = [v.to(flat_grad.dtype) for v in old_dirs], [v.to(flat_grad.dtype) for v in old_stps]
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # the direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro, h_diag = [], [], [], 1
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = space.dot(y, s)
                if ys > 1e-10:  # keep the pair only where the curvature condition holds
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / space.dot(y, y)
                if "al" not in state:
                    state["al"] = [None] * history_size
                d = two_loop_direction(flat_grad, old_dirs, old_stps, ro, h_diag, state["al"], space)
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss
            # the step length
            t = min(1.0, 1.0 / space.abs_sum(flat_grad)) * lr if state["n_iter"] == 1 else lr
            gtd = space.dot(flat_grad, d)
            if gtd > -tol_change:  # not a descent direction (to tolerance)
                break
            if group["line_search_fn"] == "strong_wolfe":
                x_init = [p.clone(memory_format=torch.contiguous_format) for p in self._params]

                def obj(x: list[torch.Tensor], step: Any, direction: torch.Tensor) -> tuple[float, torch.Tensor]:
                    return self._evaluate_at(closure, x, step, direction)

                loss, flat_grad, t, ls_evals = strong_wolfe(
                    obj, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals, space=space
                )
                self._add(t, d)
                opt_cond = space.abs_max(flat_grad) <= tol_grad
            else:
                self._add(t, d)
                ls_evals = 0
                opt_cond = False
                if n_iter != max_iter:  # re-evaluate, except after the last iteration (as torch)
                    loss = self._space.mean_loss(_value(closure()))
                    flat_grad = self._flat_grad()
                    opt_cond = space.abs_max(flat_grad) <= tol_grad
                    ls_evals = 1
            current_evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if space.abs_max(d.mul(t)) <= tol_change or abs(loss - prev_loss) < tol_change:  # no progress
                break

        state.update(
            d=d,
            t=t,
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            H_diag=h_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        return orig_loss
