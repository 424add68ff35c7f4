"""``Auto.fit``: the race, then the commit, on the user's own training step."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from .._validation import check_count
from ._commit import Commit
from ._grid import default_lrs, make_optimizer
from ._journal import Journal, restore_race
from ._meter import Meter
from ._parallel import race_in_groups
from ._race import Race
from ._result import AutoResult
from ._step import Batches, TrainStep, device_of
from ._store import StateStore
from ._validate import Validator

__all__ = ["build_race", "fit", "result_of"]

OnStep = Callable[[int, float, float, bool], None]


def _groups(model: nn.Module, params: Iterable[Any] | None) -> list[dict[str, Any]]:
    items = list(model.parameters() if params is None else params)
    if not items:
        raise ValueError("Auto: no parameters to train")
    if isinstance(items[0], dict):
        return [dict(g, params=list(g["params"])) for g in items]
    return [{"params": items}]


def build_race(
    auto: Any,
    model: nn.Module,
    train: Iterable[Any],
    val: Callable[[nn.Module], float] | Sequence[Any],
    steps: int,
    step: TrainStep,
    *,
    val_cost: float | None = None,
    params: Iterable[Any] | None = None,
    process_group: Any = None,
    checkpoint_dir: str | None = None,
    race_groups: int = 1,
) -> Race:
    """The :class:`Race` of ``auto`` on ``model`` (what ``fit``, the Lightning and the Hugging Face callbacks
    run): its inner optimizer factory, plan, validator, state store and meter; ``race_groups``: candidates
    spread over that many groups of ranks (:mod:`._parallel`)."""
    steps = check_count("steps", steps, 1)
    race_groups = check_count("race_groups", race_groups, 1)
    cls, groups = auto.inner, _groups(model, params)
    decay_lr = max(default_lrs(cls))
    device = device_of(model)
    # one-off costs that a plain run pays too are paid before the budget's clock starts: the first torch optimizer
    # built in a process imports torch's compiler (~1.4 s on CPU), which would otherwise starve the race
    make_optimizer(cls, groups, auto.lrs[0], auto.options, decay_lr)
    meter = Meter(batches_per_step=step.accumulate)
    journal = Journal(checkpoint_dir) if checkpoint_dir is not None else None
    store = StateStore("disk", journal.states) if journal else StateStore(auto.offload, auto.offload_dir)
    plan = auto.plan(steps)
    too_small = (
        []
        if plan.steps + plan.race_steps() <= plan.budget * plan.steps
        else [
            f"a budget of {steps} steps is too small to race {plan.candidates} candidates within {plan.budget} runs "
            f"(at one step a rung the race alone costs {plan.race_steps() / steps:.2f} runs): the run costs more"
        ]
    )
    race = Race(
        model=model,
        step=step,
        make_optimizer=lambda lr: make_optimizer(cls, groups, lr, auto.options, decay_lr),
        scaler=lambda: step.scaler(device),
        plan=plan,
        lrs=auto.lrs,
        batches=Batches(train, meter),
        validator=Validator(val, step, meter, val_cost=val_cost, group=process_group),
        store=store,
        meter=meter,
        nominal=(auto.rung1, auto.rung2, auto.branch),
        limits=auto._limits(),
        extend=auto.extend,
        tie=auto.tie,
        max_budget=auto.max_budget,
        group=process_group,
        journal=journal,
        warnings=too_small,
    )
    if race_groups > 1:
        race_in_groups(race, race_groups)
    return race


def result_of(race: Race, commit: Commit, committed: str) -> AutoResult:
    """The :class:`AutoResult` of a race and its commit (said out loud: each warning is also raised)."""
    plan, meter = race.plan, race.meter
    rc = race.validator.row_cost(device_of(race.model))
    step_s = meter.step_seconds
    said = race.warnings + commit.warnings
    for text in said:
        warnings.warn(f"Auto: {text}", stacklevel=3)
    return AutoResult(
        lr=commit.lr,
        lrs=sorted(r.lr for r in race.racers),
        racers=race.racers,
        optimizer=commit.optimizer,  # type: ignore[arg-type]
        committed=committed,
        val_score=commit.val_score if committed != "race" else commit.winner.score,
        plan=plan,
        steps=plan.steps,
        cost=meter.cost_steps(rc) / plan.steps,
        train_steps=meter.train_steps,
        seconds=meter.seconds,
        wall=meter.wall_steps / plan.steps if step_s == step_s and step_s > 0 else math.nan,
        schedule=commit.schedule(),
        warnings=said,
        commit=commit if committed == "race" else None,
        warm_seconds=meter.warm,
        phase_seconds=dict(race.seconds),
        watched=list(commit.history),
    )


def fit(
    auto: Any,
    model: nn.Module,
    train: Iterable[Any],
    val: Callable[[nn.Module], float] | Sequence[Any],
    steps: int,
    step: TrainStep,
    *,
    val_cost: float | None = None,
    params: Iterable[Any] | None = None,
    on_step: OnStep | None = None,
    race_only: bool = False,
    process_group: Any = None,
    checkpoint_dir: str | None = None,
    race_groups: int = 1,
) -> AutoResult:
    """Race, then commit; see :meth:`Auto.fit`."""
    race = build_race(
        auto,
        model,
        train,
        val,
        steps,
        step,
        val_cost=val_cost,
        params=params,
        process_group=process_group,
        checkpoint_dir=checkpoint_dir,
        race_groups=race_groups,
    )
    recorded = _take_up(race)
    was_training = model.training
    model.train()
    try:
        try:
            finalists = race.run()
        except FloatingPointError:
            race.store.load("start", race.model)  # (the model trained: the unwrapped one, racing in groups)
            raise
        commit = Commit(race, finalists[0], auto.keep_best)
        if race.phase == "run":
            commit.resume(recorded["extra"])  # type: ignore[index]
        else:
            commit.start()
        if on_step is not None:
            commit.replay(on_step)
        if race_only:
            return result_of(race, commit, "race")
        started = time.perf_counter()
        ended = commit.run(on_step)
        race.seconds["run"] = time.perf_counter() - started
        committed = commit.finish(race.model, ended=ended)
        result = result_of(race, commit, committed)
        if race.journal is not None:
            race.journal.clear()  # (done: nothing to resume)
        return result
    finally:
        model.train(was_training)
        if not race_only:
            race.store.close()


def _take_up(race: Race) -> dict[str, Any] | None:
    """What the race's journal recorded, restored into ``race`` (None: nothing to resume)."""
    recorded = race.journal.load() if race.journal is not None else None
    if recorded is not None:
        restore_race(race, recorded)
    return recorded
