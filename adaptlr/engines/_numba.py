"""The ``numba`` engine: the one-pass CPU engine (what ``fused=True`` runs on CPU), one Numba ``prange`` kernel per
rule, one pass over memory.

The kernel is generated from the rule's trace (:mod:`._trace`; no second copy of the math): the per-step
scalar part of the program (``1 - beta2``, bias corrections, ...) is computed once per call in float64, as
torch computes it in Python, then cast to the tensors' dtype; the tensor part becomes the straight-line body
of the inner loop, in that dtype, which LLVM vectorizes.

All tensors of one call go through ONE parallel region: the kernel receives a table of raw data pointers
(``int64[n_tensors, n_columns]``) and a table of chunks ``(tensor, start, stop)``, so 400 small tensors cost one
launch, and a 16M-element tensor is split across the threads.

A call over fewer than ``SERIAL_BELOW`` elements (4 chunks, all its tensors together) runs the serial kernel
instead: the same generated lines with ``range`` for ``prange``, compiled without ``parallel`` in a module of its
own (each compiled at its first call), so no thread pool is woken and joined (:func:`serial` decides). Its
writes are bit-identical to the parallel kernel's; its sums too for one chunk (over several, the parallel kernel
adds per thread first). Measured on 2 cores, other jobs running
(``benchmarks/numba_small_calls.py``): ``AdamW`` on ``nn.Linear(10, 1)`` with both cores kept busy took a mean of
2,200-13,000 us a step through the parallel region (a thread descheduled at the join), 190-220 us serial
(``torch.optim.AdamW`` 230-280 us; every median ~40 us). With the cores not kept busy the parallel kernel's median
passes the serial one's between 2 and 4 chunks (64K: 53 vs 49 us; 128K: 58 vs 68 us; 1M: 155 vs 231 us); a
4M-element tensor still runs in parallel (5-12 ms a step, as before, within the other jobs' noise).

The generated source is written to a cache folder (``$ADAPTLR_CACHE_DIR``, default ``~/.cache/adaptlr``) under a
name that hashes it, and compiled with ``cache=True``: a new process loads the machine code from disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ._layout import FUSED_DTYPES, PLAIN, dense
from ._raw import RawPointerEngine, load_generated
from ._trace import Program, Ref, trace

CHUNK = 1 << 15  # elements per parallel work item
SERIAL_BELOW = 4 * CHUNK  # a call over fewer elements runs the serial kernel (see the measurements above)
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def available() -> bool:
    """Whether Numba imports (the fused CPU engine needs it)."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - numba is a core dependency
        return False
    return True


def _make_intrinsic():
    """A Numba intrinsic turning an int64 address into a ``void*`` (for ``numba.carray``)."""
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _as_pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(address), codegen

    return _as_pointer


def __getattr__(name: str) -> Any:  # the generated kernels import ``as_void_pointer``; Numba loads lazily
    if name == "as_void_pointer":
        fn = _make_intrinsic()
        globals()["as_void_pointer"] = fn
        return fn
    raise AttributeError(name)


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}
_UNARY = {"sqrt": "np.sqrt", "abs": "np.abs", "sign": "np.sign", "exp": "np.exp", "log": "np.log"}


def _expr(op: str, a: list[str]) -> str:
    if op in _BINARY:
        return f"({a[0]} {_BINARY[op]} {a[1]})"
    if op == "neg":
        return f"(-{a[0]})"
    if op in _UNARY:
        return f"{_UNARY[op]}({a[0]})"
    if op in ("maximum", "minimum"):
        return f"np.{op}({a[0]}, {a[1]})"
    if op == "where":
        return f"({a[1]} if {a[0]} > 0 else {a[2]})"
    raise NotImplementedError(op)


