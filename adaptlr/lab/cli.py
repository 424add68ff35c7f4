"""``adaptlr``: the lab's command line.

::

    adaptlr compare --task mnist-mlp --methods "adam(lr=1e-3),sgd(lr=0.1, momentum=0.9) + cosine" -j 2
    adaptlr report [--store runs.db] [--task T] [--out out]
    adaptlr tune --task digits-mlp --method "adam(lr=?)" --trials 8 [--sampler optuna] [--storage URL]
    adaptlr find-lr --task mnist-mlp --method "sgd(momentum=0.9)"
    adaptlr plot-schedule "cosine(0.1, steps=1000)" --steps 1000 -o cosine.png
    adaptlr list

Every value is checked before any training: a bad number (``--seeds 0``, ``--steps -5``), a misspelt name
or a value that a class refuses (``sgd(lr=-1)``, ``plateau(factor=2)``) ends the command with exit code 2 and
one line on stderr naming the option and the value; so does a store that cannot be opened (which file, what is
wrong). A spec on the command line is data: only names registered in Python are looked up (``--import
MODULE`` is the explicit way to run a module that registers your own).
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]


class UsageError(Exception):
    """A value refused before anything ran: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (``adaptlr compare: error: ...``), no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} (expected an integer >= {minimum})")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} (expected a finite number)")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} (expected a number > 0)")
    return value


