r"""Composition: join, warmup, product, scale, and per-epoch functions."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

from .._validation import check_choice, check_count, check_real, duration
from ._base import Schedule, as_schedule, hull, register, resolve_callable, steps_list

__all__ = ["from_epochs", "join", "product", "scale", "warmup"]


def _times(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Interval product: the bounds of x * y for x in a, y in b."""
    return hull(*(x * y for x in a for y in b))


def _hull_of(bounds: Any) -> tuple[float, float] | None:
    bounds = list(bounds)
    if any(b is None for b in bounds):
        return None
    return (min(b[0] for b in bounds), max(b[1] for b in bounds))


class _Join(Schedule):
    name = "join"

    def _at(self, step: int) -> float:
        i = bisect.bisect_right(self.boundaries, step)
        return self.schedules[i](step - (self.boundaries[i - 1] if i else 0))

    def bounds(self) -> tuple[float, float] | None:
        return _hull_of(s.bounds() for s in self.schedules)


@register
def join(schedules: Sequence[Schedule], boundaries: Sequence[int | float], total_steps: int | None = None) -> Schedule:
    r"""``schedules[i]`` runs from ``boundaries[i-1]`` on and sees the steps since that boundary (optax
    ``join_schedules``; torch ``SequentialLR(schedulers, milestones=boundaries)``):

    .. math:: v_t = s_i(t - b_{i-1}),\quad i = |\{j : b_j \le t\}|,\ b_{-1} = 0

    >>> from adaptlr.schedules import constant, linear
    >>> s = join([linear(0.0, 1.0, steps=10), constant(1.0)], boundaries=[10])
    >>> s(5), s(10)
    (0.5, 1.0)
    """
    scheds = [as_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
    bounds = steps_list("boundaries", boundaries, total_steps)
    if len(scheds) != len(bounds) + 1 or not scheds:
        raise ValueError(
            f"Invalid boundaries: {len(bounds)} boundaries for {len(scheds)} schedules "
            "(expected len(schedules) == len(boundaries) + 1)"
        )
    return _Join(schedules=scheds, boundaries=bounds)


class _Warmup(Schedule):
    name = "warmup"

    def _at(self, step: int) -> float:
        if step >= self.steps:
            return self.schedule(step - self.steps)
        target = self.schedule(0)
        frac = step / self.steps
        if self.mode == "linear":
            return self.start + (target - self.start) * frac
        return self.start + (target - self.start) * 0.5 * (1.0 - math.cos(math.pi * frac))

    def bounds(self) -> tuple[float, float] | None:
        return _hull_of([self.schedule.bounds(), hull(self.start)])


@register
def warmup(
    schedule: Schedule,
    steps: int | float,
    start: float = 0.0,
    mode: str = "linear",
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Warm up from ``start`` to the schedule's first value over ``steps``, then run the schedule
    (shifted: it sees the steps since the end of the warmup, as in ``join``):

    .. math:: v_t = start + (s(0) - start)\,w(t / steps) \ \ (t < steps),\qquad v_t = s(t - steps)

    with :math:`w(f) = f` (``"linear"``, Goyal et al., 2017) or :math:`(1 - \cos \pi f) / 2` (``"cosine"``).
    optax ``warmup_cosine_decayas_schedule(0, p, w, n)`` is ``warmup(cosine(p, n - w), w)``.

    >>> from adaptlr.schedules import cosine
    >>> s = warmup(cosine(1.0, steps=100), steps=10)
    >>> s(5), s(10)
    (0.5, 1.0)
    """
    return _Warmup(
        schedule=as_schedule("schedule", schedule),
        steps=duration("steps", steps, total_steps),
        start=check_real("start", start),
        mode=check_choice("mode", mode, ("linear", "cosine")),
        allow_negative=allow_negative,
    )


class _Product(Schedule):
    name = "product"

    def _at(self, step: int) -> float:
        v = 1.0
        for s in self.schedules:
            v *= s(step)
        return v

    def bounds(self) -> tuple[float, float] | None:
        out = (1.0, 1.0)
        for s in self.schedules:
            b = s.bounds()
            if b is None:
                return None
            out = _times(out, b)
        return out


@register
def product(schedules: Sequence[Schedule]) -> Schedule:
    r""":math:`v_t = \prod_i s_i(t)` (also ``s1 * s2``), e.g. a cosine times a cyclic modulation.

    >>> from adaptlr.schedules import constant, linear
    >>> (linear(0.0, 1.0, steps=10) * constant(0.5))(4)
    0.2
    """
    scheds = [as_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
    if not scheds:
        raise ValueError("Invalid schedules: [] (expected at least one schedule)")
    return _Product(schedules=scheds)


class _Scale(Schedule):
    name = "scale"

    def _at(self, step: int) -> float:
        return self.factor * self.schedule(step)

    def bounds(self) -> tuple[float, float] | None:
        b = self.schedule.bounds()
        return None if b is None else _times(hull(self.factor), b)


@register
def scale(schedule: Schedule, factor: float, *, allow_negative: bool = False) -> Schedule:
    r""":math:`v_t = factor \cdot s(t)` (also ``factor * s``).

    >>> from adaptlr.schedules import constant
    >>> (3 * constant(0.5))(0)
    1.5
    """
    return _Scale(
        schedule=as_schedule("schedule", schedule), factor=check_real("factor", factor), allow_negative=allow_negative
    )


class _FromEpochs(Schedule):
    name = "from_epochs"

    def _at(self, step: int) -> float:
        return float(self.fn(step // self.steps_per_epoch))

    def bounds(self) -> tuple[float, float] | None:
        return self.fn.bounds() if isinstance(self.fn, Schedule) else None  # a user function: unknown


@register
def from_epochs(fn: Callable[[int], float] | str, steps_per_epoch: int) -> Schedule:
    r"""A function of the epoch (the Keras habit) as a schedule of the step:
    :math:`v_t = fn(\lfloor t / steps\_per\_epoch \rfloor)`.

    ``fn`` may be any function of the epoch: a lambda, a closure, a function of yours, an adaptlr schedule.
    Registration is never needed to use it: the schedule steps, composes, plots and runs in any optimizer, and
    an optimizer's checkpoint resumes exactly when the new optimizer is given the same function (as for
    ``lr=lambda step: ...``). Only a *spec* names a function, and only by the name it was registered under
    with :func:`~adaptlr.schedules.register_callable` (``fn`` may be that name): that is what a lab spec or a
    CLI argument, which are strings, need. An unregistered function has no spec (:class:`NoSpecError`), and
    a lambda does not pickle.

    >>> from adaptlr.schedules import step
    >>> from_epochs(step(1.0, step_size=2, gamma=0.5), steps_per_epoch=100)(250)
    0.5
    >>> from_epochs(lambda epoch: 0.1 * 0.5**epoch, steps_per_epoch=100)
    from_epochs(fn=<function <lambda>>, steps_per_epoch=100)
    """
    if isinstance(fn, str):
        fn = resolve_callable(fn)
    if not callable(fn):
        raise ValueError(f"Invalid fn: {fn!r} (expected a callable epoch -> value)")
    return _FromEpochs(fn=fn, steps_per_epoch=check_count("steps_per_epoch", steps_per_epoch, 1))
