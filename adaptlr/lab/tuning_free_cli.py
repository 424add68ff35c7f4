"""The tuning-free benchmark's command line (``adaptlr bench tuning-free``, ``python benchmarks/tuning_free.py``):
which tasks, seeds and methods, then :func:`adaptlr.lab.tuning_free.run` and its tables."""

from __future__ import annotations

from collections.abc import Sequence

from . import tuning_free
from .grammar import parse_method
from .tuning_free import (
    GRID,
    ORACLE,
    RANGE_TEST,
    Bench,
    grid_table,
    performance_profile,
    resolve_tasks,
    run,
    summarize,
    table,
    task_sets,
)

__all__ = ["main", "parse_methods"]


def parse_methods(items: Sequence[str]) -> dict[str, str]:
    """``label=spec`` or a bare ``spec`` (its label: the spec itself) per item, each spec validated now; an
    ``=`` inside the spec's parentheses (``auto(budget=1.5)``) is the spec's own."""
    out: dict[str, str] = {}
    for item in items:
        head, eq, tail = item.partition("=")
        label, spec = (head.strip(), tail.strip()) if eq and "(" not in head else (item.strip(), item.strip())
        parse_method(spec).validate()
        if label in out or label in (GRID, RANGE_TEST, ORACLE):
            raise ValueError(f"method label {label!r} given twice or reserved")
        out[label] = spec
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    about = (tuning_free.__doc__ or "").split("\n\n")[0]
    ap = argparse.ArgumentParser(prog="adaptlr bench tuning-free", description=about)
    ap.add_argument("--store", default="tuning_free.db")
    sets = "comma-separated tasks and sets: old (first 12), " + ", ".join(list(task_sets())[1:])
    ap.add_argument("--tasks", default="old,stress", help=sets + ", all; default old,stress")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="one budget for all tasks (default: per task)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the grid's runs")
    only = "only these methods besides the grid (e.g. auto 'auto(budget=1.5)'), the grid's runs in the store reused"
    ap.add_argument("--methods", nargs="+", metavar="[LABEL=]SPEC", help=only)
    ap.add_argument("--grid-only", action="store_true", help="train only the grid and print its table")
    ceiling = "also run Auto with each seed's chosen lr as its only candidate: what its choice could reach at best"
    ap.add_argument("--oracle", action="store_true", help=ceiling)
    ap.add_argument("--figure", default="tuning_free_profile.png")
    ap.add_argument("--report-only", action="store_true", help="only print the tables from the store")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    methods = parse_methods(a.methods) if a.methods else ({} if a.grid_only else None)
    bench = Bench(
        a.store, resolve_tasks(a.tasks), tuple(range(a.seeds)), a.steps, methods_only=methods, oracle=a.oracle
    )
    if not a.report_only:
        run(bench, jobs=a.jobs, progress=not a.no_progress, grid_only=a.grid_only)
    s = summarize(bench)
    print(grid_table(s) if a.grid_only else grid_table(s) + "\n\n" + table(s))
    if a.figure and not a.grid_only:
        print(f"\nperformance profile: {performance_profile(s, a.figure)}")
    return 0
