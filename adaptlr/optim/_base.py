"""The base class of adaptlr's optimizers: torch's contract, one elementwise rule, an engine to run it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..engines import fused_available as _numba_available
from ..engines._select import check_columns, fused_dtype, run
from ._validation import check_bool, check_lr, check_nonfinite, check_optional_bool

__all__ = ["Optimizer", "ENGINE_DOC"]

ENGINE_DOC = """
    foreach (bool, optional): run the rule with ``torch._foreach_*`` ops over lists of tensors (True), or tensor
        by tensor (False). Default None: the fused engine where it applies, else foreach.
    fused (bool, optional): run the rule as one Numba kernel per step (CPU, float32/float64). Default None: on
        when Numba imports and the tensors are CPU float32/float64 and contiguous.
    nonfinite (str, optional): what to do when a gradient holds inf or nan: ``"raise"`` (FloatingPointError),
        ``"skip"`` (the step changes nothing: not params, state or step counts) or None (no check, torch's
        behaviour; the check costs one pass over the gradients).
"""


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

    The learning rate of a group is ``lr`` (a float, a 0-dim tensor, or a schedule called with the group's
    number of completed steps, ``group["steps"]``) times ``group["lr_scale"]`` (default 1, owned by
    controllers, see :mod:`adaptlr.controllers`).
    """

    #: controllers may scale the lr of adaptlr optimizers through ``group["lr_scale"]``
    supports_lr_scale = True
    #: the elementwise rule: ``rule(p, g, *state, *scalars, *flags) -> (p, *state)``
    rule: Callable
    #: names of the per-parameter state tensors, in the rule's order (torch's names)
    state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, foreach: bool | None = None,
                 fused: bool | None = None, nonfinite: str | None = None) -> None:
        check_lr(defaults["lr"])
        foreach = check_optional_bool("foreach", foreach)
        fused = check_optional_bool("fused", fused)
        if fused and foreach:
            raise ValueError("`fused` and `foreach` cannot be `True` together.")
        if fused and not _numba_available():
            raise RuntimeError("fused=True needs Numba, which failed to import")
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
                    raise ValueError(f"{type(self).__name__}: a parameter appears twice in one param group "
                                     f"(shape {tuple(p.shape)}); pass each parameter once")
                seen.add(id(p))
        super().add_param_group({**param_group, "params": params} if params is not None else param_group)
        group = self.param_groups[-1]
        group.setdefault("steps", 0)
        if group.get("fused"):
            for p in group["params"]:
                if not (p.device.type == "cpu" and fused_dtype(p.dtype)):
                    raise RuntimeError(f"fused=True supports CPU float32/float64 (and complex) parameters, got "
                                       f"{p.dtype} on {p.device}")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, except that (1) this optimizer keeps its own engine choice (``foreach`` and
        ``fused`` as constructed: they say how to compute in this process, not what the state is), and (2) a
        state tensor laid out differently from its parameter (a ``channels_last`` checkpoint for a contiguous
        model, or the reverse) is re-laid out like the parameter, values unchanged, so the one-pass engine can run
        it. A state that does not fit its parameter at all (another shape, another model's parameter order) is
        refused at the next step with torch's kind of error, before anything changes."""
        engines = [(g.get("foreach"), g.get("fused")) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, (foreach, fused) in zip(self.param_groups, engines):
            group["foreach"], group["fused"] = foreach, fused
        for p, state in self.state.items():
            if not isinstance(p, torch.Tensor) or type(p) not in (torch.Tensor, torch.nn.Parameter):
                continue
            for k, v in state.items():
                if (isinstance(v, torch.Tensor) and type(v) is torch.Tensor and v.shape == p.shape and v.dim() > 0
                        and v.stride() != p.stride()):
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("steps", 0)
            for k, v in self.defaults.items():
                group.setdefault(k, v)

    # ---------------------------------------------------------------------------------------- the lr
    #: set True on an optimizer (``opt.allow_negative_lr = True``) to let a schedule or controller give a
    #: negative learning rate on purpose (gradient ascent); a non-finite learning rate is always refused
    allow_negative_lr: bool = False

    def _lr(self, group: dict[str, Any]) -> Any:
        lr = group["lr"]
        steps = group.get("steps", 0)
        if _is_schedule(lr):
            lr = float(lr(steps))
        scale = group.get("lr_scale", 1.0)
        if scale != 1.0:
            lr = lr * scale
        if isinstance(lr, float) and (not math.isfinite(lr) or (lr < 0 and not self.allow_negative_lr)):
            source = group["lr"] if _is_schedule(group["lr"]) else "lr"
            raise ValueError(
                f"{type(self).__name__}: the learning rate at step {steps} is {lr!r} (from {source!r}, times the "
                f"controllers' factor {scale!r}); a learning rate must be finite"
                + ("" if lr != lr or math.isinf(lr) else " and >= 0 (set optimizer.allow_negative_lr = True to "
                   "allow negative ones)")
            )
        return lr

    def current_lr(self, group_index: int = 0) -> float:
        """The learning rate that the next step of param group ``group_index`` will use."""
        return float(self._lr(self.param_groups[group_index]))

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
        if hit is not None and len(hit[1]) == len(tensors) and all(a is b for a, b in zip(hit[1], tensors)):
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
        if group.get("foreach") or torch.compiler.is_compiling() or not _numba_available():
            return "foreach"
        return None  # fused where the tensors allow it, foreach for the rest

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
                raise FloatingPointError(f"{type(self).__name__}: a gradient holds inf or nan "
                                         "(nonfinite='raise')")
            self.last_step_skipped = True
            return loss
        self.last_step_skipped = False
        self._step_all()
        return loss

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
        real = _real if any(p.is_complex() for p in params) else _same
        # checked before any state changes (a failed check leaves everything as it was); a state that _advance
        # creates on the first step (SGD's momentum buffer) is created right, so only existing ones are checked
        present = [n for n in names if n is not None and all(n in s for s in states)]
        check_columns([params, grads, *[[s[n] for s in states] for n in present]], ("param", "grad", *present))
        keys = self._advance(group, params, states)
        columns: list[Any] = [[real(p) for p in params], [real(g) for g in grads]]
        columns += [[real(s[n]) for s in states] if n is not None else 0.0 for n in names]
        buckets: dict[Any, list[int]] = {}
        for i, key in enumerate(keys):
            buckets.setdefault(key, []).append(i)
        prefer = self._engine(group)
        writes = (0, *range(2, 2 + len(names)))
        for key, idx in buckets.items():
            scalars, flags = self._scalars(group, key, lr)
            part = columns if len(buckets) == 1 else [[c[i] for i in idx] if isinstance(c, list) else c
                                                       for c in columns]
            run(self.rule, part, writes, scalars, flags, prefer=prefer, checked=True)
        if not torch.compiler.is_compiling() or _is_schedule(group["lr"]):
            # a Python int read under torch.compile is a guard: count steps there only when a schedule needs it
            group["steps"] = group.get("steps", 0) + 1
