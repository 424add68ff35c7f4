"""Racing in parallel across rank groups: Auto's wall time, per rung, against the number of groups.

Two gloo processes of one thread each (torch.distributed on this machine's 2 cores), a data-parallel model (DDP)
on each rank's own shard of a synthetic classification set: per repeat, alternated in the same processes,

- one plain run of the same loop (AdamW + 5% warmup + cosine at lr 1e-3, the same steps) on 2 ranks (DDP), and
  on rank 0 alone (one process, one thread: rank 1 waits);
- ``Auto().fit(..., race_groups=1)`` (every candidate raced by both ranks together) and ``race_groups=2`` (each
  rank races its share of the candidates, on rank 0's batches: half the batch of ``race_groups=1``), with
  ``val_cost`` given (the same plan; the choices may differ, as the racers' batch does).

Prints each phase's wall time (``AutoResult.phase_seconds``: rung 1, rung 2 with its branches, the run), the
ratio to the plain 2-rank run, and the projection to 4 and 8 ranks (``G`` groups of one rank each): rung 1
and rung 2 take ``ceil(n / G)`` rounds of one candidate's wall time as measured at ``G = 2`` (``n``
candidates, finalists), the run and everything outside the rungs as measured at ``G = 2``.

    OMP_NUM_THREADS=1 python benchmarks/auto_parallel.py --steps 400 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

BATCH, WIDTH, FEATURES, CLASSES = 128, 512, 128, 10


def shards(rank: int, steps: int) -> tuple[list, list]:
    """Rank ``rank``'s training batches (one epoch of ``steps``) and validation batches."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(FEATURES, CLASSES, generator=g)
    gen = torch.Generator().manual_seed(1 + rank)
    x = torch.randn(steps * BATCH + 1_024, FEATURES, generator=gen)
    y = (x @ w + 0.5 * torch.randn(x.shape[0], CLASSES, generator=gen)).argmax(1)
    n = steps * BATCH
    train = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, n, BATCH)]
    val = [(x[i : i + 256], y[i : i + 256]) for i in range(n, n + 1_024, 256)]
    return train, val


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, WIDTH), nn.GELU(), nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, CLASSES)
    )


def plain(model: nn.Module, train: list, steps: int) -> float:
    import adaptlr
    from adaptlr import schedules as S

    opt = adaptlr.AdamW(model.parameters(), lr=S.warmup(S.cosine(1e-3, steps), int(0.05 * steps)))
    start = time.perf_counter()
    for x, y in train[:steps]:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def worker(rank: int, path: str, a: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=2, timeout=datetime.timedelta(minutes=10)
    )
    import warnings

    from adaptlr import Auto

    warnings.filterwarnings("ignore", message="Auto:")
    train, val = shards(rank, a.steps)
    rows: dict[str, list] = {"plain2": [], "plain1": [], "g1": [], "g2": []}
    plain(nn.parallel.DistributedDataParallel(net()), train, 20)  # (warm: threads, gloo, allocator)
    for _ in range(a.repeats):
        dist.barrier()
        rows["plain2"].append(plain(nn.parallel.DistributedDataParallel(net()), train, a.steps))
        dist.barrier()
        if rank == 0:
            rows["plain1"].append(plain(net(), train, a.steps))
        dist.barrier()
        for g in (1, 2):
            dist.barrier()
            start = time.perf_counter()
            r = Auto().fit(
                nn.parallel.DistributedDataParallel(net()),
                F.cross_entropy,
                train,
                val,
                steps=a.steps,
                val_cost=2.0,
                race_groups=g,
            )
            rows[f"g{g}"].append(
                {
                    "total": time.perf_counter() - start,
                    **r.phase_seconds,
                    "lr": r.lr,
                    "racers": len(r.racers),
                    "keep": r.plan.keep,
                    "tried": r.lrs,
                }
            )
    if rank == 0:
        with open(a.out, "w") as f:
            json.dump(rows, f)
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


def report(rows: dict, steps: int) -> None:
    med = statistics.median
    p2, p1 = med(rows["plain2"]), med(rows["plain1"])
    phase = {g: {k: med(r[k] for r in rows[g]) for k in ("rung1", "rung2", "run", "total")} for g in ("g1", "g2")}
    lrs = {g: sorted({r["lr"] for r in rows[g]}) for g in ("g1", "g2")}
    n, keep = rows["g1"][0]["racers"], rows["g1"][0]["keep"]
    print(
        f"plain run, {steps} steps: 2 ranks (DDP) {p2:.2f} s, one process {p1:.2f} s; "
        f"lr chosen: race_groups=1 {lrs['g1']}, race_groups=2 {lrs['g2']}"
    )
    print("| groups | rung 1, s | rung 2, s | run, s | Auto total, s | Auto / plain 2-rank run |")
    print("|---|---|---|---|---|---|")
    for g, key in ((1, "g1"), (2, "g2")):
        ph = phase[key]
        print(
            f"| {g} (measured) | {ph['rung1']:.2f} | {ph['rung2']:.2f} | {ph['run']:.2f} | {ph['total']:.2f} "
            f"| {ph['total'] / p2:.2f} |"
        )
    # projection (groups of one rank, as at G = 2): one candidate's rung-1 and rung-2 wall from G = 2, rounds of
    # ceil(n / G); the run and what lies outside the phases (collectives, the commit's scores) as at G = 2
    g2 = phase["g2"]
    one1, one2 = g2["rung1"] / math.ceil(n / 2), g2["rung2"] / math.ceil(keep / 2)
    rest = g2["total"] - g2["rung1"] - g2["rung2"]
    for g in (4, 8):
        r1, r2 = math.ceil(n / g) * one1, math.ceil(keep / g) * one2
        total = r1 + r2 + rest
        print(f"| {g} (projected) | {r1:.2f} | {r2:.2f} | {g2['run']:.2f} | {total:.2f} | {total / p2:.2f} |")
    print(
        f"(candidates raced: {n}; finalists: {keep}; Auto / one-process plain run: "
        f"{phase['g1']['total'] / p1:.2f} (groups 1), {g2['total'] / p1:.2f} (groups 2))"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "adaptlr_auto_parallel.json"))
    a = ap.parse_args()
    fd, path = tempfile.mkstemp(prefix="adaptlr_bench_gloo_")
    os.close(fd)
    os.unlink(path)
    mp.spawn(worker, args=(path, a), nprocs=2, join=True)
    with open(a.out) as f:
        report(json.load(f), a.steps)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
