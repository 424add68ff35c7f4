"""The base class of adaptlr's optimizers: torch's contract, one elementwise rule, an engine to run it."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..engines._select import Plan, execute, fused_supported, prepare, run
from ._validation import check_bool, check_lr, check_nonfinite, check_optional_bool

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


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose math is one elementwise rule (see :mod:`adaptlr.rules`).

    Subclasses set :attr:`rule` and :attr:`state_names`, and implement :meth:`_advance` (per-parameter scalar
    state such as ``step``, returning a key per parameter: parameters with equal keys share per-step scalars)
    and :meth:`_scalars` (the per-step scalars and flags for one key). Everything else — param groups, lazy
    state, ``state_dict``, closures, hooks, engines, the non-finite policy, schedules as ``lr`` — lives here.

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
    #: the elementwise rule: ``rule(p, g, *state, *scalars, *flags) -> (p, *state)``
    rule: Callable
    #: names of the per-parameter state tensors, in the rule's order (torch's names)
    state_names: tuple[str, ...] = ()

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
        foreach = check_optional_bool("foreach", foreach)
        fused = check_optional_bool("fused", fused)
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
        """The state names in rule order, with None for an optional state this group does not keep."""
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

    def _scalars(self, group: dict[str, Any], key: Any, lr: Any) -> tuple[Sequence[Any], Sequence[bool]]:
        raise NotImplementedError

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
        """Whether a gradient holds inf or nan (subclasses that shard parameters agree on it across ranks)."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return any(not bool(torch.isfinite(_real(g)).all()) for g in grads)

    def _step_all(self) -> None:
        """Apply one step to every param group (after the closure and the non-finite check)."""
        for group in self.param_groups:
            self._step_group(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict]]:
        """The parameters of ``group`` that have a gradient, their gradients and their (lazily created) state."""
        params, grads, states = [], [], []
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
        return params, grads, states

    def _step_group(self, group: dict[str, Any]) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        lr = self._lr(group)
        names = self._present_states(group)
        complex_ = any(p.is_complex() for p in params)
        real = _real if complex_ else _same
        prefer = self._engine(group)
        # checked (and partitioned, once per set of tensors: see engines._select.Plan) before any state changes, so
        # a refused step leaves everything as it was; a state that _advance creates on the first step (SGD's
        # momentum buffer) is created right, so only existing ones are checked
        present = [n for n in names if n is not None and all(n in s for s in states)]
        plan = None
        if not torch.compiler.is_compiling():  # (under torch.compile the graph's guards do this job)
            plans = self.__dict__.setdefault("_plans", {})
            plan = plans.get(id(group))
            if plan is None:
                plan = plans[id(group)] = Plan()
        checked, parts = prepare(
            [params, grads, *[[s[n] for s in states] for n in present]],
            prefer,
            ("param", "grad", *present),
            plan=plan,
            volatile=(1,),
        )
        keys = self._advance(group, params, states)
        buckets: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            buckets.setdefault(key, []).append(i)
        writes = (0, *range(2, 2 + len(names)))
        if len(buckets) == 1 and not complex_ and len(present) == sum(n is not None for n in names):
            # the steady state: the checked columns are the rule's columns (constants where a state is absent)
            it = iter(checked[2:])
            columns = checked[:2] + [next(it) if n is not None else 0.0 for n in names]
            scalars, flags = self._scalars(group, keys[0], lr)
            execute(self.rule, columns, parts, writes, scalars, flags)
            return
        columns: list[Any] = [[real(p) for p in params], [real(g) for g in grads]]
        columns += [[real(s[n]) for s in states] if n is not None else 0.0 for n in names]
        for key, idx in buckets.items():
            scalars, flags = self._scalars(group, key, lr)
            part = (
                columns if len(buckets) == 1 else [[c[i] for i in idx] if isinstance(c, list) else c for c in columns]
            )
            run(self.rule, part, writes, scalars, flags, prefer=prefer, checked=True)
