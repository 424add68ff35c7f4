from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .._validation import check_choice, check_count, check_real
from ..engines._select import is_dtensor
from ._base import Optimizer

Objective = Callable[[list[torch.Tensor], Any, torch.Tensor], tuple[float, torch.Tensor]]


def _value(loss: Any) -> float:
    """The closure's loss as a float (detached first: no warning for a loss that requires grad)."""
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


class FlatSpace:
    """Reductions over the flattened parameter vector (one process, or every parameter whole on every rank)."""

    distributed = False

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.dot(b)

    def abs_max(self, a: torch.Tensor) -> torch.Tensor:
        return a.abs().max()

    def abs_sum(self, a: torch.Tensor) -> torch.Tensor:
        return a.abs().sum()

    def all_finite(self, a: torch.Tensor) -> bool:
        return bool(torch.isfinite(a).all())

    def mean_loss(self, loss: float) -> float:
        return loss


class ShardedSpace(FlatSpace):
    """The flat vector of a rank holds the *local shards* of DTensor (FSDP2) parameters and whole replicated
    tensors: sums and maxima over the sharded entries are all-reduced over the mesh dims they are sharded on,
    the replicated entries count once, so every rank gets the whole vector's values and takes the same steps."""

    distributed = True

    def __init__(self, sharded: torch.Tensor, replicated: torch.Tensor, groups: list[Any], mesh: Any) -> None:
        self.sharded, self.replicated, self.groups, self.mesh = sharded, replicated, groups, mesh

    def mean_loss(self, loss: float) -> float:
        """The mean of the ranks' losses over the whole mesh (data parallel: the loss whose gradient FSDP
        averages; the same number on every rank, so the line search decides alike everywhere)."""
        import torch.distributed as dist

        t = torch.tensor([loss], dtype=torch.float64, device=self.sharded.device)
        for i in range(self.mesh.ndim):
            dist.all_reduce(t, group=self.mesh.get_group(i))
        return float(t) / self.mesh.size()

    def _reduce(self, local: torch.Tensor, op: Any) -> torch.Tensor:
        import torch.distributed as dist

        local = local.clone()
        for g in self.groups:
            dist.all_reduce(local, op=op, group=g)
        return local

    def _sum(self, terms: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        return self._reduce(terms[self.sharded].sum(), dist.ReduceOp.SUM) + terms[self.replicated].sum()

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._sum(a * b)

    def abs_sum(self, a: torch.Tensor) -> torch.Tensor:
        return self._sum(a.abs())

    def abs_max(self, a: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        zero = a.new_zeros(())
        sharded = a[self.sharded].abs().max() if self.sharded.numel() else zero
        replicated = a[self.replicated].abs().max() if self.replicated.numel() else zero
        return torch.maximum(self._reduce(sharded, dist.ReduceOp.MAX), replicated)

    def all_finite(self, a: torch.Tensor) -> bool:
        import torch.distributed as dist

        bad = a.new_tensor(float(not bool(torch.isfinite(a).all())))
        return not bool(self._reduce(bad, dist.ReduceOp.MAX))


def flat_space(params: list[torch.Tensor]) -> FlatSpace:
    """The reductions for ``params``' flat vector: :class:`ShardedSpace` when some are sharded DTensors."""
    sharded, replicated, groups, mesh, offset = [], [], None, None, 0
    for p in params:
        n = p.to_local().numel() if is_dtensor(p) else p.numel()
        n *= 2 if p.is_complex() else 1
        dims = [i for i, pl in enumerate(p.placements) if pl.is_shard()] if is_dtensor(p) else []
        if dims:
            mine = [p.device_mesh.get_group(i) for i in dims]
            if groups is not None and len(groups) != len(mine):
                raise NotImplementedError("LBFGS: DTensor parameters sharded over different mesh dims")
            groups, mesh = mine, p.device_mesh
            sharded.append(torch.arange(offset, offset + n))
        else:
            replicated.append(torch.arange(offset, offset + n))
        offset += n
    if groups is None:
        return FlatSpace()
    empty = torch.zeros(0, dtype=torch.long)
    return ShardedSpace(
        torch.cat(sharded) if sharded else empty, torch.cat(replicated) if replicated else empty, groups, mesh
    )


def cubic_interpolate(
    x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
) -> Any:
    r"""The minimiser of the cubic through :math:`(x_1, f_1, f'_1)` and :math:`(x_2, f_2, f'_2)`, clipped to
    ``bounds`` (default: the interval between the points); their midpoint when the cubic has no minimum.

    .. math:: d_1 = g_1 + g_2 - 3\frac{f_1 - f_2}{x_1 - x_2}, \quad d_2 = \sqrt{d_1^2 - g_1 g_2}, \quad
              x = x_2 - (x_2 - x_1)\frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2}

    (Nocedal & Wright, 2006, eq. 3.59; minFunc's ``polyinterp`` for two points, as torch.optim.LBFGS.)
    """
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = d2_square.sqrt() if isinstance(d2_square, torch.Tensor) else math.sqrt(d2_square)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, low), high)


def strong_wolfe(
    obj: Objective,
    x: list[torch.Tensor],
    t: Any,
    d: torch.Tensor,
    f: float,
    g: torch.Tensor,
    gtd: Any,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
    space: FlatSpace | None = None,
) -> tuple[float, torch.Tensor, Any, int]:
    r"""A line search for a step :math:`t` along ``d`` that meets the strong Wolfe conditions
    :math:`f(x + t d) \le f + c_1 t\, g^\top d` and :math:`|\nabla f(x + t d)^\top d| \le c_2 |g^\top d|`.

    Nocedal & Wright (2006), Algorithms 3.5 (bracketing, extrapolating by cubic interpolation within
    :math:`[t + 0.01 (t - t_{prev}), 10 t]`) and 3.6 (zoom, by cubic interpolation kept 10% of the bracket away
    from its ends), as minFunc's ``WolfeLineSearch`` and torch.optim.LBFGS. ``obj(x, t, d)`` returns the loss and
    flat gradient at :math:`x + t d`. Returns the loss, gradient and step of the best point, and the number of
    evaluations.
    """
    space = space or FlatSpace()
    d_norm = space.abs_max(d)
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = obj(x, t, d)
    evals = 1
    gtd_new = space.dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    # 1. bracket an interval that holds a point meeting the conditions
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f, bracket_g, bracket_gtd = [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f, bracket_g, bracket_gtd = [f_prev, f_new], [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        low, high = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(low, high))
        f_prev, g_prev, gtd_prev = f_new, g_new.clone(), gtd_new
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = space.dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    # 2. zoom: shrink the bracket until a point meets the conditions
    insufficient_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        b_max, b_min = max(bracket), min(bracket)
        margin = 0.1 * (b_max - b_min)
        if min(b_max - t, t - b_min) < margin:  # too close to an end: step 10% inside, unless progress was made
            if insufficient_progress or t >= b_max or t <= b_min:
                t = b_max - margin if abs(t - b_max) < abs(t - b_min) else b_min + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = space.dot(g_new, d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:  # not a new low: it closes the bracket
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.clone(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:  # the old low becomes the high end
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.clone(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals


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
        return torch.cat(views, 0)

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
