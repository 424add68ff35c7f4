"""Where the global sums of a step live when the parameters are spread over ranks, and how they are reduced.

Three layouts occur:

- **one process** (or DDP, whose replicas hold identical averaged gradients): every sum is local, nothing is
  reduced;
- **plain tensors split across ranks** (``ZeroRedundancyOptimizer``, a manual split): each tensor lives whole on
  one rank, so the sums over tensors are all-reduced over the ``process_group`` the user names;
- **DTensor parameters** (FSDP2's ``fully_shard``, tensor parallelism): each rank holds a shard of every tensor.
  The elementwise phases run on the local shards (``to_local()``, see :mod:`adaptlr.engines`), and a
  sum over whole tensors is the sum of the local sums over the mesh dimensions the tensors are sharded on --
  all-reduced over those dimensions' process groups, found from the parameters themselves (no argument
  needed). A tensor replicated on one of those dimensions (a parameter left out of ``fully_shard``, or a
  ``Replicate`` placement next to a ``Shard`` one) counts only on the ranks whose coordinate there is 0
  (:meth:`Layout.counts`), so it is not summed twice.

Global sums (D-Adaptation's, Prodigy's, DoG's) and per-tensor sums (LAMB's trust-ratio norms, LDoG's distances)
use the same all-reduce; per-tensor sums need none for plain tensors, which are whole on their rank. Every rank
of the group makes the same calls in the same order, one all-reduce (per sharded mesh dimension) per step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ..engines import is_dtensor, local

__all__ = ["Layout", "is_dtensor", "layout_of", "local", "locals_of"]


def locals_of(tensors: Iterable[Any]) -> list[Any]:
    """:func:`local` of each tensor, for the ``torch._foreach_*`` calls DTensor has no sharding rule for."""
    return [local(t) for t in tensors]


@dataclass(frozen=True)
class Layout:
    """The layout of an optimizer's parameters for one step (see the module docstring).

    ``mesh`` and ``dims``: the DTensor mesh and the dimensions sums are reduced over (None and () without
    DTensor parameters); ``process_group``: the group plain tensors are split over (ZeRO), or None.
    """

    mesh: Any = None
    dims: tuple[int, ...] = ()
    process_group: Any = None

    @property
    def sharded(self) -> bool:
        """Whether sums over tensors need an all-reduce."""
        return bool(self.dims) or self.process_group is not None

    def counts(self, t: torch.Tensor) -> bool:
        """Whether this rank's local sums of ``t`` enter the global sums (False for the copies of a tensor
        replicated over a reduced dimension, except the one at coordinate 0)."""
        if not self.dims:
            return True
        coord = self.mesh.get_coordinate()
        shard_dims = _shard_dims(t) if is_dtensor(t) else ()
        return all(coord[d] == 0 for d in self.dims if d not in shard_dims)

    def allreduce(self, values: list[float], *, per_tensor: bool = False) -> list[float]:
        """Sum ``values`` over the ranks: over the sharded mesh dimensions with DTensor parameters, else over
        ``process_group`` -- except ``per_tensor`` sums, which need no reduction for plain tensors (each is
        whole on its rank). Identity where nothing is sharded."""
        if not values:
            return values
        import torch.distributed as dist

        if self.dims:
            device = _device(self.mesh.device_type)
            t = torch.tensor(values, dtype=torch.float64, device=device)
            for d in self.dims:
                dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.mesh.get_group(d))
            return t.tolist()
        if self.process_group is None or per_tensor:
            return values
        backend = dist.get_backend(self.process_group)
        t = torch.tensor(values, dtype=torch.float64, device=_device("cuda" if backend == "nccl" else "cpu"))
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.process_group)
        return t.tolist()


def layout_of(params: Iterable[torch.Tensor], process_group: Any = None) -> Layout:
    """The layout of ``params`` (all the optimizer's parameters, so that every rank finds the same)."""
    mesh, dims = None, set()
    for p in params:
        if not is_dtensor(p):
            continue
        if mesh is None:
            mesh = p.device_mesh
        elif p.device_mesh != mesh:
            raise NotImplementedError(
                "parameters on different DTensor device meshes in one optimizer: the global sums need one "
                f"mesh (got {mesh} and {p.device_mesh}); use one optimizer per mesh"
            )
        if any(pl.is_partial() for pl in p.placements):
            raise ValueError(f"a DTensor parameter with a Partial placement ({p.placements}) has no value yet")
        dims.update(_shard_dims(p))
    if mesh is None:
        return Layout(process_group=process_group)
    if process_group is not None:
        raise ValueError(
            "process_group/sharded is for plain tensors split across ranks (ZeroRedundancyOptimizer, a manual "
            "split); DTensor parameters (FSDP2) carry their device mesh, over which the sums are reduced "
            "automatically: drop the process_group/sharded argument"
        )
    return Layout(mesh=mesh, dims=tuple(sorted(dims)))


def _shard_dims(t: Any) -> tuple[int, ...]:
    return tuple(i for i, pl in enumerate(t.placements) if pl.is_shard())


def _device(device_type: str) -> torch.device:
    if device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device_type)
