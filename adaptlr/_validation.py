"""Eager validation of arguments, one rule per kind of value, for the whole library.

Every layer (optimizers, learning-rate-free methods, schedules, controllers, integrations, the lab, ``lr_find``,
``Auto``) checks its arguments with these functions, so a value means the same thing everywhere and is refused
the same way:

- ``TypeError`` for a value of the wrong type: a string, ``None`` or a bool where a number is expected (a bool is
  not a number here: ``maximize=1`` and ``lr=True`` are mistakes), a float where an integer count is expected;
- ``ValueError`` for a value of the right type outside its range, nan, or an infinity (infinity only where the
  caller passes ``allow_inf=True`` because it means "no limit", as ``growth_rate`` or ``max_lr`` do).

Each message names the argument, shows the value and the expected range:
``Invalid lr: -0.1 is outside [0, inf)``, ``Invalid steps: 0 (expected an integer >= 1)``.

(The NumPy references in :mod:`adaptlr.reference` keep their own check: they reproduce ``torch.optim``'s
validation, which accepts infinities, and an oracle shares no code with what it tests.)

This module imports nothing but the standard library (a tensor is recognised through ``sys.modules``: one
exists only once torch is imported), so schedules and the lab's workers use it without importing torch.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_betas",
    "check_bool",
    "check_choice",
    "check_count",
    "check_lr",
    "check_nonfinite",
    "check_real",
    "duration",
]


def _interval(low: float, high: float, low_open: bool, high_open: bool, allow_inf: bool) -> str:
    """``[0, inf)``: an infinite end is closed only when infinity is allowed."""
    lo = "[" if not low_open and (math.isfinite(low) or allow_inf) else "("
    hi = "]" if not high_open and (math.isfinite(high) or allow_inf) else ")"
    return f"{lo}{low:g}, {high:g}{hi}"


def check_real(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    r"""A real number in the interval from ``low`` to ``high``, returned as a float.

    Each end is closed unless ``low_open`` / ``high_open``. nan is always refused, and so are the infinities
    unless ``allow_inf`` (for the few arguments where infinity means "no limit": then an infinite end of the
    interval is closed): a first step with ``eps=inf`` would turn every parameter into nan.

    >>> check_real("momentum", 0.9, 0.0, 1.0, high_open=True)
    0.9
    >>> check_real("lr", -0.1, 0.0)
    Traceback (most recent call last):
    ValueError: Invalid lr: -0.1 is outside [0, inf)
    >>> check_real("growth_rate", float("inf"), 1.0, allow_inf=True)
    inf
    """
    interval = _interval(low, high, low_open, high_open, allow_inf)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {name}: {value!r} (expected a real number in {interval}, got {type(value).__name__})")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the floats: an infinity
        v = math.inf if value > 0 else -math.inf
    lo_closed = not low_open and (math.isfinite(low) or allow_inf)
    hi_closed = not high_open and (math.isfinite(high) or allow_inf)
    inside = (low < v or (lo_closed and v == low)) and (v < high or (hi_closed and v == high))  # (nan: False)
    if not inside:
        raise ValueError(f"Invalid {name}: {value!r} is outside {interval}")
    return v


def check_count(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (``maximum=None``: no upper end), returned as an int.

    A bool is not an integer here, nor is a float (``steps=10.0``: ``TypeError``); NumPy integers are.

    >>> check_count("window", 50, 1)
    50
    >>> check_count("window", 0, 1)
    Traceback (most recent call last):
    ValueError: Invalid window: 0 (expected an integer >= 1)
    """
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Invalid {name}: {value!r} (expected {expected}, got {type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices``, else ``ValueError`` (torch's convention for a mode: ``mode=3`` is an unknown mode).

    A value matches a choice of its type only (``"min"`` or a ``str`` subclass such as a ``StrEnum`` member matches
    ``"min"``; ``True`` is not the choice ``1``, nor ``1.0``).

    >>> check_choice("mode", "min", ("min", "max"))
    'min'
    >>> check_choice("mode", "mean", ("min", "max"))
    Traceback (most recent call last):
    ValueError: Invalid mode: 'mean' (expected one of ['min', 'max'])
    """
    if not any(_same(value, c) for c in choices):
        raise ValueError(f"Invalid {name}: {value!r} (expected one of {list(choices)})")
    return value


def check_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """A bool (``None`` too with ``allow_none``), else ``TypeError``: ``maximize=1`` is refused, not read as True.

    >>> check_bool("foreach", None, allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        expected = "a bool or None" if allow_none else "a bool"
        raise TypeError(f"Invalid {name}: {value!r} (expected {expected}, got {type(value).__name__})")
    return value


def check_nonfinite(value: Any) -> str | None:
    """The policy for a non-finite gradient or loss: ``None`` (no check), ``"raise"`` or ``"skip"``."""
    return check_choice("nonfinite", value, (None, "raise", "skip"))


def check_betas(betas: Any, name: str = "betas") -> tuple[Any, Any]:
    """A pair ``(beta1, beta2)`` of numbers (or one-element tensors) in ``[0, 1)``; returned as given.

    >>> check_betas((0.9, 1.0))
    Traceback (most recent call last):
    ValueError: Invalid beta parameter at index 1 (betas[1]): 1.0 is outside [0, 1)
    """
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"Invalid {name}: {betas!r} (expected a pair (beta1, beta2) of numbers in [0, 1))")
    for i, b in enumerate(betas):
        check_real(f"beta parameter at index {i} ({name}[{i}])", _tensor_item(b), 0.0, 1.0, high_open=True)
    return betas[0], betas[1]


def check_lr(lr: Any, name: str = "lr") -> Any:
    """A learning rate, returned as given: a number >= 0, a one-element tensor >= 0, or a schedule (a callable
    ``step -> lr``, checked when it is called)."""
    if callable(lr):
        return lr
    if _is_tensor(lr) and lr.numel() != 1:
        raise ValueError(f"Invalid {name}: a tensor learning rate must have one element, got shape {tuple(lr.shape)}")
    check_real(name, _tensor_item(lr), 0.0)
    return lr


def duration(name: str, value: Any, total_steps: int | None, minimum: int = 1) -> int:
    r"""A duration in steps, from a number of steps or a fraction of the run.

    - an ``int`` is a number of steps (``>= minimum``);
    - a ``float`` in :math:`(0, 1]` is a fraction of ``total_steps``: :math:`\mathrm{round}(value \cdot
      total\_steps)` steps (``1.0`` is the whole run, ``1`` is one step);
    - a ``float`` with an integral value above 1 (``100.0``) is that many steps; ``0.0`` is 0 steps (when
      ``minimum`` allows 0);
    - a bool or a string is refused with a ``TypeError``; a non-integral float above 1 (``2.5``: neither steps
      nor a fraction), a negative or non-finite number with a ``ValueError``, naming the argument.

    >>> duration("warmup", 0.05, 1000), duration("warmup", 50, 1000), duration("warmup", 50.0, None)
    (50, 50, 50)
    """
    expected = "expected an int number of steps or a fraction in (0, 1]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {name}: {value!r} ({expected}, got {type(value).__name__})")
    if isinstance(value, numbers.Integral):
        return check_count(name, value, minimum)
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v > 1 and not v.is_integer()):
        raise ValueError(f"Invalid {name}: {value!r} ({expected})")
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


def _same(value: Any, choice: Any) -> bool:
    if isinstance(value, bool) != isinstance(choice, bool):
        return False
    return value is choice or (isinstance(value, type(choice)) and value == choice)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # (a tensor exists only once torch is imported: none is imported here)
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_item(value: Any) -> Any:
    """A one-element tensor as a Python number (to check it as one); anything else as it is."""
    return value.item() if _is_tensor(value) and value.numel() == 1 else value
