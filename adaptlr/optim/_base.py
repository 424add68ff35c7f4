"""The base class of adaptlr's optimizers: torch's contract, and the step protocol (named elementwise phases run by
the engines fit for the tensors)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from .._validation import check_bool, check_lr, check_nonfinite
from ..engines._select import Plan, execute, fused_supported, local, prepare, run
from ._phase import Phase
from ._sharding import Layout, layout_of

__all__ = ["Optimizer", "ENGINE_DOC", "LR_SCALE", "SCHEDULE", "SCHEDULE_SPEC", "STEPS"]

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


#: param-group keys of adaptlr's own (namespaced, so that other tools' keys -- timm's ``lr_scale`` -- mean theirs)
SCHEDULE = "adaptlr_schedule"  # the schedule object (not in state_dict(): its spec is, under SCHEDULE_SPEC)
SCHEDULE_SPEC = "adaptlr_schedule_spec"  # in state_dict(): the schedule's spec (plain data), or None
LR_SCALE = "adaptlr_lr_scale"  # the product of the controllers' factors (1.0 without controllers)
STEPS = "adaptlr_steps"  # the schedule clock: applied steps of the group
_WRITTEN = "adaptlr_lr_written"  # the lr this optimizer last wrote into group["lr"] (to detect other writers)
_OLD_KEYS = {"steps": STEPS, "lr_scale": LR_SCALE}  # checkpoints written before the keys were namespaced


def _is_schedule(lr: Any) -> bool:
    return callable(lr) and not isinstance(lr, torch.Tensor)


def scalar_dtype() -> torch.dtype:
    """The dtype of scalar state (``step``), as torch.optim: float64 under a float64 default dtype."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _rows(columns: Sequence[Any], idx: list[int]) -> list[Any]:
    return [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]


