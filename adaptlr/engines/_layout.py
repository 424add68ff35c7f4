"""What a tensor is to the engines: a plain tensor or a subclass, a DTensor and its local shard, dense in memory or
not, and the dtypes each one-pass engine compiles. A leaf module: the selection (:mod:`._select`) and the one-pass
engines (:mod:`._numba`, :mod:`._triton`) import it, and it imports none of them."""

from __future__ import annotations

import sys
from typing import Any

import torch

__all__ = ["FUSED_DTYPES", "PLAIN", "PLAIN_SET", "TRITON_DTYPES", "dense", "describe", "is_dtensor", "local"]

#: real dtypes the one-pass CPU engine (Numba) compiles kernels for
FUSED_DTYPES = (torch.float32, torch.float64)
#: real dtypes the triton engine compiles kernels for (CUDA; CPU only in Triton's interpreter)
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
#: the tensor types the one-pass engines may address through raw pointers (no subclass)
PLAIN = (torch.Tensor, torch.nn.Parameter)
PLAIN_SET = frozenset(PLAIN)


def dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill ``numel`` consecutive slots of memory, each exactly once (any dim order)."""
    if t.is_contiguous():
        return True
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def describe(t: torch.Tensor) -> str:
    """``shape ..., dtype ..., device ...`` of ``t`` (for error messages)."""
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


_DTENSOR: Any = None


def _dtensor_type() -> type | None:
    """``DTensor``, once some code has imported it (importing it costs ~2 s: ``import adaptlr`` must not)."""
    global _DTENSOR
    if _DTENSOR is None and "torch.distributed.tensor" in sys.modules:
        try:
            from torch.distributed.tensor import DTensor
        except Exception:  # pragma: no cover - a torch build without distributed
            return None
        _DTENSOR = DTensor
    return _DTENSOR


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor (no DTensor can exist before ``torch.distributed.tensor`` is imported)."""
    if type(t) in PLAIN_SET:
        return False
    cls = _dtensor_type()
    return cls is not None and isinstance(t, cls)


def local(t: torch.Tensor) -> torch.Tensor:
    """The tensor an elementwise engine updates for ``t``: a DTensor's local shard (sharing its memory), else ``t``."""
    if is_dtensor(t):
        return t.to_local()
    return t
