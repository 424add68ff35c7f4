"""Registry of elementwise helper functions that rules may call (they must compile under Numba too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

#: Every function decorated with :func:`elementwise`, in registration order (the Numba engine compiles them).
REGISTRY: list[Callable] = []


def elementwise(fn: F) -> F:
    """Mark ``fn`` as a pure elementwise function in scalar style: a rule, or a helper that rules call.

    The function is returned unchanged, so it still runs on floats, tensors and traced values; the Numba
    engine registers it (lazily, on first use) so that compiled kernels can call it.
    """
    if fn not in REGISTRY:
        REGISTRY.append(fn)
    return fn
