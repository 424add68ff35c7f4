"""Reading a store: the status of a run, finished runs with their configs, a run's points, the tasks. Readers
see only ``done`` runs (unless they ask for others), whose rows never change again."""

from __future__ import annotations

import json
from typing import Any

from .claims import Claim
from .schema import POINT_FIELDS, Database, run_key, tables

__all__ = ["Queries"]


class Queries:
    """The part of :class:`~adaptlr.lab.store.Store` that reads, over ``db``."""

    db: Database

    def status(self, task: str, method: str, seed: int, budget: str) -> str | None:
        """``"done"``, ``"running"`` (claimed, maybe by a worker that died) or None (absent)."""
        s = tables()
        with self.db.read() as c:
            return c.execute(s.sa.select(s.runs.c.status).where(run_key(task, method, seed, budget))).scalar()

    def runs(
        self,
        task: str | None = None,
        *,
        status: str | None = "done",
        method: str | None = None,
        budget: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs as dicts (``config`` decoded), ordered by task, method, seed."""
        s = tables()
        r = s.runs.c
        q = s.runs.select()
        for col, val in ((r.task, task), (r.status, status), (r.method, method), (r.budget, budget)):
            if val is not None:
                q = q.where(col == val)
        with self.db.read() as c:
            rows = c.execute(q.order_by(r.task, r.method, r.seed, r.id)).mappings().all()
        out = []
        for row in rows:
            d = dict(row)
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def points(self, run: int | Claim) -> list[dict[str, Any]]:
        """The logged points of a run (its id, or its claim), by step."""
        s = tables()
        p = s.points.c
        run_id = run.id if isinstance(run, Claim) else int(run)
        q = s.sa.select(*(p[f] for f in POINT_FIELDS)).where(p.run_id == run_id).order_by(p.step)
        with self.db.read() as c:
            return [dict(row) for row in c.execute(q).mappings()]

    def tasks(self) -> list[str]:
        """Tasks with at least one finished run, sorted."""
        s = tables()
        r = s.runs.c
        with self.db.read() as c:
            return list(c.execute(s.sa.select(r.task).where(r.status == "done").distinct().order_by(r.task)).scalars())
