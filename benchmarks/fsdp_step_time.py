"""Optimizer step time under FSDP2 (2 gloo ranks on CPU) against one process, for the fused engine.

Times ``opt.step()`` alone (the gradients are set once; forward, backward and FSDP's collectives are not timed),
on a stack of ``--layers`` Linear(d, d) layers in float32, on the same cores: one process with ``--threads``
threads steps every parameter; under FSDP2 each of the 2 ranks has half the threads and steps its shards (half
of every tensor) and, for the LR-free methods, makes one all-reduce of the step's sums. Prints the median wall
and CPU time of a step (CPU: of both ranks together under FSDP2) and the ratios.
Run with nothing else on the machine::

    python benchmarks/fsdp_step_time.py --layers 8 --d 1024 --steps 30
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import adaptlr

METHODS = {"Adam": dict(lr=1e-3), "Prodigy": {}, "LAMB": dict(lr=1e-3)}


def _model(layers: int, d: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(d, d) for _ in range(layers)])


def _time_steps(opt: torch.optim.Optimizer, steps: int, sync) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one step; CPU time is this process's, less sensitive to a busy machine."""
    opt.step()  # warm-up: lazy state, kernel compilation
    walls, cpus = [], []
    for _ in range(steps):
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        opt.step()
        cpus.append(time.process_time() - cpu)
        sync()
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), statistics.median(cpus)


def _grads(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)


def _threads(n: int) -> None:
    """torch's and the fused engine's (Numba's) threads."""
    torch.set_num_threads(n)
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _worker(rank: int, path: str, args: argparse.Namespace, out: str) -> None:
    _threads(max(1, args.threads // 2))  # the cores are shared between the ranks
    dist.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=2, timeout=datetime.timedelta(minutes=10)
    )
    from torch.distributed.fsdp import fully_shard

    lines = []
    for name, kw in METHODS.items():
        model = _model(args.layers, args.d)
        for layer in model:
            fully_shard(layer)
        fully_shard(model)
        _grads(model)
        opt = getattr(adaptlr, name)(model.parameters(), **kw)
        wall, cpu = _time_steps(opt, args.steps, dist.barrier)
        lines.append(f"{name} {wall} {cpu}")
    with open(f"{out}.rank{rank}", "w") as f:
        f.write("\n".join(lines))
    dist.barrier()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of the single process (each of the 2 ranks gets half)",
    )
    args = parser.parse_args()
    _threads(args.threads)
    n = sum(p.numel() for p in _model(args.layers, args.d).parameters())
    print(
        f"{args.layers} x Linear({args.d}, {args.d}): {n / 1e6:.1f}M float32 parameters, "
        f"median of {args.steps} steps, opt.step() only"
    )
    single = {}
    for name, kw in METHODS.items():
        model = _model(args.layers, args.d)
        _grads(model)
        single[name] = _time_steps(getattr(adaptlr, name)(model.parameters(), **kw), args.steps, lambda: None)
    tmp = tempfile.mkdtemp(prefix="adaptlr_fsdp_bench_")
    out = os.path.join(tmp, "fsdp")
    mp.spawn(_worker, args=(os.path.join(tmp, "rendezvous"), args, out), nprocs=2, join=True)
    fsdp = {}
    for rank in range(2):
        with open(f"{out}.rank{rank}") as f:
            for line in f:
                name, wall, cpu = line.split()
                w, c = fsdp.get(name, (0.0, 0.0))
                fsdp[name] = (max(w, float(wall)), c + float(cpu))
    print(
        f"{'method':10} {'1 process: wall':>16} {'CPU':>9} {'FSDP2, 2 ranks: wall':>21} {'CPU (both)':>11} "
        f"{'wall ratio':>11} {'CPU ratio':>10}"
    )
    for name in METHODS:
        (w1, c1), (w2, c2) = single[name], fsdp[name]
        print(
            f"{name:10} {w1 * 1e3:14.2f}ms {c1 * 1e3:7.2f}ms {w2 * 1e3:19.2f}ms {c2 * 1e3:9.2f}ms "
            f"{w2 / w1:11.2f} {c2 / c1:10.2f}"
        )


if __name__ == "__main__":
    main()
