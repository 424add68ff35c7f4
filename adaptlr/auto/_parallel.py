"""Racers in parallel across groups of ranks (``Auto.fit(..., race_groups=G)`` under torch.distributed).

The ranks split into ``G`` groups of consecutive ranks; each group trains its share of the candidates on its own
process subgroup (gradients averaged over the subgroup), and every rank then reads every candidate's record (an
``all_gather`` of plain data), so that every rank makes the same decisions. What keeps the comparison fair:

- **the same data for every candidate**: the race's training batches and the validation batches of the rank at
  position ``i`` of every group are those of rank ``i`` of group 0 (broadcast along the "column" of ranks at that
  position), as in a race on one group, where every candidate trains on the same batches;
- **budget and sizes decided once**: the plan reads the slowest rank's wall time; validation subsets are sized
  from rank 0's measurements.

A candidate's state stays on the group that trained it; rung 2 moves a survivor to an idle group when that
spreads the finalists more evenly; after the race the winner's branch-point state (and its annealed branch) is
broadcast to every rank, and all ranks train on together, gradients averaged over the whole group.

What a group trains on is ``group size x per-rank batch``, smaller than the whole run's batch when ``G > 1``: the
race's wall time shrinks by about ``G`` at the price of racing at a smaller batch (``docs/auto.md``, "Racing in
parallel").
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from . import _dist
from ._journal import racer_state, restore_racer
from ._racer import Racer
from ._step import device_of

__all__ = ["RankGroups", "averaging", "race_in_groups", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module a data-parallel wrapper trains (``DistributedDataParallel.module``); a model whose parameters
    are sharded (FSDP2's DTensors) cannot race in groups: every group needs the whole model."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if any(type(p).__name__ == "DTensor" for p in inner.parameters()):
        raise ValueError(
            "Auto: race_groups > 1 needs every rank to hold the whole model (DDP or a plain module); this one's "
            "parameters are sharded (FSDP): use race_groups=1"
        )
    return inner


def averaging(group: Any, size: int) -> Callable[[nn.Module], None] | None:
    """``sync(model)``: average the gradients over ``group`` (one all-reduce per dtype), or None for one rank."""
    if size <= 1:
        return None
    dist = torch.distributed

    def sync(model: nn.Module) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        by_dtype: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
        for p in params:
            if p.grad is None:  # (a parameter unused on this rank: a zero gradient, as DDP would reduce)
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
        for ps in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in ps])
            dist.all_reduce(flat, group=group)
            flat /= size
            offset = 0
            for p in ps:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n

    return sync


def race_in_groups(race: Any, n: int) -> None:
    """Set ``race`` (a :class:`~adaptlr.auto.Race` not yet run) to spread its candidates over ``n`` groups of
    the default process group's ranks."""
    if race.journal is not None:
        raise ValueError("Auto: race_groups > 1 does not resume (checkpoint_dir): race in one group to resume")
    if race.validator.fn is not None:
        raise ValueError(
            "Auto: race_groups > 1 needs validation batches (every group scores on the same rows), not a function"
        )
    dist = torch.distributed
    if race.group is not None and dist.get_world_size(race.group) != dist.get_world_size():
        raise ValueError("Auto: race_groups > 1 races over the default process group: pass process_group=None")
    groups = race.groups = RankGroups(n)
    race.model = unwrap(race.model)
    race.validator.use(groups.share(race.validator.batches))
    race.validator.score_group = groups.mine
    race.step.sync = averaging(groups.mine, groups.size)


