"""The lab's schedule terms (``cosine(warmup=0.05)``, ``wsd(decay=0.2)``, ..., ``schedule(spec="...")``): one
table, :data:`SCHEDULE_TERMS`, of each term's arguments with the lab's defaults and the function that writes the
term as an :mod:`adaptlr.schedules` spec for a run (:func:`schedule_spec`), built by
:func:`adaptlr.schedules.from_spec` (:func:`build_schedule`): one schedule language.

The optimizer's lr is the peak. Durations (``warmup``, ``steps``, ``decay``, ``every``) follow the library's one
duration rule (:func:`adaptlr._validation.duration`): an int is a number of steps, a float in (0, 1] a fraction
of the run; a warmup of ``w`` steps ramps linearly from ``lr / w`` to ``lr``. ``schedule(spec=...)`` takes any
schedules spec as a multiplier of the lr, its durations fractions of the run where below 1.

>>> schedule_spec(Term("cosine", (("warmup", 10),)), 0.1, 100)["schedule"]
{'name': 'cosine', 'init': 0.1, 'steps': 90, 'final': 0.0}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .terms import SpecError, Term

__all__ = ["SCHEDULE_TERMS", "ScheduleTerm", "build_schedule", "schedule_spec"]


def _duration(name: str, value: Any, total: int, minimum: int = 0) -> int:
    """The library's one duration rule (:func:`adaptlr._validation.duration`), as a :class:`SpecError`."""
    from adaptlr._validation import duration

    try:
        return duration(name, value, total, minimum=minimum)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None


def _real(name: str, value: Any) -> float:
    """A finite number argument of a schedule term (:func:`adaptlr._validation.check_real`; a bool or a string is
    refused, not read as 1 or parsed), as a :class:`SpecError`; the schedule checks its range."""
    from adaptlr._validation import check_real

    try:
        return check_real(name, value)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None


def _warmed(body: dict[str, Any], lr: float, w: int) -> dict[str, Any]:
    """``body`` after a linear warmup of ``w`` steps from ``lr / w`` (none when ``w`` is 0)."""
    return {"name": "warmup", "schedule": body, "steps": w, "start": lr / w} if w > 0 else body


def _any_spec(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    from adaptlr.schedules import parse_spec

    text = a["spec"]
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"Invalid spec: {text!r} (expected an adaptlr.schedules spec string)")
    try:
        inner = parse_spec(text.strip())
    except (ValueError, RecursionError) as e:
        raise SpecError(f"schedule(spec={text!r}): {e}") from None
    return {"name": "scale", "schedule": inner, "factor": lr}


def _constant(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    return {"name": "constant", "value": lr}


def _warmup(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    return _warmed({"name": "constant", "value": lr}, lr, _duration("steps", a["steps"], total, minimum=1))


def _cosine(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    w = _duration("warmup", a["warmup"], total)
    body = {"name": "cosine", "init": lr, "steps": max(1, total - w), "final": lr * _real("final", a["final"])}
    return _warmed(body, lr, w)


def _linear(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    w = _duration("warmup", a["warmup"], total)
    body = {"name": "linear", "init": lr, "final": lr * _real("final", a["final"]), "steps": max(1, total - w)}
    return _warmed(body, lr, w)


def _step(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    return {
        "name": "step",
        "init": lr,
        "step_size": _duration("every", a["every"], total, minimum=1),
        "gamma": _real("gamma", a["gamma"]),
    }


def _one_cycle(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    return {
        "name": "one_cycle",
        "peak": lr,
        "total_steps": total,
        "pct_start": _real("pct_start", a["pct_start"]),
        "anneal": a["anneal"],
        "div_factor": _real("div_factor", a["div_factor"]),
        "final_div_factor": _real("final_div_factor", a["final_div_factor"]),
    }


def _wsd(a: Mapping[str, Any], lr: float, total: int) -> dict[str, Any]:
    return {
        "name": "wsd",
        "peak": lr,
        "steps": total,
        "warmup": _duration("warmup", a["warmup"], total),
        "decay": _duration("decay", a["decay"], total),
        "cooldown": a["cooldown"],
    }


class ScheduleTerm:
    """A schedule term: its arguments with the lab's defaults, and ``spec(args, lr, total)``, the
    :mod:`adaptlr.schedules` spec of the term (arguments merged over the defaults) for a run of ``total`` steps
    with peak ``lr``. (A plain class, not a dataclass: a dataclass costs ``import adaptlr.lab`` half a
    millisecond.)"""

    __slots__ = ("defaults", "spec")

    def __init__(
        self, defaults: Mapping[str, Any], spec: Callable[[Mapping[str, Any], float, int], dict[str, Any]]
    ) -> None:
        self.defaults = defaults
        self.spec = spec


SCHEDULE_TERMS: dict[str, ScheduleTerm] = {
    "constant": ScheduleTerm({}, _constant),
    "warmup": ScheduleTerm({"steps": 0.05}, _warmup),
    "cosine": ScheduleTerm({"warmup": 0.0, "final": 0.0}, _cosine),
    "linear": ScheduleTerm({"warmup": 0.0, "final": 0.0}, _linear),
    "step": ScheduleTerm({"every": 0.3, "gamma": 0.1}, _step),
    "one_cycle": ScheduleTerm(
        {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"}, _one_cycle
    ),
    "wsd": ScheduleTerm({"warmup": 0.0, "decay": 0.2, "cooldown": "linear"}, _wsd),
    "schedule": ScheduleTerm({"spec": None}, _any_spec),  # any adaptlr.schedules spec, as a multiplier of the lr
}


def schedule_spec(term: Term, lr: float, total: int) -> dict[str, Any]:
    """The ``adaptlr.schedules`` spec of a schedule term for a run of ``total`` steps with peak ``lr`` (the
    optimizer's lr): the lab's schedule terms are shorthands for schedule specs, built by
    :func:`adaptlr.schedules.from_spec` (one schedule language). ``schedule(spec=...)`` takes any schedule spec
    as a multiplier of the lr, its durations possibly fractions of the run:
    ``adam(lr=3e-3) + schedule(spec="warmup(cosine(1.0, steps=0.9), steps=0.1)")``."""
    entry = SCHEDULE_TERMS.get(term.name)
    if entry is None:  # pragma: no cover - checked at parse time
        raise SpecError(f"unknown schedule {term.name!r}")
    return entry.spec({**entry.defaults, **term.kwargs}, lr, total)


def build_schedule(term: Term, lr: float, total: int) -> Any:
    """The schedule of a term (see :func:`schedule_spec`), built by ``adaptlr.schedules.from_spec``."""
    from adaptlr import schedules

    return schedules.from_spec(schedule_spec(term, lr, total), total_steps=total)
