"""Eager validation of hyperparameters: every error names the parameter, shows the value and the allowed range."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

__all__ = ["check_betas", "check_bool", "check_lr", "check_nonfinite", "check_real"]


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
    """``value`` must be a real number in the interval (written in the message as ``[low, high)`` etc.).

    Non-finite values are refused (nan always; an infinity unless ``allow_inf``, for the few hyperparameters where
    infinity means "no limit", such as ``growth_rate``): a first step with ``eps=inf`` or ``weight_decay=inf``
    would turn every parameter into nan.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {name}: expected a real number, got {type(value).__name__} ({value!r})")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if math.isnan(v) or too_low or too_high or (math.isinf(v) and not allow_inf):
        hi = "inf]" if allow_inf and not high_open and high == math.inf else f"{high:g}{')' if high_open else ']'}"
        if not allow_inf and high == math.inf:
            hi = "inf)"
        lo = f"{'(' if low_open or (low == -math.inf and not allow_inf) else '['}{low:g}"
        raise ValueError(f"Invalid {name}: {value!r} is outside {lo}, {hi}")
    return v


def check_lr(lr: Any, name: str = "lr") -> Any:
    """A learning rate: a float >= 0, a 0-dim tensor >= 0, or a schedule (a callable ``step -> float``)."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError(
                f"Invalid {name}: a tensor learning rate must have one element, got shape {tuple(lr.shape)}"
            )
        if float(lr) < 0 or not math.isfinite(float(lr)):
            raise ValueError(f"Invalid {name}: {float(lr)!r} is outside [0, inf)")
        return lr
    if callable(lr):
        return lr
    check_real(name, lr, 0.0, math.inf, high_open=True)
    return lr


def check_betas(betas: Any, name: str = "betas") -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"Invalid {name}: expected a pair (beta1, beta2), got {betas!r}")
    for i, b in enumerate(betas):
        if isinstance(b, torch.Tensor):
            b = float(b)
        check_real(f"beta parameter at index {i} ({name}[{i}])", b, 0.0, 1.0, high_open=True)
    return betas[0], betas[1]


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Invalid {name}: expected a bool, got {type(value).__name__} ({value!r})")
    return value


def check_optional_bool(name: str, value: Any) -> bool | None:
    if value is None:
        return None
    return check_bool(name, value)


def check_nonfinite(value: Any) -> str | None:
    if value not in (None, "raise", "skip"):
        raise ValueError(f"Invalid nonfinite: {value!r}; expected None, 'raise' or 'skip'")
    return value
