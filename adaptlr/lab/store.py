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
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LEASE",
    "POINT_FIELDS",
    "Claim",
    "LeaseLost",
    "RunHeld",
    "Slot",
    "Store",
    "StoreError",
    "budget_key",
    "store_url",
]

POINT_FIELDS = ("step", "train_loss", "lr", "eff_lr", "metric", "test_loss", "val_metric", "val_loss", "wall")
SUMMARY_FIELDS = ("final_metric", "best_metric", "final_val_metric", "best_val_metric")

#: Seconds a claim stays valid after its last heartbeat (heartbeats come every lease / 6).
DEFAULT_LEASE = 60.0
HEARTBEATS_PER_LEASE = 6

# columns a store written by an earlier adaptlr may lack: added (all NULL) when such a store is opened
_ADDED_COLUMNS = {
    "runs": ("token", "worker", "heartbeat", "expires", "final_val_metric", "best_val_metric"),
    "points": ("val_metric", "val_loss"),
}


class StoreError(Exception):
    """The store cannot be used: not a database, damaged, not an adaptlr store, unwritable or unreachable.

    ``str(error)`` is one line, ``"store <path or URL>: <what is wrong>"`` (passwords hidden), meant to be
    shown as it is: ``adaptlr`` prints it and exits with status 2. Raised before anything is trained into the
    store (when it is opened, or by the claim that precedes a run)."""


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


def budget_key(steps: int, batch_size: int, **extra: Any) -> str:
    """The budget part of a run's key: ``"steps=250,batch=64"`` plus any non-default data options."""
    parts = [f"steps={int(steps)}", f"batch={int(batch_size)}"]
    parts += [f"{k}={v}" for k, v in sorted(extra.items()) if v is not None]
    return ",".join(parts)


def store_url(location: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of a store location: a path -> ``sqlite:///path``; ``postgresql://`` and
    ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3); ``sqlite:///...`` and ``postgresql+psycopg://...``
    unchanged. Anything else raises :class:`StoreError`."""
    loc = os.fspath(location)
    if "://" not in loc:
        return "sqlite://" if loc == ":memory:" else f"sqlite:///{loc}"
    scheme, rest = loc.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return loc
    raise StoreError(
        f"store {_hide_password(loc)}: unsupported URL scheme {scheme!r} (use a file path, sqlite:///PATH or "
        "postgresql://USER@HOST/DB)"
    )


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _worker_id() -> str:
    """``host/boot/pid``: enough to tell, on this machine, whether a claim's process still exists."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}/{boot}/{os.getpid()}"


def _local_and_dead(worker: str | None) -> bool:
    """True when ``worker`` names a process of this machine (same host and boot) that has exited."""
    if not worker:
        return False
    host, _, pid = worker.rpartition("/")
    if host != _worker_id().rpartition("/")[0] or not pid.isdigit():
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


