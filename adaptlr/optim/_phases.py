"""What the optimizers whose step is not one elementwise rule share: run an elementwise phase, gather a DTensor.

Rprop and ASGD are plain :class:`~adaptlr.optim.Optimizer` subclasses (one rule). SparseAdam, Adafactor and Muon
run their elementwise phases through :func:`run_phase` (the engines layer picks the engine, unwraps DTensors to
their local shards and checks the columns), with their non-elementwise statistics in plain torch between phases;
LBFGS is closure-driven. The base class ticks the schedule clock, once per applied step, for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..engines._select import is_dtensor, run

__all__ = ["full", "is_dtensor", "run_phase"]


def run_phase(
    opt: Any,
    group: dict[str, Any],
    rule: Callable,
    columns: Sequence[Any],
    writes: Sequence[int],
    scalars: Sequence[Any] = (),
    flags: Sequence[bool] = (),
    n_sums: int = 0,
    names: Sequence[str] | None = None,
) -> tuple[float, ...]:
    """Run one elementwise phase of ``group`` on the engine its flags ask for (``foreach=`` / ``fused=``)."""
    return run(rule, columns, writes, scalars, flags, n_sums, prefer=opt._engine(group), names=names)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor's ``full_tensor()`` (a collective), else ``t``."""
    return t.full_tensor() if is_dtensor(t) else t
