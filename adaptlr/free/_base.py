"""The base of the learning-rate-free optimizers: a reduction phase, global sums, then an update phase.

A step of these methods is

1. a **reduction phase**: an elementwise rule run by an engine over every parameter, returning summed terms
   (and possibly updating state),
2. Python computing the method's global quantities from the sums (the distance estimate ``d``, DoG's step
   size) -- after an all-reduce of the sums over ``process_group`` (ZeRO) or over the DTensor mesh (FSDP2,
   found from the parameters) when the parameters are sharded,
3. an **update phase**: a second elementwise rule.

The sums cover one *estimate set* of param groups: all groups (``per_group_d=False``, as in the reference
packages) or each group on its own (``per_group_d=True``). Every rank of a process group calls exactly one
all-reduce per step, whatever parameters or gradients it holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..engines._select import run
from ..optim._base import Optimizer
from ._sharding import Layout, layout_of, local

__all__ = ["FreeOptimizer", "FREE_DOC", "resolve_process_group"]

FREE_DOC = """
    per_group_d (bool): one estimate per param group instead of one for all groups (default False, as the
        reference packages).
    process_group (ProcessGroup or bool, optional): when the parameters are sharded across ranks (ZeRO,
        or a manual split), the global sums are all-reduced over this group so that every rank takes the
        step one process holding all parameters would take. ``True`` means the default (WORLD) group.
        Default None: no all-reduce (plain DDP needs none: its gradients are already averaged). FSDP2
        (DTensor parameters) needs no argument either: the sums are reduced over the parameters' device mesh
        automatically (:mod:`adaptlr.free._sharding`).
    sharded (ProcessGroup or bool, optional): the same, under another name for
        ``torch.distributed.optim.ZeroRedundancyOptimizer``, which keeps ``process_group`` for itself:
        ``ZeroRedundancyOptimizer(params, optimizer_class=Prodigy, sharded=True)``.
