"""The commit: the winner trains on to the end of the run on the schedule it raced on, rolls back and steps down a
half-decade when it diverges (within the budget), is validated at its watch points (:func:`._plan.watch_points`),
and the best *validated* model is what the model holds at the end: the end of the run, the run's best watched
state (early stopping: a run that overfits), the winner's annealed branch, or, when none beats it, the model as
it came in. Every such turn is said in :attr:`Commit.warnings`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from . import _dist
from ._grid import HALF_DECADE, LR_SCALE
from ._race import Race
from ._racer import Racer, run_cost, set_schedule
from ._schedules import run_schedule
from ._sizing import lineage_cost
from ._step import device_of

__all__ = ["Commit"]

OnStep = Callable[[int, float, float, bool], None]


@dataclass
class Commit:
    """Continue ``winner`` (a finalist of ``race``) from its branch point to ``race.plan.steps`` on the run's
    schedule (:func:`~adaptlr.auto.run_schedule`, the one it raced on), then :meth:`finish`. ``snapshot_every``:
    the share of the run between rollback points (those the budget affords once the run and its watch are paid:
    :meth:`run`)."""

    race: Race
    winner: Racer
    keep_best: bool = True
    snapshot_every: float = 0.1
    max_rollbacks: int = 3
    lr: float = math.nan
    optimizer: torch.optim.Optimizer | None = None
    scaler: Any = None
    warnings: list[str] = field(default_factory=list)
    committed: str = ""
    val_score: float = math.inf
    rollbacks: int = 0
    points: list[int] = field(default_factory=list)  # the watch points the budget affords (:meth:`start`)
    marks: list[int] = field(default_factory=list)  # the rollback points after the first (:meth:`run`)
    # (step, score) at each watch point; the state of the first best is the store's "watch"
    history: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lr = self.winner.lr

    def schedule(self, lr: float | None = None) -> Any:
        """The run's schedule for peak ``lr`` (the winner's, or the lower one a rollback went on with): an
        ``adaptlr.schedules`` object, driven by the optimizer's clock."""
        return run_schedule(self.lr if lr is None else lr, self.race.plan)

    def start(self) -> torch.optim.Optimizer:
        """Load the winner's branch-point state into the model and a fresh inner optimizer on the run's schedule."""
        self.optimizer, self.scaler = self.race._resume(self.winner, self.winner.key, self.schedule())
        self.points = self._affordable()
        return self.optimizer

    def _affordable(self) -> list[int]:
        """The watch points after the branch point that fit what is left of the budget once the rest of the run
        and its final score are paid (evenly spread when not all fit): the watch is validation's last claim."""
        plan = self.race.plan
        points = [s for s in plan.watches() if s > plan.rung2] if self.keep_best else []
        return _spread(points, self._left(plan.rung2, 1), self._pass_cost()) if points else []

    def _pass_cost(self) -> float:  # (a validation pass on the commit's rows, in training steps)
        race = self.race
        return race.validator.row_cost(device_of(race.model)) * race.validator.rows_read("commit")

    def _left(self, at: int, passes: int) -> float:
        """What is left of the budget, in training steps, once the run from step ``at``, ``passes`` validation
        passes on the commit's rows and the run's end (a lineage's fixed costs: its state saved, the committed one
        loaded) are paid."""
        plan = self.race.plan
        rest = self._run_cost() * (plan.steps - at) + passes * self._pass_cost() + lineage_cost(self.race)
        return plan.budget * plan.steps - self.race.spent() - rest

    def _rollback_points(self, at: int, cost: float) -> list[int]:
        """The rollback points after the first (at ``at``), every ``snapshot_every`` of the run, that fit what
        is left once the run, its watch and its end are paid (evenly spread when not all fit); ``cost``: a
        point's, in training steps, as the first one measured (0 where plans are not timed: every point)."""
        plan = self.race.plan
        every = max(1, int(self.snapshot_every * plan.steps))
        points = list(range(at + every, plan.steps, every))
        return _spread(points, self._left(at, len([s for s in self.points if s > at]) + 1), cost)

    def _run_cost(self) -> float:  # (a step of the winner against the race's unit, where the plan is timed)
        race = self.race
        cost = run_cost([self.winner], race.meter) if race.own_cost()[1] else 1.0
        return _dist.broadcast_float(cost, device_of(race.model), race.group)  # (rank 0's: every rank agrees)

    def resume(self, extra: dict[str, Any]) -> torch.optim.Optimizer:
        """Take up the run at its last rollback point (a fit interrupted during the run)."""
        self.lr, self.rollbacks = float(extra["lr"]), int(extra["rollbacks"])
        self.warnings = list(extra["warnings"])
        self.points = [int(s) for s in extra.get("points", [])]
        self.marks = [int(s) for s in extra.get("marks", [])]
        self.history = [(int(a), float(b)) for a, b in extra.get("history", [])]
        self.optimizer, self.scaler = self.race._resume(self.winner, "run", self.schedule())
        return self.optimizer

    def replay(self, on_step: OnStep) -> None:
        """Tell ``on_step`` of the winner's steps in the race (its lineage from the start, on the run's schedule)."""
        schedule = self.schedule()
        for i, loss in enumerate(self.winner.losses):
            self._tell(on_step, i + 1, loss, schedule(i), False)

    def run(self, on_step: OnStep | None = None) -> bool:
        """Train the winner to the end of the run (:meth:`start` first); False when it had to stop early."""
        race, plan, w = self.race, self.race.plan, self.winner
        start = time.perf_counter()
        mark = self._mark()
        if not self.marks:  # (a resumed run keeps its points)
            seconds = time.perf_counter() - start
            cost = seconds / race.meter.step_seconds if race.own_cost()[1] else 0.0
            self.marks = self._rollback_points(w.steps, _dist.broadcast_float(cost, device_of(race.model), race.group))

        def after(lr: float) -> None:  # (lr: the one the step used; group["lr"] has moved on to the next)
            self.observe(race.model, w.steps)
            if on_step is not None:
                self._tell(on_step, w.steps, w.losses[-1], float(lr) / scale, True)

        while w.steps < plan.steps:
            if w.steps in self.marks and w.steps != mark["steps"]:
                mark = self._mark()
            scale = float(self.optimizer.param_groups[0].get(LR_SCALE, 1.0))
            todo = min([s for s in self.marks if s > w.steps] + [plan.steps]) - w.steps  # (to the next point)
            race.train(w, self.optimizer, self.scaler, _stream(race, todo), after)
            if w.diverged:
                if not self._rollback(mark, self.rollbacks):
                    return False
                self.rollbacks += 1
        return True

    def _tell(self, on_step: OnStep, *point: Any) -> None:  # (the user's callback: timed, not Auto's cost)
        start = time.perf_counter()
        on_step(*point)
        self.race.meter.outside += time.perf_counter() - start

    def due(self, step: int) -> bool:
        """Whether ``step`` is one of the run's watch points that the budget affords (:attr:`points`)."""
        return step in self.points

    def observe(self, model: torch.nn.Module, step: int) -> None:
        """At a watch point of the run (after the branch point, before the last step), score ``model`` on the
        commit's rows and keep its state when it is the best seen so far; elsewhere do nothing. The Lightning and
        Hugging Face callbacks call it after each step of the run they drive."""
        if not self.due(step):
            return
        score = self.race.validator.score(model, "commit")
        if score < self.best_watched()[1]:
            self.race.store.save("watch", model)
        self.history.append((step, score))

    def best_watched(self) -> tuple[int, float]:
        """The watch point that validated best so far, ``(step, score)`` (the first of equals; ``(0, inf)`` when
        none)."""
        return min(self.history, key=lambda sv: sv[1], default=(0, math.inf))

    def _mark(self) -> dict[str, Any]:
        self.race.store.save("run", self.race.model, self.optimizer, self.scaler)
        extra = {"lr": self.lr, "rollbacks": self.rollbacks, "warnings": list(self.warnings)}
        extra.update(points=list(self.points), marks=list(self.marks), history=list(self.history))
        self.race._record("run", self.race.position(), extra)
        return {"steps": self.winner.steps, "losses": len(self.winner.losses), "rule": copy.deepcopy(self.winner.rule)}

    def _rollback(self, mark: dict[str, Any], rollbacks: int) -> bool:
        """Back to the last rollback point with a half-decade lower lr; False when the budget or the rollback
        limit says stop (the run then ends early, said in the warnings)."""
        race, w = self.race, self.winner
        lost = w.steps - mark["steps"]
        spare = race.plan.budget * race.plan.steps - race.spent()
        if rollbacks >= self.max_rollbacks or spare < self._run_cost() * (race.plan.steps - mark["steps"]):
            self.warnings.append(f"the run at lr {self.lr:g} {w.note}; stopped there (no budget left to go on)")
            return False
        race.store.load("run", race.model, self.optimizer, self.scaler)
        new = self.lr / HALF_DECADE
        self.warnings.append(f"the run at lr {self.lr:g} {w.note}: rolled back {lost} steps, went on at lr {new:.3g}")
        self.lr = new
        set_schedule(self.optimizer, self.schedule())
        w.steps, w.losses, w.rule = mark["steps"], w.losses[: mark["losses"]], copy.deepcopy(mark["rule"])
        w.diverged = False
        return True

    def finish(self, model: torch.nn.Module | None = None, ended: bool = True) -> str:
        """Commit the best validated model: the end of the run (``ended``: it reached its last step), the run's
        best watched state, the winner's annealed branch, or the start. Returns ``"final"``, ``"watch"``,
        ``"branch"`` or ``"start"`` (on equal scores, in that order)."""
        race = self.race
        model = race.model if model is None else model
        final = race.validator.score(model, "commit") if ended else math.inf
        if not self.keep_best:
            self.committed, self.val_score = "final", final
            return self.committed
        race.store.save("final", model)
        start = race.start_score2  # (scored on these rows when rung 2 began)
        if not math.isfinite(start):  # (a race resumed from an older journal)
            race.store.load("start", model)
            start = race.validator.score(model, "commit")
        watched_step, watched = self.best_watched()
        options = {"final": final, "watch": watched, "branch": self.winner.score, "start": start}
        self.committed = min(options, key=lambda k: (options[k], list(options).index(k)))
        self.val_score = options[self.committed]
        source = {"final": "final", "watch": "watch", "branch": self.winner.key + "-branch", "start": "start"}
        race.store.load(source[self.committed], model)
        if self.committed == "watch":
            self.warnings.append(
                f"the run validated best at step {watched_step} ({watched:.4g}; its end {final:.4g}): "
                f"committed the model of step {watched_step} (early stopping: the run overfits, or its lr "
                f"{self.lr:g} is too high for this long a run)"
            )
        if self.committed == "start":
            self.warnings.append(
                f"no trained model validated better than the model as it came in ({start:.4g}; end of run "
                f"{final:.4g}, annealed branch {self.winner.score:.4g}): the model is left as it came in"
            )
        elif self.committed == "branch" and not ended:
            self.warnings.append(
                f"the run ended early: committed the winner's annealed branch of step {self.winner.scores[-1][0]}"
            )
        return self.committed


def _stream(race: Race, steps: int, chunk: int = 16) -> Any:
    """``steps`` steps' batches, fetched ``chunk`` steps at a time as the race fetches its rungs' (a step of the
    run then costs what the race measured; fetched one by one, Auto's bookkeeping of each fetch made the run's
    steps on linear regression 4% dearer than the race's); a run that diverges leaves the rest of its chunk."""
    while steps > 0:
        take = min(steps, chunk)
        steps -= take
        yield from race._steps(take)


def _spread(points: list[int], left: float, cost: float) -> list[int]:
    """As many of ``points`` as ``left`` affords at ``cost`` each (all when they cost nothing), evenly spread."""
    n = min(len(points), int(left // cost) if cost > 0 else len(points))
    return [points[(i * len(points)) // n] for i in range(n)] if n > 0 else []
