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
3. **partition**: rows go to the one-pass CPU engine (``numba``) only when every one of their tensors is a plain CPU
   tensor of a dtype it compiles, dense and non-overlapping, with *the same strides* as the others (then element
   ``k`` of every column lives at the same offset, and the kernel's flat loop over raw memory is exact, for
   ``channels_last`` tensors too). Any other row goes to ``foreach``, which indexes logically.
   CUDA rows go the same way to the ``triton`` engine (float32, float16, bfloat16, float64) when ``triton``
   imports, else to ``foreach``. The user's flag ``fused=True`` (``prefer="fused"``) asks for the one-pass engine
   of the tensors' device: ``numba`` on CPU, ``triton`` on CUDA. :func:`override` sends CPU rows to triton
   too (for tests, in Triton's interpreter).
4. **execute**: each part runs on its engine through the one call shape every engine answers
   (:meth:`~adaptlr.engines.Engine.apply_checked`).

The checks cost a few attribute reads per tensor; a :class:`Plan` keeps them (and the partition) while the same
tensors come back, so a steady step re-checks only the gradients (``benchmarks/step_time.py``, cases b and c).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

from ._layout import FUSED_DTYPES, PLAIN, PLAIN_SET, TRITON_DTYPES, dense, describe, is_dtensor, local
from ._registry import get_engine

__all__ = [
    "Plan",
    "FUSED_DTYPES",
    "TRITON_DTYPES",
    "check_columns",
    "execute",
    "fused_dtype",
    "fused_supported",
    "is_dtensor",
    "local",
    "numba_available",
    "override",
    "partition",
    "prepare",
    "run",
    "triton_available",
]

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
    """Inside the block, rows that :func:`partition` would give the numba engine (or foreach, for a dtype only
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
    """Whether the one-pass CPU engine (``numba``) can run here (Numba imports)."""
    from ._numba import available

    return available()


def fused_dtype(dtype: torch.dtype) -> bool:
    """Whether the one-pass CPU engine runs tensors of ``dtype`` (complex ones go through ``view_as_real``)."""
    return dtype in FUSED_DTYPES or dtype in (torch.complex64, torch.complex128)


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
                    f"{_name(names, k)} of tensor {i} does not match {_name(names, k0)}: {describe(b)} against "
                    f"{describe(a)} (torch.optim raises for such tensors too; was the state loaded for another "
                    f"model, or was a parameter's .data replaced?)"
                )


def _name(names: Sequence[str] | None, k: int) -> str:
    return repr(names[k]) if names is not None and k < len(names) else f"column {k}"


def partition(prefer: str | None, columns: Sequence[Any]) -> list[tuple[str, list[int]]]:
    """Split the rows of (checked, unwrapped) ``columns`` by engine (``numba``, ``triton``, ``foreach``,
    ``loop``), and by dtype for the typed one-pass kernels.

    ``prefer`` (the user's choice): ``"loop"`` or ``"foreach"`` run every row there (except tensor subclasses,
    which always run on ``loop``); ``"fused"`` or None run every row a one-pass engine can address there
    (``numba`` on CPU, ``triton`` on CUDA), the rest on ``foreach``.
    """
    lists = [c for c in columns if isinstance(c, list)]
    n = len(lists[0]) if lists else 0
    if prefer not in ("loop", "foreach", "fused", None):
        raise ValueError(f"unknown engine preference {prefer!r}")
    parts: dict[Any, list[int]] = {}
    triton: bool | None = None  # (asked once per call, at the first row that could go there)
    for i in range(n):
        row = [c[i] for c in lists]
        if any(type(t) not in PLAIN for t in row):
            key: Any = ("loop", None)
        elif prefer in ("loop", "foreach"):
            key = (prefer, None)
        else:
            t0 = row[0]
            stride = t0.stride()
            if t0.device.type == "cuda" or _override:  # the triton engine (CUDA, or the interpreter when asked)
                if triton is None:
                    triton = bool(_override) or triton_available()
                fits = triton and t0.dtype in TRITON_DTYPES and all(t.stride() == stride for t in row[1:]) and dense(t0)
                key = ("triton", t0.dtype) if fits else ("foreach", None)
            else:
                fits = (
                    t0.device.type == "cpu"
                    and t0.dtype in FUSED_DTYPES
                    and numba_available()
                    and all(t.stride() == stride for t in row[1:])
                    and dense(t0)
                )
                key = ("numba", t0.dtype) if fits else ("foreach", None)
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
        if not set(map(type, stable[0])) <= PLAIN_SET:
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
                    type(t) not in PLAIN
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
        raw = {i for name, idx in parts if name in ("numba", "triton") for i in idx}  # rows run through pointers
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

    ``parts``: :func:`partition`'s (or :func:`prepare`'s) engine name -> rows. ``pointers``: for each column, its
    tensors' data pointers when a :class:`Plan` has just read and compared them (:attr:`Plan.pointers`), else None
    (the one-pass engines read them)."""
    totals = [0.0] * n_sums
    whole = len(parts) == 1
    for name, idx in parts:  # (partition did the one-pass engines' layout checks)
        cols = columns if whole else [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]
        ptrs = pointers if whole or pointers is None else [p and [p[i] for i in idx] for p in pointers]
        out = get_engine(name).apply_checked(fn, cols, writes, tuple(scalars), tuple(flags), n_sums, pointers=ptrs)
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
    ``checked=True``: the caller has run :func:`check_columns` on these columns (the one-pass engines' own checks
    run regardless, in :func:`partition`). ``plan`` (with ``volatile``, the columns that hold new tensors every
    step) keeps the checks and the partition between calls, see :class:`Plan`.
    """
    if not any(isinstance(c, list) and c for c in columns):
        return (0.0,) * n_sums
    columns, parts = prepare(columns, prefer, names, checked=checked, plan=plan, volatile=volatile)
    return execute(fn, columns, parts, writes, scalars, flags, n_sums)
