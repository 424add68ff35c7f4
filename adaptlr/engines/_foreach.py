"""The ``foreach`` engine: a traced rule replayed with ``torch._foreach_*`` ops on lists of tensors.

The rule is traced once per (flags, column kinds) into a small program (:mod:`._trace`), then planned:

1. **fusion**: the shapes that torch's own optimizers write by hand become one foreach op each
   (``a + (b - a) * s`` -> ``lerp_``, ``a + s * b * c`` -> ``addcmul_``, ``a - s * b / c`` -> ``addcdiv_``,
   ``a - s * b`` -> ``add_(alpha=-s)``), so a step makes as many passes over memory as torch's foreach step;
2. **in-place reuse**: an op writes into the buffer of an operand whose value is dead after it (a temporary,
   or a parameter / state value already consumed), so few temporaries are allocated;
3. at the end, each written column receives its new value (copied only when it lives elsewhere).

The same plan runs on lists of any length, so the engine also serves single tensors and, under
``torch.compile``, is what Dynamo traces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._trace import SCALAR_OPS, Node, Program, Ref, trace

_SEQ = (list, tuple)
_COMMUTATIVE = {"add", "mul", "maximum", "minimum"}
_FOREACH_BINARY = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "maximum": "maximum",
    "minimum": "minimum",
    "pow": "pow",
}
_FOREACH_WITH_SCALAR = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "maximum": "clamp_min",
    "minimum": "clamp_max",
    "pow": "pow",
}
_FOREACH_UNARY = {"neg": "neg", "sqrt": "sqrt", "abs": "abs", "sign": "sign", "exp": "exp", "log": "log"}


def _foreach(name: str, inplace: bool) -> Callable:
    return getattr(torch, f"_foreach_{name}_" if inplace else f"_foreach_{name}")


# ----------------------------------------------------------------------------------------------- planning
def _is_tensor(program: Program, a: Any) -> bool:
    if not isinstance(a, Ref):
        return False
    return a.kind == "col" or (a.kind == "node" and program.nodes[a.index].tensor)


def _is_scalar(program: Program, a: Any) -> bool:
    return not _is_tensor(program, a)


def _uses(program: Program) -> dict[Ref, int]:
    uses: dict[Ref, int] = {}
    for node in program.nodes:
        for a in node.args:
            if isinstance(a, Ref):
                uses[a] = uses.get(a, 0) + 1
    for o in program.outputs:
        if isinstance(o, Ref):
            uses[o] = uses.get(o, 0) + 1
    return uses


def _fuse(program: Program) -> None:
    """Rewrite tensor nodes into fused foreach ops where the inner values are used only once."""
    nodes, uses = program.nodes, _uses(program)

    def inner(a: Any, *ops: str) -> Node | None:
        if isinstance(a, Ref) and a.kind == "node" and uses.get(a, 0) == 1 and nodes[a.index].op in ops:
            return nodes[a.index]
        return None

    def scaled(a: Any) -> tuple[Any, Any] | None:
        """``a`` is ``s * x`` or ``x * s`` with s scalar: return (x, s)."""
        m = inner(a, "mul")
        if m is None:
            return None
        x, y = m.args
        if _is_tensor(program, x) and _is_scalar(program, y):
            return x, y
        if _is_tensor(program, y) and _is_scalar(program, x):
            return y, x
        return None

    def match(acc: Any, x: Any, negate: bool) -> tuple[str, list[Any]] | None:
        """Patterns for ``acc + x`` (``acc - x`` when negate); acc is a tensor."""
        sx = scaled(x)
        if sx is not None:
            t, s = sx
            d = inner(t, "sub")
            if not negate and d is not None and d.args[1] == acc and _is_tensor(program, d.args[0]):
                return "lerp", [acc, d.args[0], s]
            m = inner(t, "mul")
            if m is not None and all(_is_tensor(program, a) for a in m.args):
                return "addcmul", [acc, m.args[0], m.args[1], s, negate]
            return "axpy", [acc, t, s, negate]
        m = inner(x, "mul")
        if m is not None and all(_is_tensor(program, a) for a in m.args):
            return "addcmul", [acc, m.args[0], m.args[1], 1.0, negate]
        d = inner(x, "div")
        if d is not None and _is_tensor(program, d.args[1]):
            num = scaled(d.args[0])
            if num is not None:
                return "addcdiv", [acc, num[0], d.args[1], num[1], negate]
            if _is_tensor(program, d.args[0]):
                return "addcdiv", [acc, d.args[0], d.args[1], 1.0, negate]
        return None

    for node in nodes:
        if not node.tensor or node.op not in ("add", "sub"):
            continue
        a, b = node.args
        found = None
        if _is_tensor(program, a):
            found = match(a, b, node.op == "sub")
        if found is None and node.op == "add" and _is_tensor(program, b):
            found = match(b, a, False)
        if found is not None:
            node.op, node.args = found
            uses = _uses(program)  # the consumed inner nodes are now unused


def _live_nodes(program: Program) -> list[bool]:
    live = [False] * len(program.nodes)
    stack = [o.index for o in program.outputs if isinstance(o, Ref) and o.kind == "node"]
    while stack:
        i = stack.pop()
        if live[i]:
            continue
        live[i] = True
        stack.extend(a.index for a in program.nodes[i].args if isinstance(a, Ref) and a.kind == "node")
    return live


@dataclass
class _Instr:
    index: int  # node index (its value slot)
    op: str
    args: list[Any]  # Ref or number; for fused ops, trailing Python bool (negate)
    tensor: bool
    target: int | None  # which arg's buffer receives the result in place (None: a new buffer)


@dataclass
class Plan:
    instrs: list[_Instr]
    outputs: list[Any]
    writes: tuple[int, ...]
    n_sums: int


def make_plan(program: Program, writes: Sequence[int], n_sums: int) -> Plan:
    _fuse(program)
    live = _live_nodes(program)
    nodes = program.nodes
    end = len(nodes)
    last_use: dict[Ref, int] = {}
    for i, node in enumerate(nodes):
        if live[i]:
            for a in node.args:
                if isinstance(a, Ref):
                    last_use[a] = i
    for o in program.outputs:
        if isinstance(o, Ref):
            last_use[o] = end
    writable = {Ref("col", c) for c in writes}
    owner: dict[Ref, Ref] = {}  # value -> the value whose buffer it lives in (columns own their own)

    def buffer(a: Ref) -> Ref:
        return owner.get(a, a)

    def reusable(a: Any, i: int) -> bool:
        return (
            isinstance(a, Ref)
            and _is_tensor(program, a)
            and last_use.get(a) == i
            and (buffer(a).kind == "node" or buffer(a) in writable)
        )

    instrs = []
    for i, node in enumerate(nodes):
        if not live[i]:
            continue
        target = None
        if node.tensor and node.op != "where":
            if reusable(node.args[0], i):
                target = 0
            elif node.op in _COMMUTATIVE and reusable(node.args[1], i):
                node.args = [node.args[1], node.args[0]]
                target = 0
            elif node.op in ("sub", "div") and _is_scalar(program, node.args[0]) and reusable(node.args[1], i):
                target = 1
            if target is not None:
                owner[Ref("node", i)] = buffer(node.args[target])
        instrs.append(_Instr(i, node.op, list(node.args), node.tensor, target))
    return Plan(instrs, list(program.outputs), tuple(writes), n_sums)


# ------------------------------------------------------------------------------------------------- running
def _binary(op: str, a: Any, b: Any, target: int | None) -> Any:
    a_list, b_list = isinstance(a, _SEQ), isinstance(b, _SEQ)
    if a_list and b_list:
        name = _FOREACH_BINARY[op]
        return _inplace(name, a, b) if target == 0 else _foreach(name, False)(a, b)
    if a_list:
        if target == 0:
            return _inplace(_FOREACH_WITH_SCALAR[op], a, b)
        return _foreach(_FOREACH_WITH_SCALAR[op], False)(a, b)
    # scalar (op) list: only non-commutative ops get here with the list second, or commutative ones unswapped
    if op in _COMMUTATIVE:
        return _foreach(_FOREACH_WITH_SCALAR[op], False)(b, a)
    if op == "pow":
        return torch._foreach_pow(a, b)
    if op == "sub":  # a - b = -b + a
        r = _inplace("neg", b) if target == 1 else torch._foreach_neg(b)
        return _inplace("add", r, a)
    if op == "div":  # a / b = a * (1 / b)
        r = _inplace("reciprocal", b) if target == 1 else torch._foreach_reciprocal(b)
        return _inplace("mul", r, a)
    raise NotImplementedError(op)


def _inplace(name: str, a: list, *args: Any, **kwargs: Any) -> list:
    getattr(torch, f"_foreach_{name}_")(a, *args, **kwargs)
    return a


def _number(s: Any) -> bool:
    return not isinstance(s, torch.Tensor)


def _fused(op: str, args: list[Any], target: int | None) -> list:
    inplace = target == 0
    acc = args[0]
    if op == "lerp":
        _, end, w = args
        if _number(w):
            return _inplace("lerp", acc, end, w) if inplace else torch._foreach_lerp(acc, end, w)
        d = torch._foreach_sub(end, acc)
        torch._foreach_mul_(d, w)
        return _inplace("add", acc, d) if inplace else torch._foreach_add(acc, d)
    *tensors, s, negate = args[1:]
    if op == "axpy":
        if _number(s):
            alpha = -s if negate else s
            return (
                _inplace("add", acc, tensors[0], alpha=alpha)
                if inplace
                else torch._foreach_add(acc, tensors[0], alpha=alpha)
            )
        t = torch._foreach_mul(tensors[0], s)
    else:
        name = op  # addcmul / addcdiv
        if _number(s):
            value = -s if negate else s
            if inplace:
                return _inplace(name, acc, tensors[0], tensors[1], value=value)
            return getattr(torch, f"_foreach_{name}")(acc, tensors[0], tensors[1], value=value)
        t = (torch._foreach_mul if op == "addcmul" else torch._foreach_div)(tensors[0], tensors[1])
        torch._foreach_mul_(t, s)
    name = "sub" if negate else "add"
    return _inplace(name, acc, t) if inplace else _foreach(name, False)(acc, t)


def _scalar_value(a: Any, env: dict[Ref, Any], scalars: Sequence[Any]) -> Any:
    if not isinstance(a, Ref):
        return a
    if a.kind == "scalar":
        return scalars[a.index]
    return env[a]


def run_plan(plan: Plan, columns: Sequence[Any], scalars: Sequence[Any]) -> tuple[float, ...]:
    env: dict[Ref, Any] = {Ref("col", i): c for i, c in enumerate(columns)}

    def value(a: Any) -> Any:
        return _scalar_value(a, env, scalars)

    for ins in plan.instrs:
        args = [value(a) for a in ins.args]
        if not ins.tensor:
            env[Ref("node", ins.index)] = SCALAR_OPS[ins.op](*args)
        elif ins.op in ("lerp", "addcmul", "addcdiv", "axpy"):
            env[Ref("node", ins.index)] = _fused(ins.op, args, ins.target)
        elif ins.op in _FOREACH_UNARY:
            name = _FOREACH_UNARY[ins.op]
            env[Ref("node", ins.index)] = _inplace(name, args[0]) if ins.target == 0 else _foreach(name, False)(args[0])
        elif ins.op == "where":
            env[Ref("node", ins.index)] = _where(*args)
        else:
            env[Ref("node", ins.index)] = _binary(ins.op, args[0], args[1], ins.target)

    n_writes = len(plan.writes)
    sums = tuple(_sum(value(o), columns) for o in plan.outputs[n_writes:])
    _write_back(plan, columns, [value(o) for o in plan.outputs[:n_writes]])
    return sums


def _where(cond: Any, a: Any, b: Any) -> list:
    ref = next(x for x in (cond, a, b) if isinstance(x, _SEQ))
    out = []
    for i, r in enumerate(ref):
        c, x, y = (v[i] if isinstance(v, _SEQ) else v for v in (cond, a, b))
        c = c > 0 if isinstance(c, torch.Tensor) else torch.tensor(c > 0)
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=r.dtype)
        y = y if isinstance(y, torch.Tensor) else torch.as_tensor(y, dtype=r.dtype)
        w = torch.where(c, x, y)
        out.append(w if w.shape == r.shape else w.expand_as(r).clone())
    return out


def _sum(v: Any, columns: Sequence[Any]) -> float:
    if isinstance(v, _SEQ):
        if not v:
            return 0.0
        return float(torch.stack([t.sum(dtype=torch.float64) for t in v]).sum())
    n = sum(t.numel() for t in next(c for c in columns if isinstance(c, _SEQ)))
    return float(v) * n


def _write_back(plan: Plan, columns: Sequence[Any], new: list[Any]) -> None:
    pending = []
    for col, v in zip(plan.writes, new):
        dst = columns[col]
        if not isinstance(dst, list):
            continue  # an absent optional state
        if v is dst:
            continue
        pending.append((dst, v))
    while pending:
        sources = [id(v) for _, v in pending if isinstance(v, _SEQ)]
        for k, (dst, v) in enumerate(pending):  # noqa: B007 - k is used after the loop
            if id(dst) not in sources or v is dst:
                break
        else:  # a cycle: set one source aside
            dst, v = pending[0]
            pending[0] = (dst, [t.clone() for t in v])
            continue
        dst, v = pending.pop(k)
        if isinstance(v, _SEQ):
            torch._foreach_copy_(dst, v)
        else:
            for t in dst:
                t.fill_(v)


class ForeachEngine:
    """Runs elementwise rules as foreach programs (any device, any floating dtype)."""

    name = "foreach"

    def __init__(self) -> None:
        self._plans: dict[Any, Plan] = {}

    def plan(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        n_scalars: int,
        flags: Sequence[bool],
        n_sums: int,
    ) -> Plan:
        kinds = tuple(None if isinstance(c, list) else float(c) for c in columns)
        key = (fn, kinds, tuple(writes), n_scalars, tuple(bool(f) for f in flags), n_sums)
        plan = self._plans.get(key)
        if plan is None:
            program = trace(fn, kinds, n_scalars, flags, len(writes) + n_sums)
            plan = self._plans[key] = make_plan(program, writes, n_sums)
        return plan

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
        """:meth:`apply` (this engine indexes tensors logically: it needs no layout check, nor ``pointers``)."""
        return self.apply(fn, columns, writes, scalars, flags, n_sums)

    def apply(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> tuple[float, ...]:
        if not any(isinstance(c, list) and c for c in columns):
            return (0.0,) * n_sums
        plan = self.plan(fn, columns, writes, len(scalars), flags, n_sums)
        return run_plan(plan, columns, scalars)