class RankGroups:
    """``n`` groups of consecutive ranks of the default process group; ``index`` is this rank's group and
    ``position`` its place in it. Creating it is a collective call (every rank creates every subgroup)."""

    def __init__(self, n: int) -> None:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("Auto: race_groups > 1 needs torch.distributed initialised (torchrun)")
        world, rank = dist.get_world_size(), dist.get_rank()
        if n < 1 or world % n:
            raise ValueError(f"Invalid race_groups: {n} (expected a divisor of the world size {world})")
        self.n, self.size, self.world = n, world // n, world
        self.index, self.position = divmod(rank, self.size)
        groups = [dist.new_group(list(range(g * self.size, (g + 1) * self.size))) for g in range(n)]
        columns = [dist.new_group(list(range(i, world, self.size))) for i in range(self.size)]
        self.mine, self.column = groups[self.index], columns[self.position]
        self.owner: dict[float, int] = {}  # candidate lr -> the group that holds its state
        self.racing = True
        self.waited = 0.0  # seconds this rank spent waiting for the others (or on work group 0 counts)
        self.race_spent, self.joined = 0.0, 0.0  # the race's cost, and this rank's own cost when it ended

    @contextlib.contextmanager
    def alike(self, meter: Any) -> Iterator[None]:
        """Work every group does alike (the start's scores, sizing the subsets): counted by group 0 alone."""
        before, start = (meter.val_rows, meter.val_seconds), time.perf_counter()
        yield
        if self.index != 0:
            meter.val_rows, meter.val_seconds = before
            self.waited += time.perf_counter() - start

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.waited += time.perf_counter() - start

    def spent(self, race: Any, value: float, wall: bool) -> float:
        """The race's cost in training steps as one group racing every candidate would have spent it (every
        group's own work summed, each rank's waits left out), so that the plan and every choice are those of
        one group; after the race, that plus what the run spent since."""
        device = device_of(race.model)
        if not self.racing:
            return self.race_spent + _dist.broadcast_float(value - self.joined, device, race.group)
        own = value - (self.waited / race.meter.step_seconds if wall else 0.0)
        total, _ = _dist.sum2(own, 0.0, device, race.group)
        return total / self.size

    def leader(self, g: int) -> int:
        return g * self.size

    def share(self, obj: Any) -> Any:
        """Group 0's ``obj`` at this rank's position (the same batches for every group's rank ``i``)."""
        if self.n == 1:
            return obj
        box = [obj if self.index == 0 else None]
        with self.waiting():
            torch.distributed.broadcast_object_list(box, src=self.position, group=self.column)
        return box[0]

    # ---- who trains what -----------------------------------------------------------------------------------
    def assign(self, racers: list[Racer], held: dict[float, int] | None = None) -> dict[float, int]:
        """A group for every racer, as even as can be; a racer keeps the group that ``held`` its state while
        that group has fewer than its share."""
        cap = math.ceil(len(racers) / self.n)
        load = [0] * self.n
        out: dict[float, int] = {}
        for r in racers:
            g = (held or {}).get(r.lr)
            if g is not None and load[g] < cap:
                out[r.lr] = g
                load[g] += 1
        for r in racers:
            if r.lr not in out:
                g = min(range(self.n), key=lambda i: (load[i], i))
                out[r.lr] = g
                load[g] += 1
        return out

    def rung1(self, race: Any, racers: list[Racer], batches: list[list[Any]]) -> None:
        """Rung 1 for ``racers`` of a :class:`~adaptlr.auto.Race`: each group trains and scores its share (the
        first candidate's steps size the validation subsets, every rank together), then every rank reads every
        record."""
        target = self.assign(racers)
        mine = [r for r in racers if target[r.lr] == self.index]
        first = not race.validator.counts
        for i, r in enumerate(mine or [None]):  # (a group without a candidate still sizes with the others)
            state = race._rung1_train(r, batches) if r is not None else None
            race._rung1_score(r, state, first and i == 0)
        self.merge(racers, target)
        race.racers += racers
        race._prune()

    def finalists(
        self, race: Any, racers: list[Racer], batches: list[list[Any]], branch: list[list[Any]], from_start: bool
    ) -> None:
        """Rung 2's finalists (from their rung-1 states, spread evenly over the groups, or ``from_start``)."""
        target = self.assign(racers) if from_start else self.rebalance(race.store, race.model, racers)
        for r in racers:
            if target[r.lr] == self.index:
                race._finalist(r, "start" if from_start else r.key, batches, branch)
        self.merge(racers, target)

    def join(self, race: Any, winner: Racer) -> None:
        """After the race: the winner's branch-point state and annealed branch on every rank; every rank then
        trains together (gradients averaged over all of them) and scores on the same rows."""
        self.move(race.store, race.model, [winner.key, winner.key + "-branch"], self.owner[winner.lr])
        self.race_spent = race.spent()
        self.racing = False
        self.joined = race.own_cost()[0]
        race.validator.score_group = race.group
        race.step.sync = averaging(race.group, self.world)

    def merge(self, racers: list[Racer], target: dict[float, int]) -> None:
        mine = {r.lr: racer_state(r) for r in racers if target[r.lr] == self.index}
        gathered: list[Any] = [None] * self.world
        with self.waiting():
            torch.distributed.all_gather_object(gathered, mine)
        for r in racers:
            restore_racer(r, gathered[self.leader(target[r.lr])][r.lr])
        self.owner.update(target)

    # ---- states --------------------------------------------------------------------------------------------
    def move(self, store: Any, model: nn.Module, keys: list[str], src: int, to: int | None = None) -> None:
        """Copy the states ``keys`` from group ``src`` to group ``to`` (every group when None): a broadcast from
        ``src``'s first rank over all ranks."""
        for key in keys:
            box = [store.get(key) if self.index == src and key in store else None]
            with self.waiting():
                torch.distributed.broadcast_object_list(box, src=self.leader(src))
            if box[0] is not None and self.index != src and (to is None or to == self.index):
                store.put(key, box[0], model)

    def rebalance(self, store: Any, model: nn.Module, racers: list[Racer]) -> dict[float, int]:
        """Rung 2's groups: the survivors spread evenly, their states moved where they changed group."""
        target = self.assign(racers, self.owner)
        for r in racers:
            src = self.owner.get(r.lr)
            if src is not None and src != target[r.lr]:
                self.move(store, model, [r.key], src, target[r.lr])
        return target
