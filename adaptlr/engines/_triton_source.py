"""The source of the ``triton`` engine's kernels, generated from a rule's trace (see :mod:`._triton` for what a
kernel does and how it is launched): ``host(s)``, the scalar part in float64 Python, and ``kernel(...)``, the
tensor part over every chunk of every tensor of a call."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._trace import Program, Ref

__all__ = ["ALIGN", "kernel_source"]

ALIGN = 16  # bytes; pointers aligned to this get vectorized loads and stores

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
