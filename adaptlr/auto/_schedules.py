"""The candidates' schedules, as ``adaptlr.schedules`` objects set on the inner optimizer with ``set_lr`` (the
optimizer's own clock drives them, so a checkpoint of the optimizer carries them).

- the **race**: a linear warmup to the candidate's lr :math:`\\eta` over ``plan.warmup`` steps
  (:math:`\\eta (t + 1) / w`), then constant;
- a **branch** at step :math:`b`: the race schedule, then a linear anneal from :math:`\\eta_b c / (c + 1)` to 0
  over the branch's :math:`c` steps;
- the **run** after the choice at step :math:`b`: the race schedule, then the *tail* over the remaining
  :math:`T - b` steps: ``"cosine"`` (from :math:`\\eta` to 0), ``"linear"`` (to 0) or ``"wsd"`` (constant, then
  a linear cooldown to 0 over the last ``cooldown`` share of the run, half of it by default); a branch point inside the
  warmup lets the warmup end first.
"""

from __future__ import annotations

from .. import schedules as S
from ._plan import Plan

__all__ = ["TAILS", "WSD_COOLDOWN", "branch_schedule", "race_schedule", "run_schedule"]

TAILS = ("cosine", "linear", "wsd")
#: the WSD tail's cooldown share of the run (measured against 0.2 and 0.35 on 28 tasks, docs/auto.md)
WSD_COOLDOWN = 0.5


def race_schedule(lr: float, plan: Plan) -> S.Schedule:
    w = plan.warmup
    if w <= 1:
        return S.constant(lr)
    return S.join([S.linear(lr / w, lr, steps=w - 1), S.constant(lr)], boundaries=[w - 1])


def _then(lr: float, plan: Plan, at: int, after: S.Schedule) -> S.Schedule:
    return S.join([race_schedule(lr, plan), after], boundaries=[at]) if at > 0 else after


def branch_schedule(lr: float, plan: Plan, at: int) -> S.Schedule:
    c = plan.branch
    peak = race_schedule(lr, plan)(max(at - 1, 0))
    return _then(lr, plan, at, S.linear(peak * c / (c + 1), 0.0, steps=c))


def run_schedule(lr: float, plan: Plan, at: int, tail: str, cooldown: float = WSD_COOLDOWN) -> S.Schedule:
    at = min(max(at, plan.warmup), plan.steps - 1)  # (a branch point inside the warmup: the warmup ends first)
    peak = race_schedule(lr, plan)(max(at - 1, 0))
    rest = max(1, plan.steps - at)
    if tail == "cosine":
        after = S.cosine(peak, steps=rest)
    elif tail == "linear":
        after = S.linear(peak, 0.0, steps=rest)
    else:
        decay = max(1, min(rest, int(round(cooldown * plan.steps))))
        after = S.join([S.constant(peak), S.linear(peak, 0.0, steps=decay)], boundaries=[rest - decay])
        if rest - decay <= 0:
            after = S.linear(peak, 0.0, steps=decay)
    return _then(lr, plan, at, after)
