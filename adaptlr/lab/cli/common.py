"""What every ``adaptlr`` command shares: the refusal of a value (:class:`UsageError`, one line, exit code 2),
argparse with one-line errors and the number types of its options, the options of commands that train into a
store, opening a store before any training, and the console, threads and one-line messages."""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "UsageError",
    "add_imports",
    "add_run_options",
    "check_methods",
    "new_console",
    "finite_float",
    "int_at_least",
    "nonneg",
    "one_line",
    "open_store",
    "positive",
    "positive_float",
    "shown",
    "store_errors",
    "use_threads",
]


class UsageError(Exception):
    """A value refused before anything ran: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line (``adaptlr compare: error: ...``), no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
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


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} (expected a finite number)")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} (expected a number > 0)")
    return value


positive = int_at_least(1)
nonneg = int_at_least(0)


def store_errors() -> tuple[type[BaseException], ...]:
    """What a store that cannot be opened or used raises."""
    from ..store import StoreError

    return (sqlite3.DatabaseError, OSError, StoreError)


def open_store(path: str, create: bool = True) -> None:
    """Open (and so check) the store before any training: a damaged or unwritable one is never trained into."""
    from ..store import Store

    if not create and "://" not in path and not Path(path).exists():  # a URL (PostgreSQL) is no file
        raise UsageError(f"no store at {path}")
    try:
        Store(path).close()
    except store_errors() as e:
        msg = one_line(e)
        raise UsageError(msg if shown(path) in msg else f"cannot use the store {shown(path)}: {msg}") from None


def shown(location: str) -> str:
    """A store location as it may be printed: a URL's password is left out."""
    import re

    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", location)


def check_methods(specs: Sequence[str], tasks: Sequence[str], steps: int | None) -> None:
    """Every method on every task, validated (built once on a throwaway parameter) with the run's budget."""
    from ..grammar import parse_method
    from ..tasks import get_task

    if not specs:
        raise UsageError("--methods is empty")
    for t in tasks:
        task = get_task(t)
        for spec in specs:
            parse_method(spec).validate(total_steps=int(steps or task.steps))


def new_console() -> Any:
    from rich.console import Console

    # piped output (logs, CI, tests): wide enough that method specs stay on one line
    return Console() if sys.stdout.isatty() else Console(width=160)


def use_threads(n: int) -> None:
    from ..workers import limit_threads

    limit_threads(n)


def add_imports(s: argparse.ArgumentParser) -> None:
    """``--import MODULE``: the one way a command runs code of the user's."""
    s.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE first (in every worker too): where your own tasks, optimizers and schedule "
        "functions are registered; the only way a command runs code of yours",
    )


def add_run_options(s: argparse.ArgumentParser, jobs: bool = True) -> None:
    """The options of a command that trains into a store: ``--store``, the budget, threads, progress, imports,
    and (``jobs``) worker processes."""
    s.add_argument(
        "--store",
        default="runs.db",
        help="result store: a SQLite path or postgresql://USER@HOST/DB (default: runs.db)",
    )
    s.add_argument("--steps", type=positive, help="training steps per run (default: the task's)")
    s.add_argument("--batch-size", type=positive, help="batch size (default: the task's)")
    s.add_argument("--threads", type=positive, default=1, help="torch and Numba threads per process (default: 1)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_imports(s)
    if jobs:
        s.add_argument("--jobs", "-j", type=positive, default=1, help="parallel worker processes")


def one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(msg).split()) or type(e).__name__
