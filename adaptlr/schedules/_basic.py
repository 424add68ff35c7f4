r"""Monotone schedules: constant, linear, polynomial, exponential, step, multistep, piecewise, 1/sqrt."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from .._validation import check_count, check_real, duration
from ._base import Schedule, hull, register, steps_list

__all__ = ["constant", "exponential", "inverse_sqrt", "linear", "multistep", "piecewise_constant", "polynomial", "step"]


class _Constant(Schedule):
    name = "constant"

    def _at(self, step: int) -> float:
        return self.value

    def bounds(self) -> tuple[float, float]:
        return hull(self.value)


@register
def constant(value: float = 1.0, *, allow_negative: bool = False) -> Schedule:
    """:math:`v_t = value`. ``torch.optim.lr_scheduler.ConstantLR`` is ``piecewise_constant``.

    >>> constant(0.1)(12345)
    0.1
    """
    return _Constant(value=check_real("value", value), allow_negative=allow_negative)


class _Polynomial(Schedule):
    name = "polynomial"

    def _at(self, step: int) -> float:
        frac = 1.0 - min(max(step - self.begin, 0), self.steps) / self.steps
        return (self.init - self.final) * frac**self.power + self.final

    def bounds(self) -> tuple[float, float]:
        return hull(self.init, self.final)


@register
def polynomial(
    init: float,
    final: float,
    steps: int | float,
    power: float = 1.0,
    begin: int = 0,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Polynomial decay (optax ``polynomial_schedule``; torch ``PolynomialLR`` with ``final=0``).

    .. math:: v_t = (init - final)\,(1 - \min(\max(t - begin, 0), steps) / steps)^{power} + final

    ``steps`` may be a fraction of ``total_steps``.

    >>> polynomial(1.0, 0.0, steps=10, power=2)(5)
    0.25
    """
    return _Polynomial(
        init=check_real("init", init),
        final=check_real("final", final),
        steps=duration("steps", steps, total_steps),
        power=check_real("power", power, 0.0, low_open=True),
        begin=check_count("begin", begin),
        allow_negative=allow_negative,
    )


class _Linear(_Polynomial):
    name = "linear"

    def _at(self, step: int) -> float:
        done = min(max(step - self.begin, 0), self.steps)
        return self.init + (self.final - self.init) * (done / self.steps)


