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

The checks cost a few attribute reads per tensor; a :class:`Plan` keeps them (and the partition) while the same
tensors come back, so a steady step re-checks only the gradients (``benchmarks/step_time.py``, cases b and c).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

__all__ = [
    "Plan",
    "FUSED_DTYPES",
    "TRITON_DTYPES",
    "check_columns",
    "execute",
    "fused_dtype",
    "fused_supported",
    "local",
    "override",
    "partition",
    "prepare",
    "run",
]

#: real dtypes the fused CPU engine compiles kernels for
FUSED_DTYPES = (torch.float32, torch.float64)
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_PLAIN_SET = frozenset(_PLAIN)


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


def fused_supported(t: torch.Tensor) -> bool:
    """Whether ``fused=True`` can run parameter ``t``: on CPU the Numba engine (float32/float64) when Numba imports,
    on CUDA the triton engine (float32, float16, bfloat16, float64) when triton imports; complex ones through
    ``view_as_real``."""
    if t.device.type == "cuda":
        real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(t.dtype, t.dtype)
        return real in TRITON_DTYPES and triton_available()
    return t.device.type == "cpu" and fused_dtype(t.dtype) and numba_available()


@lru_cache(maxsize=1)
def numba_available() -> bool:
    """Whether the fused CPU engine can run here (Numba imports)."""
    from ._numba import available

    return available()


def fused_dtype(dtype: torch.dtype) -> bool:
    """Whether the fused CPU engine runs tensors of ``dtype`` (complex ones go through ``view_as_real``)."""
    return dtype in FUSED_DTYPES or dtype in (torch.complex64, torch.complex128)


def _dtensor_type() -> type | None:
    """``DTensor``, once some code has imported it (importing it costs ~2 s: ``import adaptlr`` must not)."""
    global _DTENSOR
    if _DTENSOR is None and "torch.distributed.tensor" in sys.modules:
        try:
            from torch.distributed.tensor import DTensor
        except Exception:  # pragma: no cover - a torch build without distributed
            return None
        _DTENSOR = DTensor
    return _DTENSOR


