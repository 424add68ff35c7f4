"""Running a step's phases: in order, over each estimate set of groups, on the engines fit for the tensors, with
one all-reduce of a phase's sums where the parameters are sharded (a mixin of :class:`adaptlr.optim.Optimizer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..engines import execute, local, run
from ._gather import GroupStep, _real
from ._phase import Phase
from ._sharding import Layout, layout_of

__all__ = ["PhaseRunning"]


def _rows(columns: Sequence[Any], idx: list[int]) -> list[Any]:
    return [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]


def _listed(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


class PhaseRunning:
    """The step loop (:meth:`_step_all`) and the run of one phase over one group (:meth:`_run_phase`)."""

    def _has_nonfinite(self) -> bool:
        """Whether a gradient holds inf or nan, on this rank or (when the parameters are sharded) on any rank: every
        rank then skips together."""
        grads = [local(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None]
        found = any(not bool(torch.isfinite(_real(g)).all()) for g in grads)
        layout = self._layout()
        if not layout.sharded:
            return found
        return layout.allreduce([float(found)])[0] > 0

    def _layout(self) -> Layout:
        """How the parameters lie across ranks (:mod:`adaptlr.optim._sharding`), found once per step."""
        layout = self.__dict__.get("_step_layout")
        if layout is None:
            layout = layout_of((p for g in self.param_groups for p in g["params"]), self.process_group)
            self.__dict__["_step_layout"] = layout
        return layout

    def _step_all(self) -> None:
        """One step of every param group: gather and check every group (nothing changes if a check fails), advance
        the per-parameter scalars, then run the phases in order over each estimate set; after a phase with sums,
        one all-reduce of every set's sums (where the parameters are sharded) before :meth:`_after` sees them."""
        if not self.phases:  # a step that is not a sequence of elementwise phases (Adafactor, Muon, SparseAdam)
            for group in self.param_groups:  # (every group checked before any changes)
                self._check_group(group)
            for group in self.param_groups:
                self._step_group(group)
            return
        try:
            ctxs = [self._begin(group) for group in self.param_groups]
            for ctx in ctxs:
                if ctx.params:
                    keys = self._advance(ctx.group, ctx.params, ctx.states)
                    if keys.count(keys[0]) == len(keys):
                        ctx.buckets = {keys[0]: None}  # (None: every row)
                    else:
                        for i, key in enumerate(keys):
                            ctx.buckets.setdefault(key, []).append(i)
            sets = [s for s in self._estimate_sets(ctxs) if s]
            for phase in self.phases:
                active = [s for s in sets if not self._skips(phase, s)]
                for ctx in (c for s in active for c in s):
                    ctx.sums = self._run_phase(phase, ctx)
                if phase.sums and active:
                    self._allreduce_sums(phase, [c for s in active for c in s])
                sets = [s for s in sets if s not in active or self._after(phase, s) is not False]
        finally:
            self.__dict__["_step_layout"] = None

    def _run_phase(self, phase: Phase, ctx: GroupStep) -> dict[str, Any]:
        """Run ``phase`` over one group; returns the group's local sums by name (for a ``per_tensor`` phase, a list
        with one sum per parameter). Three ways, from the fastest:

        - the **steady state** (:meth:`_run_prepared`): one bucket of per-step values, real tensors, every column
          one of those :meth:`_begin` checked and partitioned -- the engines run them as they are;
        - **buckets** (:meth:`_run_buckets`): parameters whose per-step values differ (torch's per-parameter
          ``step`` after a parameter joined late), complex parameters (as real views) or columns that are not
          state (:meth:`_extra_columns`) -- each bucket is checked and run on its own;
        - **per tensor** (:meth:`_run_per_tensor`): a phase whose sums are per tensor (LAMB, LDoG).
        """
        if not ctx.params:
            return {name: [] if phase.per_tensor else 0.0 for name in phase.sums}
        if phase.per_tensor:
            return self._run_per_tensor(phase, ctx)
        steady = (
            len(ctx.buckets) == 1
            and not ctx.complex
            and all(src in ctx.columns or src in ctx.absent for src in phase.sources)
        )
        out = self._run_prepared(phase, ctx) if steady else self._run_buckets(phase, ctx)
        return dict(zip(phase.sums, out))

    def _run_prepared(self, phase: Phase, ctx: GroupStep) -> Sequence[float]:
        """The steady state: the phase's columns are the checked, partitioned ones (0.0: an absent state)."""
        (key,) = ctx.buckets
        values = self._values(phase, ctx, key)
        if values is None:
            return (0.0,) * len(phase.sums)
        columns = [ctx.columns.get(src, 0.0) for src in phase.sources]
        if phase.sums and self._layout().dims:  # (replicated tensors beside shards: see _run)
            return self._run(phase, ctx, columns, values, checked=True, rows=None)
        scalars, flags = phase.bind(values)
        pointers = [ctx.pointers.get(src) for src in phase.sources] if ctx.pointers else None
        return execute(phase.rule, columns, ctx.parts, phase.write_index, scalars, flags, len(phase.sums), pointers)

    def _run_buckets(self, phase: Phase, ctx: GroupStep) -> Sequence[float]:
        """Each bucket of parameters (equal keys from :meth:`_advance`) with its own values, checked here."""
        columns = self._columns(phase, ctx)
        total = [0.0] * len(phase.sums)
        for key, idx in ctx.buckets.items():
            values = self._values(phase, ctx, key)
            if values is None:
                continue
            part = columns if idx is None else _rows(columns, idx)
            for k, v in enumerate(self._run(phase, ctx, part, values, checked=False, rows=idx)):
                total[k] += v
        return total

    def _run_per_tensor(self, phase: Phase, ctx: GroupStep) -> dict[str, list[float]]:
        """One engine call per parameter (its values: ``_values(phase, ctx, i)``); a list of sums per name."""
        sums: dict[str, list[float]] = {name: [] for name in phase.sums}
        columns = self._columns(phase, ctx)
        for i in range(len(ctx.params)):
            values = self._values(phase, ctx, i)
            out = (0.0,) * len(phase.sums)
            if values is not None:
                out = self._run(phase, ctx, _rows(columns, [i]), values, checked=False, rows=[i])
            for name, v in zip(phase.sums, out):
                sums[name].append(v)
        return sums

    def _allreduce_sums(self, phase: Phase, ctxs: list[GroupStep]) -> None:
        """Every group's local sums of ``phase`` -> sums over the whole parameters: one all-reduce (where sharded)."""
        layout = self._layout()
        if not layout.sharded:
            return
        flat = [v for c in ctxs for name in phase.sums for v in _listed(c.sums[name])]
        flat = layout.allreduce(flat, per_tensor=phase.per_tensor)
        at = 0
        for c in ctxs:
            for name in phase.sums:
                if phase.per_tensor:
                    n = len(c.sums[name])
                    c.sums[name], at = flat[at : at + n], at + n
                else:
                    c.sums[name], at = flat[at], at + 1

    def _run(
        self,
        phase: Phase,
        ctx: GroupStep,
        columns: list[Any],
        values: Mapping[str, Any],
        *,
        checked: bool,
        rows: list[int] | None,
    ) -> tuple[float, ...]:
        """Run ``phase`` over the rows ``rows`` of a group (None: all; checked here unless ``checked``). Where a
        parameter is replicated over a reduced mesh dimension (a plain tensor beside DTensors), this rank's copy is
        updated but its sums not counted (:meth:`adaptlr.optim._sharding.Layout.counts`)."""
        scalars, flags = phase.bind(values)
        n_sums = len(phase.sums)
        layout = self._layout() if n_sums else None

        def call(cols: list[Any]) -> tuple[float, ...]:
            return run(phase.rule, cols, phase.write_index, scalars, flags, n_sums, prefer=ctx.prefer,
                       names=phase.arguments, checked=checked)  # fmt: skip

        if layout is not None and layout.dims:
            counted = [layout.counts(ctx.params[i]) for i in (range(len(ctx.params)) if rows is None else rows)]
            if not all(counted):
                call(_rows(columns, [i for i, c in enumerate(counted) if not c]))  # (updated; sums not counted)
                columns = _rows(columns, [i for i, c in enumerate(counted) if c])
        return call(columns)
