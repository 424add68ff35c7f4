"""The store's database: its tables (:func:`tables`), opening a store (created, checked, or migrated from an
earlier adaptlr: :class:`Database`), its transactions, and the one-line :class:`StoreError` for a store that
cannot be used. :mod:`~adaptlr.lab.store.claims` and :mod:`~adaptlr.lab.store.queries` speak SQL through
:meth:`Database.write` and :meth:`Database.read` only.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "POINT_FIELDS",
    "SUMMARY_FIELDS",
    "Database",
    "StoreError",
    "hide_password",
    "number",
    "run_key",
    "store_url",
    "tables",
]

POINT_FIELDS = ("step", "train_loss", "lr", "eff_lr", "metric", "test_loss", "val_metric", "val_loss", "wall")
SUMMARY_FIELDS = ("final_metric", "best_metric", "final_val_metric", "best_val_metric")

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
        f"store {hide_password(loc)}: unsupported URL scheme {scheme!r} (use a file path, sqlite:///PATH or "
        "postgresql://USER@HOST/DB)"
    )


def hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@functools.cache
def tables() -> Any:
    """SQLAlchemy (``.sa``), the tables (``.runs``, ``.points``, ``.settings``, ``.slots``, in ``.md``) and the
    database clock (``.now()``, seconds since the epoch), built once, on first use."""
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


def run_key(task: str, method: str, seed: int, budget: str) -> Any:
    """The condition that selects the run (task, method, seed, budget) in the ``runs`` table."""
    r = tables().runs.c
    return (r.task == task) & (r.method == method) & (r.seed == int(seed)) & (r.budget == budget)


def number(x: Any) -> float | int | None:
    """A point or summary value as stored: None for None (and for non-finite floats: diverged is a flag)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    v = float(x)
    return v if v == v and abs(v) != float("inf") else None


class Database:
    """The database of a store at ``location``: the engine, the tables (created, checked, migrated when it is
    opened), and its transactions. See :class:`~adaptlr.lab.store.Store` for the arguments."""

    def __init__(self, location: str | os.PathLike[str], *, timeout: float = 60.0, check: bool = True) -> None:
        s = tables()
        self.location = hide_password(os.fspath(location))
        self.url = store_url(location)
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
        with self.errors("cannot open"):
            self._open(check)

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
        s = tables()
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
        with self.read() as c:
            missing = self._schema_gaps(c)
        if missing:
            with self.write() as c:
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
        s = tables()
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
        s = tables()
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

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
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
    def write(self) -> Iterator[Any]:
        """One write transaction (SQLite ``BEGIN IMMEDIATE``: writers queue up front, never deadlock)."""
        with self.errors("cannot write"), self.engine.connect() as conn:
            conn = conn.execution_options(adaptlr_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        with self.errors("cannot read"), self.engine.connect() as conn, conn.begin():
            yield conn

    def insert(self, table: Any) -> Any:
        """An ``INSERT`` into ``table`` in this database's dialect (for ``ON CONFLICT DO NOTHING``)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)
