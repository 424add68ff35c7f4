"""Collective decisions: under torch.distributed every rank of the group reads the same numbers, so every rank
makes the same choice (scores all-reduced over the ranks' own validation shards, divergence decided by any rank).
Without an initialised process group these are the local values."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["active", "any_true", "broadcast_float", "gather_lists", "min_int", "sum2"]


def active(group: Any = None) -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _reduce(values: list[float], device: torch.device, group: Any, op: Any) -> list[float]:
    if not active(group):
        return values
    dist = torch.distributed
    if dist.get_backend(group) == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    t = torch.tensor(values, dtype=torch.float64, device=device if dist.get_backend(group) == "nccl" else "cpu")
    dist.all_reduce(t, op=op, group=group)
    return [float(v) for v in t.tolist()]


def sum2(a: float, b: float, device: torch.device, group: Any = None) -> tuple[float, float]:
    """``(a, b)`` summed over the ranks of ``group`` (a non-finite value stays non-finite)."""
    out = _reduce([a, b], device, group, torch.distributed.ReduceOp.SUM if active(group) else None)
    return out[0], out[1]


def any_true(flag: bool, device: torch.device, group: Any = None) -> bool:
    """True on every rank when it is true on any rank."""
    return bool(
        _reduce([1.0 if flag else 0.0], device, group, torch.distributed.ReduceOp.MAX if active(group) else None)[0]
    )


def broadcast_float(value: float, device: torch.device, group: Any = None) -> float:
    """Rank 0's ``value`` on every rank."""
    if not active(group):
        return value
    out = _reduce(
        [value if torch.distributed.get_rank(group) == 0 else 0.0], device, group, torch.distributed.ReduceOp.SUM
    )
    return out[0]


def min_int(value: int, device: torch.device, group: Any = None) -> int:
    """The smallest ``value`` over the ranks (so that every rank runs as many collective forward passes)."""
    if not active(group):
        return value
    return int(-_reduce([-float(value)], device, group, torch.distributed.ReduceOp.MAX)[0])


def gather_lists(items: list[Any], group: Any = None) -> list[Any]:
    """Every rank's ``items`` joined in rank order, on every rank (plain data)."""
    if not active(group):
        return items
    out: list[Any] = [None] * torch.distributed.get_world_size(group)
    torch.distributed.all_gather_object(out, items, group=group)
    return [x for part in out for x in part]
