"""What a race spends, measured: training steps, validation rows and the seconds of each, and the typical step
that the budget is counted in (:class:`Meter`). The plan's rules that read it live in :mod:`._plan`."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Meter", "typical"]


@dataclass
class Meter:
    """What a race spent: training steps, validation rows, and the seconds of each (measured with
    ``time.perf_counter``). ``step_seconds`` is the typical seconds of a training step seen so far (after the
    first), its batches' fetching included (a plain run fetches every step's batches; the race shares one fetch
    among its candidates), ``row_cost`` the median seconds of a validation row over it."""

    train_steps: int = 0
    val_rows: int = 0
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    warm: float = 0.0
    outside: float = 0.0  # seconds in the user's callbacks (on_step: logging, evaluations); a plain run pays them
    batches_per_step: int = 1  # (gradient accumulation)
    fetch_seconds: float = 0.0  # fetching training batches, after the first (a DataLoader's workers start)
    fetched: int = 0
    _fetch_seen: bool = False
    _step_times: list[float] = field(default_factory=list)
    _other_times: list[float] = field(default_factory=list)  # (the first step, and each lineage's first two)
    _val_rates: list[float] = field(default_factory=list)
    _loop_times: list[float] = field(default_factory=list)  # (whole loop iterations: :attr:`loop_cost`)
    # each lineage segment's (seconds, steps, validation rows, lineages in it): :meth:`overhead`'s robust estimate
    _segments: list[tuple[float, int, int, int]] = field(default_factory=list)

    def fetch(self, seconds: float, batches: int) -> None:
        """Count ``batches`` training batches fetched in ``seconds`` (the first fetch's are one-off costs)."""
        if self._fetch_seen:
            self.fetch_seconds += seconds
            self.fetched += batches
        else:
            self._fetch_seen = True
            self.warm += seconds

    def trained(self, seconds: float, steps: int = 1, sample: bool = True, loop: float | None = None) -> None:
        """Count ``steps`` training steps taken in ``seconds``; ``sample=False`` keeps them out of the step-time
        estimate (a lineage's first two steps: its fresh optimizer's state set up, caches cold; its cost).
        ``loop``: the seconds of the whole loop iteration around the step (:attr:`loop_cost`)."""
        first = not self.train_steps
        if first:
            self.warm += seconds  # the first step carries one-off costs (a kernel compiled or loaded)
        self.train_steps += steps
        self.train_seconds += seconds
        times = self._step_times if sample and not first else self._other_times
        if len(times) < 1024:
            times.append(seconds / max(steps, 1))
        if loop is not None and sample and not first and len(self._loop_times) < 1024:
            self._loop_times.append(loop / max(steps, 1))

    def validated(self, seconds: float, rows: int, sample: bool = True) -> None:
        """Count a validation pass; ``sample=False`` keeps its seconds out of the row-cost estimate (a first
        pass, which carries one-off costs)."""
        self.val_rows += rows
        self.val_seconds += seconds
        if sample and rows and len(self._val_rates) < 256:
            self._val_rates.append(seconds / rows)

    @property
    def step_seconds(self) -> float:
        """The seconds of a training step, the unit the budget is counted in: the mean of the steps seen after the
        first (whose one-off costs, such as a kernel compiled, a plain run pays too) and after each lineage's first
        two (its optimizer's state set up, caches cold: a cost of the lineage, in :meth:`overhead`), each at most
        twice their median (:func:`typical`), its batches' fetching in. A race's few steps a candidate carry its
        warm-up, which a long run does not: linear regression's first candidate in a process took 894, 407, 246 and
        232 us a step where the run's took 132 us; with the plain mean, every second of the race looked a quarter
        cheaper than it was (1.63 runs spent of a budget of 1.5). Not the median either: a long run's steps are
        skewed (the same run's median 136 us, its mean 140 us, at most 1.7 times the median)."""
        times = self._step_times or self._other_times[1:] or self._other_times
        return typical(times) + self._fetch_per_step() if times else math.nan

    @property
    def loop_cost(self) -> float:
        """What a step of Auto's loop costs in :attr:`step_seconds` (at least 1): its bookkeeping around the step
        (the losses and timings kept, the watch, the next batches handed over) is Auto's cost, which a plain loop
        does not pay: 1.002 on a ResNet's 4 ms steps, 1.01 on an MLP's 0.2-0.3 ms and on linear regression's 0.14
        ms. 1.0 before 5 steps were timed (one step's ratio is noise: rung 1, sized on it, once fell to two steps)."""
        unit = self.step_seconds
        if len(self._loop_times) < 5 or not unit > 0:
            return 1.0
        return max(1.0, (typical(self._loop_times) + self._fetch_per_step()) / unit)

    def _fetch_per_step(self) -> float:
        return self.fetch_seconds / self.fetched * self.batches_per_step if self.fetched else 0.0

    def relative(self, seconds: float) -> float:
        """A step that trains in ``seconds`` (its batches' fetching left out) over the unit (:attr:`step_seconds`;
        1.0 before a step was timed)."""
        unit = self.step_seconds
        return (seconds + self._fetch_per_step()) / unit if unit > 0 else 1.0

    @property
    def row_cost(self) -> float:
        """A validation row's cost in training steps (measured; nan before both were seen)."""
        if not self._val_rates or math.isnan(self.step_seconds):
            return math.nan
        return statistics.median(self._val_rates) / max(self.step_seconds, 1e-12)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def wall_steps(self) -> float:
        """The wall time so far in training steps (after the first step's one-off costs, and without the user's
        callbacks, which a plain run pays too): what the budget is counted in when validation is timed."""
        return self._own_seconds() / self.step_seconds + 1

    def segment(self) -> Callable[[int], None]:
        """Start timing a lineage segment (a candidate's rung 1, a finalist's rung 2 with its branch); call what
        this returns with the lineages the segment raced, once it is done (:meth:`overhead`)."""
        seconds, steps, rows = self._own_seconds(), self.train_steps, self.val_rows

        def done(lineages: int) -> None:
            if len(self._segments) < 1024:
                taken = (self._own_seconds() - seconds, self.train_steps - steps, self.val_rows - rows, lineages)
                self._segments.append(taken)

        return done

    def _own_seconds(self) -> float:  # (the wall time the budget counts: after the one-offs, without callbacks)
        return self.seconds - self.warm - self.outside

    def overhead(self, row_cost: float, lineages: int) -> float:
        """The wall time beyond training steps and validation (at ``row_cost``), in training steps, per lineage
        (optimizers built, states saved and loaded: what each candidate costs besides its steps). Once three
        lineage segments were timed (:meth:`segment`), a segment's is the median of theirs (per lineage), and
        what fell outside every segment is shared among the lineages: the machine pausing the process in one
        segment (a busy machine: 35-90 ms of pauses in a quantile MLP's 0.2 s race) is not a cost every lineage to
        come pays. Spread over the lineages as a mean, such a pause was 7-19 steps a lineage instead of 2-4,
        held back eight times over for rung 2's finalists and the run: rung 2 fell to one step in 6 of 8 races
        of one seed (docs/auto.md)."""
        total = max(0.0, self.wall_steps - self.cost_steps(row_cost))
        mean = total / max(1, lineages)
        unit, rc = self.step_seconds, 0.0 if math.isnan(row_cost) else row_cost
        if len(self._segments) < 3 or not unit > 0:
            return mean
        beyond = [(max(0.0, t / unit - n - rc * r), k) for t, n, r, k in self._segments]
        median = statistics.median(b / max(1, k) for b, k in beyond)
        return min(mean, median + max(0.0, total - sum(b for b, _ in beyond)) / max(1, lineages))

    def cost_steps(self, row_cost: float | None = None) -> float:
        """Training steps plus validation counted in training steps (``row_cost`` per row, measured by default)."""
        rc = self.row_cost if row_cost is None else row_cost
        return self.train_steps + (0.0 if math.isnan(rc) else rc * self.val_rows)


def typical(times: list[float], cap: float = 2.0) -> float:
    """The mean of ``times``, each at most ``cap`` times their median (a winsorized mean): what a step costs on
    average over a long run, without a race's warm-up (a few steps at several times the rest)."""
    bound = cap * statistics.median(times)
    return statistics.fmean(min(t, bound) for t in times)
