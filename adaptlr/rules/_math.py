"""The tiny math module that update rules are written in.

A rule is a pure elementwise function in scalar style. Besides ``+ - * / **`` and unary ``-``, it may only call
the functions below. Each dispatches on the kind of value it gets, so the *same* rule runs

- on Python floats (and inside Numba kernels, where :mod:`adaptlr.engines._numba` registers overloads),
- on single ``torch.Tensor`` values (the ``loop`` engine),
- on symbolic values traced by the ``foreach`` engine (objects with an ``__adaptlr_math__`` method).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["sqrt", "abs", "sign", "maximum", "minimum", "where", "exp", "log"]

_builtin_abs = abs
_SCALAR = (int, float)


def _symbolic(*args: Any) -> Any:
    for a in args:
        if hasattr(a, "__adaptlr_math__"):
            return a
    return None


def sqrt(x):
    """Square root."""
    if isinstance(x, _SCALAR):
        return math.sqrt(x)
    if isinstance(x, torch.Tensor):
        return torch.sqrt(x)
    return x.__adaptlr_math__("sqrt", x)


def abs(x):  # noqa: A001 - the rule-writer's name
    """Absolute value."""
    if isinstance(x, _SCALAR):
        return _builtin_abs(x)
    if isinstance(x, torch.Tensor):
        return torch.abs(x)
    return x.__adaptlr_math__("abs", x)


def sign(x):
    """Sign: -1, 0 or 1 (``torch.sign`` semantics)."""
    if isinstance(x, _SCALAR):
        return float((x > 0) - (x < 0))
    if isinstance(x, torch.Tensor):
        return torch.sign(x)
    return x.__adaptlr_math__("sign", x)


def exp(x):
    """Exponential."""
    if isinstance(x, _SCALAR):
        return math.exp(x)
    if isinstance(x, torch.Tensor):
        return torch.exp(x)
    return x.__adaptlr_math__("exp", x)


def log(x):
    """Natural logarithm."""
    if isinstance(x, _SCALAR):
        return math.log(x)
    if isinstance(x, torch.Tensor):
        return torch.log(x)
    return x.__adaptlr_math__("log", x)


def maximum(a, b):
    """Elementwise maximum (NaN-propagating, as ``torch.maximum``)."""
    s = _symbolic(a, b)
    if s is not None:
        return s.__adaptlr_math__("maximum", a, b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = _as_tensors(a, b)
        return torch.maximum(a, b)
    if a != a or b != b:
        return math.nan
    return a if a >= b else b


def minimum(a, b):
    """Elementwise minimum (NaN-propagating, as ``torch.minimum``)."""
    s = _symbolic(a, b)
    if s is not None:
        return s.__adaptlr_math__("minimum", a, b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = _as_tensors(a, b)
        return torch.minimum(a, b)
    if a != a or b != b:
        return math.nan
    return a if a <= b else b


def where(cond, a, b):
    """``a`` where ``cond > 0`` else ``b``; ``cond`` is a number (positive means true), not a comparison."""
    s = _symbolic(cond, a, b)
    if s is not None:
        return s.__adaptlr_math__("where", cond, a, b)
    if isinstance(cond, torch.Tensor):
        a, b = _as_tensors(a, b, like=cond)
        return torch.where(cond > 0, a, b)
    return a if cond > 0 else b


def _as_tensors(*xs, like=None):
    ref = like if like is not None else next(x for x in xs if isinstance(x, torch.Tensor))
    return tuple(x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
                 for x in xs)