def _listed(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


class GroupStep:
    """One param group's part of a step, built once per step by the base class (what the hooks receive).

    ``params``, ``grads``, ``states``: the group's parameters that have a gradient, their gradients and state
    (in order); ``lr``: the group's lr for this step, checked; ``buckets``: bucket key -> rows (None: every row);
    ``sums``: the last phase's sums by name; ``scratch``: a dict for what one phase's :meth:`~Optimizer._after`
    computes for a later phase's values.
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
        "scratch",
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
        self.scratch: dict[str, Any] = {}
        self.pointers: dict[str, list[int]] = {}


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step is a sequence of elementwise phases (see :mod:`adaptlr.rules`).

    The step protocol. A subclass declares :attr:`phases` (each a :class:`~adaptlr.optim.Phase`: a rule with
    named columns, writes, sums and flags) and implements

    - :meth:`_values` -- the named scalars and flags of a phase for one bucket of parameters (or None to skip them);
    - optionally :meth:`_advance` -- per-parameter scalar state such as ``step`` (default: ``step += 1``),
      returning a bucket key per parameter: parameters with equal keys share per-step values;
    - optionally :meth:`_after` -- what a phase's sums (all-reduced where the parameters are sharded) give: an
      estimate ``d``, a trust ratio, the next phase's values (in ``ctx.scratch``); returning False ends the step;
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

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, except that (1) this optimizer keeps its own engine choice (``foreach`` and
        ``fused`` as constructed: they say how to compute in this process, not what the state is), and (2) a
        state tensor laid out differently from its parameter (a ``channels_last`` checkpoint for a contiguous
        model, or the reverse) is re-laid out like the parameter, values unchanged, so the one-pass engine can run
        it. A state that does not fit its parameter at all (another shape, another model's parameter order) is
        refused at the next step with torch's kind of error, before anything changes. (3) A 0-dim floating state
        other than ``step`` (NAdam's ``mu_product``) keeps its saved dtype, so a resumed run continues bit for bit
        (torch casts it to the parameter's dtype: a float64 NAdam resumed from its own checkpoint drifts by 1e-11)."""
        kept = [(g.get("foreach"), g.get("fused"), g.get(SCHEDULE)) for g in self.param_groups]
        saved = state_dict["state"]
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        super().load_state_dict(state_dict)
        for i, p in zip(ids, [p for g in self.param_groups for p in g["params"]]):
            for k, v in saved.get(i, {}).items():
                if (
                    k != "step"
                    and isinstance(v, torch.Tensor)
                    and v.dim() == 0
                    and v.is_floating_point()
                    and k in self.state[p]
                    and self.state[p][k].dtype != v.dtype
                ):
                    self.state[p][k] = self.state[p][k].to(v.dtype)
        self.__dict__.pop("_plans", None)  # (they hold the old state tensors until the next step otherwise)
        for group, (foreach, fused, schedule) in zip(self.param_groups, kept):
            group["foreach"], group["fused"] = foreach, fused
            self._restore_lr(group, schedule)
        for p, state in self.state.items():
            if not isinstance(p, torch.Tensor) or type(p) not in (torch.Tensor, torch.nn.Parameter):
                continue
            for k, v in state.items():
                if (
                    isinstance(v, torch.Tensor)
                    and type(v) is torch.Tensor
                    and v.shape == p.shape
                    and v.dim() > 0
                    and v.stride() != p.stride()
                ):
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

    def _restore_lr(self, group: dict[str, Any], current: Any) -> None:
        """After a load: the schedule from the checkpoint's spec (``current``, the one this optimizer was built
        with, when the checkpoint names none: a torch.optim checkpoint, or a schedule without a spec such as a
        lambda -- as torch's ``LambdaLR`` keeps its lambdas out of checkpoints); old keys renamed."""
        from ..schedules import from_spec

        if "steps" in group and STEPS not in group:  # an adaptlr checkpoint from before the keys were namespaced
            for old, new in _OLD_KEYS.items():
                if old in group:
                    group[new] = group.pop(old)
        spec = group.pop(SCHEDULE_SPEC, None)
        if _is_schedule(group["lr"]):  # written before group["lr"] became a number: the object itself
            import warnings

            warnings.warn(
                "this checkpoint keeps a schedule object in group['lr'] (adaptlr < 0.2); it still loads, "
                "but save it again to get a plain-data checkpoint",
                DeprecationWarning,
                stacklevel=3,
            )
            group[SCHEDULE] = group["lr"]
        elif spec is not None:  # (the object this optimizer holds, when it is that schedule: identity kept)
            group[SCHEDULE] = current if getattr(current, "spec", None) == spec else from_spec(spec)
        else:
            group[SCHEDULE] = current
        group.setdefault(STEPS, 0)
        group.setdefault(LR_SCALE, 1.0)
        group.pop(_WRITTEN, None)
        self._refresh_lr(group)

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict``, plain data only: a schedule appears as its ``spec`` (``SCHEDULE_SPEC``)."""
        sd = super().state_dict()
        for group in sd["param_groups"]:
            schedule = group.pop(SCHEDULE, None)
            spec = getattr(schedule, "spec", None) if schedule is not None else None
            group[SCHEDULE_SPEC] = spec if isinstance(spec, (dict, str)) else None
        return sd

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            for k, v in self.defaults.items():
                if k != "lr":
                    group.setdefault(k, v)

    # ---------------------------------------------------------------------------------------- the lr
    #: set True on an optimizer (``opt.allow_negative_lr = True``) to let a schedule or controller give a
    #: negative learning rate on purpose (gradient ascent); a non-finite learning rate is always refused
    allow_negative_lr: bool = False
    _state_creating_step: bool = False  # (see step(): torch.distributed.checkpoint's zero step)

    def _scheduled_lr(self, group: dict[str, Any]) -> float:
        """``schedule(clock) x factor`` for a group with a schedule (checked when a step is about to use it)."""
        lr = float(group[SCHEDULE](group.get(STEPS, 0)))
        scale = group.get(LR_SCALE, 1.0)
        return lr * scale if scale != 1.0 else lr

    def _check_lr_value(self, lr: float, source: str) -> float:
        if not math.isfinite(lr) or (lr < 0 and not self.allow_negative_lr):
            raise ValueError(
                f"{type(self).__name__}: the learning rate is {lr!r} ({source}); a learning rate must be finite"
                + (
                    ""
                    if not math.isfinite(lr)
                    else " and >= 0 (set optimizer.allow_negative_lr = True to allow negative ones)"
                )
            )
        return lr

    def _refresh_lr(self, group: dict[str, Any]) -> None:
        """Write the next step's lr into ``group["lr"]`` (groups with a schedule; others hold the user's number)."""
        if group.get(SCHEDULE) is None:
            return
        lr = self._scheduled_lr(group)
        group["lr"] = group[_WRITTEN] = lr

    def set_lr(self, lr: Any, group_index: int | None = None) -> None:
        """Give one group (or all) a new learning rate: a number, a 0-dim tensor or a schedule (continuing from the
        group's clock, ``group["adaptlr_steps"]``); ``group["lr"]`` then holds the next step's value."""
        check_lr(lr)
        for group in self.param_groups if group_index is None else [self.param_groups[group_index]]:
            group[SCHEDULE] = lr if _is_schedule(lr) else None
            group.pop(_WRITTEN, None)
            if _is_schedule(lr):
                self._refresh_lr(group)
            else:
                group["lr"] = lr

    def refresh_lr(self, group_index: int | None = None) -> None:
        """Recompute ``group["lr"]`` of one group (or all) after its factor changed (controllers call this)."""
        groups = self.param_groups if group_index is None else [self.param_groups[group_index]]
        for group in groups:
            self._refresh_lr(group)

    def _lr(self, group: dict[str, Any]) -> Any:
        """The lr this step of ``group`` uses: ``group["lr"]`` (a number, or a 0-dim tensor), checked.

        A group driven by an adaptlr schedule refuses a ``group["lr"]`` written by someone else (a torch
        ``LRScheduler`` composed around it would otherwise be silently overwritten or multiplied in)."""
        lr = group["lr"]
        if self._state_creating_step:
            return 0.0  # torch.distributed.checkpoint's zero step on a fresh optimizer (see step())
        if _is_schedule(lr):  # a schedule assigned to group["lr"] by hand (the habit before 0.2): adopt it
            group[SCHEDULE] = lr
            self._refresh_lr(group)
            lr = group["lr"]
        if group.get(SCHEDULE) is not None:
            written = group.get(_WRITTEN)
            if "initial_lr" in group or (written is not lr and written != lr):  # (`is`: a nan written is ours)
                raise RuntimeError(
                    f"{type(self).__name__}: param group lr is driven by the adaptlr schedule {group[SCHEDULE]!r}, "
                    f"but something else changed group['lr'] (to {lr!r}) or attached a torch LRScheduler "
                    "(group['initial_lr'] is set). Use one of the two: drop the torch scheduler, or pass a number "
                    "as lr= and schedule it with torch (adaptlr.schedules.as_torch_scheduler does so for an "
                    "adaptlr schedule)."
                )
            return self._check_lr_value(
                lr,
                f"from {group[SCHEDULE]!r} at step {group.get(STEPS, 0)}, times the "
                f"controllers' factor {group.get(LR_SCALE, 1.0)!r}",
            )
        if isinstance(lr, torch.Tensor):
            return lr
        return self._check_lr_value(float(lr), "group['lr']")

    def current_lr(self, group_index: int = 0) -> float:
        """The learning rate that the next step of param group ``group_index`` will use (``group["lr"]``)."""
        return float(self._lr(self.param_groups[group_index]))

    def _tick(self) -> None:
        """One applied step: every group's clock advances and its scheduled lr is recomputed (the one place)."""
        compiling = torch.compiler.is_compiling()
        for group in self.param_groups:
            if group.get(SCHEDULE) is None and compiling:
                continue  # a Python int read under torch.compile is a guard: count only where a schedule needs it
            group[STEPS] = group.get(STEPS, 0) + 1
            self._refresh_lr(group)

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
        and put what a later phase needs into ``ctx.scratch``. Return False to end the set's step here (its later
        phases do not run). The default does nothing."""
        return None

    def _skips(self, phase: Phase, ctxs: list[GroupStep]) -> bool:
        """Whether a whole estimate set skips ``phase`` this step (neither run, nor all-reduced, nor ``_after``):
        a decision from group state that every rank shares (D-Adapt SGD's first-gradient norm, once known).
        The default skips nothing."""
        return False

    def _estimate_sets(self, ctxs: list[GroupStep]) -> list[list[GroupStep]]:
        """The sets of groups whose sums are pooled (default: each group alone)."""
        return [[c] for c in ctxs]

    # -------------------------------------------------------------------------------------- the step
    def _engine(self, group: dict[str, Any]) -> str | None:
        if group.get("fused"):
            return "fused"
        if group.get("foreach") is False:
            return "loop"
        if group.get("foreach") or torch.compiler.is_compiling():
            return "foreach"
        return None  # the one-pass engine where the tensors allow it (Numba on CPU, triton on CUDA), else foreach

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

    def _check_group(self, group: dict[str, Any]) -> None:
        """For an optimizer without :attr:`phases`: raise (torch's kind of ``RuntimeError``) if a group's gradients
        or existing state do not fit its parameters; called for every group before any group steps."""

    def _step_group(self, group: dict[str, Any]) -> None:
        """The step of one group, for an optimizer without :attr:`phases`: its statistics are not elementwise, so it
        writes them in torch and runs its elementwise parts by name (:meth:`Phase.apply`)."""
        raise NotImplementedError(f"{type(self).__name__} declares no phases and no _step_group")

    def _begin(self, group: dict[str, Any]) -> GroupStep:
        """Gather a group's parameters with gradients and their state (created on the first step), resolve its lr,
        and check and partition its columns (once per set of tensors, see :class:`adaptlr.engines._select.Plan`)
        -- before anything changes, so a refused step leaves everything as it was."""
        ctx = GroupStep(group)
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

    def _run_phase(self, phase: Phase, ctx: GroupStep) -> dict[str, Any]:
        """Run ``phase`` over one group; returns the group's local sums by name."""
        if phase.per_tensor:
            sums: dict[str, Any] = {name: [] for name in phase.sums}
            if ctx.params:
                columns = self._columns(phase, ctx)
                for i in range(len(ctx.params)):
                    values = self._values(phase, ctx, i)
                    out = (0.0,) * len(phase.sums)
                    if values is not None:
                        out = self._run(phase, ctx, _rows(columns, [i]), values, checked=False, rows=[i])
                    for name, v in zip(phase.sums, out):
                        sums[name].append(v)
            return sums
        out: Sequence[float] = (0.0,) * len(phase.sums)
        have = ctx.columns
        if not ctx.params:
            pass
        elif len(ctx.buckets) == 1 and not ctx.complex and all(s in have or s in ctx.absent for s in phase.sources):
            # the steady state: the rule's columns are the checked, partitioned ones (0.0: an absent state)
            (key,) = ctx.buckets
            values = self._values(phase, ctx, key)
            if values is not None:
                columns = [have[src] if src in have else 0.0 for src in phase.sources]
                if phase.sums and self._layout().dims:
                    out = self._run(phase, ctx, columns, values, checked=True, rows=None)
                else:
                    scalars, flags = phase.bind(values)
                    pointers = [ctx.pointers.get(src) for src in phase.sources] if ctx.pointers else None
                    out = execute(phase.rule, columns, ctx.parts, phase.write_index, scalars, flags, len(phase.sums),
                                  pointers)  # fmt: skip
        else:
            columns = self._columns(phase, ctx)
            total = [0.0] * len(phase.sums)
            for key, idx in ctx.buckets.items():
                values = self._values(phase, ctx, key)
                if values is None:
                    continue
                part = columns if idx is None else _rows(columns, idx)
                for k, v in enumerate(self._run(phase, ctx, part, values, checked=False, rows=idx)):
                    total[k] += v
            out = total
        return dict(zip(phase.sums, out))

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
