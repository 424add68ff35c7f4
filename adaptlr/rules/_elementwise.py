"""The marker for update rules and the helpers they call."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def elementwise(fn: F) -> F:
    """Mark ``fn`` as a pure elementwise function in scalar style: a rule, or a helper that rules call.

    Such a function uses only ``+ - * / **``, unary minus and :mod:`adaptlr.rules._math`, and branches only
    on its flags (Python bools). It is returned unchanged: the loop engine calls it on tensors, and the
    foreach and fused engines trace it (``adaptlr/engines/_trace.py``) into the program they run.
    """
    fn.__adaptlr_elementwise__ = True
    return fn
