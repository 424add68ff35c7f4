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

Modules: :mod:`~adaptlr.lab.cli.runs` (``compare``, ``report``, ``tune``), :mod:`~adaptlr.lab.cli.tools`
(``find-lr``, ``plot-schedule``, ``bench``, ``list``), :mod:`~adaptlr.lab.cli.common` (what they share).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import runs, tools
from .common import Parser, UsageError, one_line, shown, store_errors

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The ``adaptlr`` argument parser: every command, each with its options."""
    p = Parser(prog="adaptlr", description="adaptlr's lab: compare learning-rate methods on small real tasks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    runs.add_commands(sub)
    tools.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns its exit code (2: a value refused before anything ran, with one line on
    stderr)."""
    from ..grammar import SpecError

    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a refused value (2, its one line already printed)
        return int(e.code or 0) if isinstance(e.code, int) else 2
    try:
        if getattr(args, "imports", None):
            if os.getcwd() not in sys.path:  # as with `python -m`: modules in the working directory import
                sys.path.insert(0, os.getcwd())
            from ..workers import import_modules

            import_modules(args.imports)
        return int(args.fn(args) or 0)
    except (UsageError, SpecError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"adaptlr {args.command}: {one_line(e)}", file=sys.stderr)
        return 2
    except store_errors() as e:
        store = getattr(args, "store", None)
        where = f"the store {shown(store)}" if store else "a file"
        print(f"adaptlr {args.command}: cannot use {where}: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
