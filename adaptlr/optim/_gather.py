"""Gathering a step: each param group's parameters with gradients, their state (created on the first step), the
lr, and the columns the phases read -- checked and partitioned by the engines before anything changes, and kept
in a plan (:class:`adaptlr.engines.Plan`) while the same tensors come back (a mixin of
:class:`adaptlr.optim.Optimizer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..engines import Plan, prepare
from ._phase import Phase

__all__ = ["Gathering", "GroupStep", "scalar_dtype"]


def scalar_dtype() -> torch.dtype:
    """The dtype of scalar state (``step``), as torch.optim: float64 under a float64 default dtype."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class GroupStep:
    """One param group's part of a step, built once per step by the base class (what the hooks receive).

    ``params``, ``grads``, ``states``: the group's parameters that have a gradient, their gradients and state
    (in order); ``lr``: the group's lr for this step, checked; ``buckets``: bucket key -> rows (None: every row);
    ``sums``: the last phase's sums by name. What one phase's :meth:`~Optimizer._after` computes for a later
    phase's values lives in typed attributes of a subclass (:attr:`Optimizer.step_type`; the learning-rate-free
    methods' ``FreeStep``).
    """

    __slots__ = (
        "group",
        "params",
        "grads",
        "states",
        "lr",
        "complex",
        "prefer",
        "columns",
        "parts",
        "absent",
        "buckets",
        "sums",
        "pointers",
    )

    def __init__(self, group: dict[str, Any]) -> None:
        self.group = group
        self.params: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.states: list[dict[str, Any]] = []
        self.lr: Any = None
        self.complex = False
        self.prefer: str | None = None
        self.columns: dict[str, Any] = {}
        self.parts: list[tuple[str, list[int]]] = []
        self.absent: frozenset[str] = frozenset()
        self.buckets: dict[Any, list[int] | None] = {}
        self.sums: dict[str, Any] = {}
        self.pointers: dict[str, list[int]] = {}


class Gathering:
    """Builds each group's :class:`GroupStep` (:meth:`_begin`) and the columns of a phase (:meth:`_columns`)."""

    def _engine(self, group: dict[str, Any]) -> str | None:
        if group.get("fused"):
            return "fused"
        if group.get("foreach") is False:
            return "loop"
        if group.get("foreach") or torch.compiler.is_compiling():
            return "foreach"
        return None  # the one-pass engine where the tensors allow it (Numba on CPU, triton on CUDA), else foreach

    def _begin(self, group: dict[str, Any]) -> GroupStep:
        """Gather a group's parameters with gradients and their state (created on the first step), resolve its lr,
        and check and partition its columns (once per set of tensors, see :class:`adaptlr.engines.Plan`)
        -- before anything changes, so a refused step leaves everything as it was."""
        ctx = self.step_type(group)
        params, grads, states = ctx.params, ctx.grads, ctx.states
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                self._init_state(group, p, state)
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        if not params:
            return ctx
        if not self.supports_complex and any(p.is_complex() for p in params):
            raise RuntimeError(f"{type(self).__name__} does not support complex parameters")
        ctx.lr = self._lr(group)
        ctx.complex = any(p.is_complex() for p in params)
        ctx.prefer = self._engine(group)
        # a state that _advance creates on the first step (SGD's momentum buffer) is created right: only the
        # existing ones are checked
        present = self._present_states(group)
        ctx.absent = frozenset(self.state_names) - frozenset(present)
        names = [n for n in present if n is not None and all(n in s for s in states)]
        plan = None
        if not torch.compiler.is_compiling():  # (under torch.compile the graph's guards do this job)
            plans = self.__dict__.setdefault("_plans", {})
            plan = plans.get(id(group))
            if plan is None:
                plan = plans[id(group)] = Plan()
        checked, ctx.parts = prepare(
            [params, grads, *[[s[n] for s in states] for n in names]],
            ctx.prefer,
            ("param", "grad", *names),
            plan=plan,
            volatile=(1,),
        )
        ctx.columns = dict(zip(("param", "grad", *names), checked))
        if plan is not None and plan.key is not None:  # (the stable columns' pointers, just compared by the plan)
            ctx.pointers = dict(zip(("param", *names), plan.pointers))
        return ctx

    def _columns(self, phase: Phase, ctx: GroupStep) -> list[Any]:
        """The columns of ``phase`` for the parameters of ``ctx``, by source: ``param``, ``grad``, a state tensor
        (0.0 for an optional state the group does not keep), or what :meth:`_extra_columns` gives."""
        extra = None
        absent = ctx.absent
        real = _real if ctx.complex else _same
        columns = []
        for source in phase.sources:
            if source == "param":
                columns.append([real(p) for p in ctx.params])
            elif source == "grad":
                columns.append([real(g) for g in ctx.grads])
            elif source in absent:
                columns.append(0.0)
            elif all(source in s for s in ctx.states):
                columns.append([real(s[source]) for s in ctx.states])
            else:
                extra = self._extra_columns(phase, ctx) if extra is None else extra
                columns.append(extra[source])
        return columns

    def _extra_columns(self, phase: Phase, ctx: GroupStep) -> Mapping[str, Any]:
        """Columns that are neither the parameters, their gradients nor their state tensors (Prodigy's views of
        every ``slice_p``-th element), by source name; checked when the phase runs."""
        raise KeyError(f"{type(self).__name__}: phase {phase.name} reads {phase.sources}, which are not all state")
