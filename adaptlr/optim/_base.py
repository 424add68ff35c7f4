"""The base class of adaptlr's optimizers: torch's contract, and the step protocol (named elementwise phases run by
the engines fit for the tensors).

The class is assembled from the parts of a step, one module each: the learning rate and its clock (:mod:`._lr`),
checkpoints (:mod:`._checkpoint`), gathering a step's groups, state and columns (:mod:`._gather`) and running the
phases (:mod:`._run`). This module holds the constructor, the subclass hooks (what an optimizer writes) and
``step()``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .._validation import check_bool, check_lr, check_nonfinite
from ..engines import fused_supported
from ._checkpoint import Checkpointing
from ._gather import Gathering, GroupStep, scalar_dtype
from ._lr import _WRITTEN, LR_SCALE, SCHEDULE, SCHEDULE_SPEC, STEPS, LearningRate, _is_schedule
from ._phase import Phase
from ._run import PhaseRunning

__all__ = ["ENGINE_DOC", "GroupStep", "LR_SCALE", "Optimizer", "SCHEDULE", "SCHEDULE_SPEC", "STEPS", "scalar_dtype"]

ENGINE_DOC = """
    foreach (bool, optional): run the rule with ``torch._foreach_*`` ops over lists of tensors (True), or tensor
        by tensor (False). Default None: the fused engine where it applies, else foreach.
    fused (bool, optional): run the rule as one generated one-pass kernel per step: Numba on CPU (float32/float64),
        Triton on CUDA (float32/float16/bfloat16/float64). Default None: on where the tensors allow it (dense,
        equally strided, plain tensors) and the compiler imports; the other tensors run on foreach.
    nonfinite (str, optional): what to do when a gradient holds inf or nan: ``"raise"`` (FloatingPointError),
        ``"skip"`` (the step changes nothing: not params, state or step counts) or None (no check, torch's
        behaviour; the check costs one pass over the gradients).
