"""The grid that follows the evidence: past an edge of what was tried that wins or ties rung 1, a half-decade
further (:func:`next_edge`, within the limits, the extension count and the budget), and the one late candidate
rung 2 may still add past a winning edge (:func:`edge_candidate`). Both read a :class:`~adaptlr.auto.Race`."""

from __future__ import annotations

import math
from typing import Any

from ._grid import extension
from ._racer import Racer, regime

__all__ = ["edge_candidate", "next_edge"]


def next_edge(race: Any, upward: bool, added: int) -> float | None:
    """A half-decade past the edge when the edge is the best or within ``tie`` of it, within the limits,
    ``extend`` steps and the budget (an extra candidate costs its rung-1 steps and one evaluation)."""
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
    spare = race.plan.budget * race.plan.steps - race.spent()
    if lr is None or spare < (race.plan.steps - race.plan.rung1) + race.plan.race_steps(1) + 2 * race.plan.rung1:
        race.warnings.append(
            f"the best learning rate of rung 1 ({edge.lr:g}) is the {'largest' if upward else 'smallest'} "
            f"tried and the grid could not extend past it ({'limit' if lr is None else 'budget'} reached)"
        )
        return None
    return lr


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