@register
def linear(
    init: float,
    final: float,
    steps: int | float,
    begin: int = 0,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Linear ramp (optax ``linear_schedule``; torch ``LinearLR`` with ``init=start_factor``,
    ``final=end_factor``).

    .. math:: v_t = init + (final - init)\,\min(\max(t - begin, 0), steps) / steps

    >>> linear(0.0, 1.0, steps=4)(1)
    0.25
    """
    return _Linear(
        init=check_real("init", init),
        final=check_real("final", final),
        steps=duration("steps", steps, total_steps),
        begin=check_count("begin", begin),
        allow_negative=allow_negative,
    )


class _Exponential(Schedule):
    name = "exponential"

    def _at(self, step: int) -> float:
        if step <= self.begin:
            return self.init
        p = (step - self.begin) / self.steps
        if self.init == 0:
            v = 0.0
        else:
            try:
                v = self.init * self.rate ** (math.floor(p) if self.staircase else p)
            except OverflowError:  # a growing schedule past its cap (an uncapped one is refused when built)
                v = math.copysign(math.inf, self.init)
        if self.final is not None:
            v = max(v, self.final) if self.rate < 1 else min(v, self.final)
        return v

    def bounds(self) -> tuple[float, float]:
        if self.rate < 1:  # from init towards 0
            tail, clip = hull(self.init, 0.0), max
        elif self.rate == 1 or self.init == 0:
            tail, clip = hull(self.init), min
        else:  # its size grows without a bound of its own
            tail, clip = ((self.init, math.inf) if self.init > 0 else (-math.inf, self.init)), min
        if self.final is not None:  # the clip is monotone: it maps the interval's ends
            tail = (clip(tail[0], self.final), clip(tail[1], self.final))
        return hull(self.init, *tail)


@register
def exponential(
    init: float,
    rate: float,
    steps: int | float = 1,
    begin: int = 0,
    staircase: bool = False,
    final: float | None = None,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Exponential decay (optax ``exponential_decay``; torch ``ExponentialLR(gamma=rate)`` with ``steps=1``).

    .. math:: v_t = init \cdot rate^{p},\quad p = (t - begin) / steps
              \ (\lfloor p \rfloor \text{ if staircase})

    and :math:`v_t = init` for :math:`t \le begin`; clipped at ``final`` when given (from below if rate < 1).
    A growing schedule (``rate > 1``) needs ``final`` as its cap (else it would overflow).

    >>> exponential(1.0, rate=0.5, steps=2, staircase=True)(3)
    0.5
    """
    rate = check_real("rate", rate, 0.0, low_open=True)
    return _Exponential(
        init=check_real("init", init),
        rate=rate,
        steps=duration("steps", steps, total_steps),
        begin=check_count("begin", begin),
        staircase=bool(staircase),
        final=None if final is None else check_real("final", final),
        allow_negative=allow_negative,
    )


class _Step(Schedule):
    name = "step"

    def _at(self, step: int) -> float:
        return self.init * self.gamma ** (step // self.step_size) if self.init else 0.0

    def bounds(self) -> tuple[float, float]:
        if self.gamma > 1 and self.init != 0:  # grows without a cap
            return (-math.inf, math.inf)
        return hull(self.init, self.init if self.gamma == 1 else 0.0)


@register
def step(
    init: float,
    step_size: int | float,
    gamma: float = 0.1,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Decay by ``gamma`` every ``step_size`` steps (torch ``StepLR``):
    :math:`v_t = init\,\gamma^{\lfloor t / step\_size \rfloor}`.

    >>> step(1.0, step_size=10, gamma=0.5)(25)
    0.25
    """
    return _Step(
        init=check_real("init", init),
        step_size=duration("step_size", step_size, total_steps),
        gamma=check_real("gamma", gamma, 0.0),
        allow_negative=allow_negative,
    )


class _Multistep(Schedule):
    name = "multistep"

    def _at(self, step: int) -> float:
        return self.init * self.gamma ** bisect.bisect_right(self.milestones, step)

    def bounds(self) -> tuple[float, float]:
        return hull(*(self.init * self.gamma**k for k in range(len(self.milestones) + 1)))


@register
def multistep(
    init: float,
    milestones: Sequence[int | float],
    gamma: float = 0.1,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Decay by ``gamma`` at each milestone (torch ``MultiStepLR``):
    :math:`v_t = init\,\gamma^{|\{m \le t\}|}`.

    >>> multistep(1.0, milestones=[10, 20], gamma=0.1)(15)
    0.1
    """
    return _Multistep(
        init=check_real("init", init),
        milestones=steps_list("milestones", milestones, total_steps),
        gamma=check_real("gamma", gamma, 0.0),
        allow_negative=allow_negative,
    )


class _PiecewiseConstant(Schedule):
    name = "piecewise_constant"

    def _at(self, step: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, step)]

    def bounds(self) -> tuple[float, float]:
        return hull(*self.values)


@register
def piecewise_constant(
    values: Sequence[float],
    boundaries: Sequence[int | float],
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""``values[i]`` on ``[boundaries[i-1], boundaries[i])``: ``len(values) == len(boundaries) + 1``.

    torch ``ConstantLR(factor, total_iters)`` is ``piecewise_constant([factor, 1.0], [total_iters])``.

    >>> piecewise_constant([1.0, 0.5, 0.1], boundaries=[10, 20])(10)
    0.5
    """
    vals = [check_real(f"values[{i}]", v) for i, v in enumerate(values)]
    bounds = steps_list("boundaries", boundaries, total_steps)
    if len(vals) != len(bounds) + 1:
        raise ValueError(
            f"Invalid values: {len(vals)} values for {len(bounds)} boundaries "
            "(expected len(values) == len(boundaries) + 1)"
        )
    return _PiecewiseConstant(values=vals, boundaries=bounds, allow_negative=allow_negative)


class _InverseSqrt(Schedule):
    name = "inverse_sqrt"

    def _at(self, step: int) -> float:
        return self.init * math.sqrt(self.timescale / max(step, self.timescale))

    def bounds(self) -> tuple[float, float]:
        return hull(self.init, 0.0)


@register
def inverse_sqrt(
    init: float, timescale: int | float = 1, total_steps: int | None = None, *, allow_negative: bool = False
) -> Schedule:
    r"""Constant, then :math:`\propto 1/\sqrt{t}` (Vaswani et al., 2017; T5):

    .. math:: v_t = init\,\sqrt{timescale / \max(t, timescale)}

    The transformer rule is ``warmup(inverse_sqrt(peak, timescale=w), steps=w)`` shifted by ``w``.

    >>> inverse_sqrt(1.0, timescale=100)(400)
    0.5
    """
    return _InverseSqrt(
        init=check_real("init", init),
        timescale=duration("timescale", timescale, total_steps),
        allow_negative=allow_negative,
    )