"""


class Optimizer(LearningRate, Checkpointing, Gathering, PhaseRunning, torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step is a sequence of elementwise phases (see :mod:`adaptlr.rules`).

    The step protocol. A subclass declares :attr:`phases` (each a :class:`~adaptlr.optim.Phase`: a rule with
    named columns, writes, sums and flags) and implements

    - :meth:`_values` -- the named scalars and flags of a phase for one bucket of parameters (or None to skip them);
    - optionally :meth:`_advance` -- per-parameter scalar state such as ``step`` (default: ``step += 1``),
      returning a bucket key per parameter: parameters with equal keys share per-step values;
    - optionally :meth:`_after` -- what a phase's sums (all-reduced where the parameters are sharded) give: an
      estimate ``d``, a trust ratio, the next phase's values (in typed attributes of :attr:`step_type`); returning
      False ends the step;
    - optionally :meth:`_estimate_sets` -- which groups pool their sums (default: each group alone).

    The base does the rest, once per step: gathers each group's parameters with gradients and their (lazily
    created) state, resolves and checks the lr, checks and partitions the columns (cached while the same tensors
    come back), runs the phases in order on the engines fit for the tensors, all-reduces each phase's sums in one
    call, and ticks the schedule clock. The state tensors to create (:attr:`state_names`) are the phases'
    sources other than ``param`` and ``grad``, unless a class names them. Everything else — param groups,
    ``state_dict``, closures, hooks, the non-finite policy, schedules as ``lr`` — lives here too.

    The learning rate: ``lr=`` may be a float, a 0-dim tensor, or a schedule (a callable ``step -> float``, see
    :mod:`adaptlr.schedules`). What the ecosystem reads stays torch's: ``group["lr"]`` is always the number the
    next step uses. A schedule lives under :data:`SCHEDULE`; then ``group["lr"] = schedule(clock) x factor``,
    recomputed by the optimizer after every applied step, where the clock :data:`STEPS` counts the group's
    applied steps and the factor :data:`LR_SCALE` is the product of the controllers' factors (see
    :mod:`adaptlr.controllers`). Without a schedule, ``group["lr"]`` is the user's number (controllers multiply
    their cuts into it, as torch's ``ReduceLROnPlateau`` does). ``state_dict()`` holds only plain data: the
    schedule is saved as its ``spec`` (:data:`SCHEDULE_SPEC`), so ``torch.load(weights_only=True)`` loads it.

    The clock ticks once per applied ``step()``, in one place, for every group (with or without gradients, as a
    torch ``LRScheduler`` stepped once per iteration would); a step skipped by the non-finite policy does not tick.
    """

    #: controllers may scale the lr of adaptlr optimizers through ``group[LR_SCALE]``
    supports_lr_scale = True
    #: the step's elementwise phases, in order (see :class:`adaptlr.optim.Phase`)
    phases: tuple[Phase, ...] = ()
    #: the per-parameter state tensors shaped like their parameter (torch's names), created zero by default;
    #: by default the phases' sources other than ``param`` and ``grad``
    state_names: tuple[str, ...] = ()
    #: whether complex parameters are stepped (through ``view_as_real``), as torch.optim's rules do
    supports_complex = True
    #: the process group that plain tensors are split over (ZeRO): sums are all-reduced over it (None: none)
    process_group: Any = None
    #: the class of the per-group record of a step that the hooks receive (a subclass adds typed per-step values)
    step_type: type[GroupStep] = GroupStep

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "phases" in cls.__dict__ and "state_names" not in cls.__dict__:
            sources = [src for phase in cls.phases for src in phase.sources if src not in ("param", "grad")]
            cls.state_names = tuple(dict.fromkeys(sources))

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_lr(defaults["lr"])
        foreach = check_bool("foreach", foreach, allow_none=True)
        fused = check_bool("fused", fused, allow_none=True)
        if fused and foreach:
            raise ValueError("`fused` and `foreach` cannot be `True` together.")
        for flag in ("maximize", "capturable", "differentiable"):
            if flag in defaults:
                check_bool(flag, defaults[flag])
        if defaults.get("capturable") or defaults.get("differentiable"):
            raise ValueError("capturable=True and differentiable=True are not supported by adaptlr")
        defaults = {**defaults, "foreach": foreach, "fused": fused}
        self.nonfinite = check_nonfinite(nonfinite)
        self.last_step_skipped = False
        super().__init__(params, defaults)

    # --------------------------------------------------------------------------------- torch's contract
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "lr" in param_group:
            check_lr(param_group["lr"])
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):  # (torch raises its own TypeError for a set)
            params = list(params)
            seen: set[int] = set()
            for p in params:
                if isinstance(p, torch.Tensor) and id(p) in seen:
                    # torch warns and then steps such a parameter once or twice depending on its implementation
                    # (single-tensor, foreach, fused give three results): refuse, as torch says it will
                    raise ValueError(
                        f"{type(self).__name__}: a parameter appears twice in one param group "
                        f"(shape {tuple(p.shape)}); pass each parameter once"
                    )
                seen.add(id(p))
        super().add_param_group({**param_group, "params": params} if params is not None else param_group)
        group = self.param_groups[-1]
        group.setdefault(STEPS, 0)
        group.setdefault(LR_SCALE, 1.0)
        if _is_schedule(group["lr"]):
            group[SCHEDULE] = group["lr"]
        else:
            group.setdefault(SCHEDULE, None)
        self._refresh_lr(group)
        if group.get("fused"):
            for p in group["params"]:
                if not fused_supported(p):
                    raise RuntimeError(
                        "fused=True supports CPU float32/float64 parameters when Numba imports, and CUDA float32/"
                        f"float16/bfloat16/float64 ones when triton imports (and complex ones); got {p.dtype} on "
                        f"{p.device}"
                    )

    # ------------------------------------------------------------------------------------ subclass hooks
    def _init_state(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        """Create the state of a parameter on its first step (default: a float32 ``step`` and zero tensors)."""
        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        for name in self._present_states(group):
            if name is not None:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _present_states(self, group: dict[str, Any]) -> tuple[str | None, ...]:
        """The state tensors this group keeps: :attr:`state_names`, with None for an optional one it does not keep
        (Adam's ``max_exp_avg_sq`` without amsgrad: its phase then reads the constant 0.0)."""
        return self.state_names

    def _advance(self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict]) -> list[Any]:
        """Advance per-parameter scalar state (default: ``step += 1``); return one bucket key per parameter."""
        if torch.compiler.is_compiling():
            # keep the step a tensor, so per-step scalars are graph values rather than constants that would
            # recompile the step every time; under torch.compile a group's parameters share one step count
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1.0)
            return [steps[0]] * len(steps)
        steps = self._shared_scalars(group, "step", states)
        steps.add_(1.0)
        return steps.tolist()

    def _shared_scalars(self, group: dict[str, Any], name: str, states: list[dict]) -> torch.Tensor:
        """One 1-d tensor whose elements ARE ``state[name]`` of the group's active parameters.

        torch keeps a 0-dim tensor per parameter (``step``, NAdam's ``mu_product``); updating 400 of them costs
        400 ops. The first time (and whenever the set of tensors changes, e.g. after ``load_state_dict``) they
        are replaced by views into one buffer, so later steps update them all with one op. The state layout
        is unchanged: each ``state[name]`` is still a 0-dim tensor of the same dtype.
        """
        tensors = [s[name] for s in states]
        cache = self.__dict__.setdefault("_shared", {})
        hit = cache.get((id(group), name))
        if hit is not None and len(hit[1]) == len(tensors) and all(map(operator.is_, hit[1], tensors)):
            return hit[0]
        buffer = torch.stack(tensors) if len(tensors) > 1 else tensors[0].reshape(1).clone()
        views = list(buffer.unbind())
        for s, v in zip(states, views):
            s[name] = v
        cache[(id(group), name)] = (buffer, views)
        return buffer

    def _values(self, phase: Phase, ctx: GroupStep, key: Any) -> Mapping[str, Any] | None:
        """The named scalars and flags of ``phase`` for the parameters of ``ctx`` whose bucket key is ``key`` (for
        a ``per_tensor`` phase: the index of one tensor in ``ctx.params``), or None to skip those parameters in
        this phase. Bound to the rule's signature by name (:meth:`Phase.bind`)."""
        raise NotImplementedError

    def _after(self, phase: Phase, ctxs: list[GroupStep]) -> bool | None:
        """Called after ``phase`` ran over one estimate set (``ctxs``); each group's sums of the phase are in
        ``ctx.sums`` by name -- sums over the whole parameters, all-reduced where they are sharded (a list with one
        entry per tensor for a ``per_tensor`` phase). Compute the set's quantities from them (an estimate ``d``),
        and put what a later phase needs into ``ctx`` (typed attributes of :attr:`step_type`). Return False to end
        the set's step here (its later phases do not run). The default does nothing. Dispatch on ``phase.name``."""
        return None

    def _skips(self, phase: Phase, ctxs: list[GroupStep]) -> bool:
        """Whether a whole estimate set skips ``phase`` this step (neither run, nor all-reduced, nor ``_after``):
        a decision from group state that every rank shares (D-Adapt SGD's first-gradient norm, once known).
        The default skips nothing."""
        return False

    def _estimate_sets(self, ctxs: list[GroupStep]) -> list[list[GroupStep]]:
        """The sets of groups whose sums are pooled (default: each group alone)."""
        return [[c] for c in ctxs]

    def _check_group(self, group: dict[str, Any]) -> None:
        """For an optimizer without :attr:`phases`: raise (torch's kind of ``RuntimeError``) if a group's gradients
        or existing state do not fit its parameters; called for every group before any group steps."""

    def _step_group(self, group: dict[str, Any]) -> None:
        """The step of one group, for an optimizer without :attr:`phases`: its statistics are not elementwise, so it
        writes them in torch and runs its elementwise parts by name (:meth:`Phase.apply`)."""
        raise NotImplementedError(f"{type(self).__name__} declares no phases and no _step_group")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.__dict__["_step_layout"] = None  # (found again each step: see _layout)
        if self.nonfinite is not None and self._has_nonfinite():
            if self.nonfinite == "raise":
                raise FloatingPointError(f"{type(self).__name__}: a gradient holds inf or nan (nonfinite='raise')")
            self.last_step_skipped = True
            return loss
        self.last_step_skipped = False
        # torch.distributed.checkpoint creates the state of a fresh optimizer with one step at lr 0 (it writes
        # group["lr"] = 0 and restores it after): honoured on scheduled groups too, and not counted on the clock
        if not torch.compiler.is_compiling() and self._zeroed_by_checkpoint() and not self.state:
            self._state_creating_step = True
            try:
                self._step_all()
            finally:
                self._state_creating_step = False
            return loss
        self._step_all()
        self._tick()
        return loss

    def _zeroed_by_checkpoint(self) -> bool:
        """Whether this (stateless) optimizer's scheduled groups had their lr set to 0 from outside, as
        ``torch.distributed.checkpoint`` does to create the state with one zero step."""
        scheduled = [g for g in self.param_groups if g.get(SCHEDULE) is not None and not _is_schedule(g["lr"])]
        return bool(scheduled) and all(g["lr"] == 0 and g.get(_WRITTEN) != 0 for g in scheduled)
