"""The processes that train: their threads, the user's registering imports, and a worker's tie to its parent.

:func:`limit_threads` and :func:`import_modules` set up any process that trains (the CLI's, and every worker of
a parallel :func:`~adaptlr.lab.comparison.compare`). A worker process dies with the process that started it:
Linux kills it when its parent dies (``prctl(PR_SET_PDEATHSIG)``, :func:`die_with_parent`), and elsewhere it
checks its parent before every step and write (:func:`exit_if_orphaned`), so it never writes after its parent
is gone. The pool of worker processes itself is in :mod:`adaptlr.lab.comparison`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch

__all__ = ["PR_SET_PDEATHSIG", "die_with_parent", "exit_if_orphaned", "import_modules", "limit_threads"]

_PARENT: int | None = None  # set in worker processes: the pid of the process that started them
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_if_orphaned() -> None:
    """In a worker whose parent has died: exit at once, writing nothing (its claim expires)."""
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(70)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere the
    parent-pid check before every step and write (:func:`exit_if_orphaned`) does the job."""
    global _PARENT
    _PARENT = parent
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    exit_if_orphaned()  # the parent may have died before prctl took effect


def limit_threads(n: int = 1) -> None:
    """Use ``n`` threads for torch's and Numba's (adaptlr's fused engine) parallel loops in this process.

    Small models gain nothing from more threads, and worker processes that each start a thread per core
    oversubscribe the machine (measured on 2 busy cores: 8 ms per MLP step with Numba's default threads, 1 ms
    with one)."""
    n = max(1, int(n))
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency, but adaptlr runs without it
        pass


def import_modules(names: Sequence[str]) -> None:
    """Import the modules that register a user's own tasks and optimizers (``register_task`` and
    ``register_optimizer`` at import time), here and, through :func:`~adaptlr.lab.comparison.compare`, in
    every worker."""
    import importlib

    for name in names:
        importlib.import_module(name)