def _parts(program: Program, writes: Sequence[int], n_sums: int) -> tuple[list[str], list[str]]:
    """The kernel's lines run once per call (scalars in float64, their casts, the sums) and those run per chunk."""
    nodes = program.nodes
    hoisted: list[str] = []  # float64 scalar code, then casts to DT
    casts: dict[Any, str] = {}

    def scalar_name(a: Any) -> str:
        if isinstance(a, Ref):
            return f"scal[{a.index}]" if a.kind == "scalar" else f"c{a.index}"
        return repr(float(a))

    def tensor_operand(a: Any) -> str:
        if isinstance(a, Ref) and a.kind == "col":
            return f"v{a.index}"
        if isinstance(a, Ref) and a.kind == "node" and nodes[a.index].tensor:
            return f"x{a.index}"
        key = a if isinstance(a, Ref) else float(a)
        if key not in casts:
            casts[key] = f"k{len(casts)}"
            hoisted.append(f"    {casts[key]} = DT({scalar_name(a)})")
        return casts[key]

    body: list[str] = []
    for i, node in enumerate(nodes):
        if node.tensor:
            body.append(f"            x{i} = {_expr(node.op, [tensor_operand(a) for a in node.args])}")
        else:
            hoisted.insert(0, f"    c{i} = {_expr(node.op, [scalar_name(a) for a in node.args])}")
    outputs = program.outputs
    tensor_cols = program.tensor_columns
    # (a written column whose new value is its old one -- a rule returning an input unchanged -- is not stored)
    stores = [
        f"            a{col}[i] = {tensor_operand(outputs[k])}"
        for k, col in enumerate(writes)
        if col in tensor_cols and outputs[k] != Ref("col", col)
    ]
    sums = [f"            l{k} += np.float64({tensor_operand(outputs[len(writes) + k])})" for k in range(n_sums)]
    refs = [a for n in nodes if n.tensor for a in n.args] + list(outputs)
    used = sorted({a.index for a in refs if isinstance(a, Ref) and a.kind == "col"})
    arrays = sorted(set(used) | {c for c in writes if c in tensor_cols})
    slot = {c: j for j, c in enumerate(tensor_cols)}
    # (after every tensor_operand call, which may hoist a cast) scalar nodes in program order, then the casts
    scalar_lines = [ln for ln in hoisted if ln.startswith("    c")]
    scalar_lines.sort(key=lambda ln: int(ln.split("=")[0].strip()[1:]))
    cast_lines = [ln for ln in hoisted if not ln.startswith("    c")]
    once = [*scalar_lines, *cast_lines, *[f"    acc{k} = 0.0" for k in range(n_sums)]]
    per_chunk = [
        "        t = chunks[c, 0]",
        "        lo = chunks[c, 1]",
        "        n = chunks[c, 2] - lo",
        *[f"        a{c} = carray(as_void_pointer(ptrs[t, {slot[c]}] + lo * SIZE), (n,), DT)" for c in arrays],
        *[f"        l{k} = 0.0" for k in range(n_sums)],
        "        for i in range(n):",
        *[f"            v{c} = a{c}[i]" for c in used],
        *body,
        *stores,
        *sums,
        *[f"        acc{k} += l{k}" for k in range(n_sums)],
    ]
    return once, per_chunk


def kernel_source(program: Program, writes: Sequence[int], n_sums: int, dtype: str, parallel: bool = True) -> str:
    """Numba source for ``program``: scalar nodes once per call (float64), tensor nodes per element (dtype).

    ``parallel``: ``kernel`` spreads the chunks over Numba's threads (``prange``); else it runs them in order on the
    calling thread (``range``), for calls too small to split. The same lines either way, in a module of its own:
    Numba's disk cache is not safe for processes that compile several functions of one module in different orders
    (numba/numba#10128: a parallel function's inner gufunc takes its ABI tag from a process-wide counter)."""
    once, per_chunk = _parts(program, writes, n_sums)
    ret = ", ".join(f"acc{k}" for k in range(n_sums))
    lines = [
        "import numpy as np",
        "from numba import njit, prange, carray",
        "from adaptlr.engines._numba import as_void_pointer",
        f"DT = np.{dtype}",
        f"SIZE = {np.dtype(dtype).itemsize}",
        "",
        f"@njit(parallel={parallel}, cache=True, error_model='numpy', nogil=True)",
        "def kernel(ptrs, chunks, scal):",
        *once,
        f"    for c in {'prange' if parallel else 'range'}(chunks.shape[0]):",
        *per_chunk,
        f"    return ({ret}{',' if n_sums == 1 else ''})" if n_sums else "    return 0",
    ]
    return "\n".join(lines) + "\n"


class _Compiled:
    """A generated kernel, compiled (or loaded from Numba's disk cache) at its first call."""

    __slots__ = ("fn", "source")

    def __init__(self, source: str) -> None:
        self.source, self.fn = source, None

    def __call__(self, *args: Any) -> Any:
        fn = self.fn
        if fn is None:
            fn = self.fn = _load(self.source)
        return fn(*args)


class Kernels(NamedTuple):
    """One rule's two kernels (the same generated lines): over Numba's threads, and on the caller's; each compiled
    when first called."""

    parallel: Callable
    serial: Callable


