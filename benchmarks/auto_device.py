"""adaptlr.Auto on an accelerator: a lab task's model on ``--device``, one plain run and ``Auto.fit`` side by side in
one process, timed (the device synchronised around each), with the peak device memory of each on CUDA.

The plain run is the benchmark's (AdamW + 5% warmup + cosine at 1e-3, ``lab.tuning_free.grid_spec``), on the same
batches moved to the device; Auto races on the task's validation batches, its racer states in host memory
(``offload="auto"``), and commits. Both count from the end of their first step's one-off costs: the plain run is
run once before it is timed (kernels, allocator), and Auto's own ``wall`` leaves out its first step. The one
script a session with a GPU runs (with ``benchmarks/step_time.py --device cuda``); on CPU it is the same
measurement without the memory column.

    python benchmarks/auto_device.py --device cuda --task char-lm [--out out/auto_device.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device: Any, reset: bool = False) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def plain_run(task: Any, data: Any, steps: int, seed: int, device: Any) -> dict[str, Any]:
    """The benchmark's plain run on ``device``: its seconds and peak memory (MiB, CUDA), and its validation score."""
    import torch

    from adaptlr.auto import move
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.grammar import parse_method

    torch.manual_seed(seed)
    model = task.model().to(device).train()
    build = parse_method(TF.grid_spec(1e-3)).build(model.parameters(), steps)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed))
    _sync(device)
    _peak(device, reset=True)
    start = time.perf_counter()
    for step in range(steps):
        build.before_step(step)
        x, y = move(next(batches), device)
        build.optimizer.zero_grad(set_to_none=True)
        task.loss(model(x), y).backward()
        build.optimizer.step()
    _sync(device)
    return {"seconds": time.perf_counter() - start, "peak_mib": _peak(device)}


def auto_run(task: Any, data: Any, steps: int, seed: int, device: Any, budget: float) -> dict[str, Any]:
    """``Auto.fit`` on ``device``: its seconds, peak memory, the lr it committed and its own accounting."""
    import torch

    import adaptlr
    from adaptlr.auto import Auto
    from adaptlr.lab.training import val_score

    torch.manual_seed(seed)
    model = task.model().to(device).train()
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(seed))
    val = list(data.eval_batches("val", size=task.batch_size))
    _sync(device)
    _peak(device, reset=True)
    start = time.perf_counter()
    result = Auto(optimizer=adaptlr.AdamW, budget=budget).fit(
        model, task.loss, batches, val, steps, score_fn=val_score(task)
    )
    _sync(device)
    return {
        "seconds": time.perf_counter() - start,
        "peak_mib": _peak(device),
        "lr": result.lr,
        "own_wall_runs": result.wall,
        "cost_runs": result.cost,
        "committed": result.committed,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--task", default="char-lm")
    ap.add_argument("--steps", type=int, default=None, help="the run's steps (default: the benchmark's budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=1.5)
    ap.add_argument("--out", default=None, help="write the measurements here as JSON")
    a = ap.parse_args(argv)

    import warnings

    import torch

    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    task = get_task(a.task)
    steps = a.steps or TF.budget_steps(task)
    data = task.data()
    plain_run(task, data, min(steps, 20), a.seed, device)  # (one-off costs: kernels, the allocator's first blocks)
    plain = plain_run(task, data, steps, a.seed, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Auto's warnings: in its result)
        auto = auto_run(task, data, steps, a.seed, device, a.budget)
    row = {"task": a.task, "device": str(device), "steps": steps, "plain": plain, "auto": auto}
    mem = (
        f" | {plain['peak_mib']:.0f} | {auto['peak_mib']:.0f} | {auto['peak_mib'] / plain['peak_mib']:.2f}"
        if plain["peak_mib"]
        else " | - | - | -"
    )
    print(
        "| task (steps) | device | plain, s | Auto, s | Auto / plain | Auto's own wall, runs | lr | plain peak, MiB "
        "| Auto peak, MiB | Auto / plain memory |"
    )
    print("|---" * 10 + "|")
    print(
        f"| {a.task} ({steps}) | {device} | {plain['seconds']:.2f} | {auto['seconds']:.2f} "
        f"| {auto['seconds'] / plain['seconds']:.2f} | {auto['own_wall_runs']:.2f} | {auto['lr']:g}{mem} |"
    )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(row, f, indent=1)
    return row


if __name__ == "__main__":
    main()
