"""Engines run an elementwise rule over lists of tensors: ``fused`` (Numba, CPU), ``foreach``, ``loop``."""

from __future__ import annotations

from typing import Any

from ._foreach import ForeachEngine
from ._loop import LoopEngine

__all__ = ["ENGINES", "get_engine", "fused_available"]

ENGINES = ("fused", "foreach", "loop")


def fused_available() -> bool:
    """Whether the fused CPU engine can run here (Numba imports)."""
    from ._select import numba_available

    return numba_available()


_instances: dict[str, Any] = {"foreach": ForeachEngine(), "loop": LoopEngine()}


def get_engine(name: str) -> Any:
    """The engine called ``name`` (one of :data:`ENGINES`, or ``"triton"``: CUDA, or CPU under Triton's interpreter,
    see :mod:`adaptlr.engines._triton`); engines are shared singletons."""
    engine = _instances.get(name)
    if engine is None:
        if name == "fused":
            from ._numba import NumbaEngine

            engine = _instances[name] = NumbaEngine()
        elif name == "triton":
            from ._triton import TritonEngine

            engine = _instances[name] = TritonEngine()
        else:
            raise ValueError(f"unknown engine {name!r}; expected one of {(*ENGINES, 'triton')}")
    return engine
