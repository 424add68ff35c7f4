"""What a race's plan learns as it goes: what a lineage costs beyond its steps and its validation
(:func:`lineage_cost`, measured over the lineages raced so far), rung 1 sized once its first candidate's first
steps have timed a step, with that cost held back for every lineage (:func:`size_rung1`), and rung 2 sized to what
rung 1 left (:func:`size_rung2`). Each reads a :class:`~adaptlr.auto.Race`; the rules are :mod:`._plan`'s
(:meth:`~adaptlr.auto.Meter.overhead`, :func:`~adaptlr.auto.reserve`, :func:`~adaptlr.auto.replan_rung2`)."""

from __future__ import annotations

import math
from typing import Any

from . import _dist
from ._plan import Plan, late_evaluations, replan_rung2, reserve, rest_cost
from ._racer import Racer, run_cost
from ._step import device_of

__all__ = ["lineage_cost", "own_cost", "row_cost", "size_rung1", "size_rung2", "spent"]


def spent(race: Any) -> float:
    """What ``race`` has cost so far, in training steps (:func:`own_cost`), rank 0's on every rank, so that every
    rank plans the same steps (racing in groups: the groups' work together). :meth:`Race.spent <Race>`."""
    value, wall = race.own_cost()
    if race.groups is not None:
        return race.groups.spent(race, value, wall)
    return _dist.broadcast_float(value, device_of(race.model), race.group)


def own_cost(race: Any) -> tuple[float, bool]:
    """This rank's cost so far in training steps, and whether it is wall time: the measured wall time over the
    unit, a plain step's typical seconds (every overhead counted as a user pays it), or, with ``val_cost`` given
    (plans that do not depend on timing), training steps plus validation at that cost."""
    if race.validator.val_cost is None and race.meter.step_seconds > 0:
        return race.meter.wall_steps, True
    return race.meter.cost_steps(race.validator.row_cost(device_of(race.model))), False


def lineage_cost(race: Any) -> float:
    """What a lineage costs beyond its steps and its validation (its optimizer built, its state saved and loaded),
    in training steps, as measured so far (0 where plans are not timed), rank 0's on every rank."""
    device = device_of(race.model)
    timed = race.own_cost()[1]
    over = race.meter.overhead(race.validator.row_cost(device), len(race.racers)) if timed else 0.0
    return _dist.broadcast_float(over, device, race.group)


def row_cost(race: Any) -> float:
    """A validation row's cost in training steps, as measured (0 before a row was timed)."""
    rc = race.validator.row_cost(device_of(race.model))
    return 0.0 if math.isnan(rc) else rc


def size_rung1(race: Any, batches: list[list[Any]], fixed: float) -> list[list[Any]]:
    """Rung 1 sized with what a lineage costs beyond its steps -- ``fixed`` seconds (the start saved, an optimizer
    built and the start loaded) over a step's, held back for every lineage (:func:`~adaptlr.auto.reserve`) -- once
    the first candidate's first steps timed one; rung 1's other batches (``batches`` grows to all of them)."""
    step = race.meter.step_seconds
    if step > 0:
        race.plan = reserve(race.plan, race.nominal, fixed / step)
    more = race._steps(race.plan.rung1 - len(batches))
    batches.extend(more)
    return more


def size_rung2(race: Any, alive: list[Racer], edge: tuple[float, float] | None) -> tuple[float, float] | None:
    """Rung 2 sized to what is left of the budget (:func:`~adaptlr.auto.replan_rung2`) for the ``alive``
    finalists, with budget held for the late candidate past ``edge`` (``(edge, past)``: :func:`._extend.
    edge_candidate`) only where the rest of the race still fits with it at one step a rung; where it does not,
    the candidate is dropped (said in the warnings; the race's ``late_held`` is journaled). Returns the edge kept.
    Held where it did not fit, it made the race overspend (a model at its optimum: 1.56 runs of a budget of 1.5
    planned at the end of rung 1)."""
    device = device_of(race.model)
    rc, over, spent = row_cost(race), lineage_cost(race), race.spent()
    cost = run_cost(alive, race.meter) if race.own_cost()[1] else 1.0  # (the finalists' steps, relative)
    cost = _dist.broadcast_float(cost, device, race.group)

    def plan(extra: int) -> tuple[Plan, bool]:  # (rung 2 sized, and whether the rest fits at one step a rung)
        val_rest = rc * late_evaluations(race.plan, len(alive), extra) * race.validator.rows_read("rung2")
        parts = {"extra": extra, "overhead": over, "cost": cost, "val_rest": val_rest}
        new = replan_rung2(race.plan, spent, val_rest, race.nominal, len(alive), extra, over, cost)
        return new, spent + rest_cost(new, len(alive), 1, 1, **parts) <= new.budget * new.steps

    if edge is not None:
        held, fits = plan(1)
        if fits:
            race.plan = held
            return edge
        race.warnings.append(
            f"the best learning rate of rung 1's survivors ({edge[0]:g}) is the "
            f"{'largest' if edge[1] > edge[0] else 'smallest'} tried; no budget was left to race one past it "
            f"({edge[1]:g}) from the start"
        )
        race.late_held = False
    race.plan = plan(0)[0]
    return None