"""


def _rows(columns: Sequence[Any], idx: list[int]) -> list[Any]:
    return [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]


def resolve_process_group(process_group: Any) -> Any:
    if process_group is None or process_group is False:
        return None
    if process_group is True:
        import torch.distributed as dist

        return dist.group.WORLD
    return process_group


class FreeOptimizer(Optimizer):
    """An :class:`adaptlr.optim.Optimizer` whose step has global reductions (see the module docstring).

    Subclasses implement :meth:`_reduce` (phase 1 for one estimate set: returns a list of local sums) and
    :meth:`_update` (computes the set's scalars from the global sums and runs phase 2), and
    :meth:`effective_lr` where it is not ``d * lr``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        per_group_d: bool = False,
        process_group: Any = None,
        sharded: Any = None,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        if not isinstance(per_group_d, bool):
            raise TypeError(f"Invalid per_group_d: expected a bool, got {per_group_d!r}")
        self.per_group_d = per_group_d
        if process_group is not None and sharded is not None:
            raise ValueError("pass process_group or sharded, not both")
        self.process_group = resolve_process_group(process_group if sharded is None else sharded)
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["per_group_d"] = self.per_group_d  # (process groups do not pickle: a copy has none)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("process_group", None)
        self.__dict__.setdefault("per_group_d", False)

    # ------------------------------------------------------------------------------------- helpers
    def _estimate_sets(self) -> list[list[dict[str, Any]]]:
        if self.per_group_d:
            return [[g] for g in self.param_groups]
        return [list(self.param_groups)]

    def _active(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict]]:
        """The parameters of ``group`` that have a gradient, their gradients and their (initialised) state
        (computed once per step: both phases see the same lists)."""
        cache = self.__dict__.get("_step_cache")
        if cache is not None and id(group) in cache:
            return cache[id(group)]
        if any(p.is_complex() for p in group["params"] if p.grad is not None):
            raise RuntimeError(f"{type(self).__name__} does not support complex parameters")
        params, grads, states = self._gather(group)
        self._check_state(params, grads, states)
        if cache is not None:
            cache[id(group)] = (params, grads, states)
        return params, grads, states

    def _apply(
        self,
        group: dict[str, Any],
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> list[float]:
        """Run ``fn`` over the columns on the engines fit for them (:func:`adaptlr.engines._select.run`, which
        checks every column first); return the ``n_sums`` (local) sums."""
        prefer = self._engine(group)
        layout = self._layout()
        if n_sums and layout.dims:
            rows = next((c for c in columns if isinstance(c, list)), [])
            counted = [layout.counts(t) for t in rows]
            if not all(counted):  # this rank's copies of replicated tensors: updated, their sums not counted
                run(
                    fn,
                    _rows(columns, [i for i, c in enumerate(counted) if not c]),
                    writes,
                    scalars,
                    flags,
                    n_sums,
                    prefer=prefer,
                )
                columns = _rows(columns, [i for i, c in enumerate(counted) if c])
        return list(run(fn, columns, writes, scalars, flags, n_sums, prefer=prefer))

    #: per-parameter state that is not a tensor shaped like its parameter (scalars; flat slices, e.g. Prodigy's)
    _unshaped_state: tuple[str, ...] = ("step",)

    def _check_state(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict]) -> None:
        """Every gradient and tensor state matches its parameter (shape, dtype, device) -- checked before the first
        phase runs, so that a mismatch found by a later phase cannot leave the state half-updated."""
        for i, (p, g, st) in enumerate(zip(params, grads, states)):
            named = [("grad", g)] + [
                (k, v) for k, v in st.items() if isinstance(v, torch.Tensor) and k not in self._unshaped_state
            ]
            for name, v in named:
                if v.shape != p.shape or v.dtype != p.dtype or v.device != p.device:
                    raise RuntimeError(
                        f"{type(self).__name__}: {name!r} of parameter {i} has shape {tuple(v.shape)}, dtype "
                        f"{v.dtype}, device {v.device}, but the parameter has shape {tuple(p.shape)}, dtype "
                        f"{p.dtype}, device {p.device} (was the state loaded for another model, or a "
                        f"parameter's .data replaced?)"
                    )

    def _any_lr(self, groups: list[dict[str, Any]]) -> bool:
        """Whether a group of the estimate set steps at all (the estimate stays while every lr is 0)."""
        return max(float(self._lr(g)) for g in groups) > 0

    @staticmethod
    def _bias_correction(group: dict[str, Any]) -> float:
        """Adam's bias correction of the step, ``sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1))``, where the group
        asks for it (``use_bias_correction``), else 1."""
        if not group["use_bias_correction"]:
            return 1.0
        b1, b2 = group["betas"]
        k = group["k"]
        return math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))

    def _layout(self) -> Layout:
        """How the parameters lie across ranks (:mod:`adaptlr.free._sharding`), found once per step."""
        cache = self.__dict__.get("_step_cache")
        layout = cache.get("layout") if cache is not None else None
        if layout is None:
            layout = layout_of((p for g in self.param_groups for p in g["params"]), self.process_group)
            if cache is not None:
                cache["layout"] = layout
        return layout

    def _allreduce(self, values: list[float], *, per_tensor: bool = False) -> list[float]:
        """Sum ``values`` over the ranks the parameters are spread over: the DTensor mesh's sharded dimensions,
        found from the parameters, or ``process_group`` (identity where nothing is sharded). ``per_tensor``:
        sums over single tensors (LAMB, LDoG), which only DTensors spread over ranks. Always one call per step
        on every rank."""
        return self._layout().allreduce(values, per_tensor=per_tensor)

    def _has_nonfinite(self) -> bool:
        """A non-finite gradient on this rank or (when sharded) on any rank: every rank skips together."""
        grads = [local(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None]
        found = any(not bool(torch.isfinite(torch.view_as_real(g) if g.is_complex() else g).all()) for g in grads)
        if not self._layout().sharded:
            return found
        return self._allreduce([float(found)])[0] > 0

    # ---------------------------------------------------------------------------------------- the step
    def _reduce(self, groups: list[dict[str, Any]]) -> list[float]:
        raise NotImplementedError

    def _update(self, groups: list[dict[str, Any]], sums: list[float]) -> None:
        raise NotImplementedError

    def effective_lr(self, group_index: int = 0) -> float:
        """The step size this method uses: by default ``d * lr`` (D-Adaptation, Prodigy); the methods without
        an estimate ``d`` (DoG, Schedule-Free, ...) say theirs."""
        group = self.param_groups[group_index]
        return group["d"] * float(self._lr(group))

    def _step_all(self) -> None:
        """Both phases for every estimate set, with one all-reduce of all the sets' sums between them (the
        closure and the non-finite policy are :meth:`adaptlr.optim.Optimizer.step`'s)."""
        self._step_cache = {}
        try:
            for group in self.param_groups:  # gather and check every group before any phase changes anything
                self._active(group)
            sets = self._estimate_sets()
            local = [self._reduce(groups) for groups in sets]
            flat = self._allreduce([v for sums in local for v in sums])
            at = 0
            for groups, sums in zip(sets, local, strict=True):
                self._update(groups, flat[at : at + len(sums)])
                at += len(sums)
        finally:
            self._step_cache = None
