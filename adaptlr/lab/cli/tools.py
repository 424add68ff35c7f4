"""The commands that stand alone: ``adaptlr find-lr`` (the range test), ``adaptlr plot-schedule``, ``adaptlr list``
and ``adaptlr bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import UsageError, add_imports, int_at_least, nonneg, one_line, positive, positive_float, use_threads

__all__ = ["add_commands", "cmd_bench", "cmd_find_lr", "cmd_list", "cmd_plot_schedule"]


def cmd_find_lr(a: argparse.Namespace) -> int:
    try:
        from adaptlr.finder import lr_find
    except ImportError:
        print("adaptlr find-lr: adaptlr.finder is not available in this version", file=sys.stderr)
        return 2
    import torch

    from ..grammar import parse_method
    from ..tasks import get_task

    if not a.end > a.start:
        raise UsageError(f"--end {a.end:g} must be greater than --start {a.start:g}")
    use_threads(a.threads)
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
    from adaptlr import schedules

    try:
        s = schedules.from_spec(a.spec)
    except (ValueError, TypeError) as e:
        print(f"adaptlr plot-schedule: {one_line(e)}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError):
        print("adaptlr plot-schedule: the spec is nested too deeply", file=sys.stderr)
        return 2
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    schedules.plot(s, a.steps, a.output, log=a.log)
    print(f"{s!r} -> {a.output}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from ..catalog import available_methods
    from ..tasks import TASKS

    print("tasks:")
    for t in TASKS.values():
        print(f"  {t.name:<14} {t.metric:<9} {t.steps:>5} steps x {t.batch_size:<4} {t.description}")
    for kind, names in available_methods().items():
        print(f"{kind}: {', '.join(names) or '(none yet)'}")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from ..tuning_free_cli import main as tuning_free  # matplotlib and the tasks' data only when asked for

    return tuning_free(a.rest)


def add_commands(sub: Any) -> None:
    """Add ``find-lr``, ``plot-schedule``, ``bench`` and ``list`` to the subcommands ``sub``."""
    s = sub.add_parser("find-lr", help="the learning-rate range test, with its plot")
    s.add_argument("--task", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--start", type=positive_float, default=1e-6)
    s.add_argument("--end", type=positive_float, default=10.0)
    s.add_argument("--steps", type=int_at_least(2), default=100)
    s.add_argument("--batch-size", type=positive)
    s.add_argument("--seed", type=nonneg, default=0)
    s.add_argument("--data-dir")
    s.add_argument("--threads", type=positive, default=1)
    s.add_argument("--out", default="out")
    s.add_argument("-o", "--output", help="figure path (default: OUT/TASK_find_lr.png)")
    add_imports(s)
    s.set_defaults(fn=cmd_find_lr)

    s = sub.add_parser("plot-schedule", help="plot an adaptlr.schedules spec")
    s.add_argument("spec", help='e.g. "warmup(cosine(0.1, steps=900), steps=100)"')
    s.add_argument("--steps", type=positive, required=True)
    s.add_argument("-o", "--output", default="schedule.png")
    s.add_argument("--log", action="store_true", help="log-scale y axis")
    add_imports(s)
    s.set_defaults(fn=cmd_plot_schedule)

    s = sub.add_parser(
        "bench", help="benchmarks: 'tuning-free' (Auto and the LR-free methods vs a tuned grid)", add_help=False
    )
    s.add_argument("name", choices=["tuning-free"])
    s.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (see its --help)")

    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("list", help="tasks and the methods available now")
    s.set_defaults(fn=cmd_list)
