"""The run's schedule, as ``adaptlr.schedules`` objects set on the inner optimizer with ``set_lr`` (the optimizer's
own clock drives them, so a checkpoint of the optimizer carries them).

Every candidate races on **the run's own schedule** (:func:`run_schedule`) and the winner's run goes on with it:
the race only stops the losers early, so the committed run is the run that lr would have made from the start,
step for step and batch for batch (a branch trains on the batches its lineage takes next). The schedule over a
run of :math:`T` steps at peak :math:`\\eta`: a linear warmup over ``plan.warmup`` steps :math:`w` from
:math:`\\eta / w` (``adaptlr.schedules.warmup``), then the ``plan.tail``:

- ``"cosine"`` (the default): from :math:`\\eta` to 0 over :math:`T - w` steps (the lab's ``cosine(warmup=...)``:
  Auto's run at the lr it chooses is the lab's run at that lr, bit for bit);
- ``"wsd"``: constant, then a linear cooldown to 0 over the last ``plan.cooldown`` share of the run;
- ``"linear"``: to 0 over :math:`T - w` steps.

A finalist's **branch** at step :math:`b` follows the schedule to :math:`b`, then anneals linearly from
:math:`\\eta_b c / (c + 1)` to 0 over the branch's :math:`c` steps (:math:`\\eta_b`: the schedule at :math:`b - 1`).
"""

from __future__ import annotations

from .. import schedules as S
from ._plan import TAILS, WSD_COOLDOWN, Plan

__all__ = ["TAILS", "WSD_COOLDOWN", "branch_schedule", "run_schedule"]


def run_schedule(lr: float, plan: Plan) -> S.Schedule:
    """The run's schedule at peak ``lr`` (the module's docstring): what every candidate races on and the winner's
    run goes on with."""
    w, total = plan.warmup, plan.steps
    rest = max(1, total - w)
    if plan.tail == "cosine":
        body = S.cosine(lr, steps=rest)
    elif plan.tail == "linear":
        body = S.linear(lr, 0.0, steps=rest)
    else:
        decay = max(1, min(rest, int(round(plan.cooldown * total))))
        body = S.linear(lr, 0.0, steps=decay)
        if rest > decay:
            body = S.join([S.constant(lr), body], boundaries=[rest - decay])
    return S.warmup(body, steps=w, start=lr / w) if w > 0 else body


def branch_schedule(lr: float, plan: Plan, at: int) -> S.Schedule:
    """A finalist's annealed branch from step ``at``: the run's schedule, then a linear anneal to 0 over
    ``plan.branch`` steps."""
    c, run = plan.branch, run_schedule(lr, plan)
    anneal = S.linear(run(max(at - 1, 0)) * c / (c + 1), 0.0, steps=c)
    return S.join([run, anneal], boundaries=[at]) if at > 0 else anneal
