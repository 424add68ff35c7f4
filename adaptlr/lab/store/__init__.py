"""The result store: SQLite (a path, the default) or PostgreSQL (a URL), through one SQLAlchemy Core code path.

>>> with Store(":memory:") as st:
...     claim = st.claim("linreg", "sgd(lr=0.1)", 0, "steps=2,batch=8", {})
...     st.finish_run(claim, [{"step": 1, "wall": 0.0}, {"step": 2, "wall": 0.1}], {"steps_done": 2, "wall": 0.1})
...     [r["status"] for r in st.runs()], len(st.points(claim.id))
(['done'], 2)

``location`` is a file path (SQLite, WAL mode, created if missing), ``sqlite:///path``, or
``postgresql://user@host/db`` (psycopg 3; ``postgresql://user@/db?host=/socket/dir`` for a Unix socket).
SQLAlchemy and psycopg come with ``pip install 'adaptlr[store]'`` and are imported when a store is opened.

Tables:

- ``runs``: one row per (task, method, seed, budget) — ``method`` is the spec's canonical form and ``budget``
  a string such as ``"steps=250,batch=64"`` — with the run's config (JSON), status (``running`` / ``done``),
  its claim (``token``, ``worker``, ``heartbeat``, ``expires``) and its summary once done (``final_metric``,
  ``best_metric`` on the test split, ``final_val_metric``, ``best_val_metric`` on the validation split).
  Ids come from ``AUTOINCREMENT`` (SQLite) or a sequence (PostgreSQL): an id is never given out twice.
- ``points``: (run_id, step) -> train loss, lr, effective lr, test metric and loss, validation metric and
  loss, wall time.
- ``adaptlr_settings`` (the lease) and ``adaptlr_slots`` (the trial slots of a shared search).

**Claims.** A worker trains a run only after :meth:`Store.claim` returned a :class:`Claim` for it: one
transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` and ``INSERT ... ON CONFLICT DO
NOTHING``) that finds the run absent, or held by a claim that has expired, and inserts a new row with a fresh
id and a random token. Every later write (:meth:`add_points`, :meth:`finish_run`, :meth:`heartbeat`,
:meth:`release`) names the claim's id *and* token and changes nothing when they no longer match — it raises
:class:`LeaseLost` instead — so a worker whose claim was taken over can never touch the new holder's rows.

**Leases.** A claim is valid until ``expires`` = the last heartbeat + the lease (default
:data:`DEFAULT_LEASE` = 60 s, a property of the store: :meth:`Store.set_lease`). The holder renews it with
every chunk of points and, while training, from a background thread every lease / 6
(:meth:`Store.keep_alive`), so a live worker misses five heartbeats before it can lose its claim. Times are
the database's clock (``julianday('now')`` in SQLite, ``clock_timestamp()`` in PostgreSQL), so machines with
skewed clocks agree. A worker that dies stops renewing: once its claim has expired, the next worker to
look deletes the partial run (by that claim's id and token) and trains it again (training is deterministic
per seed). A claim held by a process on this machine that no longer exists is treated as expired at once.

**Complete or absent.** A run's last points and its ``done`` status are written in one transaction; readers
(:meth:`runs`, reports) see only ``done`` runs, whose rows never change again.

**Errors.** A store that cannot be used — not a database, damaged (``PRAGMA quick_check`` fails), not an
adaptlr store, unwritable, unreachable — raises :class:`StoreError` whose message is one line naming the store
(passwords hidden) and what is wrong. The CLI prints that line and exits with status 2. It is raised when
the store is opened or by the claim that precedes any training, so a damaged store is never trained into.

**Modules.** :mod:`~adaptlr.lab.store.schema` (the tables, opening and migrating a store, transactions),
:mod:`~adaptlr.lab.store.claims` (claims, leases and the writes made under them: :class:`Claims`),
:mod:`~adaptlr.lab.store.queries` (reading: :class:`Queries`); :class:`Store` is both, on one database.
"""

from __future__ import annotations

import os
from typing import Any

from .claims import DEFAULT_LEASE, HEARTBEATS_PER_LEASE, Claim, Claims, LeaseLost, RunHeld, Slot
from .queries import Queries
from .schema import POINT_FIELDS, SUMMARY_FIELDS, Database, StoreError, store_url, tables

__all__ = [
    "DEFAULT_LEASE",
    "HEARTBEATS_PER_LEASE",
    "POINT_FIELDS",
    "SUMMARY_FIELDS",
    "Claim",
    "LeaseLost",
    "RunHeld",
    "Slot",
    "Store",
    "StoreError",
    "budget_key",
    "store_url",
]


def budget_key(steps: int, batch_size: int, **extra: Any) -> str:
    """The budget part of a run's key: ``"steps=250,batch=64"`` plus any non-default data options."""
    parts = [f"steps={int(steps)}", f"batch={int(batch_size)}"]
    parts += [f"{k}={v}" for k, v in sorted(extra.items()) if v is not None]
    return ",".join(parts)


class Store(Claims, Queries):
    """A result store at ``location`` (a SQLite path, created if missing, or a PostgreSQL URL).

    Safe to use from many processes and machines at once (see the module docstring: claims, leases).
    ``lease``: seconds this process's claims stay valid without a heartbeat (default: the store's setting,
    :data:`DEFAULT_LEASE` unless :meth:`set_lease` changed it). ``check``: run SQLite's ``PRAGMA quick_check``
    on open (0.45 s for a store of a million points, 84 MB), so that a damaged file raises
    :class:`StoreError` before anything is written. ``timeout``: seconds to wait for another writer's lock
    (SQLite) or for a connection. ``worker``: this process's name in its claims (default ``host/boot/pid``).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] = "runs.db",
        *,
        lease: float | None = None,
        timeout: float = 60.0,
        check: bool = True,
        worker: str | None = None,
    ) -> None:
        db = Database(location, timeout=timeout, check=check)
        super().__init__(db, lease=lease, worker=worker)
        self.location, self.url = db.location, db.url  # the location as shown (no password); SQLAlchemy's
        self.dialect, self.path, self.engine = db.dialect, db.path, db.engine

    def check_writable(self) -> None:
        """Raise :class:`StoreError` now, before any training, when this process cannot write the store."""
        with self.db.write() as c:
            c.execute(tables().settings.select().limit(1))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.location!r})"
