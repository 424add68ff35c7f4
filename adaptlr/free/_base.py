"""The base of the learning-rate-free optimizers: the step protocol of :class:`adaptlr.optim.Optimizer`, with sums
pooled over *estimate sets* of param groups.

A step of these methods is a sequence of elementwise phases (:class:`adaptlr.optim.Phase`), dispatched by name: a
**statistics phase** (``name="stats"``) whose named sums (all-reduced by the base over ``process_group`` (ZeRO)
or over the DTensor mesh (FSDP2, found from the parameters) when the parameters are sharded) give the method's
global quantities -- the distance estimate ``d``, DoG's step size -- in :meth:`~adaptlr.optim.Optimizer._after`,
then an **update phase** (``name="update"``).
What the statistics phase leaves for the update travels in typed attributes of :class:`FreeStep`; every counter
advances in one place, :meth:`FreeOptimizer._count_step`.

The sums cover one *estimate set* of param groups: all groups (``per_group_d=False``, as in the reference
packages) or each group on its own (``per_group_d=True``). Every rank of a process group calls exactly one
all-reduce per phase with sums, whatever parameters or gradients it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .._validation import check_bool
from ..optim import GroupStep, Optimizer

__all__ = ["FREE_DOC", "FreeOptimizer", "FreeStep", "resolve_process_group"]

FREE_DOC = """
    per_group_d (bool): one estimate per param group instead of one for all groups (default False, as the
        reference packages).
    process_group (ProcessGroup or bool, optional): when the parameters are sharded across ranks (ZeRO,
        or a manual split), the global sums are all-reduced over this group so that every rank takes the
        step one process holding all parameters would take. ``True`` means the default (WORLD) group.
        Default None: no all-reduce (plain DDP needs none: its gradients are already averaged). FSDP2
        (DTensor parameters) needs no argument either: the sums are reduced over the parameters' device mesh
        automatically (:mod:`adaptlr.optim._sharding`).
    sharded (ProcessGroup or bool, optional): the same, under another name for
        ``torch.distributed.optim.ZeroRedundancyOptimizer``, which keeps ``process_group`` for itself:
        ``ZeroRedundancyOptimizer(params, optimizer_class=Prodigy, sharded=True)``.
"""


def resolve_process_group(process_group: Any) -> Any:
    if process_group is None or process_group is False:
        return None
    if process_group is True:
        import torch.distributed as dist

        return dist.group.WORLD
    return process_group


class FreeStep(GroupStep):
    """One group's part of a step of a learning-rate-free method: a :class:`~adaptlr.optim.GroupStep` with the
    per-step values that one phase computes for a later one (None until set)."""

    __slots__ = ("dlr", "eta", "update")

    def __init__(self, group: dict[str, Any]) -> None:
        super().__init__(group)
        #: this step's ``d * lr`` (times the bias correction, over ``||g_0||`` for D-Adapt SGD) at the estimate it
        #: began with, set when the group takes part in the statistics phase (None: it does not, e.g. ``lr == 0``)
        self.dlr: float | None = None
        #: DoG's step size for this step (LDoG: one per tensor), from the statistics phase's distances
        self.eta: float | list[float] | None = None
        #: the update phase's values, computed once per step (by ``_after`` from the pooled sums, or up front)
        self.update: dict[str, Any] | None = None


class FreeOptimizer(Optimizer):
    """An :class:`adaptlr.optim.Optimizer` that estimates its own step size (see the module docstring).

    Subclasses declare their :attr:`phases` and implement ``_values`` and ``_after`` like any optimizer;
    this class adds the estimate sets (``per_group_d``), the ``process_group`` / ``sharded`` arguments, and
    :meth:`effective_lr` (``d * lr`` unless a subclass says otherwise). The per-parameter counters of these
    methods are their own (``state["step"]`` as their packages keep it), so the base advances none.
    """

    supports_complex = False
    step_type = FreeStep
    #: whether each parameter's state keeps a step count, ``state["step"]`` (Prodigy's and D-Adapt Adam's packages)
    parameter_steps = False

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
        self.per_group_d = check_bool("per_group_d", per_group_d)
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

    def _estimate_sets(self, ctxs: list[GroupStep]) -> list[list[GroupStep]]:
        return [[c] for c in ctxs] if self.per_group_d else [list(ctxs)]

    def _advance(self, group: dict[str, Any], params: list, states: list[dict]) -> list[Any]:
        return [None] * len(params)

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

    def _count_step(self, ctxs: list[FreeStep]) -> None:
        """After an update phase (the one place a counter advances): every group's ``k`` by one, and
        ``state["step"]`` of each parameter the group stepped where the method keeps one (:attr:`parameter_steps`)."""
        for ctx in ctxs:
            if self.parameter_steps:
                for s in ctx.states:
                    s["step"] += 1
            ctx.group["k"] += 1

    def effective_lr(self, group_index: int = 0) -> float:
        """The step size this method uses: by default ``d * lr`` (D-Adaptation, Prodigy); the methods without
        an estimate ``d`` (DoG, Schedule-Free, ...) say theirs."""
        group = self.param_groups[group_index]
        return group["d"] * float(self._lr(group))
