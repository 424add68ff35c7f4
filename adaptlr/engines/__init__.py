"""Engines run an elementwise rule over lists of tensors: ``fused`` (Numba, CPU), ``foreach``, ``loop``."""

from __future__ import annotations

from functools import cache
from typing import Any

from ._foreach import ForeachEngine
from ._loop import LoopEngine

__all__ = ["ENGINES", "get_engine", "fused_available"]

ENGINES = ("fused", "foreach", "loop")


def fused_available() -> bool:
    """Whether the fused CPU engine can run here (Numba imports)."""
    from ._numba import available

    return available()


@cache
def get_engine(name: str) -> Any:
    """The engine called ``name`` (one of :data:`ENGINES`); engines are shared singletons."""
    if name == "fused":
        from ._numba import NumbaEngine

        return NumbaEngine()
    if name == "foreach":
        return ForeachEngine()
    if name == "loop":
        return LoopEngine()
    raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")
