"""The result store: SQLite (standard library), WAL mode, one transaction per chunk of logged points.

Tables:

- ``runs``: one row per (task, method, seed, budget) — ``method`` is the spec's canonical form and ``budget``
  a string such as ``"steps=250,batch=64"`` — with the run's config (JSON), status (``running`` / ``done``),
  and its summary once done.
- ``points``: (run_id, step) -> train loss, lr, effective lr, test metric, test loss, wall time.

A run that was killed or interrupted stays ``running``; the runner deletes and redoes it (training is
deterministic per seed), so the store never holds duplicate or half-written runs. Finishing a run writes its
last points and its ``done`` status in the same transaction. Run one comparison per store at a time (several
machines sharing an Optuna study each keep their own store).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["POINT_FIELDS", "Store"]

POINT_FIELDS = ("step", "train_loss", "lr", "eff_lr", "metric", "test_loss", "wall")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    steps_done INTEGER,
    wall REAL,
    final_metric REAL,
    best_metric REAL,
    diverged INTEGER,
    UNIQUE (task, method, seed, budget)
);
CREATE TABLE IF NOT EXISTS points (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    train_loss REAL,
    lr REAL,
    eff_lr REAL,
    metric REAL,
    test_loss REAL,
    wall REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""


def budget_key(steps: int, batch_size: int, **extra: Any) -> str:
    """The budget part of a run's key: ``"steps=250,batch=64"`` plus any non-default data options."""
    parts = [f"steps={int(steps)}", f"batch={int(batch_size)}"]
    parts += [f"{k}={v}" for k, v in sorted(extra.items()) if v is not None]
    return ",".join(parts)


class Store:
    """A SQLite result store at ``path`` (created if missing). Safe to open from several processes."""

    def __init__(self, path: str | Path = "runs.db", timeout: float = 60.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transactions --------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self.conn)

    # ---- writing -------------------------------------------------------------------------------------
    def start_run(self, task: str, method: str, seed: int, budget: str, config: Mapping[str, Any]) -> int:
        """Create the run's row (status ``running``), replacing an unfinished one with the same key."""
        with self._tx() as c:
            row = c.execute(
                "SELECT id, status FROM runs WHERE task=? AND method=? AND seed=? AND budget=?",
                (task, method, seed, budget),
            ).fetchone()
            if row is not None:
                if row["status"] == "done":
                    raise ValueError(f"run {task} / {method} / seed {seed} / {budget} is already done")
                c.execute("DELETE FROM points WHERE run_id=?", (row["id"],))
                c.execute("DELETE FROM runs WHERE id=?", (row["id"],))
            cur = c.execute(
                "INSERT INTO runs (task, method, seed, budget, config, status, started) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (task, method, seed, budget, json.dumps(config, sort_keys=True, default=str), time.time()),
            )
            return int(cur.lastrowid)

    def add_points(self, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        """Append a chunk of points in one transaction."""
        with self._tx() as c:
            self._insert(c, run_id, points)

    def finish_run(
        self, run_id: int, points: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]
    ) -> None:
        """Write the last points and mark the run done, atomically."""
        with self._tx() as c:
            self._insert(c, run_id, points)
            c.execute(
                "UPDATE runs SET status='done', finished=?, steps_done=?, wall=?, final_metric=?, "
                "best_metric=?, diverged=? WHERE id=?",
                (
                    time.time(),
                    summary["steps_done"],
                    summary["wall"],
                    summary.get("final_metric"),
                    summary.get("best_metric"),
                    int(bool(summary.get("diverged"))),
                    run_id,
                ),
            )

    @staticmethod
    def _insert(c: sqlite3.Connection, run_id: int, points: Iterable[Mapping[str, Any]]) -> None:
        c.executemany(
            f"INSERT INTO points (run_id, {', '.join(POINT_FIELDS)}) VALUES (?, "
            + ", ".join("?" * len(POINT_FIELDS))
            + ")",
            [(run_id, *(p.get(f) for f in POINT_FIELDS)) for p in points],
        )

    def discard_unfinished(self) -> int:
        """Delete runs left ``running`` (killed or interrupted) and their points; returns how many."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM runs WHERE status != 'done'")]
            c.executemany("DELETE FROM points WHERE run_id=?", [(i,) for i in ids])
            c.executemany("DELETE FROM runs WHERE id=?", [(i,) for i in ids])
        return len(ids)

    # ---- reading -------------------------------------------------------------------------------------
    def status(self, task: str, method: str, seed: int, budget: str) -> str | None:
        row = self.conn.execute(
            "SELECT status FROM runs WHERE task=? AND method=? AND seed=? AND budget=?",
            (task, method, seed, budget),
        ).fetchone()
        return None if row is None else str(row[0])

    def runs(
        self,
        task: str | None = None,
        *,
        status: str | None = "done",
        method: str | None = None,
        budget: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs as dicts (``config`` decoded), ordered by task, method, seed."""
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("task", task), ("status", status), ("method", method), ("budget", budget)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        rows = self.conn.execute(sql + " ORDER BY task, method, seed, id", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def points(self, run_id: int) -> list[dict[str, Any]]:
        """The run's logged points, by step."""
        rows = self.conn.execute(
            f"SELECT {', '.join(POINT_FIELDS)} FROM points WHERE run_id=? ORDER BY step", (run_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def tasks(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute("SELECT DISTINCT task FROM runs WHERE status='done' ORDER BY task")
        ]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception, KeyboardInterrupt included)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
