"""The training loop: one (task, method, seed) trained and evaluated, its logged points and its summary.

>>> from adaptlr.lab.training import train
>>> result = train("linreg", "sgd(lr=0.05)", seed=0, steps=50)
>>> result["diverged"], result["points"][-1]["step"]
(False, 50)

:func:`train` sets a run up (:func:`_setup`) and runs :func:`_loop`: one step at a time (:func:`_step`), a
point logged every ``log_every`` steps (:func:`_point`), the validation and test splits evaluated every
``eval_every`` steps (:func:`_evaluate`; the controllers observe the validation metric), the run ended when it
diverges (:class:`adaptlr.controllers.LossScale`, the rule Auto's races use); :class:`_Record` keeps the points
and the best metrics and writes the result row.
The lab's method ``auto`` has a loop of its own (:func:`_train_auto`, around :meth:`adaptlr.auto.Auto.fit`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from adaptlr.controllers import LossScale

from .build import MethodBuild
from .grammar import Method, parse_method
from .tasks import Task, get_task

__all__ = ["Interrupted", "train", "val_score"]


class Interrupted(Exception):
    """Raised inside :func:`train` when its ``stop`` callback says so."""


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _better(best: float | None, value: float | None, higher_is_better: bool) -> float | None:
    if value is None:
        return best
    if best is None:
        return value
    return max(best, value) if higher_is_better else min(best, value)


def _evaluate_splits(task: Task, model: torch.nn.Module, data: Any) -> dict[str, float | None]:
    """Validation and test metric and loss of ``model`` (validation left ``None`` for a user's data object
    that has only ``test_batches``)."""
    m, tl = task.evaluate(model, data, "test")
    out: dict[str, float | None] = {
        "metric": _finite(m),
        "test_loss": _finite(tl),
        "val_metric": None,
        "val_loss": None,
    }
    if hasattr(data, "eval_batches"):
        vm, vl = task.evaluate(model, data, "val")
        out["val_metric"], out["val_loss"] = _finite(vm), _finite(vl)
    return out


def val_score(task: Task) -> Callable[[torch.nn.Module, Any], float]:
    """The validation score ``adaptlr.Auto`` minimises, per batch: the task's metric oriented so that lower is
    better (the error rate ``1 - accuracy`` for classification, the loss otherwise); Auto reads a common subset of
    the validation batches sized to its budget, and all of them for its last decisions when it can afford it."""

    def score(model: torch.nn.Module, batch: Any) -> float:
        x, y = batch
        out = model(x)
        if task.metric == "accuracy":
            return 1.0 - float((out.reshape(-1, out.shape[-1]).argmax(-1) == y.reshape(-1)).float().mean())
        return float(task.loss(out, y))

    return score


def _point(step: int, window: list[float], lr: float | None, eff: float | None) -> dict[str, Any]:
    """A logged point: the mean train loss over ``window`` (the steps since the last point), the scheduled and
    the effective lr; its evaluation fields are filled in when the step is evaluated."""
    return {
        "step": step,
        "train_loss": _finite(sum(window) / len(window)),
        "lr": _finite(lr),
        "eff_lr": _finite(eff),
        "metric": None,
        "test_loss": None,
        "val_metric": None,
        "val_loss": None,
    }


def _train_auto(
    task: Task,
    method: Method,
    data: Any,
    seed: int,
    steps: int,
    batch_size: int,
    eval_every: int,
    log_every: int,
    on_chunk: Callable[[list[dict[str, Any]]], None] | None,
    progress: Callable[[int, int, float], None] | None,
    stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """The lab's method ``auto``: :meth:`adaptlr.auto.Auto.fit` on the task's training batches, deciding on
    the validation split. Points follow the committed lineage (its race steps are logged once the winner is
    known, without evaluations); evaluations at ``eval_every`` steps are the lab's logging, not counted in
    Auto's cost (the summary's ``cost``, in runs of ``steps`` steps, counts every step and decision it made).
    When the run diverges, Auto may roll it back and train those steps again (``on_step`` then goes back to an
    earlier step): the points of the abandoned steps are dropped, so no step is logged twice. Since any live
    step may still be rolled back, nothing goes to ``on_chunk``: every point comes back in ``last_chunk``."""
    from adaptlr.auto import Auto

    torch.manual_seed(seed)
    model = task.model()
    model.train()
    auto = Auto(**method.optimizer_kwargs())
    gen = torch.Generator().manual_seed(seed)
    batches = data.batches(batch_size, gen)
    points: list[dict[str, Any]] = []
    state: dict[str, Any] = {"best": None, "best_val": None, "metric": None, "val_metric": None, "window": []}
    start = time.perf_counter()
    report_every = max(1, steps // 50)
    last = 0  # the last step seen

    def on_step(step: int, loss: float, lr: float, live: bool) -> None:
        nonlocal last
        if stop is not None and stop():
            raise Interrupted
        if step <= last:  # rolled back: steps `step`.. are trained again, their first go's points dropped
            points[:] = [p for p in points if p["step"] < step]
            window = state["window"]  # (the losses of steps last - len(window) + 1 .. last)
            del window[max(0, len(window) - (last - step + 1)) :]
        last = step
        state["window"].append(loss)
        # (the last step is evaluated once, after fit: the committed model may be another state than the run's end)
        do_eval = live and step % eval_every == 0 and step != steps
        if step % log_every == 0 or do_eval or step == steps:
            point = _point(step, state["window"], lr, lr)
            state["window"] = []
            if do_eval:
                point.update(_evaluate_splits(task, model, data))
            point["wall"] = time.perf_counter() - start
            points.append(point)
        if progress is not None and (step % report_every == 0 or step == steps):
            progress(step, steps, loss)

    result = auto.fit(
        model,
        task.loss,
        batches,
        list(data.eval_batches("val", size=batch_size)),
        steps,
        score_fn=val_score(task),
        on_step=on_step,
    )
    # the committed model (the run's end, or an annealed branch that validated better) is what is reported
    final = _evaluate_splits(task, model, data)
    if points and points[-1]["step"] == result.steps:
        points[-1].update(final)
    for p in points:
        if p["metric"] is not None:
            state["best"] = _better(state["best"], p["metric"], task.higher_is_better)
            state["best_val"] = _better(state["best_val"], p["val_metric"], task.higher_is_better)
    diverged = any(r.lr == result.lr and r.diverged for r in result.racers)
    return {
        "steps_done": max((p["step"] for p in points), default=0),
        "wall": time.perf_counter() - start - result.warm_seconds,  # (as train's: after the first step's one-offs)
        "final_metric": final["metric"],
        "best_metric": state["best"],
        "final_val_metric": final["val_metric"],
        "best_val_metric": state["best_val"],
        "diverged": diverged,
        "points": points,
        "last_chunk": points,
        "cost": result.cost,
        "auto_lr": result.lr,
        "auto_committed": result.committed,
        "auto_lrs": result.lrs,
        "auto_wall": result.wall,
        "auto_warnings": result.warnings,
    }


def train(
    task: str | Task,
    method: str | Method,
    seed: int = 0,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    log_every: int | None = None,
    data_options: Mapping[str, Any] | None = None,
    on_chunk: Callable[[list[dict[str, Any]]], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one (task, method, seed) and return its summary and logged points.

    Every ``log_every`` steps a point records the mean train loss since the last point, the scheduled lr, the
    effective lr and the wall time; every ``eval_every`` steps (and at the end) also the metric and loss on the
    validation split (``val_metric``, ``val_loss``: what controllers such as ``plateau`` observe) and on the
    test split (``metric``, ``test_loss``: what reports show). The summary holds ``final_metric`` /
    ``best_metric`` (test) and ``final_val_metric`` / ``best_val_metric`` (validation).
    ``on_chunk`` receives the points since the previous call after each evaluation except the last (those
    come back in the result). Wall times count from the end of the first step, so that one-off costs (a fused
    kernel compiled or loaded from cache, lazily allocated state) do not depend on which runs shared a worker
    process. Training stops early, marked ``diverged``, when its train loss diverges on its own scale
    (:class:`adaptlr.controllers.LossScale`: non-finite, or its running level ten times the lowest it reached
    and above where it started; the same rule as Auto's races).
    """
    task = get_task(task) if isinstance(task, str) else task
    method = parse_method(method)  # a parsed Method (what a job passes) is taken as it is
    steps = int(steps or task.steps)
    batch_size = int(batch_size or task.batch_size)
    eval_every = int(eval_every or task.eval_every or max(1, steps // 10))
    log_every = int(log_every or max(1, min(eval_every, steps // 100)))
    data = task.data(**(data_options or {}))
    if method.optimizer.name == "auto":
        return _train_auto(task, method, data, seed, steps, batch_size, eval_every, log_every, on_chunk, progress, stop)
    run = _setup(task, method, data, seed, steps, batch_size)
    return _loop(run, steps, eval_every, log_every, on_chunk, progress, stop)


class _Run:
    """What a run trains: the task and its data, the model, the built method and the batches. (Plain classes
    here, not dataclasses: a dataclass costs ``import adaptlr.lab`` half a millisecond.)"""

    __slots__ = ("batches", "build", "data", "has_modes", "model", "task")

    def __init__(
        self, task: Task, data: Any, model: torch.nn.Module, build: MethodBuild, has_modes: bool, batches: Iterator[Any]
    ) -> None:
        self.task = task
        self.data = data
        self.model = model
        self.build = build
        self.has_modes = has_modes  # the optimizer has train() / eval() modes (schedule-free): evaluate in eval mode
        self.batches = batches


def _setup(task: Task, method: Method, data: Any, seed: int, steps: int, batch_size: int) -> _Run:
    """Seed, build the model and the method (in train mode) and start the batches of a run of ``steps``."""
    torch.manual_seed(seed)
    model = task.model()
    model.train()
    build = method.build(model.parameters(), steps, task.higher_is_better)
    opt = build.optimizer
    has_modes = callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))
    if has_modes:
        opt.train()
    gen = torch.Generator().manual_seed(seed)
    batches = data.batches(batch_size, gen)
    return _Run(task, data, model, build, has_modes, batches)


def _step(run: _Run, step: int) -> tuple[float, float | None, float | None]:
    """Take step ``step`` (counted from 0): its train loss, its scheduled lr and its effective lr."""
    build, opt = run.build, run.build.optimizer
    build.before_step(step)
    lr, eff = build.lr(step), build.effective_lr(step)
    x, y = next(run.batches)
    opt.zero_grad(set_to_none=True)
    loss = run.task.loss(run.model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach()), lr, eff


def _evaluate(run: _Run) -> dict[str, float | None]:
    """The validation and test metric and loss of the model now, with the optimizer in eval mode if it has one."""
    opt = run.build.optimizer
    if run.has_modes:
        opt.eval()
    ev = _evaluate_splits(run.task, run.model, run.data)
    if run.has_modes:
        opt.train()
    return ev


class _Record:
    """A run's log: its points, the points not yet handed to ``on_chunk``, the latest and the best metrics."""

    __slots__ = ("best", "best_val", "higher_is_better", "metric", "pending", "points", "val_metric")

    def __init__(self, higher_is_better: bool) -> None:
        self.higher_is_better = higher_is_better
        self.points: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.metric: float | None = None
        self.best: float | None = None
        self.val_metric: float | None = None
        self.best_val: float | None = None

    def evaluated(self, ev: Mapping[str, float | None]) -> None:
        self.metric, self.val_metric = ev["metric"], ev["val_metric"]
        self.best = _better(self.best, self.metric, self.higher_is_better)
        self.best_val = _better(self.best_val, self.val_metric, self.higher_is_better)

    def add(self, point: dict[str, Any], start: float) -> None:
        point["wall"] = time.perf_counter() - start
        self.points.append(point)
        self.pending.append(point)

    def flush(self, on_chunk: Callable[[list[dict[str, Any]]], None]) -> None:
        on_chunk(self.pending)
        self.pending = []

    def summary(self, steps_done: int, wall: float, diverged: bool) -> dict[str, Any]:
        """The result row of :func:`train`."""
        return {
            "steps_done": steps_done,
            "wall": wall,
            "final_metric": self.metric,
            "best_metric": self.best,
            "final_val_metric": self.val_metric,
            "best_val_metric": self.best_val,
            "diverged": diverged,
            "points": self.points,
            "last_chunk": self.pending,
        }


def _loop(
    run: _Run,
    steps: int,
    eval_every: int,
    log_every: int,
    on_chunk: Callable[[list[dict[str, Any]]], None] | None,
    progress: Callable[[int, int, float], None] | None,
    stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Train ``run`` for ``steps`` steps (fewer when it diverges) and return :func:`train`'s summary."""
    record = _Record(run.task.higher_is_better)
    rule = LossScale()
    window: list[float] = []
    diverged = False
    start = time.perf_counter()
    step = 0
    report_every = max(1, steps // 50)
    while step < steps:
        if stop is not None and stop():
            raise Interrupted
        value, lr, eff = _step(run, step)
        step += 1
        if step == 1:  # the clock starts after the first step, which carries one-off costs (kernel compilation)
            start = time.perf_counter()
        window.append(value)
        diverged = rule.observe(value)
        do_eval = step % eval_every == 0 or step == steps or diverged
        if step % log_every == 0 or do_eval:
            point = _point(step, window, lr, eff)
            window = []
            if do_eval:
                ev = _evaluate(run)
                point.update(ev)
                record.evaluated(ev)
                if record.val_metric is not None:  # decisions see validation, never test
                    for c in run.build.controllers:
                        c.observe(record.val_metric)
            record.add(point, start)
            if do_eval and on_chunk is not None and step < steps and not diverged:
                record.flush(on_chunk)
        if progress is not None and (step % report_every == 0 or step == steps):
            progress(step, steps, value)
        if diverged:
            break
    return record.summary(step, time.perf_counter() - start, diverged)
