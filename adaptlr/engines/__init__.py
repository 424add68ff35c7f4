"""Engines run an elementwise rule over lists of tensors; this module is their public face.

The engines: ``numba`` (one generated Numba kernel, one pass over memory, CPU), ``triton`` (the same on CUDA),
``foreach`` (``torch._foreach_*`` ops over tensor lists, any device) and ``loop`` (tensor by tensor). The user's
flags (``fused=True``, ``foreach=``) are *preferences*; which engine runs which tensors is decided here alone,
from their dtype, device, strides and type (plain tensor, DTensor, other subclass), and every column is checked
before a kernel touches memory (``docs/CONTRACTS.md``, "Engines").

What the optimizers use (:mod:`adaptlr.optim`, :mod:`adaptlr.free`):

- **running a phase**: :func:`run` (check, partition and run in one call), or its two halves :func:`prepare`
  (unwrap DTensors, check, partition -- before anything changes) and :func:`execute` (run on prepared columns);
- **the plan**: :class:`Plan` keeps one call site's checks and partition while the same tensors come back;
- **the checks**: :func:`check_columns` (shape, dtype, device row by row), :func:`fused_supported` (may
  ``fused=True`` run this parameter?), :func:`is_dtensor` and :func:`local` (a DTensor's local shard).

Engines themselves: :func:`get_engine` and the :class:`Engine` protocol (one call shape for all).
"""

from __future__ import annotations

from ._layout import is_dtensor, local
from ._registry import ENGINE_NAMES, Engine, get_engine
from ._select import Plan, check_columns, execute, fused_supported, numba_available, partition, prepare, run

__all__ = [
    "ENGINES",
    "ENGINE_NAMES",
    "Engine",
    "Plan",
    "check_columns",
    "execute",
    "fused_available",
    "fused_supported",
    "get_engine",
    "is_dtensor",
    "local",
    "partition",
    "prepare",
    "run",
]

#: the engine *preferences* a user (or a test) names: ``fused`` (the one-pass engine of the tensors' device),
#: ``foreach``, ``loop``; :func:`get_engine` accepts each (``fused``: the CPU one, ``numba``)
ENGINES = ("fused", "foreach", "loop")


def fused_available() -> bool:
    """Whether the one-pass CPU engine can run here (Numba imports)."""
    return numba_available()
