"""The grid and the horizon that follow the evidence: past an edge of what was tried that wins or ties rung 1, a
half-decade further (:func:`next_edge`, within the limits, the extension count and the budget); the one late
candidate rung 2 may still add past a winning edge (:func:`edge_candidate`); and a race that cannot tell its
finalists from the start races them on (:func:`look_longer`, within ``max_budget``). Each reads a
:class:`~adaptlr.auto.Race`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from . import _dist
from ._grid import extension
from ._plan import late_evaluations, rest_cost
from ._racer import Racer, blind, regime
from ._sizing import lineage_cost, row_cost
from ._step import device_of

__all__ = ["add_late", "edge_candidate", "look_longer", "next_edge"]


def next_edge(race: Any, upward: bool, added: int, queued: int = 0) -> float | None:
    """A half-decade past the edge when the edge is the best or within ``tie`` of it, within the limits,
    ``extend`` steps and the budget (:func:`_affords_candidate`; ``queued``: candidates already added to this
    round, not raced yet)."""
    alive = [r for r in race.racers if not r.diverged]
    if not alive or added >= race.extend:
        return None
    best = min(r.score for r in alive)
    edge = max(race.racers, key=lambda r: r.lr) if upward else min(race.racers, key=lambda r: r.lr)
    where = regime(best, race.start_score, race.tie)
    if where == "improved":  # a near-tie is a share of what the race improved
        band = race.tie * (race.start_score - best) if math.isfinite(race.start_score) else race.tie * abs(best)
    elif upward == (where == "stalled"):  # stalled: only larger lrs show more; hurt: only smaller hurt less
        band = race.tie * abs(best)
    else:
        return None
    if edge.diverged or edge.score > best + band:
        return None
    lr = extension([r.lr for r in race.racers], upward, race.limits)
    if lr is None or not _affords_candidate(race, 1 + queued):
        race.warnings.append(
            f"the best learning rate of rung 1 ({edge.lr:g}) is the {'largest' if upward else 'smallest'} "
            f"tried and the grid could not extend past it ({'limit' if lr is None else 'budget'} reached)"
        )
        return None
    return lr


def _affords_candidate(race: Any, new: int) -> bool:
    """Whether ``new`` more rung-1 candidates (each its steps, its score and a lineage's fixed costs) fit the
    budget with the least rest of the race after them: rung 2 one step long and each branch one step
    (:func:`~adaptlr.auto.rest_cost`, the validation to come included), then the run. An extension that left
    less made the race overspend (linear regression's rung 1 extended to ten candidates, its rung 2 one step
    long; its fit 1.57-1.64 runs of a budget of 1.5 by its own account)."""
    plan, v = race.plan, race.validator
    rc, over, loop = row_cost(race), lineage_cost(race), _loop_cost(race)
    own = new * (loop * plan.rung1 + over + rc * v.rows_read("rung1"))
    k = min(plan.keep, len([r for r in race.racers if not r.diverged]) + new)
    val_rest = rc * late_evaluations(plan, k, 0) * v.rows_read("rung2")
    rest = rest_cost(plan, k, 1.0, 1.0, overhead=over, cost=loop, val_rest=val_rest)
    return race.spent() + own + rest <= plan.budget * plan.steps


def edge_candidate(race: Any, alive: list[Racer]) -> tuple[float, float] | None:
    """``(edge, past)`` when a survivor is the largest or smallest lr tried and a half-decade past it is
    within the limits and the extension count: the candidate rung 2 may still add."""
    tried = [r.lr for r in race.racers]
    added = sum(r.lr > max(race.lrs) or r.lr < min(race.lrs) for r in race.racers)
    late = any(r.scores and math.isnan(r.scores[0][1]) for r in alive)  # (one was added: a resumed race)
    if added >= 2 * race.extend or late:
        return None
    for upward in (False, True):
        edge = max(tried) if upward else min(tried)
        past = extension(tried, upward, race.limits)
        if past is not None and any(r.lr == edge for r in alive):
            return edge, past
    return None


def add_late(race: Any, lr: float, finalists: list[Racer], batches: list[Any], branch: list[Any]) -> None:
    """The late candidate ``lr`` (past a winning edge) races from the start over ``batches`` (rung 1's and rung
    2's) to the branch point, its branch scored; it joins ``finalists`` unless it diverged."""
    late = next((r for r in race.racers if r.lr == lr), None) or Racer(lr)
    if late not in race.racers:
        race.racers.append(late)
        race.alive_lrs.append(late.lr)
        race._finalists([late], batches, branch, from_start=True)
    if not late.diverged and late not in finalists:
        finalists.append(late)


def look_longer(race: Any, finalists: list[Racer], resumed: bool = False) -> list[Racer]:
    """While the race cannot tell its finalists from the start (:func:`~adaptlr.auto.blind`: a plateau, or a
    horizon too short to show progress), race them on: each continues from its branch point for as many steps
    again (the horizon doubles, at most to half the run) on the same batches, and a new annealed branch is
    scored. Each doubling must fit ``race.max_budget`` runs with the rest of the run and its validation; each is
    said in the warnings. ``resumed``: take up a doubling a resumed race was in. Returns the finalists left."""
    plan = race.plan
    if not resumed and _cap(race) <= plan.budget:  # (the default: never past the budget)
        return finalists
    while True:
        if not resumed:
            x = min(race.plan.rung2, race.plan.steps // 2 - race.plan.rung2)
            if x < 1 or not blind(finalists, race.tie, race.start_racer()) or not _affords(race, finalists, x):
                return finalists
            before = race.plan.rung2
            race.plan = dataclasses.replace(race.plan, rung2=before + x)
            race.looks, race.look_steps, race.phase, race.offset = race.looks + 1, x, "look", race.position()
            race.warnings.append(
                f"the race could not tell its finalists ({', '.join(f'{r.lr:g}' for r in finalists)}) from the "
                f"start by step {before}: it raced them on to step {race.plan.rung2} (budget {plan.budget:g} runs, "
                f"max_budget {_cap(race):g})"
            )
        resumed = False
        batches, branch = race._steps(race.look_steps), race._branch_steps(race.plan.branch)
        todo = [r for r in finalists if len(r.scores) < 2 + race.looks]
        race._finalists(todo, batches, branch, from_start=False)
        if all(r.diverged for r in finalists):
            raise FloatingPointError(
                f"Auto: every finalist diverged before step {race.plan.rung2} "
                f"({'; '.join(f'{r.lr:g}: {r.note}' for r in finalists)})"
            )
        finalists = [r for r in finalists if not r.diverged]


def _cap(race: Any) -> float:  # (runs the race may spend when it cannot tell its finalists apart)
    return max(race.plan.budget, race.max_budget if race.max_budget is not None else 0.0)


def _affords(race: Any, finalists: list[Racer], x: int) -> bool:
    """Whether racing ``finalists`` ``x`` more steps (with their branches and scores), then the rest of the run
    and its validation (its watch points and its end), fits ``race.max_budget`` runs."""
    plan, v = race.plan, race.validator
    pass_cost = v.row_cost(device_of(race.model)) * v.rows_read("rung2")
    loop = _loop_cost(race)
    look = len(finalists) * ((x + plan.branch) * loop + pass_cost)
    rest = (plan.steps - plan.rung2 - x) * loop + (1 + len(plan.watches())) * pass_cost
    return race.spent() + look + rest <= _cap(race) * plan.steps


def _loop_cost(race: Any) -> float:
    """What Auto's loop adds to a step (:attr:`~adaptlr.auto.Meter.loop_cost`), rank 0's so that every rank decides
    alike; 1.0 when the race is counted in steps (``val_cost`` given: a plan that does not depend on timing)."""
    if not race.own_cost()[1]:
        return 1.0
    return _dist.broadcast_float(race.meter.loop_cost, device_of(race.model), race.group)
