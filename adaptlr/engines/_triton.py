"""The ``triton`` engine: one generated Triton kernel per rule, one launch per call, one pass over memory.

The kernel is generated from the rule's trace (:mod:`._trace`), as the fused CPU engine's is (:mod:`._numba`);
no rule is written twice. For one call ``apply(fn, columns, writes, scalars, flags, n_sums)``:

- **scalar part, on the host, in float64**: the trace's scalar nodes (``1 - beta2``, bias corrections, step
  sizes) are evaluated once per call in Python floats, as torch.optim computes them, by a small generated
  function; their values (and the per-step scalars the tensor part reads) are passed as *kernel arguments*
  typed ``fp32`` (``fp64`` for float64 tensors). Triton never specializes on float arguments, so a changing
  learning rate never recompiles, and nothing is copied to the device for them.
- **tensor part, per element**: the straight-line body of the kernel. Tensors are loaded in their own dtype
  (float32, float16, bfloat16 or float64), the math runs in float32 registers (float64 for float64 tensors, as
  torch's fused kernels do), and new values are stored back in the tensor's dtype (round to nearest even).
  Division and square root are the IEEE round-to-nearest ones (``div_rn``, ``sqrt_rn``), as in torch, and
  ``a * b + c`` may contract to a fused multiply-add (:data:`FP_FUSION`, nvcc's default for torch's kernels).
- **one launch over every tensor of the call**, as torch's multi-tensor-apply: the kernel reads a table of raw
  data pointers (``int64[n_tensors, n_columns]``) and a table of chunks ``(tensor, start, stop)`` of at most
  :data:`CHUNK` elements; program ``c`` streams chunk ``c`` in blocks of :data:`BLOCK` elements (full blocks
  unmasked, one masked tail). When every pointer is 16-byte aligned (the caching allocator's tensors are) the
  kernel says so (``tl.multiple_of``), so loads and stores are vectorized.
- **sums of reduction phases, in the kernel**: each program accumulates its terms in float64 registers and
  writes one partial sum per chunk; one small ``torch.sum`` over the chunks gives the totals (one transfer to
  the host per call, for all the sums together).

Before anything is launched, :meth:`TritonEngine.apply` checks every tensor of every column: a plain tensor
(no subclass), the param column's dtype (one of :data:`DTYPES`), its device, the same shape and strides as the
param tensor of its row, and dense in memory (each of its ``numel`` elements at its own slot, so the flat loop
over raw memory is exact for ``channels_last`` tensors too). Nothing runs when a check fails; the
``RuntimeError`` names the column, the row and what differs.

Devices: CUDA tensors; CPU tensors only under Triton's interpreter (``TRITON_INTERPRET=1``; it may be set after
``triton`` is imported, since the kernels call no ``@triton.jit`` library function), which runs the same
generated kernels on CPU with NumPy; that is how the test suite checks this engine without a GPU (and it compiles
them with Triton's CUDA backend to PTX, which needs no GPU either). CUDA graphs: not supported yet (the per-step
scalars are host floats, baked into a captured graph, and the sums of a reduction phase are read on the host); a
call made while a CUDA stream is capturing raises ``RuntimeError``, as does ``capturable=True`` in the optimizers.

Kernels are cached twice: the generated source is written under a name hashing it (next to the fused engine's
kernels, see :func:`adaptlr.engines._raw._cache_dir`), and Triton caches the compiled binary on disk (its own
cache, ``~/.triton/cache``). The first launch of each kernel (which compiles it) is timed:
:attr:`TritonEngine.compile_seconds`, also logged on the ``adaptlr.engines.triton`` logger at INFO;
:attr:`TritonEngine.bytes_moved` counts the bytes the kernels read and write (the benchmark's bandwidth).
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._raw import RawPointerEngine, load_generated
from ._select import _dense
from ._trace import Program, Ref, trace

__all__ = ["BLOCK", "CHUNK", "DTYPES", "TritonEngine", "available", "interpreting", "kernel_source"]

BLOCK = 1024  # elements per block of a program's loop (num_warps=4: 8 elements per thread)
CHUNK = 1 << 16  # elements per program (torch's multi-tensor-apply chunk)
ALIGN = 16  # bytes; pointers aligned to this get vectorized loads and stores
#: contract a * b + c into fused multiply-adds, as nvcc does by default for torch's own CUDA kernels (and said
#: explicitly: Triton 3.9 warns that its default will change)
FP_FUSION = True

#: tensor dtype -> (Triton dtype name, compute dtype name)
_TL = {
    torch.float32: ("float32", "float32"),
    torch.float16: ("float16", "float32"),
    torch.bfloat16: ("bfloat16", "float32"),
    torch.float64: ("float64", "float64"),
}
#: the dtypes this engine runs (complex ones through ``torch.view_as_real``, as the optimizers pass them)
DTYPES = tuple(_TL)
_PLAIN = (torch.Tensor, torch.nn.Parameter)

log = logging.getLogger("adaptlr.engines.triton")


def available() -> bool:
    """Whether ``triton`` imports (the engine needs it; ``pip install adaptlr[triton]``)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``): then CPU tensors, only."""
    import triton

    return bool(triton.knobs.runtime.interpret)


# ------------------------------------------------------------------------------------------ code generation
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_SCALAR_FN = {"sqrt", "abs", "sign", "exp", "log", "maximum", "minimum", "where"}


def _literal(v: Any) -> str:
    """Source text of a number (``float('inf')`` and ``float('nan')`` included)."""
    v = float(v)
    return repr(v) if math.isfinite(v) else f"float({str(v)!r})"


def _host_expr(op: str, a: list[str]) -> str:
    """Python (host, float64) expression of a scalar node; the same functions the foreach engine evaluates."""
    if op in _BINARY:
        return f"({a[0]} {_BINARY[op]} {a[1]})"
    if op == "pow":
        return f"({a[0]} ** {a[1]})"
    if op == "neg":
        return f"(-{a[0]})"
    if op in _SCALAR_FN:
        return f"_OPS[{op!r}]({', '.join(a)})"
    raise NotImplementedError(op)


def _pow_expr(x: str, y: str, y_value: float | None, ct: str) -> str:
    """Triton expression of ``x ** y`` (the interpreter has no libdevice ``pow``): small integer literal exponents
    as products, 0.5 as a square root, anything else through exp2/log2 with the signs of real ``pow``."""
    sqrt = "tl.sqrt_rn" if ct == "float32" else "tl.sqrt"
    if y_value is not None:
        if y_value == 0.5:
            return f"{sqrt}({x})"
        if y_value == int(y_value) and 0 <= y_value <= 4:
            return "(" + " * ".join([x] * int(y_value)) + ")" if y_value else f"({x} * 0 + 1)"
    mag = f"tl.exp2({y} * tl.log2(tl.abs({x})))"
    odd = f"(tl.floor({y} * 0.5) * 2 != {y})"
    integral = f"(tl.floor({y}) == {y})"
    negative = f"tl.where({integral}, tl.where({odd}, -{mag}, {mag}), {x} * 0 + float('nan'))"
    zero = f"tl.where({y} > 0, {x} * 0, tl.where({y} == 0, {x} * 0 + 1, {x} * 0 + float('inf')))"
    return f"tl.where({x} < 0, {negative}, tl.where({x} == 0, {zero}, {mag}))"


def _device_expr(op: str, a: list[str], ct: str, literal: list[float | None]) -> str:
    f32 = ct == "float32"
    if op == "div":
        return f"tl.div_rn({a[0]}, {a[1]})" if f32 else f"({a[0]} / {a[1]})"
    if op in _BINARY:
        return f"({a[0]} {_BINARY[op]} {a[1]})"
    if op == "pow":
        return _pow_expr(a[0], a[1], literal[1], ct)
    if op == "neg":
        return f"(-{a[0]})"
    if op == "sqrt":
        return f"tl.sqrt_rn({a[0]})" if f32 else f"tl.sqrt({a[0]})"
    if op in ("abs", "exp", "log"):
        return f"tl.{op}({a[0]})"
    if op == "sign":  # -1, 0 or 1; a zero keeps its sign and NaN stays NaN, as torch.sign
        return f"tl.where({a[0]} > 0, 1.0, tl.where({a[0]} < 0, -1.0, {a[0]}))"
    if op in ("maximum", "minimum"):  # NaN-propagating, as torch.maximum / torch.minimum
        return f"tl.{op}({a[0]}, {a[1]}, propagate_nan=tl.PropagateNan.ALL)"
    if op == "where":
        return f"tl.where({a[0]} > 0, {a[1]}, {a[2]})"
    raise NotImplementedError(op)


def kernel_source(program: Program, writes: Sequence[int], n_sums: int, dtype: str, aligned: bool) -> str:
    """Triton source for ``program`` over tensors of Triton dtype ``dtype``.

    The module defines ``host(s)`` (the scalar part: per-step scalars ``s`` -> the tuple of kernel arguments)
    and ``kernel(ptrs, chunks, [partial,] h0, h1, ..., BLOCK)`` (the tensor part over every chunk).
    """
    nodes = program.nodes
    ct = "float64" if dtype == "float64" else "float32"
    tensor_cols = program.tensor_columns
    slot = {c: j for j, c in enumerate(tensor_cols)}
    hoisted: dict[Ref, int] = {}  # scalar refs the tensor part reads -> kernel argument index
    literals: dict[float, int] = {}

    def is_tensor(a: Any) -> bool:
        return isinstance(a, Ref) and (a.kind == "col" or (a.kind == "node" and nodes[a.index].tensor))

    def operand(a: Any) -> str:
        """Name of ``a`` in the kernel: a loaded column, a tensor node, or a typed 0-d scalar."""
        if isinstance(a, Ref) and a.kind == "col":
            return f"v{a.index}"
        if is_tensor(a):
            return f"x{a.index}"
        if isinstance(a, Ref):
            return f"s{hoisted.setdefault(a, len(hoisted))}"
        return f"k{literals.setdefault(float(a), len(literals))}"

    body: list[str] = []
    for i, node in enumerate(nodes):
        if node.tensor:
            lit = [None if isinstance(a, Ref) else float(a) for a in node.args]
            body.append(f"x{i} = {_device_expr(node.op, [operand(a) for a in node.args], ct, lit)}")
    outputs = program.outputs
    # (a written column whose new value is its old one -- a rule returning an input unchanged -- is not stored)
    stores = [(col, outputs[k]) for k, col in enumerate(writes) if col in tensor_cols and outputs[k] != Ref("col", col)]
    terms = [outputs[len(writes) + k] for k in range(n_sums)]
    store_names = [(col, operand(o), is_tensor(o)) for col, o in stores]
    term_names = [operand(o) for o in terms]
    refs = [a for n in nodes if n.tensor for a in n.args] + [o for _, o in stores] + terms
    used = sorted({a.index for a in refs if isinstance(a, Ref) and a.kind == "col"})
    arrays = sorted(set(used) | {c for c, _ in stores})

    def block(offs: str, masked: bool) -> list[str]:
        mask = ", mask=m, other=0.0" if masked else ""
        lines = [f"offs = {offs} + tl.arange(0, BLOCK)"]
        if masked:
            lines.append("m = offs < n")
        lines += [f"v{c} = tl.load(a{c} + offs{mask}).to(tl.{ct})" for c in used]
        lines += body
        smask = ", mask=m" if masked else ""
        for col, name, tensor in store_names:
            value = name if tensor else f"(zero + {name})"  # a scalar written to a column: broadcast
            lines.append(f"tl.store(a{col} + offs, {value}.to(tl.{dtype}){smask})")
        for k, name in enumerate(term_names):
            term = f"{name}.to(tl.float64)"
            lines.append(f"acc{k} += tl.where(m, {term}, 0.0)" if masked else f"acc{k} += {term}")
        return lines

    n_slots = max(len(tensor_cols), 1)
    args = ["ptrs", "chunks"] + (["partial"] if n_sums else [])
    args += [f"h{j}: tl.{ct}" for j in range(len(hoisted))] + ["BLOCK: tl.constexpr"]
    kernel = [
        "@triton.jit",
        "def _add(a, b):",
        "    return a + b",
        "",
        "",
        "# tl.sum's own combine function where it exists: the interpreter recognises it and sums with NumPy",
        "_SUM = getattr(tl.standard, '_sum_combine', None) or _add",
        "",
        "",
        "@triton.jit",
        f"def kernel({', '.join(args)}):",
        "    c = tl.program_id(0).to(tl.int64)",
        "    t = tl.load(chunks + c * 3)",
        "    lo = tl.load(chunks + c * 3 + 1)",
        "    n = (tl.load(chunks + c * 3 + 2) - lo).to(tl.int32)",
    ]
    for col in arrays:
        kernel.append(
            f"    a{col} = tl.load(ptrs + t * {n_slots} + {slot[col]}).to("
            f"tl.pointer_type(tl.{dtype}), bitcast=True) + lo"
        )
        if aligned:
            kernel.append(f"    a{col} = tl.multiple_of(a{col}, {ALIGN})")
    kernel += [f"    s{j} = tl.full([], h{j}, tl.{ct})" for j in range(len(hoisted))]
    kernel += [f"    k{j} = tl.full([], {_literal(value)}, tl.{ct})" for value, j in literals.items()]
    # (tl.full and tl.reduce, not tl.zeros and tl.sum: those are @triton.jit functions, fixed as compiled or
    # interpreted when triton is imported, and the interpreter may be switched on after that)
    kernel.append(f"    zero = tl.full([BLOCK], 0.0, tl.{ct})")
    kernel += [f"    acc{k} = tl.full([BLOCK], 0.0, tl.float64)" for k in range(n_sums)]
    kernel += ["    full = n - n % BLOCK", "    for j in range(0, full, BLOCK):"]
    kernel += ["        " + ln for ln in block("j", masked=False)]
    kernel.append("    if full < n:")
    kernel += ["        " + ln for ln in block("full", masked=True)]
    kernel += [f"    tl.store(partial + c * {n_sums} + {k}, tl.reduce(acc{k}, 0, _SUM))" for k in range(n_sums)]

    # the host part: every scalar node in program order (float64 Python), then the kernel's arguments
    host = ["def host(s):"]
    for i, node in enumerate(nodes):
        if not node.tensor:
            names = [
                f"s[{a.index}]"
                if isinstance(a, Ref) and a.kind == "scalar"
                else f"c{a.index}"
                if isinstance(a, Ref)
                else _literal(a)
                for a in node.args
            ]
            host.append(f"    c{i} = {_host_expr(node.op, names)}")
    values = [f"float(s[{r.index}])" if r.kind == "scalar" else f"float(c{r.index})" for r in hoisted]
    host.append(f"    return ({', '.join(values)}{',' if len(values) == 1 else ''})")
    header = [
        "import triton",
        "import triton.language as tl",
        "from adaptlr.engines._trace import SCALAR_OPS as _OPS",
        f"DTYPE = {dtype!r}",
        f"N_SUMS = {n_sums}",
        "# the columns the kernel reads and writes (the memory traffic of a call: (reads + writes) x bytes)",
        f"READS = {tuple(used)!r}",
        f"WRITES = {tuple(c for c, _ in stores)!r}",
        "",
    ]
    return "\n".join(header + host + ["", ""] + kernel) + "\n"


def _load(source: str) -> Any:
    """Import the generated module (Triton reads a kernel's source from its file, so it is written to disk)."""
    import triton

    return load_generated("adaptlr_triton", triton.__version__, source)


# ------------------------------------------------------------------------------------------------- checks
def _fail(what: str) -> RuntimeError:
    return RuntimeError(
        f"triton engine: {what}; nothing was run (route tensors through "
        f"adaptlr.engines._select, which sends such tensors to the foreach engine)"
    )


def check(lists: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.dtype, torch.device]:
    """Raise ``RuntimeError`` unless the kernel may address every tensor through its raw pointer; return the
    dtype and device of the call.

    Every column holds as many tensors as the first; every tensor is a plain tensor of the first tensor's dtype
    (one of :data:`DTYPES`) on its device (CUDA, or CPU under the interpreter), with the shape and strides of the
    first column's tensor of its row, dense in memory.
    """
    first = lists[0]
    ref = first[0]
    dtype, device = ref.dtype, ref.device
    if dtype not in _TL:
        raise _fail(f"dtype {dtype} is not one of {', '.join(str(d) for d in DTYPES)}")
    if interpreting():
        if device.type != "cpu":
            raise _fail(f"under TRITON_INTERPRET=1 it runs CPU tensors only, got a tensor on {device}")
    elif device.type != "cuda":
        raise _fail(
            f"it runs CUDA tensors, got a tensor on {device} (Triton's interpreter runs CPU tensors: set "
            f"TRITON_INTERPRET=1 before importing triton)"
        )
    n = len(first)
    for k, col in enumerate(lists):
        if len(col) != n:
            raise _fail(f"column {k} holds {len(col)} tensors, the first column {n}")
    for i in range(n):
        t0 = first[i]
        shape, stride = t0.shape, t0.stride()
        for k, col in enumerate(lists):
            t = col[i]
            if type(t) not in _PLAIN:
                raise _fail(f"tensor {i} of column {k} is a {type(t).__name__}, not a plain tensor")
            if t.dtype != dtype or t.device != device:
                raise _fail(f"tensor {i} of column {k} is {t.dtype} on {t.device}, the call runs {dtype} on {device}")
            if t.shape != shape or t.stride() != stride:
                raise _fail(
                    f"tensor {i} of column {k} has shape {tuple(t.shape)} and strides {t.stride()}, its row's "
                    f"first tensor {tuple(shape)} and {stride}"
                )
        if not _dense(t0):
            raise _fail(f"the tensors of row {i} are not dense in memory (strides {stride}, shape {tuple(shape)})")
    return dtype, device


# ------------------------------------------------------------------------------------------------- engine
class TritonEngine(RawPointerEngine):
    """One-pass Triton kernels over float32 / float16 / bfloat16 / float64 tensors (CUDA, or CPU interpreted).

    ``block`` and ``chunk`` (elements) and ``num_warps`` tune the launch; the defaults suit memory-bound
    elementwise kernels on current NVIDIA GPUs (torch's multi-tensor-apply uses 64 Ki-element chunks too).
    """

    name = "triton"

    def __init__(self, block: int = BLOCK, chunk: int = CHUNK, num_warps: int = 4) -> None:
        if block <= 0 or block & (block - 1):
            raise ValueError(f"block must be a power of two, got {block}")
        if chunk % block:
            raise ValueError(f"chunk must be a multiple of block ({block}), got {chunk}")
        self.block, self.chunk, self.num_warps = block, chunk, num_warps
        self._modules: dict[Any, Any] = {}
        self._launched: set[Any] = set()
        self._chunks: dict[Any, tuple[torch.Tensor, int, int]] = {}
        self._ptrs: dict[Any, torch.Tensor] = {}
        #: seconds of the first launch of each kernel (Triton compiles it then), by a readable key
        self.compile_seconds: dict[str, float] = {}
        #: bytes the kernels have read and written so far (each read column once, each written column once)
        self.bytes_moved = 0

    # kernels --------------------------------------------------------------------------------------------
    def launch_options(self) -> dict[str, Any]:
        """The keyword arguments of every launch: the block (a constexpr) and Triton's compile options."""
        return {"BLOCK": self.block, "num_warps": self.num_warps, "enable_fp_fusion": FP_FUSION}

    def module(
        self,
        fn: Callable,
        kinds: tuple,
        writes: tuple,
        n_scalars: int,
        flags: tuple,
        n_sums: int,
        dtype: str,
        aligned: bool,
    ) -> Any:
        """The generated module (``host`` and ``kernel``) for one rule, column kinds, flags and dtype."""
        key = (fn, kinds, writes, n_scalars, flags, n_sums, dtype, aligned, interpreting())
        module = self._modules.get(key)
        if module is None:
            program = trace(fn, kinds, n_scalars, flags, len(writes) + n_sums)
            module = self._modules[key] = _load(kernel_source(program, writes, n_sums, dtype, aligned))
        return module

    # tables ---------------------------------------------------------------------------------------------
    def _to_device(self, rows: Any, device: torch.device) -> torch.Tensor:
        table = torch.tensor(rows, dtype=torch.int64)
        if device.type == "cuda":
            table = table.pin_memory().to(device, non_blocking=True)
        return table

    def _chunk_table(self, sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, int, int]:
        """The chunk table of tensors of ``sizes`` on ``device``, its number of rows and ``sum(sizes)``."""
        key = (sizes, device)
        hit = self._chunks.get(key)
        if hit is None:
            rows = [(t, lo, min(lo + self.chunk, n)) for t, n in enumerate(sizes) for lo in range(0, n, self.chunk)]
            if len(self._chunks) >= 64:
                self._chunks.clear()
            hit = self._chunks[key] = (self._to_device(rows or [(0, 0, 0)], device), len(rows), sum(sizes))
        return hit

    def _pointer_table(self, ptrs: tuple[int, ...], n_columns: int, device: torch.device) -> torch.Tensor:
        """``int64[n_tensors, n_columns]`` on ``device`` from the column-major ``ptrs`` (cached by value)."""
        key = (ptrs, device)
        table = self._ptrs.get(key)
        if table is None:
            rows = torch.tensor(ptrs, dtype=torch.int64).view(n_columns, -1).t().contiguous()
            if len(self._ptrs) >= 64:  # (a plain dict, emptied when full: an LRU would hash the key twice)
                self._ptrs.clear()
            table = self._ptrs[key] = rows.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else rows
        return table

    # running --------------------------------------------------------------------------------------------
    check = staticmethod(check)

    def apply_checked(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> tuple[float, ...]:
        """:meth:`apply` for columns already checked (by :func:`check`, or by the engine selection)."""
        lists = [c for c in columns if isinstance(c, list)]
        if not lists or not lists[0]:
            return (0.0,) * n_sums
        ref = lists[0][0]
        device = ref.device
        if device.type != ("cpu" if interpreting() else "cuda"):  # (the caller checked the rest of the layout)
            check([[ref]])  # raises the error that says which device this mode runs
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                "triton engine: CUDA graph capture is not supported yet (per-step scalars are host "
                "floats and reduction sums are read on the host); run the step outside the graph"
            )
        ptrs = tuple([t.data_ptr() for col in lists for t in col])  # (one pass: the per-tensor cost of a call)
        aligned = not functools.reduce(operator.or_, ptrs) & (ALIGN - 1)
        dtype = _TL[ref.dtype][0]
        kinds = tuple(None if isinstance(c, list) else float(c) for c in columns)
        flags = tuple(bool(f) for f in flags)
        key = (fn, kinds, tuple(writes), len(scalars), flags, n_sums, dtype, aligned, interpreting())
        module = self.module(*key[:-1])
        chunks, n_chunks, numel = self._chunk_table(tuple(t.numel() for t in lists[0]), device)
        if n_chunks == 0:
            return (0.0,) * n_sums
        table = self._pointer_table(ptrs, len(lists), device)
        hoisted = module.host([float(s) for s in scalars])
        args: list[Any] = [table, chunks]
        partial = None
        if n_sums:
            partial = torch.empty((n_chunks, n_sums), dtype=torch.float64, device=device)
            args.append(partial)
        first = key not in self._launched
        start = time.perf_counter() if first else 0.0
        # (in the interpreter, the masked-off lanes of a tail block compute on zeros: NumPy must not warn about it)
        with torch.cuda.device(device) if device.type == "cuda" else np.errstate(all="ignore"):
            module.kernel[(n_chunks,)](*args, *hoisted, **self.launch_options())
        if first:
            self._launched.add(key)
            seconds = time.perf_counter() - start
            name = f"{getattr(fn, '__name__', fn)}[{dtype}{', sums' if n_sums else ''}]"
            self.compile_seconds[name] = self.compile_seconds.get(name, 0.0) + seconds
            log.info("triton engine: first launch of %s took %.2f s (compile included)", name, seconds)
        self.bytes_moved += (len(module.READS) + len(module.WRITES)) * numel * ref.element_size()
        written = [columns[c] for c in writes if isinstance(columns[c], list)]
        if written:  # raw-pointer writes: bump the version counters as torch's in-place ops do
            torch.autograd.graph.increment_version([t for col in written for t in col])
        if partial is None:
            return ()
        return tuple(partial.sum(dim=0).tolist())
