"""The ``triton`` engine: one generated Triton kernel per rule, one launch per call, one pass over memory.

The kernel is generated from the rule's trace (:mod:`._trace`; the source: :mod:`._triton_source`), as the
one-pass CPU engine's is (:mod:`._numba`); no rule is written twice. For one call
``apply(fn, columns, writes, scalars, flags, n_sums)``:

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
kernels, ``$ADAPTLR_CACHE_DIR``), and Triton caches the compiled binary on disk (its own
cache, ``~/.triton/cache``). The first launch of each kernel (which compiles it) is timed:
:attr:`TritonEngine.compile_seconds`, also logged on the ``adaptlr.engines.triton`` logger at INFO;
:attr:`TritonEngine.bytes_moved` counts the bytes the kernels read and write (the benchmark's bandwidth).
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._layout import PLAIN, dense
from ._raw import RawPointerEngine, load_generated
from ._trace import trace
from ._triton_source import ALIGN, kernel_source

__all__ = ["BLOCK", "CHUNK", "DTYPES", "TritonEngine", "available", "interpreting", "kernel_source"]

BLOCK = 1024  # elements per block of a program's loop (num_warps=4: 8 elements per thread)
CHUNK = 1 << 16  # elements per program (torch's multi-tensor-apply chunk)
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


def _load(source: str) -> Any:
    """Import the generated module (Triton reads a kernel's source from its file, so it is written to disk)."""
    import triton

    return load_generated("adaptlr_triton", triton.__version__, source)


# ------------------------------------------------------------------------------------------------- checks
def _fail(what: str) -> RuntimeError:
    return RuntimeError(
        f"triton engine: {what}; nothing was run (route tensors through "
        f"adaptlr.engines.run, which sends such tensors to the foreach engine)"
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
            if type(t) not in PLAIN:
                raise _fail(f"tensor {i} of column {k} is a {type(t).__name__}, not a plain tensor")
            if t.dtype != dtype or t.device != device:
                raise _fail(f"tensor {i} of column {k} is {t.dtype} on {t.device}, the call runs {dtype} on {device}")
            if t.shape != shape or t.stride() != stride:
                raise _fail(
                    f"tensor {i} of column {k} has shape {tuple(t.shape)} and strides {t.stride()}, its row's "
                    f"first tensor {tuple(shape)} and {stride}"
                )
        if not dense(t0):
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
        pointers: Sequence[list[int] | None] | None = None,
    ) -> tuple[float, ...]:
        """:meth:`apply` for columns already checked (by :func:`check`, or by the engine selection); ``pointers``
        are not used (the pointer table is read in one pass here, the per-tensor cost of a call)."""
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
