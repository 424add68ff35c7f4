"""The commands that train into a store and read it: ``adaptlr compare``, ``adaptlr report``, ``adaptlr tune``."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from .common import (
    UsageError,
    add_run_options,
    check_methods,
    finite_float,
    new_console,
    open_store,
    positive,
    use_threads,
)

__all__ = ["add_commands", "cmd_compare", "cmd_report", "cmd_tune"]


def cmd_compare(a: argparse.Namespace) -> int:
    from ..comparison import compare
    from ..grammar import split_methods
    from ..report import report

    use_threads(a.threads)
    methods = split_methods(a.methods)
    tasks = [t.strip() for t in a.task.split(",") if t.strip()]
    if not tasks:
        raise UsageError("--task is empty")
    check_methods(methods, tasks, a.steps)
    open_store(a.store)
    console = new_console()
    t0 = time.perf_counter()
    res = compare(
        tasks,
        methods,
        a.seeds,
        store=a.store,
        jobs=a.jobs,
        steps=a.steps,
        batch_size=a.batch_size,
        eval_every=a.eval_every,
        data_dir=a.data_dir,
        progress=not a.no_progress,
        console=console,
        imports=a.imports or (),
    )
    wall = time.perf_counter() - t0
    console.print(
        f"{len(res.done)} runs trained, {len(res.skipped)} already in {a.store}, {len(res.failed)} failed ({wall:.1f}s)"
    )
    if res.interrupted:
        console.print("[yellow]interrupted[/yellow]: finished runs are kept; run the same command to resume")
    if not a.no_report:
        report(a.store, tasks, out=None if a.no_figures else a.out, console=console, markdown_path=a.markdown)
    return 130 if res.interrupted else (1 if res.failed else 0)


def cmd_report(a: argparse.Namespace) -> int:
    from ..report import report

    tasks = [t.strip() for t in a.task.split(",")] if a.task else None
    open_store(a.store, create=False)
    s = report(
        a.store,
        tasks,
        out=None if a.no_figures else a.out,
        target=a.target,
        console=new_console(),
        markdown_path=a.markdown,
    )
    if not s:
        print("adaptlr report: no finished runs", file=sys.stderr)
        return 1
    return 0


def cmd_tune(a: argparse.Namespace) -> int:
    from ..grammar import SpecError, parse_method
    from ..search import parse_range, tune
    from ..tasks import get_task

    use_threads(a.threads)
    task = get_task(a.task)
    m = parse_method(a.method)
    if not m.tuned:
        raise SpecError(f"{a.method!r} has no '?' to tune (write e.g. \"adam(lr=?)\")")
    ranges = dict(parse_range(r) for r in a.range or [])
    _check_tune(m, ranges, int(a.steps or task.steps))
    open_store(a.store)
    console = new_console()
    res = tune(
        a.task,
        a.method,
        a.trials,
        sampler=a.sampler,
        seeds=a.seeds,
        store=a.store,
        storage=a.storage,
        study_name=a.study,
        jobs=a.jobs,
        steps=a.steps,
        batch_size=a.batch_size,
        ranges=ranges,
        progress=not a.no_progress,
        console=console,
        callback=lambda s, v: console.print(f"trial {s}: {v:.4g}"),
        imports=a.imports or (),
    )
    from rich.table import Table

    t = Table(
        title=f"{a.task}: {a.method} ({a.sampler}, median final validation metric over {a.seeds} seed(s))",
        title_justify="left",
    )
    t.add_column("spec")
    t.add_column("validation metric", justify="right")
    for spec, v in res:
        t.add_row(spec, f"{v:.4g}" if math.isfinite(v) else "diverged")
    console.print(t)
    ranked = [(spec, v) for spec, v in res if math.isfinite(v)]
    if ranked:  # a diverged trial is never the best
        console.print(f"best: [bold]{ranked[0][0]}[/bold]")
    elif res:
        console.print("[yellow]no trial finished without diverging[/yellow]")
    return 0


def _check_tune(method: Any, ranges: dict[str, Any], steps: int) -> None:
    """Every ``--range`` names a ``?`` of the method (with a did-you-mean), and the method is valid with
    each ``?`` at the middle of its range (so that a bad fixed value is refused before the first trial)."""
    from ..catalog import did_you_mean
    from ..search import DEFAULT_RANGES

    terms = method.terms
    tuned = {k for _, k in method.tuned} | {f"{terms[i].name}.{k}" for i, k in method.tuned}
    for name in ranges:
        if name not in tuned:
            raise UsageError(
                f"--range {name!r}: the method has no '?' called that{did_you_mean(name, tuned)} "
                f"(tuned: {', '.join(sorted(tuned))})"
            )
    middle = {}
    for i, k in method.tuned:
        lo, hi, log = ranges.get(f"{terms[i].name}.{k}") or ranges.get(k) or DEFAULT_RANGES.get(k, (1e-4, 1.0, True))
        value = math.sqrt(lo * hi) if log else (lo + hi) / 2
        if isinstance(lo, int) and isinstance(hi, int) and not log:
            value = int(round(value))
        middle[f"{terms[i].name}.{k}"] = value
    method.fill(middle).validate(total_steps=steps)


def add_commands(sub: Any) -> None:
    """Add ``compare``, ``report`` and ``tune`` to the subcommands ``sub``."""
    s = sub.add_parser("compare", help="train every (method, seed) on a task; resumable")
    s.add_argument("--task", required=True, help="task name (or several, comma-separated)")
    s.add_argument("--methods", required=True, help="method specs, comma-separated")
    s.add_argument("--seeds", type=positive, default=3, help="seeds 0..N-1 (default: 3)")
    s.add_argument("--eval-every", type=positive, help="evaluate every N steps (default: steps / 10)")
    s.add_argument("--data-dir", help="MNIST IDX files for the mnist-* tasks (default: the bundled 5,000)")
    s.add_argument("--out", default="out", help="figure folder (default: out)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--no-figures", action="store_true")
    add_run_options(s)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("report", help="tables and figures from a store")
    s.add_argument("--store", default="runs.db", help="a SQLite path or postgresql://USER@HOST/DB (default: runs.db)")
    s.add_argument("--task", help="only these tasks (comma-separated)")
    s.add_argument("--out", default="out")
    s.add_argument("--target", type=finite_float, help="metric target for time-to-target (default: each task's)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-figures", action="store_true")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("tune", help="grid or Optuna search over a spec's '?' arguments")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True, help='a spec with "?" placeholders, e.g. "adam(lr=?)"')
    s.add_argument("--trials", type=positive, default=8)
    s.add_argument("--sampler", choices=("grid", "optuna"), default="grid")
    s.add_argument("--seeds", type=positive, default=1)
    s.add_argument("--range", action="append", help="name=low:high[:log|lin] (repeatable)")
    s.add_argument("--storage", help="Optuna RDB storage URL (default: the store's SQLite file)")
    s.add_argument("--study", help="Optuna study name")
    add_run_options(s)
    s.set_defaults(fn=cmd_tune)
