"""The ``fused`` engine on CPU: one Numba ``prange`` kernel per rule, one pass over memory.

The kernel is generated from the rule (no second copy of the math): the rule and the helpers it calls are
registered as Numba-jittable functions, :mod:`adaptlr.rules._math` gets Numba overloads, and a few lines of
generated source loop over every element of every tensor of a call, calling the rule per element.

All tensors of one call go through ONE parallel region: the kernel receives a table of raw data pointers
(``int64[n_tensors, n_columns]``) and a table of chunks ``(tensor, start, stop)``, so 400 small tensors cost one
launch, and a 16M-element tensor is split across the threads.

The generated source is written to a cache folder (``$ADAPTLR_CACHE_DIR``, default ``~/.cache/adaptlr``) under a
name that hashes the source of every registered elementwise function, and compiled with ``cache=True``: a new
process loads the machine code from disk instead of compiling it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..rules import _math
from ..rules._elementwise import REGISTRY

CHUNK = 1 << 15  # elements per parallel work item
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

_registered: set[int] = set()
_math_registered = False


def available() -> bool:
    """Whether Numba imports (the fused CPU engine needs it)."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - numba is a core dependency
        return False
    return True


def _register() -> None:
    """Give Numba implementations of the math module and of every registered elementwise function."""
    global _math_registered
    from numba.extending import overload, register_jitable

    opts = {"error_model": "numpy"}
    if not _math_registered:
        impls: dict[Callable, Callable] = {
            _math.sqrt: lambda x: lambda x: np.sqrt(x),
            _math.abs: lambda x: lambda x: np.abs(x),
            _math.sign: lambda x: lambda x: np.sign(x),
            _math.exp: lambda x: lambda x: np.exp(x),
            _math.log: lambda x: lambda x: np.log(x),
            _math.maximum: lambda a, b: lambda a, b: np.maximum(a, b),
            _math.minimum: lambda a, b: lambda a, b: np.minimum(a, b),
            _math.where: lambda cond, a, b: lambda cond, a, b: a if cond > 0 else b,
        }
        for fn, typer in impls.items():
            overload(fn, inline="always", jit_options=opts)(typer)
        _math_registered = True
    for fn in REGISTRY:
        if id(fn) not in _registered:
            register_jitable(inline="always", **opts)(fn)
            _registered.add(id(fn))


def as_pointer(address):  # pragma: no cover - replaced by the intrinsic below when Numba compiles
    raise NotImplementedError


def _make_intrinsic():
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _as_pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(address), codegen

    return _as_pointer


def __getattr__(name: str) -> Any:  # the generated kernels import ``as_void_pointer`` lazily
    if name == "as_void_pointer":
        fn = _make_intrinsic()
        globals()["as_void_pointer"] = fn
        return fn
    raise AttributeError(name)


