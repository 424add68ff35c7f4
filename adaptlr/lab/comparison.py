"""Comparisons: the jobs of tasks x methods x seeds (:func:`plan`), trained by :func:`compare` into a store.

:func:`compare` skips (task, method, seed, budget) runs that the store already holds, so a comparison can be
resumed after Ctrl-C or a kill and extended with more seeds or methods without redoing finished work. It trains
the others one after another in this process (:func:`_compare_inline`) or in a pool of worker processes
(:func:`_compare_parallel`; :func:`_init_worker` sets a worker up, :func:`_worker` runs one job there), and
books each job's outcome (:func:`_settle`) into a :class:`CompareResult`. Every run is trained under a claim in
the store (:func:`~adaptlr.lab.jobs.run_job`), so several ``compare`` processes, on one machine or many, can
share one store: each run is trained once, and a run whose worker died is trained again once its lease has
expired. Worker processes die with the process that started them (:mod:`adaptlr.lab.workers`).
"""

from __future__ import annotations

import inspect
import os
import queue as queue_mod
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .grammar import Method, parse_method
from .jobs import Job, run_job
from .progress import Bars
from .store import LeaseLost, Store
from .tasks import get_task
from .training import Interrupted
from .workers import die_with_parent, import_modules, limit_threads

__all__ = ["CompareResult", "compare", "plan"]


@dataclass
class CompareResult:
    """What :func:`compare` did: runs trained now, runs already in the store, failures, and whether it was
    interrupted (finished runs are kept either way)."""

    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    interrupted: bool = False


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
    parsed = [parse_method(m) for m in methods]
    jobs = []
    for t in tasks:
        task = get_task(t)
        if data_dir is not None and "data_dir" not in inspect.signature(task.data).parameters:
            raise ValueError(f"task {task.name!r} does not read a --data-dir (only the mnist-* tasks do)")
        for m in parsed:  # (validated with the run's own budget: a schedule's shares are of its steps)
            m.validate(total_steps=int(steps or task.steps))
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
    A run that fails (an exception in training) is left out of the store and booked in ``failed``: printed to
    ``console``, or, without one, said in a ``UserWarning``.
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
            with Bars(todo, progress) as bars:
                if jobs <= 1:
                    _compare_inline(todo, st, bars, result)
                else:
                    _compare_parallel(todo, st, jobs, bars, result, tuple(imports))
    if console is not None:
        for job, err in result.failed:
            console.print(f"[red]failed[/red] {job.task} / {job.label}: {err.strip().splitlines()[-1]}")
    elif result.failed:  # never silent: a failed run is not in the store
        runs = "; ".join(f"{j.task} / {j.label}: {e.strip().splitlines()[-1]}" for j, e in result.failed)
        warnings.warn(f"compare: {len(result.failed)} run(s) failed, not in {store}: {runs}", stacklevel=2)
    return result


def _settle(st: Store, job: Job, outcome: str, err: str | None, result: CompareResult, bars: Bars) -> bool:
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


def _compare_inline(todo: list[Job], st: Store, bars: Bars, result: CompareResult) -> None:
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


# ---- the pool of worker processes (compare with jobs > 1) -----------------------------------------
_Q: Any = None
_STOP: Any = None
_STORES: dict[str, Store] = {}  # a worker's open stores, by location


def _init_worker(q: Any, stop: Any, imports: Sequence[str] = (), parent: int | None = None) -> None:
    import signal

    global _Q, _STOP
    if parent is not None:
        die_with_parent(parent)
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


def _compare_parallel(
    todo: list[Job], st: Store, jobs: int, bars: Bars, result: CompareResult, imports: tuple[str, ...] = ()
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
