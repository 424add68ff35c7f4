"""Train tasks x methods x seeds, in parallel processes, into a :class:`~adaptlr.lab.store.Store`.

>>> from adaptlr.lab.runner import train
>>> result = train("linreg", "sgd(lr=0.05)", seed=0, steps=50)
>>> result["diverged"], result["points"][-1]["step"]
(False, 50)

:func:`compare` skips (task, method, seed, budget) runs that the store already holds, so a comparison can be
resumed after Ctrl-C or a kill and extended with more seeds or methods without redoing finished work. Every
run is trained under a claim in the store (:meth:`~adaptlr.lab.store.Store.claim`), so several ``compare``
processes, on one machine or many, can share one store: each run is trained once, and a run whose worker died
is trained again once its lease has expired. Worker processes die with the process that started them.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import queue as queue_mod
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .methods import Method, parse_method
from .store import LeaseLost, Store, budget_key
from .tasks import Task, get_task

__all__ = ["CompareResult", "Interrupted", "Job", "compare", "run_job", "train"]

DIVERGE_FACTOR = 100.0  # a train loss this many times the first one (or a non-finite one) ends the run


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


def _val_objective(task: Task, data: Any) -> Callable[[torch.nn.Module], float]:
    """The validation score ``adaptlr.Auto`` minimises: the task's metric on the validation split, oriented so
    that lower is better (the error rate ``1 - accuracy`` for classification, the loss otherwise)."""

    def score(model: torch.nn.Module) -> float:
        m, _ = task.evaluate(model, data, "val")
        return 1.0 - m if task.higher_is_better else m

    return score


def _val_rows(data: Any) -> int:
    """Rows (or text windows) one validation pass reads."""
    return sum(int(x.shape[0]) for x, _ in data.eval_batches("val"))


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
    Auto's cost (the summary's ``cost``, in runs of ``steps`` steps, counts every step and decision it made)."""
    from adaptlr.auto import Auto

    torch.manual_seed(seed)
    model = task.model()
    model.train()
    auto = Auto(**method.optimizer_kwargs())
    gen = torch.Generator().manual_seed(seed)
    batches = data.batches(batch_size, gen)
    points: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    state: dict[str, Any] = {"best": None, "best_val": None, "metric": None, "val_metric": None, "window": []}
    start = time.perf_counter()
    report_every = max(1, steps // 50)

    def on_step(step: int, loss: float, lr: float, live: bool) -> None:
        nonlocal pending
        if stop is not None and stop():
            raise Interrupted
        state["window"].append(loss)
        do_eval = live and (step % eval_every == 0 or step == steps)
        if step % log_every == 0 or do_eval:
            w = state["window"]
            point: dict[str, Any] = {
                "step": step,
                "train_loss": _finite(sum(w) / len(w)),
                "lr": _finite(lr),
                "eff_lr": _finite(lr),
                "metric": None,
                "test_loss": None,
                "val_metric": None,
                "val_loss": None,
            }
            state["window"] = []
            if do_eval:
                point.update(_evaluate_splits(task, model, data))
            point["wall"] = time.perf_counter() - start
            points.append(point)
            pending.append(point)
            if do_eval and on_chunk is not None and step < steps:
                on_chunk(pending)
                pending = []
        if progress is not None and (step % report_every == 0 or step == steps):
            progress(step, steps, loss)

    result = auto.fit(
        model,
        task.loss,
        batches,
        _val_objective(task, data),
        steps,
        val_cost=_val_rows(data) / (3.0 * batch_size),
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
        "wall": time.perf_counter() - start,
        "final_metric": final["metric"],
        "best_metric": state["best"],
        "final_val_metric": final["val_metric"],
        "best_val_metric": state["best_val"],
        "diverged": diverged,
        "points": points,
        "last_chunk": pending,
        "cost": result.cost,
        "auto_lr": result.lr,
        "auto_committed": result.committed,
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
    process. Training stops early, marked ``diverged``, on a non-finite train loss or one
    ``DIVERGE_FACTOR`` times the first.
    """
    task = get_task(task) if isinstance(task, str) else task
    method = parse_method(method)
    steps = int(steps or task.steps)
    batch_size = int(batch_size or task.batch_size)
    eval_every = int(eval_every or task.eval_every or max(1, steps // 10))
    log_every = int(log_every or max(1, min(eval_every, steps // 100)))
    data = task.data(**(data_options or {}))
    if method.optimizer.name == "auto":
        return _train_auto(task, method, data, seed, steps, batch_size, eval_every, log_every, on_chunk, progress, stop)

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

    points: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    best: float | None = None
    metric: float | None = None
    best_val: float | None = None
    val_metric: float | None = None
    first_loss: float | None = None
    window: list[float] = []
    diverged = False
    start = time.perf_counter()
    step = 0
    lr = eff = None
    report_every = max(1, steps // 50)
    while step < steps:
        if stop is not None and stop():
            raise Interrupted
        build.before_step(step)
        lr, eff = build.lr(step), build.effective_lr(step)
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        step += 1
        if step == 1:  # the clock starts after the first step, which carries one-off costs (kernel compilation)
            start = time.perf_counter()
        if first_loss is None:
            first_loss = abs(value) if math.isfinite(value) else 1.0
        window.append(value)
        diverged = not math.isfinite(value) or abs(value) > DIVERGE_FACTOR * max(first_loss, 1e-12)
        do_eval = step % eval_every == 0 or step == steps or diverged
        if step % log_every == 0 or do_eval:
            point = {
                "step": step,
                "train_loss": _finite(sum(window) / len(window)),
                "lr": _finite(lr),
                "eff_lr": _finite(eff),
                "metric": None,
                "test_loss": None,
                "val_metric": None,
                "val_loss": None,
            }
            window = []
            if do_eval:
                if has_modes:
                    opt.eval()
                ev = _evaluate_splits(task, model, data)
                if has_modes:
                    opt.train()
                point.update(ev)
                metric, val_metric = ev["metric"], ev["val_metric"]
                best = _better(best, metric, task.higher_is_better)
                best_val = _better(best_val, val_metric, task.higher_is_better)
                if val_metric is not None:  # decisions see validation, never test
                    for c in build.controllers:
                        c.observe(val_metric)
            point["wall"] = time.perf_counter() - start
            points.append(point)
            pending.append(point)
            if do_eval and on_chunk is not None and step < steps and not diverged:
                on_chunk(pending)
                pending = []
        if progress is not None and (step % report_every == 0 or step == steps):
            progress(step, steps, value)
        if diverged:
            break
    wall = time.perf_counter() - start
    return {
        "steps_done": step,
        "wall": wall,
        "final_metric": metric,
        "best_metric": best,
        "final_val_metric": val_metric,
        "best_val_metric": best_val,
        "diverged": diverged,
        "points": points,
        "last_chunk": pending,
    }


@dataclass(frozen=True)
class Job:
    """One (task, method, seed, budget) run."""

    task: str
    method: str  # canonical form
    seed: int
    steps: int
    batch_size: int
    eval_every: int | None = None
    data_dir: str | None = None

    @property
    def budget(self) -> str:
        return budget_key(self.steps, self.batch_size, eval=self.eval_every, data=self.data_dir)

    @property
    def label(self) -> str:
        return f"{self.method} s{self.seed}"


@dataclass
class CompareResult:
    """What :func:`compare` did: runs trained now, runs already in the store, failures, and whether it was
    interrupted (finished runs are kept either way)."""

    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    interrupted: bool = False


def _config(job: Job, task: Task, method: Method) -> dict[str, Any]:
    from .methods import method_to_dict

    return {
        **asdict(job),
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "target": task.target,
        "reference": task.reference,
        "method_dict": method_to_dict(method),
        "torch": torch.__version__,
        "budget": job.budget,
    }


def run_job(
    job: Job,
    store: str | Store,
    progress: Callable[[int, int, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Claim ``job`` in the store (a :class:`Store` or its location), train it and write it: chunk by chunk,
    the last chunk and the ``done`` status in one transaction, while a background thread renews the claim's
    lease. Returns the run's summary, or None when the run was not claimed (done already, or held by a live
    worker: see :meth:`Store.status`).

    On an exception (Ctrl-C included) the run's rows are removed again by its claim; a process killed
    outright leaves a claim that expires, and the next worker to look trains the run again. Raises
    :class:`~adaptlr.lab.store.LeaseLost` when the claim was taken over meanwhile (this worker then wrote
    nothing more)."""
    st = Store(store) if isinstance(store, str) else store
    try:
        return _run_claimed(job, st, progress, stop)
    finally:
        if st is not store:
            st.close()


def _run_claimed(
    job: Job,
    st: Store,
    progress: Callable[[int, int, float], None] | None,
    stop: Callable[[], bool] | None,
) -> dict[str, Any] | None:
    task = get_task(job.task)
    method = parse_method(job.method)
    _exit_if_orphaned()
    claim = st.claim(job.task, job.method, job.seed, job.budget, _config(job, task, method))
    if claim is None:
        return None
    try:
        with st.keep_alive(claim) as lost:

            def halt() -> bool:
                _exit_if_orphaned()
                return lost.is_set() or (stop is not None and stop())

            def write(points: list[dict[str, Any]]) -> None:
                _exit_if_orphaned()
                st.add_points(claim, points)

            try:
                result = train(
                    task,
                    method,
                    job.seed,
                    steps=job.steps,
                    batch_size=job.batch_size,
                    eval_every=job.eval_every,
                    data_options={"data_dir": job.data_dir} if job.data_dir else None,
                    on_chunk=write,
                    progress=progress,
                    stop=halt,
                )
            except Interrupted:
                if lost.is_set():
                    raise LeaseLost(f"the claim on {job.task} / {job.label} was taken over") from None
                raise
        _exit_if_orphaned()
        st.finish_run(claim, result["last_chunk"], result)
    except LeaseLost:
        raise  # nothing of ours is left to remove
    except BaseException:
        with contextlib.suppress(Exception):  # if this fails too, the claim expires and the run is redone
            st.release(claim)
        raise
    return {k: v for k, v in result.items() if k not in ("points", "last_chunk")}


# ---- worker processes ------------------------------------------------------------------------------
_Q: Any = None
_STOP: Any = None
_PARENT: int | None = None  # set in worker processes: the pid of the process that started them
_STORES: dict[str, Store] = {}  # a worker's open stores, by location
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _exit_if_orphaned() -> None:
    """In a worker whose parent has died: exit at once, writing nothing (its claim expires)."""
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(70)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere the
    parent-pid check before every step and write (:func:`_exit_if_orphaned`) does the job."""
    global _PARENT
    _PARENT = parent
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    _exit_if_orphaned()  # the parent may have died before prctl took effect


def limit_threads(n: int = 1) -> None:
    """Use ``n`` threads for torch's and Numba's (adaptlr's fused engine) parallel loops in this process.

    Small models gain nothing from more threads, and worker processes that each start a thread per core
    oversubscribe the machine (measured on 2 busy cores: 8 ms per MLP step with Numba's default threads, 1 ms
    with one)."""
    n = max(1, int(n))
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency, but adaptlr runs without it
        pass


def import_modules(names: Sequence[str]) -> None:
    """Import the modules that register a user's own tasks and optimizers (``register_task`` and
    ``register_optimizer`` at import time), here and, through :func:`compare`, in every worker."""
    import importlib

    for name in names:
        importlib.import_module(name)


def _init_worker(q: Any, stop: Any, imports: Sequence[str] = (), parent: int | None = None) -> None:
    import signal

    global _Q, _STOP
    if parent is not None:
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells workers through `stop`
    limit_threads(1)
    import_modules(imports)
    _Q, _STOP = q, stop


def _worker(index: int, job: Job, store: str) -> tuple[int, str, str | None]:
    """Run one job in a worker process: (index, outcome, error) with outcome ``trained`` / ``not-claimed`` /
    ``lease-lost`` / ``interrupted`` / ``failed``."""

    def progress(step: int, total: int, loss: float) -> None:
        _Q.put(("step", index, step, total, loss))

    try:
        st = _STORES.get(store)
        if st is None:
            st = _STORES[store] = Store(store)
        summary = run_job(job, st, progress, stop=_STOP.is_set)
        return index, ("trained" if summary is not None else "not-claimed"), None
    except LeaseLost:
        return index, "lease-lost", None
    except Interrupted:
        return index, "interrupted", None
    except Exception:  # noqa: BLE001 - reported by the parent, the other runs go on
        return index, "failed", traceback.format_exc(limit=3)
    finally:
        _Q.put(("end", index, 0, 0, float("nan")))


class _Bars:
    """rich progress: one bar overall and one per job in training (or nothing when ``enabled`` is false)."""

    def __init__(self, jobs: Sequence[Job], enabled: bool) -> None:
        self.jobs = jobs
        self.progress = None
        self.ids: dict[int, Any] = {}
        if enabled and jobs:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.overall = self.progress.add_task("all runs", total=len(jobs), loss="")

    def __enter__(self) -> _Bars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, kind: str, index: int, step: int, total: int, loss: float) -> None:
        """``step``: a job's progress (its bar appears with its first step); ``end``: its bar goes."""
        if self.progress is None:
            return
        if kind == "step":
            if index not in self.ids:
                job = self.jobs[index]
                self.ids[index] = self.progress.add_task(f"{job.task}: {job.label}"[:60], total=total, loss="")
            self.progress.update(self.ids[index], completed=step, loss=f"loss {loss:.4g}")
        elif kind == "end" and index in self.ids:
            self.progress.remove_task(self.ids.pop(index))

    def resolved(self) -> None:
        """One more job trained, found done, or failed."""
        if self.progress is not None:
            self.progress.advance(self.overall)


def plan(
    tasks: Sequence[str],
    methods: Sequence[str | Method],
    seeds: int | Sequence[int],
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    data_dir: str | None = None,
) -> list[Job]:
    """The jobs of a comparison (methods validated now, so a typo fails before any training)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    parsed = [parse_method(m).validate() for m in methods]
    jobs = []
    for t in tasks:
        task = get_task(t)
        if data_dir is not None and "data_dir" not in inspect.signature(task.data).parameters:
            raise ValueError(f"task {task.name!r} does not read a --data-dir (only the mnist-* tasks do)")
        for m in parsed:
            for s in seed_list:
                jobs.append(
                    Job(
                        task.name,
                        m.canonical,
                        s,
                        int(steps or task.steps),
                        int(batch_size or task.batch_size),
                        eval_every,
                        data_dir,
                    )
                )
    return jobs


def compare(
    tasks: str | Sequence[str],
    methods: Sequence[str | Method],
    seeds: int | Sequence[int] = 3,
    *,
    store: str = "runs.db",
    jobs: int = 1,
    steps: int | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    console: Any = None,
    imports: Sequence[str] = (),
) -> CompareResult:
    """Train every (task, method, seed) not already in ``store``; ``jobs`` > 1 trains in worker processes.

    Several ``compare`` processes (on one machine or many) may share one store: each run is claimed
    atomically, so each is trained once; a run claimed by another live worker is waited for (it ends up in
    ``skipped`` once that worker finishes it) and taken over if that worker dies (its lease expires).
    Ctrl-C stops cleanly: runs in progress are dropped (they are redone next time), finished ones are kept.
    Worker processes die with this process, never writing after it is gone.
    ``imports``: modules that register your own tasks or optimizers, imported here and in every worker.
    Raises :class:`~adaptlr.lab.store.StoreError` before any training when the store cannot be used.
    """
    import_modules(imports)
    task_list = [tasks] if isinstance(tasks, str) else list(tasks)
    all_jobs = plan(
        task_list,
        methods,
        seeds,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        data_dir=data_dir,
    )
    result = CompareResult()
    with Store(store) as st:
        st.check_writable()
        todo = []
        for j in all_jobs:
            (result.skipped if st.status(j.task, j.method, j.seed, j.budget) == "done" else todo).append(j)
        if todo:
            with _Bars(todo, progress) as bars:
                if jobs <= 1:
                    _compare_inline(todo, st, bars, result)
                else:
                    _compare_parallel(todo, st, jobs, bars, result, tuple(imports))
    if console is not None:
        for job, err in result.failed:
            console.print(f"[red]failed[/red] {job.task} / {job.label}: {err.strip().splitlines()[-1]}")
    return result


def _settle(st: Store, job: Job, outcome: str, err: str | None, result: CompareResult, bars: _Bars) -> bool:
    """Book a job's outcome; True when it must be tried again later (another worker holds it)."""
    if outcome == "trained":
        result.done.append(job)
    elif outcome == "failed":
        result.failed.append((job, err or "failed"))
    elif outcome == "interrupted":
        result.interrupted = True
        return False
    elif st.status(job.task, job.method, job.seed, job.budget) == "done":
        result.skipped.append(job)  # another worker finished it
    else:
        return True  # held by another worker (or just taken over from us): look again
    bars.resolved()
    return False


def _compare_inline(todo: list[Job], st: Store, bars: _Bars, result: CompareResult) -> None:
    waiting = list(enumerate(todo))
    while waiting:
        again = []
        for i, job in waiting:
            try:
                summary = run_job(job, st, lambda s, n, loss, i=i: bars.update("step", i, s, n, loss))
                outcome, err = ("trained" if summary is not None else "not-claimed"), None
            except KeyboardInterrupt:
                result.interrupted = True
                return
            except LeaseLost:
                outcome, err = "lease-lost", None
            except Exception:  # noqa: BLE001 - one failing method does not stop the comparison
                outcome, err = "failed", traceback.format_exc(limit=3)
            finally:
                bars.update("end", i, 0, 0, float("nan"))
            if _settle(st, job, outcome, err, result, bars):
                again.append((i, job))
        waiting = again
        if waiting:
            try:
                time.sleep(st.poll_interval)
            except KeyboardInterrupt:
                result.interrupted = True
                return


def _compare_parallel(
    todo: list[Job], st: Store, jobs: int, bars: _Bars, result: CompareResult, imports: tuple[str, ...] = ()
) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    q, stop = ctx.Queue(), ctx.Event()
    alive = threading.Event()
    alive.set()

    def pump() -> None:
        while alive.is_set() or not q.empty():
            try:
                msg = q.get(timeout=0.1)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError):
                return
            bars.update(*msg)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    # one thread per worker from the start (Numba reads NUMBA_NUM_THREADS when first imported)
    saved = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(q, stop, imports, os.getpid()),
    )
    location = st.url
    futures = {pool.submit(_worker, i, job, location): (i, job) for i, job in enumerate(todo)}
    later: list[tuple[float, int, Job]] = []  # held by another worker: (when to look again, index, job)

    def interrupt() -> None:  # Ctrl-C: workers stop at their next step; queued jobs never start
        result.interrupted = True
        stop.set()
        later.clear()
        for f in futures:
            f.cancel()

    try:
        while futures or later:
            try:
                now = time.monotonic()
                for item in [x for x in later if x[0] <= now]:
                    later.remove(item)
                    try:
                        futures[pool.submit(_worker, item[1], item[2], location)] = (item[1], item[2])
                    except BrokenProcessPool as e:  # a worker was killed (say, out of memory): no pool left
                        _settle(st, item[2], "failed", repr(e), result, bars)
                finished, _ = wait(set(futures), timeout=0.2) if futures else (set(), None)
                if not futures:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                interrupt()
                continue
            for f in finished:
                i, job = futures.pop(f)
                if f.cancelled():
                    continue
                try:
                    _, outcome, err = f.result()
                except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the OS
                    outcome, err = "failed", repr(e)
                if _settle(st, job, outcome, err, result, bars) and not result.interrupted:
                    later.append((time.monotonic() + st.poll_interval, i, job))
    finally:
        while True:  # a Ctrl-C during shutdown must not leave workers behind
            try:
                pool.shutdown(wait=True, cancel_futures=True)
                break
            except KeyboardInterrupt:
                interrupt()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        alive.clear()
        thread.join(timeout=2)