_DTENSOR: Any = None


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor (no DTensor can exist before ``torch.distributed.tensor`` is imported)."""
    if type(t) in _PLAIN_SET:
        return False
    cls = _dtensor_type()
    return cls is not None and isinstance(t, cls)


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
                fits = (
                    triton and t0.dtype in TRITON_DTYPES and all(t.stride() == stride for t in row[1:]) and _dense(t0)
                )
                key = ("triton", t0.dtype) if fits else ("foreach", None)
            else:
                fits = (
                    t0.device.type == "cpu"
                    and t0.dtype in FUSED_DTYPES
                    and numba_available()
                    and all(t.stride() == stride for t in row[1:])
                    and _dense(t0)
                )
                key = ("fused", t0.dtype) if fits else ("foreach", None)
        parts.setdefault(key, []).append(i)
    return [(name, idx) for (name, _), idx in parts.items()]


class Plan:
    """The checked partition of one call site's columns, kept between steps (``run(..., plan=Plan())``).

    A step whose *stable* columns (all but ``volatile`` ones: the gradients, new tensors every step) hold the same
    tensor objects at the same data pointers, and whose first column's tensors still have the same shapes, reuses
    the checks and the partition: only the volatile columns are checked again (shape, dtype, device, strides against
    the first column's). Anything else -- a state tensor replaced by ``load_state_dict``, a parameter's or a state
    tensor's ``.data`` swapped, another set of parameters with gradients -- is checked from scratch. The stable
    columns' data pointers, read for that comparison, are kept (:attr:`pointers`) for the one-pass engines, which
    would otherwise read them again.
    """

    __slots__ = ("key", "refs", "parts", "signature", "route", "pointers")

    def __init__(self) -> None:
        self.key: Any = None
        self.refs: list[list[torch.Tensor]] = []  # the stable tensors themselves (held, so no id is ever reused)
        self.parts: list[tuple[str, list[int]]] = []
        self.signature: list[tuple[Any, ...]] = []
        self.route: Any = None  # (prefer, active overrides): the routing the parts were made for
        self.pointers: list[list[int]] = []  # the stable columns' data pointers, column by column

    @staticmethod
    def _stable(columns: Sequence[Any], volatile: Sequence[int]) -> list[list[torch.Tensor]]:
        return [c for k, c in enumerate(columns) if isinstance(c, list) and k not in volatile]

    @staticmethod
    def _key(stable: list[list[torch.Tensor]]) -> Any:
        if not set(map(type, stable[0])) <= _PLAIN_SET:
            return None  # (DTensors and other subclasses: no raw pointers to key on; checked every step)
        return [[t.data_ptr() for t in col] for col in stable], tuple(t.shape for t in stable[0])

    def lookup(
        self, columns: Sequence[Any], volatile: Sequence[int], prefer: str | None
    ) -> list[tuple[str, list[int]]] | None:
        """The cached partition when it still applies and the volatile columns fit it, else None."""
        if self.key is None or (prefer, tuple(_override)) != self.route:
            return None
        stable = self._stable(columns, volatile)
        if len(stable) != len(self.refs) or any(
            len(a) != len(b) or not all(map(operator.is_, a, b)) for a, b in zip(stable, self.refs)
        ):
            return None
        if self._key(stable) != self.key:  # a parameter's or a state tensor's .data swapped
            return None
        signature = self.signature
        for k in volatile:
            col = columns[k]
            if not isinstance(col, list):
                continue
            if len(col) != len(signature):
                return None
            for t, (shape, dtype, device, stride) in zip(col, signature):
                if (
                    type(t) not in _PLAIN
                    or t.shape != shape
                    or t.dtype != dtype
                    or t.device != device
                    or (stride is not None and t.stride() != stride)
                ):
                    return None
        return self.parts

    def store(
        self, columns: Sequence[Any], volatile: Sequence[int], prefer: str | None, parts: list[tuple[str, list[int]]]
    ) -> None:
        self.refs = [list(c) for c in self._stable(columns, volatile)]
        self.key = self._key(self.refs)
        self.pointers = self.key[0] if self.key is not None else []
        self.route = (prefer, tuple(_override))
        self.parts = parts
        first = next(c for k, c in enumerate(columns) if isinstance(c, list) and k not in volatile)
        raw = {i for name, idx in parts if name in ("fused", "triton") for i in idx}  # rows run through pointers
        self.signature = [(t.shape, t.dtype, t.device, t.stride() if i in raw else None) for i, t in enumerate(first)]


def prepare(
    columns: Sequence[Any],
    prefer: str | None = None,
    names: Sequence[str] | None = None,
    *,
    checked: bool = False,
    plan: Plan | None = None,
    volatile: Sequence[int] = (),
) -> tuple[list[Any], list[tuple[str, list[int]]]]:
    """Unwrap, check and partition ``columns`` (the first half of :func:`run`): returns the columns the engines
    see and the partition. Raises before anything runs when a column does not fit."""
    parts = plan.lookup(columns, volatile, prefer) if plan is not None else None
    if parts is not None:
        return list(columns), parts
    columns = [[local(t) for t in c] if isinstance(c, list) else c for c in columns]
    if not checked:
        check_columns(columns, names)
    parts = partition(prefer, columns)
    if plan is not None:
        plan.store(columns, volatile, prefer, parts)
    return columns, parts


def execute(
    fn: Callable,
    columns: Sequence[Any],
    parts: list[tuple[str, list[int]]],
    writes: Sequence[int],
    scalars: Sequence[Any] = (),
    flags: Sequence[bool] = (),
    n_sums: int = 0,
    pointers: Sequence[list[int] | None] | None = None,
) -> tuple[float, ...]:
    """Run ``fn`` on prepared columns (the second half of :func:`run`); returns the ``n_sums`` sums.

    ``pointers``: for each column, its tensors' data pointers when a :class:`Plan` has just read and compared them
    (:attr:`Plan.pointers`), else None (the one-pass engines read them)."""
    from . import get_engine

    totals = [0.0] * n_sums
    for name, idx in parts:
        whole = len(parts) == 1
        cols = columns if whole else [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]
        engine = get_engine(name)
        if name == "fused":  # (partition did the fused and triton engines' layout checks)
            ptrs = pointers if whole or pointers is None else [p and [p[i] for i in idx] for p in pointers]
            out = engine.apply_checked(fn, cols, writes, tuple(scalars), tuple(flags), n_sums, pointers=ptrs)
        elif name == "triton":
            out = engine.apply_checked(fn, cols, writes, tuple(scalars), tuple(flags), n_sums)
        else:
            out = engine.apply(fn, cols, writes, tuple(scalars), tuple(flags), n_sums)
        for k in range(n_sums):
            totals[k] += out[k]
    return tuple(totals)


def run(
    fn: Callable,
    columns: Sequence[Any],
    writes: Sequence[int],
    scalars: Sequence[Any] = (),
    flags: Sequence[bool] = (),
    n_sums: int = 0,
    *,
    prefer: str | None = None,
    names: Sequence[str] | None = None,
    checked: bool = False,
    plan: Plan | None = None,
    volatile: Sequence[int] = (),
) -> tuple[float, ...]:
    """Run the elementwise rule ``fn`` over ``columns`` (see ``docs/CONTRACTS.md``) on the engines fit for them.

    Returns the ``n_sums`` sums over every element of every tensor (over the *local* shards of DTensors).
    ``checked=True``: the caller has run :func:`check_columns` on these columns (the fused engine's own checks
    run regardless, in :func:`partition`). ``plan`` (with ``volatile``, the columns that hold new tensors every
    step) keeps the checks and the partition between calls, see :class:`Plan`.
    """
    if not any(isinstance(c, list) and c for c in columns):
        return (0.0,) * n_sums
    columns, parts = prepare(columns, prefer, names, checked=checked, plan=plan, volatile=volatile)
    return execute(fn, columns, parts, writes, scalars, flags, n_sums)
