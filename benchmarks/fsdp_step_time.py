"""Optimizer step time under FSDP2 (2 gloo ranks on CPU) against one process, for the fused engine.

Times ``opt.step()`` alone (the gradients are set once; forward, backward and FSDP's collectives are not timed),
on a stack of ``--layers`` Linear(d, d) layers in float32. One process steps every parameter; under FSDP2 each
rank steps its shards (half of every tensor) and, for the LR-free methods, makes one all-reduce of the step's
sums. Prints the median step time of each and their ratio. Run with nothing else on the machine::

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


def _time_steps(opt: torch.optim.Optimizer, steps: int, sync) -> float:
    opt.step()  # warm-up: lazy state, kernel compilation
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        opt.step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _grads(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)


def _worker(rank: int, path: str, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(minutes=10))
    from torch.distributed.fsdp import fully_shard

    lines = []
    for name, kw in METHODS.items():
        model = _model(args.layers, args.d)
        for layer in model:
            fully_shard(layer)
        fully_shard(model)
        _grads(model)
        opt = getattr(adaptlr, name)(model.parameters(), **kw)
        seconds = _time_steps(opt, args.steps, dist.barrier)
        lines.append(f"{name} {seconds}")
    if rank == 0:
        with open(out, "w") as f:
            f.write("\n".join(lines))
    dist.barrier()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch/Numba threads of the single process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = sum(p.numel() for p in _model(args.layers, args.d).parameters())
    print(f"{args.layers} x Linear({args.d}, {args.d}): {n / 1e6:.1f}M float32 parameters, "
          f"median of {args.steps} steps, opt.step() only")
    single = {}
    for name, kw in METHODS.items():
        model = _model(args.layers, args.d)
        _grads(model)
        single[name] = _time_steps(getattr(adaptlr, name)(model.parameters(), **kw), args.steps, lambda: None)
    tmp = tempfile.mkdtemp(prefix="adaptlr_fsdp_bench_")
    out = os.path.join(tmp, "fsdp")
    mp.spawn(_worker, args=(os.path.join(tmp, "rendezvous"), args, out), nprocs=2, join=True)
    with open(out) as f:
        fsdp = {line.split()[0]: float(line.split()[1]) for line in f}
    print(f"{'method':10} {'1 process':>12} {'FSDP2, 2 ranks':>15} {'ratio':>7}")
    for name in METHODS:
        print(f"{name:10} {single[name] * 1e3:10.2f}ms {fsdp[name] * 1e3:13.2f}ms {fsdp[name] / single[name]:7.2f}")


if __name__ == "__main__":
    main()
