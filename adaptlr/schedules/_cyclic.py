r"""Cosine-family and cyclic schedules: cosine, cosine_restarts (SGDR), one_cycle, cyclic, wsd."""

from __future__ import annotations

import math

from .._validation import check_choice, check_count, check_real, duration
from ._base import Schedule, hull, register

__all__ = ["cosine", "cosine_restarts", "cyclic", "one_cycle", "wsd"]


def _half_cosine(frac: float) -> float:
    """:math:`(1 + \\cos(\\pi\\,frac)) / 2`: 1 at 0, 0 at 1."""
    return 0.5 * (1.0 + math.cos(math.pi * frac))


class _Cosine(Schedule):
    name = "cosine"

    def _at(self, step: int) -> float:
        frac = min(max(step - self.begin, 0), self.steps) / self.steps
        return (self.init - self.final) * _half_cosine(frac) ** self.exponent + self.final

    def bounds(self) -> tuple[float, float]:
        return hull(self.init, self.final)


@register
def cosine(
    init: float,
    steps: int | float,
    final: float = 0.0,
    exponent: float = 1.0,
    begin: int = 0,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Cosine decay from ``init`` to ``final`` over ``steps``, then ``final`` (Loshchilov & Hutter, 2017).

    .. math:: v_t = final + (init - final)
              \left[\tfrac12\left(1 + \cos\tfrac{\pi \min(t', steps)}{steps}\right)\right]^{exponent},
              \quad t' = \max(t - begin, 0)

    optax ``cosine_decay_schedule(init, steps, alpha=final / init, exponent)``; torch ``CosineAnnealingLR
    (T_max=steps, eta_min=final)`` for :math:`t \le steps` (torch's keeps oscillating after; this stays flat).

    >>> cosine(1.0, steps=100, final=0.1)(50)
    0.55
    """
    return _Cosine(
        init=check_real("init", init),
        steps=duration("steps", steps, total_steps),
        final=check_real("final", final),
        exponent=check_real("exponent", exponent, 0.0, low_open=True),
        begin=check_count("begin", begin),
        allow_negative=allow_negative,
    )


class _CosineRestarts(Schedule):
    name = "cosine_restarts"

    def _at(self, step: int) -> float:
        t, period, cycle = max(step, 0), self.period, 0
        if self.mult == 1:
            cycle, t = divmod(t, period)
        else:
            while t >= period:
                t, period, cycle = t - period, period * self.mult, cycle + 1
        peak = self.init * self.decay**cycle if self.init else 0.0
        return self.final + (peak - self.final) * _half_cosine(t / period)

    def bounds(self) -> tuple[float, float]:
        if self.decay > 1 and self.init != 0:  # the peaks grow without a cap
            return (-math.inf, math.inf)
        return hull(self.init, self.final, *(() if self.decay == 1 else (0.0,)))


@register
def cosine_restarts(
    init: float,
    period: int | float,
    mult: int = 1,
    decay: float = 1.0,
    final: float = 0.0,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""SGDR: cosine cycles with warm restarts (Loshchilov & Hutter, 2017;
    torch ``CosineAnnealingWarmRestarts``).

    Cycle :math:`k` lasts :math:`T_k = period \cdot mult^k` steps and starts at :math:`init \cdot decay^k`:

    .. math:: v_t = final + (init\,decay^k - final)\,\tfrac12\left(1 + \cos(\pi\,t_k / T_k)\right)

    with :math:`t_k` the steps since the start of the current cycle. torch's ``T_0, T_mult, eta_min`` are
    ``period, mult, final`` (``decay=1``).

    >>> s = cosine_restarts(1.0, period=10, mult=2, decay=0.5)
    >>> s(0), s(10), s(30)
    (1.0, 0.5, 0.25)
    """
    return _CosineRestarts(
        init=check_real("init", init),
        period=duration("period", period, total_steps),
        mult=check_count("mult", mult, 1),
        decay=check_real("decay", decay, 0.0, low_open=True),
        final=check_real("final", final),
        allow_negative=allow_negative,
    )


class _OneCycle(Schedule):
    name = "one_cycle"

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end_step, start value, end value) of each phase, as torch's ``OneCycleLR`` builds them."""
        initial = self.peak / self.div_factor
        low = initial / self.final_div_factor
        p, n = self.pct_start, self.total_steps
        if self.three_phase:
            return [(p * n - 1, initial, self.peak), (2 * p * n - 2, self.peak, initial), (n - 1, initial, low)]
        return [(p * n - 1, initial, self.peak), (n - 1, self.peak, low)]

    def _at(self, step: int) -> float:
        step = min(max(step, 0), self.total_steps - 1)
        start = 0.0
        phases = self._phases()
        for i, (end, lo, hi) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                if self.anneal == "cos":
                    return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (hi - lo) * pct + lo
            start = end
        raise AssertionError("unreachable")

    def bounds(self) -> tuple[float, float]:
        initial = self.peak / self.div_factor
        return hull(self.peak, initial, initial / self.final_div_factor)


@register
def one_cycle(
    peak: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (Smith & Topin, 2018) with torch ``OneCycleLR``'s exact semantics.

    From :math:`peak / div\_factor` up to ``peak`` over the first ``pct_start`` of the run, then down to
    :math:`peak / (div\_factor \cdot final\_div\_factor)` at step ``total_steps - 1``; with ``three_phase`` it
    first comes back to the initial value at :math:`2\,pct\_start`. Each phase anneals from a to b by
    ``"cos"``: :math:`b + (a - b)(1 + \cos \pi p) / 2`, or ``"linear"``: :math:`a + (b - a) p`, with
    :math:`p` the fraction of the phase done (phase ends at :math:`pct\_start \cdot total\_steps - 1`, as in
    torch). The value stays at its minimum after ``total_steps - 1``.

    >>> one_cycle(1.0, total_steps=100)(29)
    1.0
    """
    pct = check_real("pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True)
    n = check_count("total_steps", total_steps, 2)
    if pct * n - 1 <= 0 or (three_phase and 2 * pct * n - 2 >= n - 1):
        raise ValueError(f"Invalid pct_start: {pct_start!r} leaves an empty phase for total_steps={n}")
    return _OneCycle(
        peak=check_real("peak", peak, 0.0, low_open=True),
        total_steps=n,
        pct_start=pct,
        anneal=check_choice("anneal", anneal, ("cos", "linear")),
        div_factor=check_real("div_factor", div_factor, 0.0, low_open=True),
        final_div_factor=check_real("final_div_factor", final_div_factor, 0.0, low_open=True),
        three_phase=bool(three_phase),
    )


class _Cyclic(Schedule):
    name = "cyclic"

    def _at(self, step: int) -> float:
        total = self.step_size_up + self.step_size_down
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.peak == self.base:
            return self.base
        if self.mode == "triangular":
            amp = 1.0
        elif self.mode == "triangular2":
            amp = 2.0 ** -(cycle - 1)  # (underflows to 0, where 1 / 2.0 ** n overflows)
        else:
            amp = self.gamma**step
        return self.base + (self.peak - self.base) * scale * amp

    def bounds(self) -> tuple[float, float]:
        if self.mode == "exp_range" and self.gamma > 1 and self.peak != self.base:  # the height grows
            return (-math.inf, math.inf)
        return hull(self.base, self.peak)


@register
def cyclic(
    base: float,
    peak: float,
    step_size_up: int | float = 2000,
    step_size_down: int | float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    total_steps: int | None = None,
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Cyclical learning rates (Smith, 2017) with torch ``CyclicLR``'s semantics (``base_lr``, ``max_lr``).

    A triangle from ``base`` up to ``peak`` in ``step_size_up`` steps and back in ``step_size_down``; its
    height is scaled by 1 (``"triangular"``), :math:`2^{-(c-1)}` in cycle :math:`c \ge 1` (``"triangular2"``),
    or :math:`\gamma^t` (``"exp_range"``).

    >>> cyclic(0.0, 1.0, step_size_up=4)(2)
    0.5
    """
    up = duration("step_size_up", step_size_up, total_steps)
    down = up if step_size_down is None else duration("step_size_down", step_size_down, total_steps)
    return _Cyclic(
        base=check_real("base", base),
        peak=check_real("peak", peak),
        step_size_up=up,
        step_size_down=down,
        mode=check_choice("mode", mode, ("triangular", "triangular2", "exp_range")),
        gamma=check_real("gamma", gamma, 0.0, low_open=True),
        allow_negative=allow_negative,
    )


class _WSD(Schedule):
    name = "wsd"

    def _at(self, step: int) -> float:
        if step < self.warmup:
            return self.init + (self.peak - self.init) * step / self.warmup
        start = self.steps - self.decay
        if step < start or self.decay == 0:
            return self.peak
        frac = min(step - start, self.decay) / self.decay
        if self.cooldown == "linear":
            shape = 1.0 - frac
        elif self.cooldown == "cosine":
            shape = _half_cosine(frac)
        else:
            shape = 1.0 - math.sqrt(frac)
        return self.final + (self.peak - self.final) * shape

    def bounds(self) -> tuple[float, float]:
        return hull(self.init, self.peak, self.final)


@register
def wsd(
    peak: float,
    steps: int,
    warmup: int | float = 0,
    decay: int | float = 0.2,
    init: float = 0.0,
    final: float = 0.0,
    cooldown: str = "linear",
    *,
    allow_negative: bool = False,
) -> Schedule:
    r"""Warmup-stable-decay (trapezoidal; Hägele et al., 2024 "Scaling Laws and Compute-Optimal Training
    Beyond Fixed Training Durations"): linear warmup from ``init`` to ``peak`` over ``warmup`` steps, ``peak``
    until ``steps - decay``, then a cooldown to ``final`` over the last ``decay`` steps:

    .. math:: v = final + (peak - final)\,c(f),\quad c(f) = 1 - f \text{ (linear)},\
              \tfrac12(1 + \cos \pi f) \text{ (cosine)},\ 1 - \sqrt{f} \text{ ("1-sqrt")}

    with :math:`f` the fraction of the cooldown done. ``warmup`` and ``decay`` may be fractions of ``steps``.

    >>> wsd(1.0, steps=100, warmup=10, decay=0.2)(85)
    0.75
    """
    n = check_count("steps", steps, 1)
    w = duration("warmup", warmup, n, minimum=0)
    d = duration("decay", decay, n, minimum=0)
    if w + d > n:
        raise ValueError(f"Invalid decay: warmup ({w}) + decay ({d}) exceed steps ({n})")
    return _WSD(
        peak=check_real("peak", peak),
        steps=n,
        warmup=w,
        decay=d,
        init=check_real("init", init),
        final=check_real("final", final),
        cooldown=check_choice("cooldown", cooldown, ("linear", "cosine", "1-sqrt")),
        allow_negative=allow_negative,
    )
