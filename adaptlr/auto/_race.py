"""The race: rung 1 (every candidate from the start; the grid extends past a winning edge), rung 2 (the
survivors to the branch point, each annealed branch scored; a late candidate past a winning edge may join), and
the order of the finalists (:func:`rank_finalists`, by :func:`regime`). Budget: :mod:`._plan`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _dist
from ._grid import extension
from ._plan import Meter, Plan, replan_rung2
from ._racer import Racer, rank_finalists, regime, set_schedule
from ._schedules import branch_schedule, race_schedule
from ._step import Batches, TrainStep, device_of
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
    journal: Any = None  # a Journal: progress written to disk (resumable fit)
    alive_lrs: list[float] = field(default_factory=list)  # the rung-1 survivors
    phase: str = "rung1"  # where a resumed race stands
    offset: int = 0  # batches taken when the current phase's batches were drawn
    _rung1_batches: list[list[Any]] = field(default_factory=list, repr=False)

    # ---- training one lineage ------------------------------------------------------------------------------
    def train(self, racer: Racer, opt: torch.optim.Optimizer, scaler: Any, batches: list[list[Any]]) -> None:
        """Train ``racer`` one step per entry of ``batches`` (each the batches of one step), stopping as soon as
        its loss diverges on its own scale (any rank's divergence stops every rank)."""
        rule, device = racer.rule, device_of(self.model)
        for step_batches in batches:
            start = time.perf_counter()
            loss = self.step(self.model, opt, self.batches.taker(list(step_batches), self.step.accumulate), scaler)
            self.meter.trained(time.perf_counter() - start)
            racer.steps += 1
            racer.losses.append(loss)
            if _dist.any_true(rule.observe(loss), device, self.group):
                racer.diverged, racer.note = True, f"diverged at step {racer.steps} (loss {loss:.4g})"
                return

    def spent(self) -> float:
        """What the race has cost so far, in training steps: its measured wall time over the median seconds of a
        step (validation, snapshots and every other overhead counted as a user pays them), or, with ``val_cost``
        given (plans that do not depend on timing), training steps plus validation at that cost. Rank 0's value
        on every rank, so that every rank plans the same steps."""
        device = device_of(self.model)
        if self.validator.val_cost is None and self.meter.step_seconds > 0:
            value = self.meter.wall_steps
        else:
            value = self.meter.cost_steps(self.validator.row_cost(device))
        return _dist.broadcast_float(value, device, self.group)

    def _steps(self, n: int) -> list[list[Any]]:  # (n steps' batches)
        return [self.batches.take(self.step.accumulate) for _ in range(n)]

    def _resume(self, racer: Racer, key: str, schedule: Any) -> tuple[torch.optim.Optimizer, Any]:
        opt, scaler = self.make_optimizer(racer.lr), self.scaler()
        self.store.load(key, self.model, opt, scaler)
        set_schedule(opt, schedule)
        return opt, scaler

    # ---- rung 1 ------------------------------------------------------------------------------------------------
    def rung1(self) -> list[Racer]:
        """Every candidate from the start (the grid extending past a winning edge); the ``keep`` best survive."""
        if not self.racers:  # (a resumed race has its start and its sizes already)
            self.store.save("start", self.model)
            self.validator.probe(self.model)  # (times a validation row before the subsets are sized)
        batches = self._rung1_batches = self._steps(self.plan.rung1)
        raced = {r.lr for r in self.racers}
        pending = [lr for lr in self.lrs if lr not in raced]
        above, below = max(self.lrs), min(self.lrs)
        added = {True: sum(r.lr > above for r in self.racers), False: sum(r.lr < below for r in self.racers)}
        while pending:
            for lr in pending:
                self._rung1_one(Racer(lr), batches)
            pending = []
            for upward in (True, False):
                nxt = self._next_edge(upward, added[upward])
                if nxt is not None:
                    added[upward] += 1
                    pending.append(nxt)
        alive = self._survivors()
        if not alive:
            raise FloatingPointError(
                f"Auto: every candidate learning rate diverged within {self.plan.rung1} steps "
                f"(tried {sorted(r.lr for r in self.racers)}); {self.racers[0].note}"
            )
        self.alive_lrs = [r.lr for r in alive[: self.plan.keep]]
        return alive[: self.plan.keep]

    def _survivors(self) -> list[Racer]:
        """Rung 1's racers best first: by score; but when the best stalled at the start's score (the race's
        horizon saw no progress, as in a fine-tune from a good start), the largest learning rates within ``tie``
        of the best first: a longer run moves further, so near-ties go up."""
        alive = sorted((r for r in self.racers if not r.diverged), key=lambda r: r.score)
        if not alive or regime(alive[0].score, self.start_score, self.tie) != "stalled":
            return alive
        near = sorted(
            (r for r in alive if r.score <= alive[0].score + self.tie * abs(alive[0].score)), key=lambda r: -r.lr
        )
        return near + [r for r in alive if r not in near]

    def _rung1_one(self, racer: Racer, batches: list[list[Any]]) -> None:
        self.racers.append(racer)
        opt, scaler = self.make_optimizer(racer.lr), self.scaler()
        self.store.load("start", self.model)
        set_schedule(opt, race_schedule(racer.lr, self.plan))
        self.train(racer, opt, scaler, batches)
        first = not self.validator.counts
        if first:  # the first candidate's steps timed a step: size the validation subsets
            n, k = self.plan.candidates, self.plan.keep
            # every evaluation counted: rung 1's candidates and the start; the finalists, the start, a late
            # candidate (held in reserve), and the end of the run on the commit's (rung 2's) rows
            note = self.validator.size(self.plan, device_of(self.model), {"rung1": n + 1, "rung2": k + 2, "commit": 1})
            self.warnings += [note] if note else []
        if not racer.diverged:
            racer.scores.append((racer.steps, self.validator.score(self.model, "rung1")))
            self.store.save(racer.key, self.model, opt, scaler)
        if first:  # the start's score on the same rows: the scale of what racing improves
            self.store.load("start", self.model)
            self.start_score = self.validator.score(self.model, "rung1")
        if racer.diverged:
            self._record("rung1", 0)
            return
        by_score = sorted((r for r in self.racers if not r.diverged), key=lambda r: r.score)
        keep = {r.key for r in by_score[: self.plan.keep]} | {r.key for r in self._survivors()[: self.plan.keep]}
        for r in by_score:  # (memory: only the states still in the running are kept)
            if r.key not in keep and r.key in self.store:
                self.store.drop(r.key)
        self._record("rung1", 0)

    def _record(self, phase: str, offset: int, extra: dict[str, Any] | None = None) -> None:
        if self.journal is not None:
            self.journal.write(self, phase, offset, extra)

    def _next_edge(self, upward: bool, added: int) -> float | None:
        """A half-decade past the edge when the edge is the best or within ``tie`` of it, within the limits,
        ``extend`` steps and the budget (an extra candidate costs its rung-1 steps and one evaluation)."""
        alive = [r for r in self.racers if not r.diverged]
        if not alive or added >= self.extend:
            return None
        best = min(r.score for r in alive)
        edge = max(self.racers, key=lambda r: r.lr) if upward else min(self.racers, key=lambda r: r.lr)
        where = regime(best, self.start_score, self.tie)
        if where == "improved":  # a near-tie is a share of what the race improved
            band = self.tie * (self.start_score - best) if math.isfinite(self.start_score) else self.tie * abs(best)
        elif upward == (where == "stalled"):  # stalled: only larger lrs show more; hurt: only smaller hurt less
            band = self.tie * abs(best)
        else:
            return None
        if edge.diverged or edge.score > best + band:
            return None
        lr = extension([r.lr for r in self.racers], upward, self.limits)
        spare = self.plan.budget * self.plan.steps - self.spent()
        if lr is None or spare < (self.plan.steps - self.plan.rung1) + self.plan.race_steps(1) + 2 * self.plan.rung1:
            self.warnings.append(
                f"the best learning rate of rung 1 ({edge.lr:g}) is the {'largest' if upward else 'smallest'} "
                f"tried and the grid could not extend past it ({'limit' if lr is None else 'budget'} reached)"
            )
            return None
        return lr

    # ---- rung 2 and the choice --------------------------------------------------------------------------------
    def rung2(self, alive: list[Racer]) -> list[Racer]:
        """The survivors continue to the branch point; each annealed branch is scored; when the best is at an
        edge of what was tried, one more candidate past it races from the start (budget held for it). Finalists,
        best first."""
        device = device_of(self.model)
        edge = self._edge_candidate(alive)
        if self.phase != "rung2":  # (a resumed rung 2 keeps its plan and its batches)
            rc = self.validator.row_cost(device)
            val_rest = rc * ((len(alive) + 2 + (edge is not None)) * self.validator.rows_read("rung2"))
            extra = int(edge is not None)
            self.plan = replan_rung2(self.plan, self.spent(), val_rest, self.nominal, len(alive), extra)
            self.offset = self.batches.taken
            self.store.load("start", self.model)  # (the start on the rows the finalists are scored on)
            self.start_score2 = self.validator.score(self.model, "rung2")
        batches = self._steps(self.plan.rung2 - self.plan.rung1)
        branch = self._steps(self.plan.branch)  # every branch anneals on the same fresh batches
        for r in alive:
            if len(r.scores) < 2 and not r.diverged:  # (not done before an interruption)
                self._finalist(r, r.key, batches, branch)
        finalists = [r for r in alive if not r.diverged]
        if not finalists:
            raise FloatingPointError(
                f"Auto: every finalist diverged before step {self.plan.rung2} "
                f"({'; '.join(f'{r.lr:g}: {r.note}' for r in alive)})"
            )
        ranked = rank_finalists(finalists, self.tie, self.start_score2)
        if edge is not None and ranked[0].lr == edge[0]:
            late = next((r for r in self.racers if r.lr == edge[1]), None) or Racer(edge[1])
            if late not in self.racers:
                self.racers.append(late)
                self.alive_lrs.append(late.lr)
                self._finalist(late, "start", self._rung1_batches + batches, branch)
            if not late.diverged and late not in finalists:
                finalists.append(late)
        return self.order(finalists)

    def _finalist(self, r: Racer, key: str, batches: list[list[Any]], branch: list[list[Any]]) -> None:
        """Train ``r`` from the state ``key`` over ``batches`` to the branch point, then score its annealed
        branch."""
        opt, scaler = self._resume(r, key, race_schedule(r.lr, self.plan))
        self.train(r, opt, scaler, batches)
        if r.diverged:
            self.store.drop(r.key)
            self._record("rung2", self.offset)
            return
        self.store.save(r.key, self.model, opt, scaler)  # the branch point: the run continues from here
        set_schedule(opt, branch_schedule(r.lr, self.plan, r.steps))
        probe = Racer(r.lr, steps=r.steps, losses=list(r.losses), rule=copy.deepcopy(r.rule))
        self.train(probe, opt, scaler, branch)
        score = math.inf if probe.diverged else self.validator.score(self.model, "rung2")
        if len(r.scores) == 0:  # (a late candidate: its score at rung 1's step is not known)
            r.scores.append((self.plan.rung1, math.nan))
        r.scores.append((r.steps, score))
        self.store.save(r.key + "-branch", self.model)
        self._record("rung2", self.offset)

    def _edge_candidate(self, alive: list[Racer]) -> tuple[float, float] | None:
        """``(edge, past)`` when a survivor is the largest or smallest lr tried and a half-decade past it is
        within the limits and the extension count: the candidate rung 2 may still add."""
        tried = [r.lr for r in self.racers]
        added = sum(r.lr > max(self.lrs) or r.lr < min(self.lrs) for r in self.racers)
        late = any(r.scores and math.isnan(r.scores[0][1]) for r in alive)  # (one was added: a resumed race)
        if added >= 2 * self.extend or late:
            return None
        for upward in (False, True):
            edge = max(tried) if upward else min(tried)
            past = extension(tried, upward, self.limits)
            if past is not None and any(r.lr == edge for r in alive):
                return edge, past
        return None

    def order(self, finalists: list[Racer]) -> list[Racer]:
        ranked = rank_finalists(finalists, self.tie, self.start_score2)
        where = regime(min(r.score for r in ranked), self.start_score2, self.tie)
        if where != "improved":
            self.warnings.append(
                f"no finalist's annealed branch improved on the start ({self.start_score2:.4g}) by step "
                f"{self.plan.rung2} ({where}): "
                + (
                    "the largest learning rate within tie of the best was taken, as a longer run moves further "
                    if where == "stalled"
                    else "every candidate made the model worse; the lowest near the best was taken "
                )
                + f"({ranked[0].lr:g})"
            )
        return ranked

    def run(self) -> list[Racer]:
        """Race (or go on with a resumed race) and return the finalists, best first."""
        if self.phase == "rung1":
            return self.rung2(self.rung1())
        self._rung1_batches = self._steps(self.plan.rung1)  # (a late candidate of rung 2 trains on them too)
        self.batches.skip(self.offset - self.batches.taken)
        alive = [r for lr in self.alive_lrs for r in self.racers if r.lr == lr]
        if self.phase == "rung2":
            return self.rung2(alive)
        return self.order([r for r in alive if not r.diverged and len(r.scores) == 2])
