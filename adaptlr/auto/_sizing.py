"""What a race's plan learns as it goes: what a lineage costs beyond its steps and its validation
(:func:`lineage_cost`, measured over the lineages raced so far), and rung 1 sized once its first candidate's first
steps have timed a step, with that cost held back for every lineage (:func:`size_rung1`). Each reads a
:class:`~adaptlr.auto.Race`; the rules are :mod:`._plan`'s (:meth:`~adaptlr.auto.Meter.overhead`,
:func:`~adaptlr.auto.reserve`)."""

from __future__ import annotations

from typing import Any

from . import _dist
from ._plan import reserve
from ._step import device_of

__all__ = ["lineage_cost", "size_rung1"]


def lineage_cost(race: Any) -> float:
    """What a lineage costs beyond its steps and its validation (its optimizer built, its state saved and loaded),
    in training steps, as measured so far (0 where plans are not timed), rank 0's on every rank."""
    device = device_of(race.model)
    timed = race.own_cost()[1]
    over = race.meter.overhead(race.validator.row_cost(device), len(race.racers)) if timed else 0.0
    return _dist.broadcast_float(over, device, race.group)


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