def _cache_dir() -> Path:
    root = os.environ.get("ADAPTLR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "adaptlr")
    path = Path(root) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _registry_digest() -> str:
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for fn in REGISTRY:
        try:
            h.update(inspect.getsource(fn).encode())
        except OSError:  # pragma: no cover - source unavailable
            h.update(fn.__qualname__.encode())
    h.update(inspect.getsource(sys.modules[__name__]).encode())
    return h.hexdigest()[:16]


def _kernel_source(fn: Callable, kinds: Sequence[Any], writes: Sequence[int], n_scalars: int,
                   flags: Sequence[bool], n_sums: int, dtype: str) -> str:
    arrays = [i for i, k in enumerate(kinds) if k is None]
    lines = [
        "import numpy as np",
        "from numba import njit, prange, carray",
        f"from {fn.__module__} import {fn.__name__} as rule",
        "from adaptlr.engines._numba import as_void_pointer",
        f"DT = np.{dtype}",
        "",
        "@njit(parallel=True, cache=True, error_model='numpy', nogil=True)",
        "def kernel(ptrs, sizes, chunks, scal):",
    ]
    # per-step scalars stay float64: scalar subexpressions such as ``1 - beta2`` are then as exact as torch's
    # (computed in Python), and float32 elements are computed in float64 and rounded once when stored
    lines += [f"    s{j} = scal[{j}]" for j in range(n_scalars)]
    lines += [f"    acc{k} = 0.0" for k in range(n_sums)]
    lines += [
        "    for c in prange(chunks.shape[0]):",
        "        t = chunks[c, 0]",
        "        n = sizes[t]",
    ]
    for slot, col in enumerate(arrays):
        lines.append(f"        a{col} = carray(as_void_pointer(ptrs[t, {slot}]), (n,), DT)")
    lines += [f"        l{k} = 0.0" for k in range(n_sums)]
    args = [f"a{i}[i]" if k is None else repr(float(k)) for i, k in enumerate(kinds)]
    args += [f"s{j}" for j in range(n_scalars)] + [repr(bool(f)) for f in flags]
    lines += [
        "        for i in range(chunks[c, 1], chunks[c, 2]):",
        f"            r = rule({', '.join(args)})",
    ]
    for out, col in enumerate(writes):
        if kinds[col] is None:
            lines.append(f"            a{col}[i] = r[{out}]")
    for k in range(n_sums):
        lines.append(f"            l{k} += np.float64(r[{len(writes) + k}])")
    lines += [f"        acc{k} += l{k}" for k in range(n_sums)]
    ret = ", ".join(f"acc{k}" for k in range(n_sums))
    lines.append(f"    return ({ret}{',' if n_sums == 1 else ''})" if n_sums else "    return 0")
    return "\n".join(lines) + "\n"


def _load(source: str) -> Callable:
    digest = hashlib.sha256((_registry_digest() + source).encode()).hexdigest()[:24]
    name = f"adaptlr_kernel_{digest}"
    path = _cache_dir() / f"{name}.py"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = module  # Numba's disk cache resolves the kernel's globals through sys.modules
    spec.loader.exec_module(module)
    return module.kernel


class NumbaEngine:
    """One-pass CPU kernels for float32 / float64 contiguous tensors."""

    name = "fused"

    def __init__(self) -> None:
        self._kernels: dict[Any, Callable] = {}
        self._chunks: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def supports(t: torch.Tensor) -> bool:
        return t.device.type == "cpu" and t.dtype in _DTYPES and t.is_contiguous()

    def kernel(self, fn: Callable, kinds: tuple, writes: tuple, n_scalars: int, flags: tuple, n_sums: int,
               dtype: str) -> Callable:
        key = (fn, kinds, writes, n_scalars, flags, n_sums, dtype)
        k = self._kernels.get(key)
        if k is None:
            _register()
            k = self._kernels[key] = _load(_kernel_source(fn, kinds, writes, n_scalars, flags, n_sums, dtype))
        return k

    def _chunk_table(self, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        table = self._chunks.get(sizes)
        if table is None:
            rows = [(t, lo, min(lo + CHUNK, n)) for t, n in enumerate(sizes) for lo in range(0, n, CHUNK)]
            table = (np.asarray(sizes, dtype=np.int64), np.asarray(rows, dtype=np.int64).reshape(-1, 3))
            if len(self._chunks) > 256:
                self._chunks.clear()
            self._chunks[sizes] = table
        return table

    def apply(self, fn: Callable, columns: Sequence[Any], writes: Sequence[int], scalars: Sequence[Any] = (),
              flags: Sequence[bool] = (), n_sums: int = 0) -> tuple[float, ...]:
        lists = [c for c in columns if isinstance(c, list)]
        if not lists or not lists[0]:
            return (0.0,) * n_sums
        ref = lists[0][0]
        dtype = _DTYPES[ref.dtype]
        kinds = tuple(None if isinstance(c, list) else float(c) for c in columns)
        kernel = self.kernel(fn, kinds, tuple(writes), len(scalars), tuple(bool(f) for f in flags), n_sums, dtype)
        ptrs = np.array([[t.data_ptr() for t in ts] for ts in zip(*lists)], dtype=np.int64)
        sizes, chunks = self._chunk_table(tuple(t.numel() for t in lists[0]))
        scal = np.array([float(s) for s in scalars] or [0.0], dtype=np.float64)
        out = kernel(ptrs, sizes, chunks, scal)
        return tuple(float(x) for x in out) if n_sums else ()
