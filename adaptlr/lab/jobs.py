"""Job persistence: one (task, method, seed, budget) run, trained under a claim in the store and written to it.

:func:`run_job` claims a :class:`Job` in a :class:`~adaptlr.lab.store.Store`, trains it
(:func:`~adaptlr.lab.training.train`) and writes its points chunk by chunk, then its last chunk and its summary
with the ``done`` status in one transaction, while a background thread renews the claim's lease; a run that
fails or is interrupted is removed again, and a run whose claim was taken over writes nothing more. The
configuration stored with a run is :func:`_config`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .grammar import Method, method_to_dict, parse_method
from .store import LeaseLost, Store, budget_key
from .tasks import Task, get_task
from .training import Interrupted, train
from .workers import exit_if_orphaned

__all__ = ["Job", "run_job"]


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


def _config(job: Job, task: Task, method: Method) -> dict[str, Any]:
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
    exit_if_orphaned()
    claim = st.claim(job.task, job.method, job.seed, job.budget, _config(job, task, method))
    if claim is None:
        return None
    try:
        with st.keep_alive(claim) as lost:

            def halt() -> bool:
                exit_if_orphaned()
                return lost.is_set() or (stop is not None and stop())

            def write(points: list[dict[str, Any]]) -> None:
                exit_if_orphaned()
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
        exit_if_orphaned()
        st.finish_run(claim, result["last_chunk"], result)
    except LeaseLost:
        raise  # nothing of ours is left to remove
    except BaseException:
        with contextlib.suppress(Exception):  # if this fails too, the claim expires and the run is redone
            st.release(claim)
        raise
    return {k: v for k, v in result.items() if k not in ("points", "last_chunk")}
