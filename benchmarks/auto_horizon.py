"""What any choice of learning rate made early in a run could know, read off the tuned grid's stored runs alone (no
training): give every lr of the grid the first share ``h`` of its run, take per seed the lr whose run validates
best there (its own validation point nearest ``h T``, not annealed), and read where that run ends; per task the
median over seeds against the grid's own choice (``h = 1``: the final validation), within 2% / 1 point.

Auto's race decides at a few percent of the run (rung 2's branch point) with annealed branches, on 0.5 runs of
compute; this tool says how far any choice made by validation at ``h`` could land -- with every lr of the grid
trained that far, ``7 h`` runs of compute. The grid's store is the tuning-free benchmark's (``adaptlr bench
tuning-free --store``), whose runs log validation every tenth of the run.

    python benchmarks/auto_horizon.py --fractions 0.1,0.2,0.3,0.5,0.7,1 --tasks old,stress --store out/bench.db
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any


def horizon(store: str, tasks: list[str], fractions: list[float], seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """Per fraction ``h`` of the run: on how many of ``tasks`` the choice by validation at ``h`` (each seed the
    grid's lr whose run validates best at its point nearest ``h T``; a diverged run or a missing value is the
    worst) lands within 2% / 1 point of the grid's own choice (by the final validation), medians over ``seeds``.
    Tasks whose grid is not all in ``store`` are left out. Returns ``{"within": {h: n}, "tasks": n, "unknown":
    [...], "rows": {task: {h: median}}}``."""
    from adaptlr.lab.store import Store
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.tuning_free_tables import within

    counts, rows, unknown = dict.fromkeys(fractions, 0), {}, []
    with Store(store) as st:
        for name in tasks:
            found = _horizon_task(st, name, fractions, seeds)
            if found is None:
                unknown.append(name)
                continue
            grid, rows[name] = found
            for h in fractions:
                counts[h] += within(rows[name][h], grid, get_task(name).higher_is_better)
    return {"within": counts, "tasks": len(rows), "unknown": unknown, "rows": rows}


def _horizon_task(
    st: Any, name: str, fractions: list[float], seeds: tuple[int, ...]
) -> tuple[float, dict[float, float]] | None:
    """The grid's median and, per fraction, the median of the runs chosen there (:func:`horizon`)."""
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task

    task = get_task(name)
    steps, sign = TF.budget_steps(task), -1.0 if task.higher_is_better else 1.0
    runs = {(s, lr): TF.stored_run(st, task, TF.grid_spec(lr), s, steps) for s in seeds for lr in TF.grid_lrs(name)}
    if None in runs.values():
        return None
    final = {k: sign * math.inf if r["diverged"] else r["final_metric"] for k, r in runs.items()}
    curves = {k: [p for p in st.points(r["id"]) if p["val_metric"] is not None] for k, r in runs.items()}

    def seen(key: tuple[int, float], at: float) -> float:  # (lower is better)
        if runs[key]["diverged"] or not curves[key]:
            return math.inf
        v = min(curves[key], key=lambda p: abs(p["step"] - at))["val_metric"]
        return sign * v if math.isfinite(v) else math.inf

    def chosen(seed: int, h: float) -> float:
        lr = min(TF.grid_lrs(name), key=lambda g: seen((seed, g), h * steps))
        return final[(seed, lr)]

    grid = statistics.median(final[(s, TF.chosen_lr(st, task, s, steps))] for s in seeds)
    return grid, {h: statistics.median(chosen(s, h) for s in seeds) for h in fractions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fractions", default="0.1,0.2,0.3,0.5,0.7,1", help="shares of the run where the choice is made")
    ap.add_argument("--tasks", default="old,stress,holdout,unseen,fresh")
    ap.add_argument("--store", default="out/bench.db", help="the tuning-free benchmark's store (the grid's runs)")
    a = ap.parse_args()

    from adaptlr.lab import tuning_free as TF

    out = horizon(a.store, TF.resolve_tasks(a.tasks), [float(x) for x in a.fractions.split(",")])
    print(f"{out['tasks']} tasks judged ({len(out['unknown'])} whose grid is not all in the store left out)")
    for h, n in out["within"].items():
        print(f"  chosen at {h:g} of the run: {n}/{out['tasks']} within 2% / 1 point of the grid")


if __name__ == "__main__":
    main()
