"""Claims and leases: who trains a run (or a trial slot of a shared search), for how long, and writing under a
claim. The module docstring of :mod:`adaptlr.lab.store` says the protocol; :class:`Claims` is the part of
:class:`~adaptlr.lab.store.Store` that implements it, over a :class:`~adaptlr.lab.store.schema.Database`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .schema import POINT_FIELDS, SUMMARY_FIELDS, Database, StoreError, number, run_key, tables

__all__ = [
    "DEFAULT_LEASE",
    "HEARTBEATS_PER_LEASE",
    "Claim",
    "Claims",
    "LeaseLost",
    "RunHeld",
    "Slot",
    "local_and_dead",
    "worker_id",
]

#: Seconds a claim stays valid after its last heartbeat (heartbeats come every lease / 6).
DEFAULT_LEASE = 60.0
HEARTBEATS_PER_LEASE = 6


class LeaseLost(Exception):
    """This worker's claim is gone (it expired and another worker took the run over, or it was released):
    the worker must stop the run and write nothing more. Nothing was written by the call that raised it."""


class RunHeld(Exception):
    """:meth:`Store.start_run`: the run is claimed by a live worker (message: which worker, how long)."""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one run: the run's id and the claim's secret token (both needed for every write)."""

    id: int
    token: str
    task: str
    method: str
    seed: int
    budget: str


@dataclass(frozen=True)
class Slot:
    """A worker's hold on one trial slot of a shared search: ``number`` in 0 .. total-1, the secret ``token``,
    and ``previous_trial``: the trial a holder that died left unfinished (to be marked failed), or None."""

    scope: str
    number: int
    token: str
    previous_trial: int | None = None


