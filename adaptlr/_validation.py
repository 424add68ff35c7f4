"""Validation of the non-optimizer values shared by several layers (schedules, the lab's method specs).

One rule per kind of value, written once, so that a value means the same thing everywhere: today that is the
**duration** ("a number of steps, or a fraction of the run"), used by every schedule factory and by the lab's
schedule terms (``cosine(warmup=0.05)``). Optimizer hyperparameters are checked in ``adaptlr.optim._validation``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_count", "duration"]


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """An integer ``>= minimum`` (a bool is not an integer here), else ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (expected an integer >= {minimum})")
    return int(value)


def duration(name: str, value: Any, total_steps: int | None, minimum: int = 1) -> int:
    r"""A duration in steps, from a number of steps or a fraction of the run.

    - an ``int`` is a number of steps (``>= minimum``);
    - a ``float`` in :math:`(0, 1]` is a fraction of ``total_steps``: :math:`\mathrm{round}(value \cdot
      total\_steps)` steps (``1.0`` is the whole run, ``1`` is one step);
    - a ``float`` with an integral value above 1 (``100.0``) is that many steps; ``0.0`` is 0 steps (when
      ``minimum`` allows 0);
    - anything else is refused with a ``ValueError`` naming the argument: a non-integral float above 1
      (``2.5``: neither steps nor a fraction), a negative or non-finite number, a bool, a string.

    >>> duration("warmup", 0.05, 1000), duration("warmup", 50, 1000), duration("warmup", 50.0, None)
    (50, 50, 50)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid {name}: {value!r} (expected an int number of steps or a fraction in (0, 1])")
    if isinstance(value, numbers.Integral):
        return check_count(name, value, minimum)
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v > 1 and not v.is_integer()):
        raise ValueError(f"Invalid {name}: {value!r} (expected an int number of steps or a fraction in (0, 1])")
    if v == 0 or v > 1:
        return check_count(name, int(v), minimum)
    if total_steps is None:
        raise ValueError(f"Invalid {name}: {value!r} is a fraction of the run, so total_steps is needed")
    steps = round(v * check_count("total_steps", total_steps, 1))
    if steps < minimum:
        raise ValueError(
            f"Invalid {name}: the fraction {value!r} of {total_steps} steps gives {steps} steps (expected >= {minimum})"
        )
    return steps
