"""Training one lineage of a race: a candidate's steps on given batches, stopped as soon as its loss diverges on
its own scale (:class:`adaptlr.controllers.LossScale`), each step timed for the race's :class:`~adaptlr.auto.Meter`.
:class:`~adaptlr.auto.Race` has it as its ``train`` method; the race's rungs, the commit's run and the rank groups
all train through it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from . import _dist
from ._racer import Racer
from ._step import device_of

__all__ = ["train_lineage"]


def train_lineage(
    race: Any,  # (a Race: its model, step, batches, meter and rank groups)
    racer: Racer,
    opt: torch.optim.Optimizer,
    scaler: Any,
    batches: Iterable[list[Any]],
    after: Callable[[float], None] | None = None,
    fresh: bool = True,
) -> None:
    """Train ``racer`` one step per entry of ``batches`` (each the batches of one step), stopping as soon as
    its loss diverges on its own scale (any rank's divergence stops every rank, before the step is taken);
    ``after(lr)`` is called after each step taken, with the first group's lr that step used. ``fresh``: ``opt``
    has not stepped yet (its first two steps are the lineage's cost, not a step's: its state set up, caches cold)."""
    device, group = device_of(race.model), race._racing_group()
    alone = not _dist.active(group)  # (asked once: a step of a small model feels every microsecond)

    def stop(loss: float) -> bool:
        seen = racer.rule.observe(loss)
        racer.diverged = seen if alone else _dist.any_true(seen, device, group)
        return racer.diverged

    # a fresh lineage's first two steps are its cost, not a step's: the first sets up its optimizer's state, the
    # second still runs on caches the switch of lineage left cold (linear regression: 140-190 us where its later
    # steps take 120-130 us); counted as steps, they made the race's unit 4-20% dearer than the run's steps
    meter, accumulate, unsampled = race.meter, race.step.accumulate, 2 if fresh else 0
    # a step is timed twice: its call (the user's step, with its loss checked: a plain loop's step, the unit the
    # budget is counted in) and the whole loop iteration, from the end of the one before (Auto's bookkeeping in,
    # which the run spent unplanned while only calls were timed: :attr:`Meter.loop_cost`); batches' fetching,
    # validation and the user's callbacks are counted apart
    last, apart = time.perf_counter(), _apart(meter)
    for step_batches in batches:
        lr = opt.param_groups[0]["lr"]
        start = time.perf_counter()
        loss = race.step(race.model, opt, race.batches.taker(list(step_batches), accumulate), scaler, stop, device)
        called = time.perf_counter() - start
        racer.steps += 1
        racer.losses.append(loss)
        if racer.diverged:
            racer.note = f"diverged at step {racer.steps} (loss {loss:.4g})"
        elif after is not None:
            after(lr)
        now = time.perf_counter()
        sample = unsampled <= 0
        meter.trained(called, sample=sample, loop=now - last - (_apart(meter) - apart))
        if sample:  # (what this lr's steps cost: the run goes on at the winner's)
            racer.seconds += called
            racer.timed += 1
        unsampled, last, apart = unsampled - 1, now, _apart(meter)
        if racer.diverged:
            return


def _apart(meter: Any) -> float:  # (seconds the meter counts apart from training steps)
    return meter.fetch_seconds + meter.warm + meter.val_seconds + meter.outside
