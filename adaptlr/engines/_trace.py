"""Trace an elementwise rule into a small SSA program, for the engines that run it on whole tensors.

A rule is called once with symbolic values; every arithmetic operator and every call into
:mod:`adaptlr.rules._math` records a node. Flags are real Python bools, so a rule's branches are resolved at
trace time. Operations between Python numbers are folded; operations between per-step scalars are kept as
*scalar* nodes (recomputed each step in Python), the rest are *tensor* nodes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..rules import math_ops as _math

_NUMBER = (int, float, bool)

#: Python evaluation of every node op, used for folding constants and for scalar nodes.
SCALAR_OPS: dict[str, Callable[..., Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "neg": operator.neg,
    "sqrt": _math.sqrt,
    "abs": _math.abs,
    "sign": _math.sign,
    "exp": _math.exp,
    "log": _math.log,
    "maximum": _math.maximum,
    "minimum": _math.minimum,
    "where": _math.where,
}


@dataclass
class Node:
    op: str
    args: list[Any]  # Ref or Python number
    tensor: bool


@dataclass(frozen=True)
class Ref:
    """A reference to a value: an input column (``kind='col'``), a scalar input (``'scalar'``) or a node."""

    kind: str
    index: int


@dataclass
class Program:
    n_columns: int
    tensor_columns: tuple[int, ...] = ()
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)  # Ref or number


class _Sym:
    __slots__ = ("_tracer", "ref", "tensor")

    def __init__(self, tracer: _Tracer, ref: Ref, tensor: bool):
        self._tracer, self.ref, self.tensor = tracer, ref, tensor

    def __bool__(self):
        raise TypeError("an update rule branched on a traced value; pass the condition as a flag instead")

    def __adaptlr_math__(self, name, *args):
        return self._tracer.emit(name, args)

    def __add__(self, o):
        return self._tracer.emit("add", (self, o))

    def __radd__(self, o):
        return self._tracer.emit("add", (o, self))

    def __sub__(self, o):
        return self._tracer.emit("sub", (self, o))

    def __rsub__(self, o):
        return self._tracer.emit("sub", (o, self))

    def __mul__(self, o):
        return self._tracer.emit("mul", (self, o))

    def __rmul__(self, o):
        return self._tracer.emit("mul", (o, self))

    def __truediv__(self, o):
        return self._tracer.emit("div", (self, o))

    def __rtruediv__(self, o):
        return self._tracer.emit("div", (o, self))

    def __pow__(self, o):
        return self._tracer.emit("pow", (self, o))

    def __rpow__(self, o):
        return self._tracer.emit("pow", (o, self))

    def __neg__(self):
        return self._tracer.emit("neg", (self,))

    def __pos__(self):
        return self


class _Tracer:
    def __init__(self, program: Program):
        self.program = program

    def emit(self, op: str, args: Sequence[Any]) -> Any:
        for a in args:
            if not isinstance(a, (_Sym, *_NUMBER)):
                raise TypeError(f"update rules may only combine traced values and numbers, got {type(a).__name__}")
        if not any(isinstance(a, _Sym) for a in args):
            return SCALAR_OPS[op](*args)
        tensor = any(isinstance(a, _Sym) and a.tensor for a in args)
        node_args = [a.ref if isinstance(a, _Sym) else float(a) for a in args]
        self.program.nodes.append(Node(op, node_args, tensor))
        return _Sym(self, Ref("node", len(self.program.nodes) - 1), tensor)


def trace(fn: Callable, column_kinds: Sequence[Any], n_scalars: int, flags: Sequence[bool], n_outputs: int) -> Program:
    """Trace ``fn``; ``column_kinds[i]`` is ``None`` for a tensor column, or the number passed in its place."""
    program = Program(
        n_columns=len(column_kinds), tensor_columns=tuple(i for i, k in enumerate(column_kinds) if k is None)
    )
    tracer = _Tracer(program)
    cols = [_Sym(tracer, Ref("col", i), True) if k is None else k for i, k in enumerate(column_kinds)]
    scalars = [_Sym(tracer, Ref("scalar", i), False) for i in range(n_scalars)]
    out = fn(*cols, *scalars, *flags)
    if not isinstance(out, tuple) or len(out) != n_outputs:
        got = len(out) if isinstance(out, tuple) else type(out).__name__
        raise TypeError(f"{fn.__name__} must return a tuple of {n_outputs} values, got {got}")
    for o in out:
        if isinstance(o, _Sym) and not o.tensor:
            program.outputs.append(o.ref)  # a scalar output (a constant sum term, say)
        else:
            program.outputs.append(o.ref if isinstance(o, _Sym) else float(o))
    return program
