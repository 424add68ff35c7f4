"""``adaptlr``: the lab's command line.

::

    adaptlr compare --task mnist-mlp --methods "adam(lr=1e-3),sgd(lr=0.1, momentum=0.9) + cosine" -j 2
    adaptlr report [--store runs.db] [--task T] [--out out]
    adaptlr tune --task digits-mlp --method "adam(lr=?)" --trials 8 [--sampler optuna] [--storage URL]
    adaptlr find-lr --task mnist-mlp --method "sgd(momentum=0.9)"
    adaptlr plot-schedule "cosine(0.1, steps=1000)" --steps 1000 -o cosine.png
    adaptlr list
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _console() -> Any:
    from rich.console import Console

    # piped output (logs, CI, tests): wide enough that method specs stay on one line
    return Console() if sys.stdout.isatty() else Console(width=160)


def _threads(n: int) -> None:
    from .runner import limit_threads

    limit_threads(n)


def cmd_compare(a: argparse.Namespace) -> int:
    from .methods import split_methods
    from .report import report
    from .runner import compare

    _threads(a.threads)
    console = _console()
    methods = split_methods(a.methods)
    tasks = [t.strip() for t in a.task.split(",") if t.strip()]
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
        f"{len(res.done)} runs trained, {len(res.skipped)} already in {a.store}, "
        f"{len(res.failed)} failed ({wall:.1f}s)"
    )
    if res.interrupted:
        console.print("[yellow]interrupted[/yellow]: finished runs are kept; run the same command to resume")
    if not a.no_report:
        report(a.store, tasks, out=None if a.no_figures else a.out, console=console, markdown_path=a.markdown)
    return 130 if res.interrupted else (1 if res.failed else 0)


def cmd_report(a: argparse.Namespace) -> int:
    from .report import report

    tasks = [t.strip() for t in a.task.split(",")] if a.task else None
    if not Path(a.store).exists():
        print(f"adaptlr report: no store at {a.store}", file=sys.stderr)
        return 2
    s = report(
        a.store,
        tasks,
        out=None if a.no_figures else a.out,
        target=a.target,
        console=_console(),
        markdown_path=a.markdown,
    )
    if not s:
        print("adaptlr report: no finished runs", file=sys.stderr)
        return 1
    return 0


def cmd_tune(a: argparse.Namespace) -> int:
    from .search import parse_range, tune

    _threads(a.threads)
    console = _console()
    ranges = dict(parse_range(r) for r in a.range or [])
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
        title=f"{a.task}: {a.method} ({a.sampler}, median final metric over {a.seeds} seed(s))",
        title_justify="left",
    )
    t.add_column("spec")
    t.add_column("final metric", justify="right")
    for spec, v in res:
        t.add_row(spec, f"{v:.4g}")
    console.print(t)
    if res:
        console.print(f"best: [bold]{res[0][0]}[/bold]")
    return 0


def cmd_find_lr(a: argparse.Namespace) -> int:
    try:
        from adaptlr.finder import lr_find
    except ImportError:
        print("adaptlr find-lr: adaptlr.finder is not available in this version", file=sys.stderr)
        return 2
    import torch

    from .methods import parse_method
    from .tasks import get_task

    _threads(a.threads)
    task = get_task(a.task)
    torch.manual_seed(a.seed)
    model = task.model()
    build = parse_method(a.method).build(model.parameters(), a.steps, task.higher_is_better)
    data = task.data(**({"data_dir": a.data_dir} if a.data_dir else {}))
    batches = data.batches(a.batch_size or task.batch_size, torch.Generator().manual_seed(a.seed))
    result = lr_find(model, task.loss, batches, build.optimizer, start=a.start, end=a.end, steps=a.steps)
    out = Path(a.output or Path(a.out) / f"{task.name}_find_lr.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    result.plot(out)
    for name, s in getattr(result, "suggestions", {}).items():
        print(f"{name}: lr={s.lr:.3g} (confidence {s.confidence:.2f})")
    try:
        print(f"suggested lr: {result.lr:.3g}")
    except ValueError as e:
        print(f"no suggestion: {e}")
    print(f"figure: {out}")
    return 0


def cmd_plot_schedule(a: argparse.Namespace) -> int:
    try:
        from adaptlr import schedules
    except ImportError:
        print("adaptlr plot-schedule: adaptlr.schedules is not available", file=sys.stderr)
        return 2
    if not (hasattr(schedules, "from_spec") and hasattr(schedules, "plot")):
        print("adaptlr plot-schedule: adaptlr.schedules has no from_spec / plot yet", file=sys.stderr)
        return 2
    try:
        s = schedules.from_spec(a.spec)
    except (ValueError, TypeError) as e:
        print(f"adaptlr plot-schedule: {e}", file=sys.stderr)
        return 2
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    schedules.plot(s, a.steps, a.output, log=a.log)
    print(f"{s!r} -> {a.output}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .methods import available_methods
    from .tasks import TASKS

    print("tasks:")
    for t in TASKS.values():
        print(f"  {t.name:<14} {t.metric:<9} {t.steps:>5} steps x {t.batch_size:<4} {t.description}")
    for kind, names in available_methods().items():
        print(f"{kind}: {', '.join(names) or '(none yet)'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adaptlr", description="adaptlr's lab: compare learning-rate methods on small real tasks."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser, jobs: bool = True) -> None:
        s.add_argument("--store", default="runs.db", help="SQLite result store (default: runs.db)")
        s.add_argument("--steps", type=int, help="training steps per run (default: the task's)")
        s.add_argument("--batch-size", type=int, help="batch size (default: the task's)")
        s.add_argument(
            "--threads", type=int, default=1, help="torch and Numba threads per process (default: 1)"
        )
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        s.add_argument(
            "--import",
            dest="imports",
            action="append",
            metavar="MODULE",
            help="import MODULE first, in every worker too: where your own tasks and optimizers are registered",
        )
        if jobs:
            s.add_argument("--jobs", "-j", type=int, default=1, help="parallel worker processes")

    s = sub.add_parser("compare", help="train every (method, seed) on a task; resumable")
    s.add_argument("--task", required=True, help="task name (or several, comma-separated)")
    s.add_argument("--methods", required=True, help="method specs, comma-separated")
    s.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    s.add_argument("--eval-every", type=int, help="evaluate every N steps (default: steps / 10)")
    s.add_argument("--data-dir", help="MNIST IDX files for the mnist-* tasks (default: the bundled 5,000)")
    s.add_argument("--out", default="out", help="figure folder (default: out)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--no-figures", action="store_true")
    common(s)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("report", help="tables and figures from a store")
    s.add_argument("--store", default="runs.db")
    s.add_argument("--task", help="only these tasks (comma-separated)")
    s.add_argument("--out", default="out")
    s.add_argument("--target", type=float, help="metric target for time-to-target (default: each task's)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-figures", action="store_true")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("tune", help="grid or Optuna search over a spec's '?' arguments")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True, help='a spec with "?" placeholders, e.g. "adam(lr=?)"')
    s.add_argument("--trials", type=int, default=8)
    s.add_argument("--sampler", choices=("grid", "optuna"), default="grid")
    s.add_argument("--seeds", type=int, default=1)
    s.add_argument("--range", action="append", help="name=low:high[:log|lin] (repeatable)")
    s.add_argument("--storage", help="Optuna RDB storage URL (default: the store's SQLite file)")
    s.add_argument("--study", help="Optuna study name")
    common(s)
    s.set_defaults(fn=cmd_tune)

    s = sub.add_parser("find-lr", help="the learning-rate range test, with its plot")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--start", type=float, default=1e-6)
    s.add_argument("--end", type=float, default=10.0)
    s.add_argument("--steps", type=int, default=100)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data-dir")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", default="out")
    s.add_argument("-o", "--output", help="figure path (default: OUT/TASK_find_lr.png)")
    s.set_defaults(fn=cmd_find_lr)

    s = sub.add_parser("plot-schedule", help="plot an adaptlr.schedules spec")
    s.add_argument("spec", help='e.g. "warmup(cosine(0.1, steps=900), steps=100)"')
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("-o", "--output", default="schedule.png")
    s.add_argument("--log", action="store_true", help="log-scale y axis")
    s.set_defaults(fn=cmd_plot_schedule)

    s = sub.add_parser("list", help="tasks and the methods available now")
    s.set_defaults(fn=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .methods import SpecError

    args = _parser().parse_args(argv)
    try:
        if getattr(args, "imports", None):
            if os.getcwd() not in sys.path:  # as with `python -m`: modules in the working directory import
                sys.path.insert(0, os.getcwd())
            from .runner import import_modules

            import_modules(args.imports)
        return int(args.fn(args) or 0)
    except (SpecError, KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"adaptlr {args.command}: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
