"""Which engine runs which tensors, and the checks that come before any kernel touches memory.

This module alone answers "may this engine run these tensors?" (the optimizers never look at dtypes, devices or
strides). :func:`run` is what an optimizer calls for one elementwise phase:

1. **unwrap**: a ``DTensor`` (FSDP2, tensor parallel) is replaced by its local shard (``to_local()``, which shares
   memory with it), so elementwise phases run on plain tensors, on any engine; the sums a phase returns are then
   *local* sums, which the caller reduces over the mesh. Any other tensor subclass runs on the ``loop`` engine,
   through the subclass's own operators -- never through raw pointers.
2. **check**: every tensor column must match the first tensor column row by row -- same shape, dtype and device --
   or :func:`run` raises the ``RuntimeError`` torch.optim's own kernels raise for such tensors (they fail inside
   ``lerp_`` / ``addcdiv_``), naming the column, the row and both values. Nothing runs when a check fails.
3. **partition**: rows go to the fused (one-pass) engine only when every one of their tensors is a plain CPU
   tensor of a dtype it compiles, dense and non-overlapping, with *the same strides* as the others (then element
   ``k`` of every column lives at the same offset, and the kernel's flat loop over raw memory is exact, for
   ``channels_last`` tensors too). Any other row goes to ``foreach``, which indexes logically.
   CUDA rows go the same way to the ``triton`` engine (float32, float16, bfloat16, float64) when ``triton``
   imports, else to ``foreach``; ``fused=True`` on CUDA means triton. :func:`override` sends CPU rows to triton
   too (for tests, in Triton's interpreter).

The checks cost a few attribute reads per tensor (measured in ``benchmarks/step_time.py``); the fused engine's
own pointer table is built from the same reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

__all__ = ["FUSED_DTYPES", "TRITON_DTYPES", "fused_dtype", "local", "run", "partition", "check_columns", "override"]

#: real dtypes the fused CPU engine compiles kernels for
FUSED_DTYPES = (torch.float32, torch.float64)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


#: real dtypes the triton engine compiles kernels for (CUDA; CPU only in Triton's interpreter)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_override: list[str] = []  # the engine that :func:`override` routes CPU rows to (innermost last)


@lru_cache(maxsize=1)
def _triton_imports() -> bool:
    from ._triton import available

    return available()


def triton_available() -> bool:
    """Whether the triton engine can run CUDA tensors here (``triton`` imports, not in interpreter mode)."""
    if not _triton_imports():
        return False
    from ._triton import interpreting

    return not interpreting()


@contextmanager
def override(engine: str) -> Iterator[None]:
    """Inside the block, rows that :func:`partition` would give the fused engine (or foreach, for a dtype only
    ``engine`` compiles) go to ``engine`` -- internal, for tests: ``override("triton")`` runs CPU tensors on the
    triton engine, which needs Triton's interpreter (``TRITON_INTERPRET=1``). ``foreach=``/``loop`` choices stand.
    """
    if engine != "triton":
        raise ValueError(f"override supports the 'triton' engine, got {engine!r}")
    _override.append(engine)
    try:
        yield
    finally:
        _override.pop()


def fused_dtype(dtype: torch.dtype) -> bool:
    """Whether the fused CPU engine runs tensors of ``dtype`` (complex ones go through ``view_as_real``)."""
    return dtype in FUSED_DTYPES or dtype in (torch.complex64, torch.complex128)


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except Exception:  # pragma: no cover - a torch build without distributed
        return None
    return DTensor


_DTENSOR: Any = _dtensor_type()


def is_dtensor(t: Any) -> bool:
    return _DTENSOR is not None and isinstance(t, _DTENSOR)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor an elementwise engine updates for ``t``: a DTensor's local shard (sharing its memory), else ``t``."""
    if is_dtensor(t):
        return t.to_local()
    return t


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill ``numel`` consecutive slots of memory, each exactly once (any dim order)."""
    if t.is_contiguous():
        return True
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_columns(columns: Sequence[Any], names: Sequence[str] | None = None) -> None:
    """Raise ``RuntimeError`` unless every tensor column matches the first one row by row (shape, dtype, device).

    ``names`` name the columns in the message (default: their positions). A column is a list of tensors or a
    Python float constant (an absent optional state).
    """
    lists = [(k, c) for k, c in enumerate(columns) if isinstance(c, list)]
    if len(lists) < 2:
        return
    k0, first = lists[0]
    n = len(first)
    for k, col in lists[1:]:
        if len(col) != n:
            raise RuntimeError(f"column {_name(names, k)} holds {len(col)} tensors, column {_name(names, k0)} {n}")
        for i, (a, b) in enumerate(zip(first, col)):
            if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
                raise RuntimeError(
                    f"{_name(names, k)} of tensor {i} does not match {_name(names, k0)}: {_describe(b)} against "
                    f"{_describe(a)} (torch.optim raises for such tensors too; was the state loaded for another "
                    f"model, or was a parameter's .data replaced?)"
                )


def _name(names: Sequence[str] | None, k: int) -> str:
    return repr(names[k]) if names is not None and k < len(names) else f"column {k}"


def partition(prefer: str | None, columns: Sequence[Any]) -> list[tuple[str, list[int]]]:
    """Split the rows of (checked, unwrapped) ``columns`` by engine, and by dtype for the typed fused kernels.

    ``prefer``: ``"loop"`` or ``"foreach"`` run every row there (except tensor subclasses, which always run on
    ``loop``); ``"fused"`` or None run every row the fused engine can address there, the rest on ``foreach``.
    """
    lists = [c for c in columns if isinstance(c, list)]
    n = len(lists[0]) if lists else 0
    if prefer not in ("loop", "foreach", "fused", None):
        raise ValueError(f"unknown engine preference {prefer!r}")
    parts: dict[Any, list[int]] = {}
    triton: bool | None = None  # (asked once per call, at the first row that could go there)
    for i in range(n):
        row = [c[i] for c in lists]
        if any(type(t) not in _PLAIN for t in row):
            key: Any = ("loop", None)
        elif prefer in ("loop", "foreach"):
            key = (prefer, None)
        else:
            t0 = row[0]
            stride = t0.stride()
            if t0.device.type == "cuda" or _override:  # the triton engine (CUDA, or the interpreter when asked)
                if triton is None:
                    triton = bool(_override) or triton_available()
                fits = (triton and t0.dtype in TRITON_DTYPES and all(t.stride() == stride for t in row[1:])
                        and _dense(t0))
                key = ("triton", t0.dtype) if fits else ("foreach", None)
            else:
                fits = (t0.device.type == "cpu" and t0.dtype in FUSED_DTYPES
                        and all(t.stride() == stride for t in row[1:]) and _dense(t0))
                key = ("fused", t0.dtype) if fits else ("foreach", None)
        parts.setdefault(key, []).append(i)
    return [(name, idx) for (name, _), idx in parts.items()]


def run(fn: Callable, columns: Sequence[Any], writes: Sequence[int], scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (), n_sums: int = 0, *, prefer: str | None = None,
        names: Sequence[str] | None = None, checked: bool = False) -> tuple[float, ...]:
    """Run the elementwise rule ``fn`` over ``columns`` (see ``docs/CONTRACTS.md``) on the engines fit for them.

    Returns the ``n_sums`` sums over every element of every tensor (over the *local* shards of DTensors).
    ``checked=True``: the caller has run :func:`check_columns` on these columns (the fused engine's own checks
    run regardless, in :func:`partition`).
    """
    from . import get_engine

    columns = [[local(t) for t in c] if isinstance(c, list) else c for c in columns]
    if not checked:
        check_columns(columns, names)
    totals = [0.0] * n_sums
    if not any(isinstance(c, list) and c for c in columns):
        return tuple(totals)
    parts = partition(prefer, columns)
    for name, idx in parts:
        cols = columns if len(parts) == 1 else [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]
        engine = get_engine(name)
        # (partition did the fused and triton engines' layout checks)
        apply = engine.apply_checked if name in ("fused", "triton") else engine.apply
        out = apply(fn, cols, writes, tuple(scalars), tuple(flags), n_sums)
        for k in range(n_sums):
            totals[k] += out[k]
    return tuple(totals)