_positive = _int_at_least(1)
_nonneg = _int_at_least(0)


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a store that cannot be opened or used raises (the store's own error type when it has one)."""
    from . import store

    own = getattr(store, "StoreError", None)
    return (sqlite3.DatabaseError, OSError, *((own,) if isinstance(own, type) else ()))


def _open_store(path: str, create: bool = True) -> None:
    """Open (and so check) the store before any training: a damaged or unwritable one is never trained into."""
    from .store import Store

    if not create and "://" not in path and not Path(path).exists():  # a URL (PostgreSQL) is no file
        raise UsageError(f"no store at {path}")
    try:
        Store(path).close()
    except _store_errors() as e:
        msg = _one_line(e)
        raise UsageError(msg if _shown(path) in msg else f"cannot use the store {_shown(path)}: {msg}") from None


def _shown(location: str) -> str:
    """A store location as it may be printed: a URL's password is left out."""
    import re

    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", location)


def _check_methods(specs: Sequence[str], tasks: Sequence[str], steps: int | None) -> None:
    """Every method on every task, validated (built once on a throwaway parameter) with the run's budget."""
    from .grammar import parse_method
    from .tasks import get_task

    if not specs:
        raise UsageError("--methods is empty")
    for t in tasks:
        task = get_task(t)
        for spec in specs:
            parse_method(spec).validate(total_steps=int(steps or task.steps))


def _console() -> Any:
    from rich.console import Console

    # piped output (logs, CI, tests): wide enough that method specs stay on one line
    return Console() if sys.stdout.isatty() else Console(width=160)


def _threads(n: int) -> None:
    from .workers import limit_threads

    limit_threads(n)


def cmd_compare(a: argparse.Namespace) -> int:
    from .comparison import compare
    from .grammar import split_methods
    from .report import report

    _threads(a.threads)
    methods = split_methods(a.methods)
    tasks = [t.strip() for t in a.task.split(",") if t.strip()]
    if not tasks:
        raise UsageError("--task is empty")
    _check_methods(methods, tasks, a.steps)
    _open_store(a.store)
    console = _console()
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
    from .report import report

    tasks = [t.strip() for t in a.task.split(",")] if a.task else None
    _open_store(a.store, create=False)
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
    from .grammar import SpecError, parse_method
    from .search import parse_range, tune
    from .tasks import get_task

    _threads(a.threads)
    task = get_task(a.task)
    m = parse_method(a.method)
    if not m.tuned:
        raise SpecError(f"{a.method!r} has no '?' to tune (write e.g. \"adam(lr=?)\")")
    ranges = dict(parse_range(r) for r in a.range or [])
    _check_tune(m, ranges, int(a.steps or task.steps))
    _open_store(a.store)
    console = _console()
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
    from .catalog import _did_you_mean
    from .search import DEFAULT_RANGES

    terms = method.terms
    tuned = {k for _, k in method.tuned} | {f"{terms[i].name}.{k}" for i, k in method.tuned}
    for name in ranges:
        if name not in tuned:
            raise UsageError(
                f"--range {name!r}: the method has no '?' called that{_did_you_mean(name, tuned)} "
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


def cmd_find_lr(a: argparse.Namespace) -> int:
    try:
        from adaptlr.finder import lr_find
    except ImportError:
        print("adaptlr find-lr: adaptlr.finder is not available in this version", file=sys.stderr)
        return 2
    import torch

    from .grammar import parse_method
    from .tasks import get_task

    if not a.end > a.start:
        raise UsageError(f"--end {a.end:g} must be greater than --start {a.start:g}")
    _threads(a.threads)
    task = get_task(a.task)
    method = parse_method(a.method).validate(total_steps=a.steps)
    torch.manual_seed(a.seed)
    model = task.model()
    build = method.build(model.parameters(), a.steps, task.higher_is_better)
    data = task.data(**({"data_dir": a.data_dir} if a.data_dir else {}))
    batches = data.batches(a.batch_size or task.batch_size, torch.Generator().manual_seed(a.seed))
    result = lr_find(model, task.loss, batches, build.optimizer, start=a.start, end=a.end, steps=a.steps)
    out = Path(a.output or Path(a.out) / f"{task.name}_find_lr.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    result.plot(out)
    print(
        f"tested lr {result.lrs[0]:.3g} .. {result.lrs[-1]:.3g}"
        + (f" (diverged at {result.lrs[-1]:.3g})" if result.diverged else "")
    )
    for name, s in result.suggestions.items():
        print(f"{name}: lr={s.lr:.3g} (confidence {s.confidence:.2f}, {s.confidence_words})")
    if result.suggestions:
        for line in result.warnings:
            print(f"warning: {line}")
        best = result.suggestion
        print(f"suggested lr: {best.lr:.3g} ({best.confidence_words} confidence, from {best.method})")
    else:
        print("no suggestion: " + "; ".join(result.warnings or ["the range test recorded too few points"]))
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
        print(f"adaptlr plot-schedule: {_one_line(e)}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError):
        print("adaptlr plot-schedule: the spec is nested too deeply", file=sys.stderr)
        return 2
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    schedules.plot(s, a.steps, a.output, log=a.log)
    print(f"{s!r} -> {a.output}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .catalog import available_methods
    from .tasks import TASKS

    print("tasks:")
    for t in TASKS.values():
        print(f"  {t.name:<14} {t.metric:<9} {t.steps:>5} steps x {t.batch_size:<4} {t.description}")
    for kind, names in available_methods().items():
        print(f"{kind}: {', '.join(names) or '(none yet)'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adaptlr", description="adaptlr's lab: compare learning-rate methods on small real tasks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def imports(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--import",
            dest="imports",
            action="append",
            metavar="MODULE",
            help="import MODULE first (in every worker too): where your own tasks, optimizers and schedule "
            "functions are registered; the only way a command runs code of yours",
        )

    def common(s: argparse.ArgumentParser, jobs: bool = True) -> None:
        s.add_argument(
            "--store",
            default="runs.db",
            help="result store: a SQLite path or postgresql://USER@HOST/DB (default: runs.db)",
        )
        s.add_argument("--steps", type=_positive, help="training steps per run (default: the task's)")
        s.add_argument("--batch-size", type=_positive, help="batch size (default: the task's)")
        s.add_argument("--threads", type=_positive, default=1, help="torch and Numba threads per process (default: 1)")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        imports(s)
        if jobs:
            s.add_argument("--jobs", "-j", type=_positive, default=1, help="parallel worker processes")

    s = sub.add_parser("compare", help="train every (method, seed) on a task; resumable")
    s.add_argument("--task", required=True, help="task name (or several, comma-separated)")
    s.add_argument("--methods", required=True, help="method specs, comma-separated")
    s.add_argument("--seeds", type=_positive, default=3, help="seeds 0..N-1 (default: 3)")
    s.add_argument("--eval-every", type=_positive, help="evaluate every N steps (default: steps / 10)")
    s.add_argument("--data-dir", help="MNIST IDX files for the mnist-* tasks (default: the bundled 5,000)")
    s.add_argument("--out", default="out", help="figure folder (default: out)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--no-figures", action="store_true")
    common(s)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("report", help="tables and figures from a store")
    s.add_argument("--store", default="runs.db", help="a SQLite path or postgresql://USER@HOST/DB (default: runs.db)")
    s.add_argument("--task", help="only these tasks (comma-separated)")
    s.add_argument("--out", default="out")
    s.add_argument("--target", type=_finite_float, help="metric target for time-to-target (default: each task's)")
    s.add_argument("--markdown", help="also write the tables as markdown to this file")
    s.add_argument("--no-figures", action="store_true")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("tune", help="grid or Optuna search over a spec's '?' arguments")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True, help='a spec with "?" placeholders, e.g. "adam(lr=?)"')
    s.add_argument("--trials", type=_positive, default=8)
    s.add_argument("--sampler", choices=("grid", "optuna"), default="grid")
    s.add_argument("--seeds", type=_positive, default=1)
    s.add_argument("--range", action="append", help="name=low:high[:log|lin] (repeatable)")
    s.add_argument("--storage", help="Optuna RDB storage URL (default: the store's SQLite file)")
    s.add_argument("--study", help="Optuna study name")
    common(s)
    s.set_defaults(fn=cmd_tune)

    s = sub.add_parser("find-lr", help="the learning-rate range test, with its plot")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--start", type=_positive_float, default=1e-6)
    s.add_argument("--end", type=_positive_float, default=10.0)
    s.add_argument("--steps", type=_int_at_least(2), default=100)
    s.add_argument("--batch-size", type=_positive)
    s.add_argument("--seed", type=_nonneg, default=0)
    s.add_argument("--data-dir")
    s.add_argument("--threads", type=_positive, default=1)
    s.add_argument("--out", default="out")
    s.add_argument("-o", "--output", help="figure path (default: OUT/TASK_find_lr.png)")
    imports(s)
    s.set_defaults(fn=cmd_find_lr)

    s = sub.add_parser("plot-schedule", help="plot an adaptlr.schedules spec")
    s.add_argument("spec", help='e.g. "warmup(cosine(0.1, steps=900), steps=100)"')
    s.add_argument("--steps", type=_positive, required=True)
    s.add_argument("-o", "--output", default="schedule.png")
    s.add_argument("--log", action="store_true", help="log-scale y axis")
    imports(s)
    s.set_defaults(fn=cmd_plot_schedule)

    s = sub.add_parser(
        "bench", help="benchmarks: 'tuning-free' (Auto and the LR-free methods vs a tuned grid)", add_help=False
    )
    s.add_argument("name", choices=["tuning-free"])
    s.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (see its --help)")

    def bench(a: argparse.Namespace) -> int:
        from .tuning_free import main as tuning_free  # matplotlib and the tasks' data only when asked for

        return tuning_free(a.rest)

    s.set_defaults(fn=bench)

    s = sub.add_parser("list", help="tasks and the methods available now")
    s.set_defaults(fn=cmd_list)
    return p


def _one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(msg).split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns its exit code (2: a value refused before anything ran, with one line on
    stderr)."""
    from .grammar import SpecError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a refused value (2, its one line already printed)
        return int(e.code or 0) if isinstance(e.code, int) else 2
    try:
        if getattr(args, "imports", None):
            if os.getcwd() not in sys.path:  # as with `python -m`: modules in the working directory import
                sys.path.insert(0, os.getcwd())
            from .workers import import_modules

            import_modules(args.imports)
        return int(args.fn(args) or 0)
    except (UsageError, SpecError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"adaptlr {args.command}: {_one_line(e)}", file=sys.stderr)
        return 2
    except _store_errors() as e:
        store = getattr(args, "store", None)
        where = f"the store {_shown(store)}" if store else "a file"
        print(f"adaptlr {args.command}: cannot use {where}: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