def _load(source: str) -> Callable:
    import numba

    return load_generated("adaptlr_kernel", numba.__version__, source).kernel


def serial(n_elements: int) -> bool:
    """Whether a call over ``n_elements`` (all its tensors together) runs the serial kernel: below
    ``SERIAL_BELOW`` elements, splitting the work saves less than starting and joining the threads costs."""
    return n_elements < SERIAL_BELOW


def check_fused(lists: Sequence[Sequence[torch.Tensor]]) -> None:
    """Raise ``RuntimeError`` unless the kernel may address every tensor through its raw pointer: plain CPU tensors
    of one compiled dtype, and in each row (one per parameter) the same shape and strides, dense in memory."""
    n = len(lists[0])
    if any(len(c) != n for c in lists):
        raise RuntimeError("fused engine: the columns hold different numbers of tensors")
    for i, row in enumerate(zip(*lists)):
        t0 = row[0]
        if any(t.shape != t0.shape or t.dtype != t0.dtype or t.device != t0.device for t in row):
            raise RuntimeError(f"fused engine: the tensors of row {i} differ in shape, dtype or device")
        stride = t0.stride()
        if not (
            all(type(t) in PLAIN for t in row)
            and t0.device.type == "cpu"
            and t0.dtype in FUSED_DTYPES
            and all(t.stride() == stride for t in row[1:])
            and dense(t0)
        ):
            raise RuntimeError(
                "fused engine: a tensor is not a dense, equally strided CPU float32/float64 tensor "
                "(route it through adaptlr.engines.run)"
            )
    if len({t.dtype for t in lists[0]}) > 1:
        raise RuntimeError("fused engine: one call runs one dtype")


class NumbaEngine(RawPointerEngine):
    """One-pass CPU kernels for float32 / float64 dense tensors."""

    name = "numba"

    def __init__(self) -> None:
        self._kernels: dict[Any, Kernels] = {}
        self._chunks: dict[tuple[int, ...], np.ndarray] = {}

    def kernel(
        self, fn: Callable, kinds: tuple, writes: tuple, n_scalars: int, flags: tuple, n_sums: int, dtype: str
    ) -> Kernels:
        key = (fn, kinds, writes, n_scalars, flags, n_sums, dtype)
        k = self._kernels.get(key)
        if k is None:
            program = trace(fn, kinds, n_scalars, flags, len(writes) + n_sums)
            sources = (kernel_source(program, writes, n_sums, dtype, parallel) for parallel in (True, False))
            k = self._kernels[key] = Kernels(*map(_Compiled, sources))
        return k

    def _chunk_table(self, sizes: tuple[int, ...]) -> np.ndarray:
        table = self._chunks.get(sizes)
        if table is None:
            rows = [(t, lo, min(lo + CHUNK, n)) for t, n in enumerate(sizes) for lo in range(0, n, CHUNK)]
            table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
            if len(self._chunks) > 256:
                self._chunks.clear()
            self._chunks[sizes] = table
        return table

    check = staticmethod(check_fused)

    def apply_checked(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
        pointers: Sequence[list[int] | None] | None = None,
    ) -> tuple[float, ...]:
        """:meth:`apply` for columns that :func:`adaptlr.engines.partition` has routed here (checked);
        ``pointers``: per column, the data pointers a plan has just compared (None: read here)."""
        lists = [c for c in columns if isinstance(c, list)]
        if not lists or not lists[0]:
            return (0.0,) * n_sums
        ref = lists[0][0]
        dtype = _DTYPES[ref.dtype]
        kinds = tuple(None if isinstance(c, list) else float(c) for c in columns)
        kernels = self.kernel(fn, kinds, tuple(writes), len(scalars), tuple(bool(f) for f in flags), n_sums, dtype)
        if pointers is None:
            ptrs = np.array([[t.data_ptr() for t in ts] for ts in zip(*lists)], dtype=np.int64)
        else:
            by_column = [
                known if known is not None else [t.data_ptr() for t in c]
                for c, known in zip(columns, pointers)
                if isinstance(c, list)
            ]
            ptrs = np.ascontiguousarray(np.array(by_column, dtype=np.int64).T)
        sizes = tuple(t.numel() for t in lists[0])
        chunks = self._chunk_table(sizes)
        scal = np.array([float(s) for s in scalars] or [0.0], dtype=np.float64)
        out = (kernels.serial if serial(sum(sizes)) else kernels.parallel)(ptrs, chunks, scal)
        return tuple(float(x) for x in out) if n_sums else ()
