"""Scoring racers on held-out data, within the plan's share of the budget.

The rule (see ``docs/auto.md``): every evaluation of a round reads the *same* subset of the validation batches
(a fixed shuffle's first batches: common random numbers for the comparison), sized so that the round fits its
share of the validation allowance at the *measured* cost of a row; the subsets grow from rung 1 to rung 2 to the
commit, and the decisions that matter most (the finalists, the commit) read all of it whenever the budget allows.
A validation *function* cannot be subset: it is timed and called as it is, and Auto warns when it costs more than
its share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from . import _dist
from ._meter import Meter
from ._plan import Plan, validation_rows
from ._step import TrainStep, device_of, rows, timed

__all__ = ["Validator"]

ValFn = Callable[[nn.Module], float]


class Validator:
    """Score a model on the validation data: ``val`` is a sequence of batches (scored by the training step's
    loss, the mean over rows) or a function ``model -> float`` (lower is better). ``val_cost``: a full pass's cost
    in training steps, to plan without timing (reproducible plans); by default the cost is measured."""

    def __init__(
        self,
        val: ValFn | Sequence[Any],
        step: TrainStep,
        meter: Meter,
        *,
        val_cost: float | None = None,
        group: Any = None,
    ) -> None:
        self.step, self.meter, self.group = step, meter, group
        self.score_group = group  # the ranks a score is summed over (a racing group's, racing in groups)
        self.fn: ValFn | None = val if callable(val) else None
        self.batches: list[Any] = [] if self.fn is not None else list(val)  # type: ignore[arg-type]
        if self.fn is None and not self.batches:
            raise ValueError("Auto: the validation data is empty")
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(0)).tolist()
        self.use([self.batches[i] for i in order])
        self.val_cost = val_cost
        self.counts: dict[str, int] = {}  # round -> batches each evaluation of it reads
        self.parts: list[list[float]] = []  # the last score's batches, [mean, rows] each (every rank's, in order)

    def use(self, batches: list[Any]) -> None:
        """Score on ``batches`` (in this order: a subset is their first batches)."""
        self.batches = batches
        self.total_rows = sum(rows(b) or 1 for b in self.batches) if self.fn is None else 1

    def row_cost(self, device: torch.device) -> float:
        """A row's cost in training steps: ``val_cost / total_rows`` when given, else measured; the same value on
        every rank (rank 0's: the ranks' shards may differ in size)."""
        value = float(self.val_cost) / self.total_rows if self.val_cost is not None else self.meter.row_cost
        return _dist.broadcast_float(value, device, self.group)

    def size(self, plan: Plan, device: torch.device, evaluations: dict[str, int]) -> str | None:
        """Size each round's subset to the plan (call once a training step and a validation pass were timed).
        Returns what to say when even the smallest subset (one batch, or one call of a function) costs more than
        validation's share of the budget (the race keeps its steps: the run then costs more than the budget)."""
        rc = self.row_cost(device)
        wanted = validation_rows(plan, self.total_rows, rc, evaluations)
        if self.fn is not None:
            self.counts = dict.fromkeys(wanted, 1)
        else:
            prefix = [0]
            for b in self.batches:
                prefix.append(prefix[-1] + (rows(b) or 1))
            self.counts = {
                name: _dist.min_int(max(1, sum(1 for p in prefix[1:] if p <= m)), device, self.group)
                for name, m in wanted.items()  # (whole batches that stay within the rows)
            }
        cost = sum(evaluations.get(r, 0) * self.rows_read(r) * rc for r in self.counts)
        if cost <= 1.25 * plan.val_allowance:
            return None
        fix = "pass validation batches (Auto reads a subset sized to the budget) or a cheaper function"
        return (
            f"validation costs more than its share of the budget even at its smallest ({cost:.3g} training steps "
            f"against {plan.val_allowance:.3g}): the run costs more than the budget (the race keeps its steps); "
            + (fix if self.fn is not None else "pass smaller validation batches, or give a longer run")
        )

    def rows_read(self, round_: str) -> int:
        """Validation rows one evaluation of ``round_`` reads (a function counts as its rows all)."""
        if self.fn is not None:
            return self.total_rows
        return sum(rows(b) or 1 for b in self.batches[: self.counts.get(round_, 1)])

    def probe(self, model: nn.Module) -> float:
        """Score on the first batch alone, twice: the second pass times a validation row before the plan is
        sized (the first carries one-off costs; both are counted)."""
        self._score(model, 1, sample=False)
        return self._score(model, 1)

    def score(self, model: nn.Module, round_: str) -> float:
        """Score the model for a decision of ``round_`` ("rung1", "rung2" or "commit"); lower is better, a
        non-finite score is ``inf``."""
        return self._score(model, self.counts.get(round_, len(self.batches) or 1))

    def _score(self, model: nn.Module, count: int, sample: bool = True) -> float:
        device = device_of(model)
        if self.fn is not None:
            fn, self.parts = self.fn, []

            def call() -> tuple[float, int]:
                with torch.no_grad():
                    was = model.training
                    model.eval()
                    try:
                        value = float(fn(model))
                    finally:
                        model.train(was)
                total, n = _dist.sum2(value, 1.0, device, self.score_group)
                return total / n, 1

            (value, n), seconds = timed(call)
        else:
            parts: list[list[float]] = []
            (value, n), seconds = timed(lambda: self.step.score(model, self.batches[:count], self.score_group, parts))
            self.parts = _dist.gather_lists(parts, self.score_group)
        self.meter.validated(seconds, n, sample)
        return value if math.isfinite(value) else math.inf
