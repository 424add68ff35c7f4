"""The race: rung 1 (every candidate from the start; the grid extends past a winning edge), rung 2 (the
survivors to the branch point, each annealed branch scored; a late candidate past a winning edge may join), and
the order of the finalists (:func:`rank_finalists`, by :func:`regime`). Budget: :mod:`._plan`."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _dist
from ._extend import add_late, edge_candidate, look_longer, next_edge
from ._grid import spread_in_time
from ._lineage import train_lineage
from ._meter import Meter
from ._plan import Plan
from ._racer import Racer, order_finalists, rank_finalists, set_schedule, survivors
from ._schedules import branch_schedule, run_schedule
from ._sizing import own_cost, size_rung1, size_rung2, spent
from ._step import Batches, TrainStep, device_of, timed
from ._store import StateStore
from ._validate import Validator

__all__ = ["Race"]


@dataclass
class Race:
    """Everything a race needs; :meth:`run` races and returns the finalists, best first.

    ``make_optimizer(lr)`` builds the inner optimizer for one candidate; ``scaler()`` a fresh ``GradScaler``
    (or None); ``limits`` bound the grid's extension; ``tie`` is the near-tie tolerance."""

    model: nn.Module
    step: TrainStep
    make_optimizer: Callable[[float], torch.optim.Optimizer]
    scaler: Callable[[], Any]
    plan: Plan
    lrs: tuple[float, ...]
    batches: Batches
    validator: Validator
    store: StateStore
    meter: Meter
    nominal: tuple[float, float, float]
    limits: tuple[float, float]
    extend: int = 3
    tie: float = 0.02
    group: Any = None
    racers: list[Racer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    start_score: float = math.inf  # the start's score on rung 1's rows
    start_score2: float = math.inf  # ... and on rung 2's (the commit's) rows
    start_parts: list[list[float]] = field(default_factory=list, repr=False)  # (its batches: the noise of a gain)
    journal: Any = None  # a Journal: progress written to disk (resumable fit)
    groups: Any = None  # a RankGroups: candidates spread over groups of ranks (``_parallel``)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase ("rung1", "rung2")
    alive_lrs: list[float] = field(default_factory=list)  # the rung-1 survivors
    max_budget: float | None = None  # what a race that cannot tell its finalists apart may spend (``look_longer``)
    late_held: bool = True  # budget held in rung 2 for a late candidate past a winning edge (where it fits)
    looks: int = 0  # the doublings of rung 2's horizon made (``look_longer``), and the steps of the last
    look_steps: int = 0
    phase: str = "rung1"  # where a resumed race stands
    offset: int = 0  # batches taken when the current phase's batches were drawn
    _rung1_batches: list[list[Any]] = field(default_factory=list, repr=False)
    ahead: list[list[Any]] = field(default_factory=list, repr=False)  # (a branch's batches: its lineage's next)
    _saved: float = 0.0  # (the seconds the start's snapshot took: a lineage's fixed cost, as rung 1 is sized)

    train = train_lineage  # (one lineage's steps: :func:`._lineage.train_lineage`)
    spent, own_cost = spent, own_cost  # (what it has cost so far: :func:`._sizing.spent`, :func:`._sizing.own_cost`)

    def _alike(self) -> Any:  # (around work every rank group does alike: counted once, by group 0)
        return self.groups.alike(self.meter) if self.groups is not None else contextlib.nullcontext()

    def _racing_group(self) -> Any:  # (the ranks a racer trains on: its rank group's, racing in groups)
        return self.groups.mine if self.groups is not None and self.groups.racing else self.group

    def _steps(self, n: int) -> list[list[Any]]:
        """The next ``n`` steps' batches of the lineage racing: first those its branch trained on ahead of it."""
        out, self.ahead = self.ahead[:n], self.ahead[n:]
        return out + self._draw(n - len(out))

    def _branch_steps(self, n: int) -> list[list[Any]]:
        """The next ``n`` steps' batches, left for the lineages to train on after their branches (so that the
        winner's run sees the batches a run at its lr would see)."""
        self.ahead += self._draw(n - len(self.ahead))
        return self.ahead[:n]

    def _draw(self, n: int) -> list[list[Any]]:
        out = [self.batches.take(self.step.accumulate) for _ in range(n)]
        return self.groups.share(out) if self.groups is not None and self.groups.racing else out

    def position(self) -> int:
        """The batches the lineages have taken (those drawn ahead for a branch not counted): a resume's offset."""
        return self.batches.taken - len(self.ahead) * self.step.accumulate

    def _resume(self, racer: Racer, key: str, schedule: Any) -> tuple[torch.optim.Optimizer, Any]:
        opt, scaler = self.make_optimizer(racer.lr), self.scaler()
        self.store.load(key, self.model, opt, scaler)
        set_schedule(opt, schedule)
        return opt, scaler

    # ---- rung 1 ------------------------------------------------------------------------------------------------
    def rung1(self) -> list[Racer]:
        """Every candidate from the start (the grid extending past a winning edge); the ``keep`` best survive."""
        fresh = not self.racers  # (a resumed race has its start and its sizes already)
        if fresh:
            self._saved = timed(lambda: self.store.save("start", self.model))[1]
            with self._alike():
                self.validator.probe(self.model)  # (times a validation row before the subsets are sized)
        # a fresh race whose plan is timed sizes rung 1 once its first candidate's first two steps timed a step
        sizing = fresh and self.groups is None and self.validator.val_cost is None and self.plan.rung1 >= 3
        batches = self._rung1_batches = self._steps(2 if sizing else self.plan.rung1)
        raced = {r.lr for r in self.racers}
        pending = [lr for lr in spread_in_time(self.lrs) if lr not in raced]
        above, below = max(self.lrs), min(self.lrs)
        added = {True: sum(r.lr > above for r in self.racers), False: sum(r.lr < below for r in self.racers)}
        while pending:
            self._round([Racer(lr) for lr in pending], batches)
            pending = []
            for upward in (True, False):
                nxt = next_edge(self, upward, added[upward], len(pending))
                if nxt is not None:
                    added[upward] += 1
                    pending.append(nxt)
        alive = survivors(self.racers, self.start_racer(first=True), self.tie)
        if not alive:
            raise FloatingPointError(
                f"Auto: every candidate learning rate diverged within {self.plan.rung1} steps "
                f"(tried {sorted(r.lr for r in self.racers)}); {self.racers[0].note}"
            )
        self.alive_lrs = [r.lr for r in alive[: self.plan.keep]]
        return alive[: self.plan.keep]

    def _round(self, racers: list[Racer], batches: list[list[Any]]) -> None:
        """Race ``racers`` through rung 1: one after the other, or spread over the rank groups (each group trains
        its share; the first candidate's steps size the validation subsets, together)."""
        if self.groups is not None:
            self.groups.rung1(self, racers, batches)
            return
        for r in racers:
            self.racers.append(r)
            first, done = not self.validator.counts, self.meter.segment()
            state = self._rung1_train(r, batches)
            self._rung1_score(r, state, first)
            done(1)  # (one lineage: what it cost beyond its steps and its validation, Meter.overhead)
            self._record("rung1", 0)

    def _rung1_train(self, racer: Racer, batches: list[list[Any]]) -> tuple[torch.optim.Optimizer, Any]:
        (opt, scaler), fixed = timed(lambda: self._resume(racer, "start", run_schedule(racer.lr, self.plan)))
        self.train(racer, opt, scaler, batches)
        if len(batches) < self.plan.rung1:  # (the first candidate of a race that sizes rung 1 now)
            more = size_rung1(self, batches, self._saved + fixed)
            if not racer.diverged:
                self.train(racer, opt, scaler, more, fresh=False)
        return opt, scaler

    def _rung1_score(self, racer: Racer | None, state: Any, first: bool) -> None:
        """Score ``racer`` (trained: ``state`` its optimizer and scaler) and keep its state. ``first``: the first
        candidate's steps timed a step: size the validation subsets, and score the start on rung 1's rows."""
        if first:
            self._size()
        if racer is not None and not racer.diverged:
            racer.scores.append((racer.steps, self.validator.score(self.model, "rung1")))
            racer.parts = self.validator.parts
            self.store.save(racer.key, self.model, *state)
        if first:  # the start's score on the same rows: the scale of what racing improves
            with self._alike():
                self.store.load("start", self.model)
                self.start_score = self._agreed(self.validator.score(self.model, "rung1"))
                self.start_parts = self.validator.parts  # (rung 2 scores the start again, on its rows)
        if self.groups is None:
            self._prune()

    def _size(self) -> None:
        with self._alike():
            n, k = self.plan.candidates, self.plan.keep
            # every evaluation counted: rung 1's candidates and the start; the finalists, the start, a late
            # candidate (held in reserve); the run's watch points and its end on the commit's (rung 2's) rows
            evaluations = {"rung1": n + 1, "rung2": k + 2, "commit": 1 + len(self.plan.watches())}
            note = self.validator.size(self.plan, device_of(self.model), evaluations)
        self.warnings += [note] if note else []

    def _agreed(self, value: float) -> float:  # (rank 0's, when groups score apart: equal up to rounding)
        return value if self.groups is None else _dist.broadcast_float(value, device_of(self.model), self.group)

    def _prune(self) -> None:
        """Drop the states no longer in the running (memory: only those of the survivors-to-be are kept)."""
        k, by_score = self.plan.keep, sorted((r for r in self.racers if not r.diverged), key=lambda r: r.score)
        keep = {r.key for r in by_score[:k] + survivors(self.racers, self.start_racer(first=True), self.tie)[:k]}
        for r in by_score:
            if r.key not in keep and r.key in self.store:
                self.store.drop(r.key)

    def _record(self, phase: str, offset: int, extra: dict[str, Any] | None = None) -> None:
        if self.journal is not None:
            self.journal.write(self, phase, offset, extra)

    # ---- rung 2 and the choice --------------------------------------------------------------------------------
    def rung2(self, alive: list[Racer]) -> list[Racer]:
        """The survivors continue to the branch point; each annealed branch is scored; when the best is at an
        edge of what was tried, one more candidate past it races from the start (where the budget holds it:
        :func:`~adaptlr.auto._sizing.size_rung2`). Finalists, best first."""
        edge = edge_candidate(self, alive) if self.late_held else None
        if self.phase != "rung2":  # (a resumed rung 2 keeps its plan, its batches and its reserve)
            edge = size_rung2(self, alive, edge)
            self.offset = self.position()
            with self._alike():
                self.store.load("start", self.model)  # (the start on the rows the finalists are scored on)
                self.start_score2 = self._agreed(self.validator.score(self.model, "rung2"))
                self.start_parts = self.validator.parts
        batches = self._steps(self.plan.rung2 - self.plan.rung1)
        branch = self._branch_steps(self.plan.branch)  # every branch anneals on the same batches
        todo = [r for r in alive if len(r.scores) < 2 and not r.diverged]  # (not done before an interruption)
        self._finalists(todo, batches, branch, from_start=False)
        finalists = [r for r in alive if not r.diverged]
        if not finalists:
            raise FloatingPointError(
                f"Auto: every finalist diverged before step {self.plan.rung2} "
                f"({'; '.join(f'{r.lr:g}: {r.note}' for r in alive)})"
            )
        if edge is not None and rank_finalists(finalists, self.tie, self.start_racer())[0].lr == edge[0]:
            add_late(self, edge[1], finalists, self._rung1_batches + batches, branch)
        return self.order(look_longer(self, finalists))

    def _finalists(
        self, racers: list[Racer], batches: list[list[Any]], branch: list[list[Any]], from_start: bool
    ) -> None:
        """:meth:`_finalist` for each of ``racers`` (from its rung-1 state, or ``from_start``): one after the
        other, or spread over the rank groups (a survivor's state moved to an idle group where that evens them)."""
        if self.groups is not None:
            self.groups.finalists(self, racers, batches, branch, from_start)
            return
        for r in racers:
            self._finalist(r, "start" if from_start else r.key, batches, branch)

    def _finalist(self, r: Racer, key: str, batches: list[list[Any]], branch: list[list[Any]]) -> None:
        """Train ``r`` from the state ``key`` over ``batches`` to the branch point, then score its annealed
        branch."""
        done = self.meter.segment()  # (two lineages: the branch point's and its branch's)
        opt, scaler = self._resume(r, key, run_schedule(r.lr, self.plan))
        self.train(r, opt, scaler, batches)
        if r.diverged:
            self.store.drop(r.key)
            done(1)
        else:
            self.store.save(r.key, self.model, opt, scaler)  # the branch point: the run continues from here
            set_schedule(opt, branch_schedule(r.lr, self.plan, r.steps))
            probe = Racer(r.lr, steps=r.steps, losses=list(r.losses), rule=copy.deepcopy(r.rule))
            self.train(probe, opt, scaler, branch)
            score = math.inf if probe.diverged else self.validator.score(self.model, "rung2")
            r.parts = self.validator.parts if not probe.diverged else []
            if len(r.scores) == 0:  # (a late candidate: its score at rung 1's step is not known)
                r.scores.append((self.plan.rung1, math.nan))
            r.scores.append((r.steps, score))
            self.store.save(r.key + "-branch", self.model)
            done(2)
        extra = {"looks": self.looks, "x": self.look_steps, "late": self.late_held}  # (rung 2, or a doubling)
        self._record("look" if self.phase == "look" else "rung2", self.offset, extra)

    def start_racer(self, first: bool = False) -> Racer:  # (the start, as scored on rung 2's rows, or rung 1's)
        return Racer(0.0, scores=[(0, self.start_score if first else self.start_score2)], parts=self.start_parts)

    def order(self, finalists: list[Racer]) -> list[Racer]:
        ranked, note = order_finalists(finalists, self.tie, self.start_racer(), self.plan.rung2)
        self.warnings += [note] if note else []
        return ranked

    def run(self) -> list[Racer]:
        """Race (or go on with a resumed race) and return the finalists, best first (racing in groups: the
        winner's state then on every rank, every rank training on together)."""
        finalists = self._run()
        if self.groups is not None:
            self.groups.join(self, finalists[0])
        return finalists

    def _run(self) -> list[Racer]:
        if self.phase == "rung1":
            alive, self.seconds["rung1"] = timed(self.rung1)
            finalists, self.seconds["rung2"] = timed(lambda: self.rung2(alive))
            return finalists
        self._rung1_batches = self._steps(self.plan.rung1)  # (a late candidate of rung 2 trains on them too)
        self.batches.skip(self.offset - self.batches.taken)
        alive = [r for lr in self.alive_lrs for r in self.racers if r.lr == lr]
        if self.phase == "rung2":
            return self.rung2(alive)
        if self.phase == "look":
            return self.order(look_longer(self, [r for r in alive if not r.diverged], resumed=True))
        return self.order([r for r in alive if not r.diverged and len(r.scores) >= 2])
