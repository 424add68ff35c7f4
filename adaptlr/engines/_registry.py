"""The engines by name, and the one call shape every engine answers (:class:`Engine`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._foreach import ForeachEngine
from ._loop import LoopEngine

__all__ = ["ENGINE_NAMES", "Engine", "get_engine"]

#: the engines, by the names :func:`adaptlr.engines.partition` gives them: ``numba`` (the one-pass CPU engine),
#: ``triton`` (the one-pass CUDA engine), ``foreach`` and ``loop``. (``fused`` is the *user's* flag, asking for the
#: one-pass engine of the tensors' device; :func:`get_engine` accepts it as a name of the CPU one.)
ENGINE_NAMES = ("numba", "triton", "foreach", "loop")


class Engine(Protocol):
    """What every engine does: run an elementwise rule over columns of tensors (see ``docs/CONTRACTS.md``)."""

    name: str

    def apply(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> tuple[float, ...]:
        """Run ``fn`` over ``columns`` (checked here first, by the engines that read raw pointers); returns the sums."""
        ...

    def apply_checked(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
        pointers: Sequence[list[int] | None] | None = None,
    ) -> tuple[float, ...]:
        """:meth:`apply` for columns the selection has checked and routed here. ``pointers``: per column, the data
        pointers of its tensors when a plan has just read them (None: unknown); an engine may use or ignore them."""
        ...


_instances: dict[str, Any] = {"foreach": ForeachEngine(), "loop": LoopEngine()}


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (one of :data:`ENGINE_NAMES`; ``"fused"`` names the one-pass CPU engine,
    ``numba``); engines are shared singletons. ``triton`` runs CUDA tensors, or CPU ones under Triton's
    interpreter (see :mod:`adaptlr.engines._triton`)."""
    if name == "fused":
        name = "numba"
    engine = _instances.get(name)
    if engine is None:
        if name == "numba":
            from ._numba import NumbaEngine

            engine = _instances[name] = NumbaEngine()
        elif name == "triton":
            from ._triton import TritonEngine

            engine = _instances[name] = TritonEngine()
        else:
            raise ValueError(f"unknown engine {name!r}; expected one of {('fused', *ENGINE_NAMES)}")
    return engine
