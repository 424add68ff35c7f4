"""``adaptlr.Auto``: train with no learning rate to choose. The plan (:mod:`._plan`), the race (:mod:`._race`)
and the commit (:mod:`._commit`) do the work; this module holds the user's knobs and :meth:`Auto.fit`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._validation import check_bool, check_choice, check_count, check_nonfinite, check_real
from . import _fit
from ._grid import HALF_DECADE, check_optimizer, default_lrs
from ._plan import WATCH_EVERY, Plan, make_plan
from ._result import AutoResult
from ._schedules import TAILS, WSD_COOLDOWN
from ._step import TrainStep
from ._store import WHERE

__all__ = ["Auto"]


class Auto:
    r"""Training without a learning rate to choose: successive halving of a learning-rate grid on held-out
    data, every candidate on the run's own schedule (a warmup, then cosine decay to 0 by default), whose survivors
    *continue* instead of restarting: the winner's run is the run it would have been at its lr from the start, the
    losers stopped early. ``docs/auto.md`` has the algorithm, its sources and its measurements.

    With a budget of :math:`T` steps and :math:`B` runs: every candidate :math:`\eta` of the grid trains
    :math:`s_1` steps from the same start on the same batches and is scored on a common validation subset; the
    grid extends a half-decade past an edge that wins (up to ``extend`` points, within ``limits``); the ``keep``
    best continue to :math:`s_2`, where each branches a copy annealed to 0 over :math:`c` steps, scored on
    (up to) all the validation data; the lowest branch score wins, a lower lr within ``tie`` of it first; the
    winner continues from :math:`s_2` to :math:`T` on its schedule (:func:`~adaptlr.auto.run_schedule`). The rung
    lengths are scaled so that training steps take at least :math:`(1 - v)(B - 1)T` of the budget
    (:math:`v` = ``val_share``), validation reads subsets that fit the rest at its measured cost, and rung 2 grows
    into whatever validation did not use. Divergence is judged on each loss's own scale
    (:class:`adaptlr.controllers.LossScale`); a run that diverges after the race rolls back and steps down a
    half-decade; the committed model is the best *validated* of the end of the run, its best state at a watch
    point (every fifth of the run), the winner's branch and the start. Given a ``max_budget`` above the budget,
    a race that cannot tell its finalists from the start races them on, within it.

    Args:
        lrs: the candidate learning rates; default: the inner optimizer's grid (``adaptlr.auto.GRIDS``).
        budget: the most the whole of ``fit`` spends, in runs of ``steps`` steps (default 1.5).
        max_budget: the most it spends when the race cannot tell its finalists from the start at rung 2 (a
            plateau, or a horizon too short to show progress): it then races them on, doubling the horizon, as
            far as this allows, and says so (default None: ``budget``, never more; 2.0 was measured, see
            ``docs/auto.md``: it turned a plateau task's -21 points into -6 and cost 1.7 runs on a model at its
            optimum, so it is not the default).
        keep: candidates kept after rung 1 (3). rung1, rung2, branch: fractions of the run before scaling to the
            budget (0.035, 0.10, 0.025). warmup: the schedule's linear warmup, a fraction of the run (0.05).
        tie: relative near-tie tolerance (0.02). keep_best: commit the best validated model (True).
        tail: the schedule after the warmup: ``"cosine"`` (default: to 0 from the warmup's end, the lab's
            ``cosine(warmup=0.05)``; the tuned grid's own run, step for step, at the lr chosen), ``"wsd"`` (constant,
            then a linear cooldown to 0) or ``"linear"``; cooldown: the WSD schedule's final share (0.5: measured
            against 0.2 and 0.35, ``docs/auto.md``). val_share: share of the budget
            beyond one run reserved for validation (0.25).
        watch: the share of the run between the points where the committed run is validated, its best state a
            commit option (early stopping; 0.2: at 20%, 40%, 60% and 80% of the run; 0: never).
        extend: most half-decades the grid extends past each edge (3); limits: ``(low, high)`` bounds of the
            extension (default: the grid's ends times and over :math:`10^{extend/2}`).
        optimizer: the inner optimizer class (default ``adaptlr.AdamW``): any adaptlr optimizer that takes an lr.
        offload: where racer states wait: ``"auto"`` (host memory when the model is on an accelerator),
            ``"device"``, ``"host"`` or ``"disk"`` (memory-mapped files; ``offload_dir``).
        nonfinite: the inner optimizer's non-finite-gradient policy. **options: the inner optimizer's own keyword
            arguments (``momentum=0.9``, ``betas=...``, ``weight_decay=...``).

    Example::

        result = Auto().fit(model, train_loader, val_batches, steps=1000,
                            step_fn=lambda model, batch: model(**batch).loss)
        result.lr, result.cost, result.wall   # the committed lr; cost in runs (steps, and wall time)
    """

    def __init__(
        self,
        lrs: Sequence[float] | None = None,
        budget: float = 1.5,
        max_budget: float | None = None,
        keep: int = 3,
        rung1: float = 0.035,
        rung2: float = 0.10,
        branch: float = 0.025,
        warmup: float = 0.05,
        tie: float = 0.02,
        keep_best: bool = True,
        tail: str = "cosine",
        cooldown: float = WSD_COOLDOWN,
        val_share: float = 0.25,
        watch: float = WATCH_EVERY,
        extend: int = 3,
        limits: tuple[float, float] | None = None,
        optimizer: type[torch.optim.Optimizer] | None = None,
        offload: str = "auto",
        offload_dir: str | None = None,
        nonfinite: str | None = None,
        **options: Any,
    ) -> None:
        self.optimizer = check_optimizer(optimizer) if optimizer is not None else None
        if lrs is not None:
            lrs = tuple(sorted(check_real(f"lrs[{i}]", x, 0.0, low_open=True) for i, x in enumerate(lrs)))
            if not lrs:
                raise ValueError("Invalid lrs: () (expected at least one learning rate)")
        self._lrs = lrs
        self.budget = check_real("budget", budget, 1.0, low_open=True)
        self.max_budget = None if max_budget is None else check_real("max_budget", max_budget, 1.0, low_open=True)
        self.keep = check_count("keep", keep, 1)
        self.rung1 = check_real("rung1", rung1, 0.0, 1.0, low_open=True, high_open=True)
        self.rung2 = check_real("rung2", rung2, 0.0, 1.0, low_open=True, high_open=True)
        self.branch = check_real("branch", branch, 0.0, 1.0, low_open=True, high_open=True)
        if not rung1 < rung2:
            raise ValueError(f"Invalid rungs: rung1={rung1} must be below rung2={rung2}")
        self.warmup = check_real("warmup", warmup, 0.0, 1.0, high_open=True)
        self.tie = check_real("tie", tie, 0.0, 1.0, high_open=True)
        self.keep_best = check_bool("keep_best", keep_best)
        self.tail = check_choice("tail", tail, TAILS)
        self.cooldown = check_real("cooldown", cooldown, 0.0, 1.0, low_open=True)
        self.val_share = check_real("val_share", val_share, 0.0, 1.0, high_open=True)
        self.watch = check_real("watch", watch, 0.0, 1.0)
        self.extend = check_count("extend", extend, 0)
        if limits is not None:
            lo, hi = (check_real(f"limits[{i}]", v, 0.0, low_open=True) for i, v in enumerate(limits))
            if not lo <= hi:
                raise ValueError(f"Invalid limits: {limits!r} (expected low <= high)")
            limits = (lo, hi)
        self.limits = limits
        self.offload = check_choice("offload", offload, WHERE)
        self.offload_dir = offload_dir
        self.options = dict(options)
        if nonfinite is not None:
            self.options["nonfinite"] = check_nonfinite(nonfinite)

    @property
    def inner(self) -> type[torch.optim.Optimizer]:
        """The inner optimizer class."""
        if self.optimizer is not None:
            return self.optimizer
        from ..optim import AdamW

        return AdamW

    @property
    def lrs(self) -> tuple[float, ...]:
        """The starting grid."""
        return self._lrs if self._lrs is not None else default_lrs(self.inner)

    def plan(self, steps: int) -> Plan:
        """The race's plan for a run of ``steps`` steps, before validation is measured (rung 2 then grows into
        what validation leaves)."""
        return make_plan(
            steps,
            len(self.lrs),
            self.keep,
            budget=self.budget,
            rung1=self.rung1,
            rung2=self.rung2,
            branch=self.branch,
            warmup=self.warmup,
            val_share=self.val_share,
            watch=self.watch,
            tail=self.tail,
            cooldown=self.cooldown,
        )

    def planned_cost(self, steps: int, val_cost: float = 0.0) -> float:
        """What the plan spends when no candidate diverges and the grid does not extend, in runs of ``steps``
        steps: the run, the race's steps, and the validation passes (``val_cost`` training steps each, one per
        score, the start's, the run's watch points and the commit's), read on subsets that fit the plan's
        validation share (a race that races on past the budget, within ``max_budget``, is not planned)."""
        plan = self.plan(steps)
        evals = plan.candidates + 2 + min(self.keep, plan.candidates) + 2 + len(plan.watches())
        return (steps + plan.race_steps() + min(evals * float(val_cost), plan.val_allowance)) / steps

    def _limits(self) -> tuple[float, float]:
        if self.limits is not None:
            return self.limits
        grid, reach = self.lrs, HALF_DECADE**self.extend
        return (min(grid) / reach, max(grid) * reach)

    def fit(
        self,
        model: nn.Module,
        *args: Any,
        steps: int | None = None,
        step_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        train: Iterable[Any] | None = None,
        val: Callable[[nn.Module], float] | Sequence[Any] | None = None,
        val_cost: float | None = None,
        score_fn: Callable[[nn.Module, Any], float] | None = None,
        params: Iterable[Any] | None = None,
        on_step: Callable[[int, float, float, bool], None] | None = None,
        race_only: bool = False,
        amp: bool | torch.dtype | None = None,
        accumulate: int = 1,
        max_grad_norm: float | None = None,
        process_group: Any = None,
        checkpoint_dir: str | None = None,
        race_groups: int = 1,
    ) -> AutoResult:
        """Train ``model`` for a budget of ``steps`` steps and commit the chosen model into it.

        ``fit(model, train, val, steps=..., step_fn=...)`` with ``step_fn(model, batch) -> loss`` (any batch:
        ``lambda m, b: m(**b).loss``), or ``fit(model, loss_fn, train, val, steps)`` on ``(inputs, targets)``.
        ``train``: batches (an iterable is iterated again when it runs out); ``val``: batches scored by the
        step's loss (or ``score_fn(model, batch)``), of which Auto reads a common subset sized to the budget, or
        a function ``model -> float``. ``val_cost``: a full validation pass in training steps (plans that do not
        depend on timing). ``params``: param groups (``weight_decay`` kept, ``lr_scale`` multiplies the lr).
        ``amp``, ``accumulate``, ``max_grad_norm``: :class:`TrainStep`, the same in race and run.
        ``process_group``: the ranks that decide together. ``on_step(step, loss, lr, live)``: the committed
        lineage's steps (its race steps replayed with ``live=False``). ``race_only``: stop at the branch point
        (``result.commit.finish()`` later; what the framework callbacks do). ``checkpoint_dir``: resumable
        (see :mod:`adaptlr.auto._journal`). ``race_groups``: under torch.distributed, spread the candidates over
        that many groups of ranks (a divisor of the world size; DDP or a plain module, validation batches): the
        race's wall time shrinks about that many times, each group racing at its own ranks' batch
        (``docs/auto.md``, "Racing in parallel"). The model ends with the committed state, in its train/eval mode.
        """
        if args:
            loss_fn, train, val, steps = _positional(args, loss_fn, train, val, steps)
        if train is None or val is None or steps is None:
            raise TypeError("Auto.fit needs train, val and steps")
        step = TrainStep(
            step_fn, loss_fn, amp=amp, accumulate=accumulate, max_grad_norm=max_grad_norm, score_fn=score_fn
        )
        return _fit.fit(
            self,
            model,
            train,
            val,
            int(steps),
            step,
            val_cost=val_cost,
            params=params,
            on_step=on_step,
            race_only=race_only,
            process_group=process_group,
            checkpoint_dir=checkpoint_dir,
            race_groups=race_groups,
        )


def _positional(args: tuple[Any, ...], loss_fn: Any, train: Any, val: Any, steps: Any) -> tuple[Any, Any, Any, Any]:
    """``(loss_fn, train, val[, steps])`` or ``(train, val)`` given by position to :meth:`Auto.fit`."""
    if len(args) == 4:
        return args
    if len(args) == 3:
        return (*args, steps)
    if len(args) == 2:
        return (loss_fn, *args, steps)
    raise TypeError("Auto.fit(model, train, val, steps=..., step_fn=...) or fit(model, loss_fn, train, val, steps)")
