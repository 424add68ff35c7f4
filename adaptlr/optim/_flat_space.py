"""The parameters of L-BFGS as one flat vector: the reductions over it, in one process or over DTensor shards."""

from __future__ import annotations

from typing import Any

import torch

from ..engines import is_dtensor

__all__ = ["FlatSpace", "ShardedSpace", "flat_space"]


class FlatSpace:
    """Reductions over the flattened parameter vector (one process, or every parameter whole on every rank)."""

    distributed = False

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.dot(b)

    def abs_max(self, a: torch.Tensor) -> torch.Tensor:
        return a.abs().max()

    def abs_sum(self, a: torch.Tensor) -> torch.Tensor:
        return a.abs().sum()

    def all_finite(self, a: torch.Tensor) -> bool:
        return bool(torch.isfinite(a).all())

    def mean_loss(self, loss: float) -> float:
        return loss


class ShardedSpace(FlatSpace):
    """The flat vector of a rank holds the *local shards* of DTensor (FSDP2) parameters and whole replicated
    tensors: sums and maxima over the sharded entries are all-reduced over the mesh dims they are sharded on,
    the replicated entries count once, so every rank gets the whole vector's values and takes the same steps."""

    distributed = True

    def __init__(self, sharded: torch.Tensor, replicated: torch.Tensor, groups: list[Any], mesh: Any) -> None:
        self.sharded, self.replicated, self.groups, self.mesh = sharded, replicated, groups, mesh

    def mean_loss(self, loss: float) -> float:
        """The mean of the ranks' losses over the whole mesh (data parallel: the loss whose gradient FSDP
        averages; the same number on every rank, so the line search decides alike everywhere)."""
        import torch.distributed as dist

        t = torch.tensor([loss], dtype=torch.float64, device=self.sharded.device)
        for i in range(self.mesh.ndim):
            dist.all_reduce(t, group=self.mesh.get_group(i))
        return float(t) / self.mesh.size()

    def _reduce(self, local: torch.Tensor, op: Any) -> torch.Tensor:
        import torch.distributed as dist

        local = local.clone()
        for g in self.groups:
            dist.all_reduce(local, op=op, group=g)
        return local

    def _sum(self, terms: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        return self._reduce(terms[self.sharded].sum(), dist.ReduceOp.SUM) + terms[self.replicated].sum()

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._sum(a * b)

    def abs_sum(self, a: torch.Tensor) -> torch.Tensor:
        return self._sum(a.abs())

    def abs_max(self, a: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        zero = a.new_zeros(())
        sharded = a[self.sharded].abs().max() if self.sharded.numel() else zero
        replicated = a[self.replicated].abs().max() if self.replicated.numel() else zero
        return torch.maximum(self._reduce(sharded, dist.ReduceOp.MAX), replicated)

    def all_finite(self, a: torch.Tensor) -> bool:
        import torch.distributed as dist

        bad = a.new_tensor(float(not bool(torch.isfinite(a).all())))
        return not bool(self._reduce(bad, dist.ReduceOp.MAX))


def flat_space(params: list[torch.Tensor]) -> FlatSpace:
    """The reductions for ``params``' flat vector: :class:`ShardedSpace` when some are sharded DTensors."""
    sharded, replicated, groups, mesh, offset = [], [], None, None, 0
    for p in params:
        n = p.to_local().numel() if is_dtensor(p) else p.numel()
        n *= 2 if p.is_complex() else 1
        dims = [i for i, pl in enumerate(p.placements) if pl.is_shard()] if is_dtensor(p) else []
        if dims:
            mine = [p.device_mesh.get_group(i) for i in dims]
            if groups is not None and len(groups) != len(mine):
                raise NotImplementedError("LBFGS: DTensor parameters sharded over different mesh dims")
            groups, mesh = mine, p.device_mesh
            sharded.append(torch.arange(offset, offset + n))
        else:
            replicated.append(torch.arange(offset, offset + n))
        offset += n
    if groups is None:
        return FlatSpace()
    empty = torch.zeros(0, dtype=torch.long)
    return ShardedSpace(
        torch.cat(sharded) if sharded else empty, torch.cat(replicated) if replicated else empty, groups, mesh
    )
