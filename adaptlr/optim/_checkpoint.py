"""Checkpoints: ``state_dict`` holds plain data only (a schedule as its spec), and ``load_state_dict`` takes
torch.optim's checkpoints, adaptlr's own of every release, and state laid out otherwise than the parameters
(a mixin of :class:`adaptlr.optim.Optimizer`)."""

from __future__ import annotations

from typing import Any

import torch

from ._lr import _OLD_KEYS, _WRITTEN, LR_SCALE, SCHEDULE, SCHEDULE_SPEC, STEPS, _is_schedule

__all__ = ["Checkpointing"]


class Checkpointing:
    """torch's ``state_dict`` / ``load_state_dict`` contract, with adaptlr's group keys (see :mod:`._lr`)."""

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
