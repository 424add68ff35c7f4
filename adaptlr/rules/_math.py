"""The tiny math module that update rules are written in.

A rule is a pure elementwise function in scalar style. Besides ``+ - * / **`` and unary ``-``, it may only call
the functions below. Each dispatches on the kind of value it gets, so the *same* rule runs

- on Python floats (and inside Numba kernels, where the numba engine, ``adaptlr/engines/_numba.py``, registers
  overloads),
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


def _unary(name: str, on_number, on_tensor, doc: str):
    """A one-argument function of the math module: Python number, tensor, or traced value."""

    def fn(x):
        if isinstance(x, _SCALAR):
            return on_number(x)
        if isinstance(x, torch.Tensor):
            return on_tensor(x)
        return x.__adaptlr_math__(name, x)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


sqrt = _unary("sqrt", math.sqrt, torch.sqrt, "Square root.")
abs = _unary("abs", _builtin_abs, torch.abs, "Absolute value.")  # noqa: A001 - the rule-writer's name
sign = _unary("sign", lambda x: float((x > 0) - (x < 0)), torch.sign, "Sign: -1, 0 or 1 (``torch.sign``).")
exp = _unary("exp", math.exp, torch.exp, "Exponential.")
log = _unary("log", math.log, torch.log, "Natural logarithm.")


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
    return tuple(
        x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in xs
    )