@functools.cache
def _sql() -> Any:
    """SQLAlchemy, the tables and the database-clock expression (built once, on first use)."""
    try:
        import sqlalchemy as sa
        from sqlalchemy.ext.compiler import compiles
        from sqlalchemy.sql.expression import FunctionElement
    except ImportError as e:  # pragma: no cover - the store extra is installed with the lab
        raise StoreError(f"the result store needs SQLAlchemy: pip install 'adaptlr[store]' ({e})") from None

    class db_now(FunctionElement):  # noqa: N801 - reads as a SQL function
        """The database's clock in seconds since the epoch."""

        type = sa.Double()
        inherit_cache = True

    @compiles(db_now, "sqlite")
    def _now_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
        return "((julianday('now') - 2440587.5) * 86400.0)"

    @compiles(db_now, "postgresql")
    def _now_pg(element: Any, compiler: Any, **kw: Any) -> str:
        return "extract(epoch from clock_timestamp())::double precision"

    md = sa.MetaData()
    f = sa.Double
    runs = sa.Table(
        "runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("budget", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("token", sa.Text),
        sa.Column("worker", sa.Text),
        sa.Column("started", f, nullable=False),
        sa.Column("heartbeat", f),
        sa.Column("expires", f),
        sa.Column("finished", f),
        sa.Column("steps_done", sa.Integer),
        sa.Column("wall", f),
        sa.Column("final_metric", f),
        sa.Column("best_metric", f),
        sa.Column("final_val_metric", f),
        sa.Column("best_val_metric", f),
        sa.Column("diverged", sa.Integer),
        sa.UniqueConstraint("task", "method", "seed", "budget", name="runs_key"),
        sqlite_autoincrement=True,
    )
    points = sa.Table(
        "points",
        md,
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        *(sa.Column(n, f) for n in POINT_FIELDS[1:-1]),
        sa.Column("wall", f, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step"),
    )
    settings = sa.Table(
        "adaptlr_settings", md, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text)
    )
    slots = sa.Table(
        "adaptlr_slots",
        md,
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("claimed", f),
        sa.Column("expires", f),
        sa.Column("trial", sa.Integer),
        sa.Column("done", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("scope", "slot"),
    )

    class SQL:
        pass

    s = SQL()
    s.sa, s.md, s.now = sa, md, db_now
    s.runs, s.points, s.settings, s.slots = runs, points, settings, slots
    return s


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


class Store:
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
        s = _sql()
        self.location = _hide_password(os.fspath(location))
        self.url = store_url(location)
        self.worker = worker or _worker_id()
        self._lease = lease
        sa = s.sa
        url = sa.engine.make_url(self.url)
        self.dialect = url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"store {self.location}: only SQLite and PostgreSQL are supported")
        self.path = url.database if self.dialect == "sqlite" else None
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if self.path in (None, "", ":memory:"):
                kwargs["poolclass"] = sa.pool.StaticPool  # one in-memory database for every thread
                kwargs["connect_args"] = {"check_same_thread": False, "timeout": timeout}
            else:
                kwargs["connect_args"] = {"timeout": timeout}
                try:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(f"store {self.location}: cannot create its folder ({e.strerror})") from None
                if Path(self.path).is_dir():
                    raise StoreError(f"store {self.location}: is a directory, not a SQLite file")
        else:
            kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout))}
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            self._sqlite_events()
        with self._errors("cannot open"):
            self._open(check)

    # ---- set-up --------------------------------------------------------------------------------------
    def _sqlite_events(self) -> None:
        from sqlalchemy import event

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, explicitly
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("adaptlr_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

    def _open(self, check: bool) -> None:
        s = _sql()
        if self.dialect == "sqlite" and self.path not in (None, "", ":memory:"):
            with self.engine.connect() as c:
                raw = c.connection.dbapi_connection
                mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal" and (not Path(self.path).exists() or os.access(self.path, os.W_OK)):
                    raw.execute("PRAGMA journal_mode=WAL")  # persistent: set once, by the first writer
                if check:
                    bad = [r[0] for r in raw.execute("PRAGMA quick_check(3)").fetchall()]
                    if bad != ["ok"]:
                        raise StoreError(f"store {self.location}: the SQLite file is damaged ({'; '.join(bad)})")
        with self._read() as c:
            missing = self._schema_gaps(c)
        if missing:
            with self._write() as c:
                if self.dialect == "postgresql":  # one worker creates the tables, the others wait
                    c.execute(s.sa.text("SELECT pg_advisory_xact_lock(7238146)"))
                missing = self._schema_gaps(c)
                if missing:
                    if self.dialect == "sqlite" and any(missing.values()):
                        self._rebuild_sqlite(c)
                    s.md.create_all(c, checkfirst=True)
                    for table, cols in missing.items():
                        if self.dialect == "sqlite":
                            continue
                        for col in cols:
                            kind = s.md.tables[table].c[col].type.compile(dialect=c.dialect)
                            c.execute(s.sa.text(f"ALTER TABLE {table} ADD COLUMN {col} {kind}"))

    def _rebuild_sqlite(self, c: Any) -> None:
        """A store from an earlier adaptlr (no claim columns, ids without ``AUTOINCREMENT``): copy its rows
        into tables of the current schema, in the open transaction (all or nothing)."""
        s = _sql()
        text = s.sa.text
        old_cols = {t: [r[1] for r in c.execute(text(f"PRAGMA table_info({t})"))] for t in ("runs", "points")}
        c.execute(text("PRAGMA defer_foreign_keys=ON"))  # points reference runs while both are moved
        c.execute(text("ALTER TABLE points RENAME TO adaptlr_old_points"))
        c.execute(text("ALTER TABLE runs RENAME TO adaptlr_old_runs"))
        s.runs.create(c)
        s.points.create(c)
        for t in ("runs", "points"):
            cols = ", ".join(col for col in old_cols[t] if col in s.md.tables[t].c)
            c.execute(text(f"INSERT INTO {t} ({cols}) SELECT {cols} FROM adaptlr_old_{t}"))
        c.execute(text("DROP TABLE adaptlr_old_points"))
        c.execute(text("DROP TABLE adaptlr_old_runs"))

    def _schema_gaps(self, c: Any) -> dict[str, list[str]]:
        """{table: [columns of a store from an earlier adaptlr to add]}; {} for a complete store; a table
        missing altogether is created. A table that cannot be an adaptlr store's raises StoreError."""
        s = _sql()
        insp = s.sa.inspect(c)
        names = set(insp.get_table_names())
        gaps: dict[str, list[str]] = {}
        for table in (s.runs, s.points, s.settings, s.slots):
            if table.name not in names:
                gaps.setdefault(table.name, [])
                continue
            have = {col["name"] for col in insp.get_columns(table.name)}
            lacking = [col.name for col in table.columns if col.name not in have]
            added = [n for n in lacking if n in _ADDED_COLUMNS.get(table.name, ())]
            other = [n for n in lacking if n not in added]
            if other:
                raise StoreError(
                    f"store {self.location}: not an adaptlr result store (table {table.name!r} has no column "
                    f"{', '.join(other)})"
                )
            if added:
                gaps[table.name] = added
        return gaps

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    # ---- transactions --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database failures (other than a violated constraint, a caller's bug) -> one-line StoreError."""
        from sqlalchemy import exc

        try:
            yield
        except exc.IntegrityError:
            raise
        except (exc.OperationalError, exc.DatabaseError, exc.InterfaceError, sqlite3.Error) as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            text = reason[0] if reason else type(e).__name__
            if "not a database" in text or "malformed" in text:
                what = f"not a SQLite database or damaged ({text})"
            elif "readonly" in text or "read-only" in text:
                what = f"cannot write ({text})"
            elif "connection" in text and ("failed" in text or "refused" in text):
                what = f"cannot connect ({text})"
            elif "unable to open" in text:
                what = f"cannot open the file ({text}: check the path and its folder's permissions)"
            else:
                what = f"{doing} ({text})"
            raise StoreError(f"store {self.location}: {what}") from None
        except PermissionError as e:
            raise StoreError(f"store {self.location}: {doing} ({e})") from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction (SQLite ``BEGIN IMMEDIATE``: writers queue up front, never deadlock)."""
        with self._errors("cannot write"), self.engine.connect() as conn:
            conn = conn.execution_options(adaptlr_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self._errors("cannot read"), self.engine.connect() as conn, conn.begin():
            yield conn

    def check_writable(self) -> None:
        """Raise :class:`StoreError` now, before any training, when this process cannot write the store."""
        with self._write() as c:
            c.execute(_sql().settings.select().limit(1))

    # ---- the lease -----------------------------------------------------------------------------------
    @property
    def lease(self) -> float:
        """Seconds this process's claims stay valid after a heartbeat."""
        if self._lease is None:
            s = _sql()
            with self._read() as c:
                v = c.execute(s.sa.select(s.settings.c.value).where(s.settings.c.key == "lease")).scalar()
            self._lease = float(v) if v is not None else DEFAULT_LEASE
        return self._lease

    def set_lease(self, seconds: float) -> None:
        """Set the store's lease (seconds; every worker that opens it afterwards uses it)."""
        seconds = float(seconds)
        if not seconds > 0 or seconds != seconds or seconds == float("inf"):
            raise ValueError(f"Invalid lease: {seconds} (expected a positive number of seconds)")
        s = _sql()
        with self._write() as c:
            c.execute(s.settings.delete().where(s.settings.c.key == "lease"))
            c.execute(s.settings.insert().values(key="lease", value=repr(seconds)))
        self._lease = seconds

    @property
    def poll_interval(self) -> float:
        """How often a worker waiting for another's claim looks again (seconds)."""
        return min(1.0, self.lease / 4)

    # ---- claims --------------------------------------------------------------------------------------
    def _key(self, task: str, method: str, seed: int, budget: str) -> Any:
        r = _sql().runs.c
        return (r.task == task) & (r.method == method) & (r.seed == int(seed)) & (r.budget == budget)

    def claim(self, task: str, method: str, seed: int, budget: str, config: Mapping[str, Any]) -> Claim | None:
        """Claim the run (task, method, seed, budget) for this worker, atomically.

        Returns a :class:`Claim`, or None when the run is done or held by a live claim. An expired claim (or
        one whose process on this machine has exited) is taken over: its partial rows are deleted by its own
        id and token, and the run gets a new row with a new id."""
        s = _sql()
        sa, runs = s.sa, s.runs
        token = secrets.token_hex(16)
        lease = self.lease
        with self._write() as c:
            row = c.execute(
                sa.select(
                    runs.c.id,
                    runs.c.status,
                    runs.c.token,
                    runs.c.worker,
                    sa.or_(runs.c.expires.is_(None), runs.c.expires < s.now()).label("expired"),
                )
                .where(self._key(task, method, seed, budget))
                .with_for_update()
            ).first()
            if row is not None:
                if row.status == "done" or not (row.expired or _local_and_dead(row.worker)):
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
                _insert(self.dialect, runs)
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
        if self.status(task, method, seed, budget) == "done":
            raise ValueError(f"run {task} / {method} / seed {seed} / {budget} is already done")
        s = _sql()
        with self._read() as c:
            holder = c.execute(
                s.sa.select(s.runs.c.worker, s.runs.c.expires - s.now()).where(self._key(task, method, seed, budget))
            ).first()
        who, left = (holder[0], holder[1]) if holder else ("?", 0.0)
        raise RunHeld(
            f"run {task} / {method} / seed {seed} / {budget} is claimed by {who} (lease ends in {left or 0:.0f} s)"
        )

    def _delete_run(self, c: Any, run_id: int, token: str | None) -> bool:
        """Delete an unfinished run and its points, but only while (id, token) still names it."""
        s = _sql()
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
        s = _sql()
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
        with self._write() as c:
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
        with self._write() as c:
            self._renew(c, claim, lease)
            self._insert_points(c, claim.id, points)

    def finish_run(self, claim: Claim, points: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
        """Write the last points and mark the run done, in one transaction (:class:`LeaseLost`: nothing
        written). ``summary``: ``steps_done``, ``wall``, ``diverged`` and any of :data:`SUMMARY_FIELDS`."""
        s = _sql()
        lease = self.lease
        with self._write() as c:
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
                    **{k: _number(summary.get(k)) for k in SUMMARY_FIELDS},
                )
            )

    def release(self, claim: Claim) -> bool:
        """Give up an unfinished run: delete its row and points if ``claim`` still holds it (True), else
        touch nothing (False)."""
        with self._write() as c:
            return self._delete_run(c, claim.id, claim.token)

    @staticmethod
    def _insert_points(c: Any, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        if points:
            c.execute(
                _sql().points.insert(),
                [{"run_id": run_id, **{f: _number(p.get(f)) for f in POINT_FIELDS}} for p in points],
            )

    # ---- shared-search slots -------------------------------------------------------------------------
    def claim_slot(self, scope: str, total: int) -> Slot | None:
        """Take a trial slot of ``scope`` (numbers 0 .. ``total`` - 1), or None when none is free now.

        Workers sharing a search each take a slot per trial, so the search runs exactly ``total`` trials.
        Slots are leased like runs: a slot whose holder died (lease expired, or its process on this machine
        has exited) and that is not done is taken over first, and comes with the trial number the dead holder
        recorded (:meth:`set_slot_trial`). :meth:`slots_done` tells a worker that got None whether to wait."""
        s = _sql()
        sa, sl = s.sa, s.slots
        lease = self.lease
        while True:
            token = secrets.token_hex(16)
            with self._write() as c:
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
                    if not r.done and (r.expired or _local_and_dead(r.worker)):
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
                    _insert(self.dialect, sl)
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
        s = _sql()
        sl = s.slots.c
        with self._write() as c:
            n = c.execute(
                s.slots.update()
                .where((sl.scope == slot.scope) & (sl.slot == slot.number) & (sl.token == slot.token))
                .values(**values)
            ).rowcount
        if n != 1:
            raise LeaseLost(f"trial slot {slot.number} of {slot.scope} is no longer held")

    def heartbeat_slot(self, slot: Slot) -> None:
        """Renew a slot's lease; :class:`LeaseLost` when it is no longer held."""
        self._slot_update(slot, expires=_sql().now() + self.lease)

    def set_slot_trial(self, slot: Slot, trial: int) -> None:
        """Record the trial number run in ``slot`` (marked failed by whoever takes the slot over)."""
        self._slot_update(slot, trial=int(trial), expires=_sql().now() + self.lease)

    def finish_slot(self, slot: Slot) -> None:
        """The slot's trial has finished (complete, pruned or failed): the slot is done for good."""
        self._slot_update(slot, done=1, expires=None)

    def release_slot(self, slot: Slot) -> None:
        """Give a slot back unfinished (its trial was interrupted), so that another worker can take it."""
        s = _sql()
        sl = s.slots.c
        with self._write() as c:
            c.execute(
                s.slots.delete().where((sl.scope == slot.scope) & (sl.slot == slot.number) & (sl.token == slot.token))
            )

    def slots_done(self, scope: str, total: int) -> bool:
        """True when ``total`` slots of ``scope`` are done (nothing left to wait for)."""
        s = _sql()
        sl = s.slots.c
        with self._read() as c:
            n = c.execute(
                s.sa.select(s.sa.func.count()).select_from(s.slots).where((sl.scope == scope) & (sl.done == 1))
            ).scalar()
        return int(n) >= int(total)

    # ---- reading -------------------------------------------------------------------------------------
    def status(self, task: str, method: str, seed: int, budget: str) -> str | None:
        """``"done"``, ``"running"`` (claimed, maybe by a worker that died) or None (absent)."""
        s = _sql()
        with self._read() as c:
            return c.execute(s.sa.select(s.runs.c.status).where(self._key(task, method, seed, budget))).scalar()

    def runs(
        self,
        task: str | None = None,
        *,
        status: str | None = "done",
        method: str | None = None,
        budget: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs as dicts (``config`` decoded), ordered by task, method, seed."""
        s = _sql()
        r = s.runs.c
        q = s.runs.select()
        for col, val in ((r.task, task), (r.status, status), (r.method, method), (r.budget, budget)):
            if val is not None:
                q = q.where(col == val)
        with self._read() as c:
            rows = c.execute(q.order_by(r.task, r.method, r.seed, r.id)).mappings().all()
        out = []
        for row in rows:
            d = dict(row)
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def points(self, run: int | Claim) -> list[dict[str, Any]]:
        """The logged points of a run (its id, or its claim), by step."""
        s = _sql()
        p = s.points.c
        run_id = run.id if isinstance(run, Claim) else int(run)
        q = s.sa.select(*(p[f] for f in POINT_FIELDS)).where(p.run_id == run_id).order_by(p.step)
        with self._read() as c:
            return [dict(row) for row in c.execute(q).mappings()]

    def tasks(self) -> list[str]:
        """Tasks with at least one finished run, sorted."""
        s = _sql()
        r = s.runs.c
        with self._read() as c:
            return list(c.execute(s.sa.select(r.task).where(r.status == "done").distinct().order_by(r.task)).scalars())


def _number(x: Any) -> float | int | None:
    """A point or summary value as stored: None for None (and for non-finite floats: diverged is a flag)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    v = float(x)
    return v if v == v and abs(v) != float("inf") else None