def worker_id() -> str:
    """``host/boot/pid``: enough to tell, on this machine, whether a claim's process still exists."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}/{boot}/{os.getpid()}"


def local_and_dead(worker: str | None) -> bool:
    """True when ``worker`` names a process of this machine (same host and boot) that has exited."""
    if not worker:
        return False
    host, _, pid = worker.rpartition("/")
    if host != worker_id().rpartition("/")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    try:  # a killed child that its parent has not reaped yet is a zombie: dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


class Claims:
    """Claims on runs and on trial slots, their leases, and the writes made under a claim, on ``db``.
    ``worker``: this process's name in its claims (default ``host/boot/pid``); ``lease``: seconds its claims
    stay valid without a heartbeat (default: the store's setting)."""

    def __init__(self, db: Database, *, lease: float | None = None, worker: str | None = None) -> None:
        self.db = db
        self.worker = worker or worker_id()
        self._lease = lease

    # ---- the lease -----------------------------------------------------------------------------------
    @property
    def lease(self) -> float:
        """Seconds this process's claims stay valid after a heartbeat."""
        if self._lease is None:
            s = tables()
            with self.db.read() as c:
                v = c.execute(s.sa.select(s.settings.c.value).where(s.settings.c.key == "lease")).scalar()
            self._lease = float(v) if v is not None else DEFAULT_LEASE
        return self._lease

    def set_lease(self, seconds: float) -> None:
        """Set the store's lease (seconds; every worker that opens it afterwards uses it)."""
        seconds = float(seconds)
        if not seconds > 0 or seconds != seconds or seconds == float("inf"):
            raise ValueError(f"Invalid lease: {seconds} (expected a positive number of seconds)")
        s = tables()
        with self.db.write() as c:
            c.execute(s.settings.delete().where(s.settings.c.key == "lease"))
            c.execute(s.settings.insert().values(key="lease", value=repr(seconds)))
        self._lease = seconds

    @property
    def poll_interval(self) -> float:
        """How often a worker waiting for another's claim looks again (seconds)."""
        return min(1.0, self.lease / 4)

    # ---- claims --------------------------------------------------------------------------------------
    def claim(self, task: str, method: str, seed: int, budget: str, config: Mapping[str, Any]) -> Claim | None:
        """Claim the run (task, method, seed, budget) for this worker, atomically.

        Returns a :class:`Claim`, or None when the run is done or held by a live claim. An expired claim (or
        one whose process on this machine has exited) is taken over: its partial rows are deleted by its own
        id and token, and the run gets a new row with a new id."""
        s = tables()
        sa, runs = s.sa, s.runs
        token = secrets.token_hex(16)
        lease = self.lease
        with self.db.write() as c:
            row = c.execute(
                sa.select(
                    runs.c.id,
                    runs.c.status,
                    runs.c.token,
                    runs.c.worker,
                    sa.or_(runs.c.expires.is_(None), runs.c.expires < s.now()).label("expired"),
                )
                .where(run_key(task, method, seed, budget))
                .with_for_update()
            ).first()
            if row is not None:
                if row.status == "done" or not (row.expired or local_and_dead(row.worker)):
                    return None
                if not self._delete_run(c, row.id, row.token):
                    return None
            values = {
                "task": task,
                "method": method,
                "seed": int(seed),
                "budget": budget,
                "config": json.dumps(dict(config), sort_keys=True, default=str),
                "status": "running",
                "token": token,
                "worker": self.worker,
                "started": s.now(),
                "heartbeat": s.now(),
                "expires": s.now() + lease,
            }
            stmt = (
                self.db.insert(runs)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["task", "method", "seed", "budget"])
                .returning(runs.c.id)
            )
            new_id = c.execute(stmt).scalar()
            if new_id is None:  # another worker inserted it between our look and our insert
                return None
        return Claim(int(new_id), token, task, method, int(seed), budget)

    def start_run(self, task: str, method: str, seed: int, budget: str, config: Mapping[str, Any]) -> Claim:
        """:meth:`claim`, raising ``ValueError`` when the run is done and :class:`RunHeld` when a live worker
        holds it."""
        got = self.claim(task, method, seed, budget, config)
        if got is not None:
            return got
        s = tables()
        r = s.runs.c
        with self.db.read() as c:
            row = c.execute(
                s.sa.select(r.status, r.worker, r.expires - s.now()).where(run_key(task, method, seed, budget))
            ).first()
        if row is not None and row[0] == "done":
            raise ValueError(f"run {task} / {method} / seed {seed} / {budget} is already done")
        who, left = (row[1], row[2]) if row else ("?", 0.0)
        raise RunHeld(
            f"run {task} / {method} / seed {seed} / {budget} is claimed by {who} (lease ends in {left or 0:.0f} s)"
        )

    def _delete_run(self, c: Any, run_id: int, token: str | None) -> bool:
        """Delete an unfinished run and its points, but only while (id, token) still names it."""
        s = tables()
        runs, points = s.runs, s.points
        mine = (
            (runs.c.id == run_id)
            & (runs.c.token.is_(None) if token is None else runs.c.token == token)
            & (runs.c.status != "done")
        )
        owned = s.sa.exists().where(mine)
        c.execute(points.delete().where((points.c.run_id == run_id) & owned))
        return c.execute(runs.delete().where(mine)).rowcount == 1

    def _renew(self, c: Any, claim: Claim, lease: float) -> None:
        s = tables()
        r = s.runs.c
        n = c.execute(
            s.runs.update()
            .where((r.id == claim.id) & (r.token == claim.token) & (r.status == "running"))
            .values(heartbeat=s.now(), expires=s.now() + lease)
        ).rowcount
        if n != 1:
            raise LeaseLost(f"the claim on {claim.task} / {claim.method} / seed {claim.seed} is no longer held")

    def heartbeat(self, claim: Claim) -> None:
        """Renew the claim's lease; :class:`LeaseLost` when it is no longer held."""
        lease = self.lease
        with self.db.write() as c:
            self._renew(c, claim, lease)

    @contextlib.contextmanager
    def keep_alive(self, claim: Claim | Slot) -> Iterator[threading.Event]:
        """Renew ``claim`` (a run's or a trial slot's) from a background thread every lease / 6 while the block
        runs.

        Yields an event that is set when the claim was lost (the block should then stop its run); a failed
        heartbeat (say, the server briefly unreachable) is retried at the next beat."""
        lost, done = threading.Event(), threading.Event()
        interval = self.lease / HEARTBEATS_PER_LEASE
        renew = self.heartbeat_slot if isinstance(claim, Slot) else self.heartbeat

        def beat() -> None:
            while not done.wait(interval):
                try:
                    renew(claim)  # type: ignore[arg-type]
                except LeaseLost:
                    lost.set()
                    return
                except StoreError:
                    continue

        thread = threading.Thread(target=beat, name="adaptlr-heartbeat", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            done.set()
            thread.join()

    # ---- writing -------------------------------------------------------------------------------------
    def add_points(self, claim: Claim, points: Sequence[Mapping[str, Any]]) -> None:
        """Append a chunk of points in one transaction (which also renews the lease)."""
        lease = self.lease
        with self.db.write() as c:
            self._renew(c, claim, lease)
            self._insert_points(c, claim.id, points)

    def finish_run(self, claim: Claim, points: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
        """Write the last points and mark the run done, in one transaction (:class:`LeaseLost`: nothing
        written). ``summary``: ``steps_done``, ``wall``, ``diverged`` and any of :data:`SUMMARY_FIELDS`."""
        s = tables()
        lease = self.lease
        with self.db.write() as c:
            self._renew(c, claim, lease)
            self._insert_points(c, claim.id, points)
            c.execute(
                s.runs.update()
                .where((s.runs.c.id == claim.id) & (s.runs.c.token == claim.token))
                .values(
                    status="done",
                    finished=s.now(),
                    expires=None,
                    steps_done=int(summary["steps_done"]),
                    wall=float(summary["wall"]),
                    diverged=int(bool(summary.get("diverged"))),
                    **{k: number(summary.get(k)) for k in SUMMARY_FIELDS},
                )
            )

    def release(self, claim: Claim) -> bool:
        """Give up an unfinished run: delete its row and points if ``claim`` still holds it (True), else
        touch nothing (False)."""
        with self.db.write() as c:
            return self._delete_run(c, claim.id, claim.token)

    @staticmethod
    def _insert_points(c: Any, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        if points:
            c.execute(
                tables().points.insert(),
                [{"run_id": run_id, **{f: number(p.get(f)) for f in POINT_FIELDS}} for p in points],
            )

    # ---- shared-search slots -------------------------------------------------------------------------
    def claim_slot(self, scope: str, total: int) -> Slot | None:
        """Take a trial slot of ``scope`` (numbers 0 .. ``total`` - 1), or None when none is free now.

        Workers sharing a search each take a slot per trial, so the search runs exactly ``total`` trials.
        Slots are leased like runs: a slot whose holder died (lease expired, or its process on this machine
        has exited) and that is not done is taken over first, and comes with the trial number the dead holder
        recorded (:meth:`set_slot_trial`). :meth:`slots_done` tells a worker that got None whether to wait."""
        s = tables()
        sa, sl = s.sa, s.slots
        lease = self.lease
        while True:
            token = secrets.token_hex(16)
            with self.db.write() as c:
                rows = c.execute(
                    sa.select(
                        sl.c.slot,
                        sl.c.token,
                        sl.c.worker,
                        sl.c.trial,
                        sl.c.done,
                        sa.or_(sl.c.expires.is_(None), sl.c.expires < s.now()).label("expired"),
                    )
                    .where(sl.c.scope == scope)
                    .with_for_update()
                ).all()
                for r in rows:
                    if not r.done and (r.expired or local_and_dead(r.worker)):
                        n = c.execute(
                            sl.update()
                            .where((sl.c.scope == scope) & (sl.c.slot == r.slot) & (sl.c.token == r.token))
                            .values(token=token, worker=self.worker, claimed=s.now(), expires=s.now() + lease)
                        ).rowcount
                        if n == 1:
                            return Slot(scope, int(r.slot), token, None if r.trial is None else int(r.trial))
                taken = {int(r.slot) for r in rows}
                free = [i for i in range(int(total)) if i not in taken]
                if not free:
                    return None
                got = c.execute(
                    self.db.insert(sl)
                    .values(
                        scope=scope,
                        slot=free[0],
                        token=token,
                        worker=self.worker,
                        claimed=s.now(),
                        expires=s.now() + lease,
                        done=0,
                    )
                    .on_conflict_do_nothing(index_elements=["scope", "slot"])
                    .returning(sl.c.slot)
                ).scalar()
            if got is not None:
                return Slot(scope, int(got), token)

    def _slot_update(self, slot: Slot, **values: Any) -> None:
        s = tables()
        sl = s.slots.c
        with self.db.write() as c:
            n = c.execute(
                s.slots.update()
                .where((sl.scope == slot.scope) & (sl.slot == slot.number) & (sl.token == slot.token))
                .values(**values)
            ).rowcount
        if n != 1:
            raise LeaseLost(f"trial slot {slot.number} of {slot.scope} is no longer held")

    def heartbeat_slot(self, slot: Slot) -> None:
        """Renew a slot's lease; :class:`LeaseLost` when it is no longer held."""
        self._slot_update(slot, expires=tables().now() + self.lease)

    def set_slot_trial(self, slot: Slot, trial: int) -> None:
        """Record the trial number run in ``slot`` (marked failed by whoever takes the slot over)."""
        self._slot_update(slot, trial=int(trial), expires=tables().now() + self.lease)

    def finish_slot(self, slot: Slot) -> None:
        """The slot's trial has finished (complete, pruned or failed): the slot is done for good."""
        self._slot_update(slot, done=1, expires=None)

    def release_slot(self, slot: Slot) -> None:
        """Give a slot back unfinished (its trial was interrupted), so that another worker can take it."""
        s = tables()
        sl = s.slots.c
        with self.db.write() as c:
            c.execute(
                s.slots.delete().where((sl.scope == slot.scope) & (sl.slot == slot.number) & (sl.token == slot.token))
            )

    def slots_done(self, scope: str, total: int) -> bool:
        """True when ``total`` slots of ``scope`` are done (nothing left to wait for)."""
        s = tables()
        sl = s.slots.c
        with self.db.read() as c:
            n = c.execute(
                s.sa.select(s.sa.func.count()).select_from(s.slots).where((sl.scope == scope) & (sl.done == 1))
            ).scalar()
        return int(n) >= int(total)
