"""Step time of ``adaptlr.AdamW`` (the fused CPU engine) on a tiny model and on a large tensor, with the machine's
cores kept busy or not: what the serial kernel for small calls is for.

A small call (``nn.Linear(10, 1)``: 11 parameters, one chunk) runs the engine's serial kernel; a large one (a 4M-element
tensor) its parallel kernel. ``--busy N`` starts N busy-loop processes beside the timed steps (killed after); on a
machine whose cores are busy, a step through Numba's parallel region waits for a descheduled thread at its join.
``--force serial|parallel`` takes one kernel whatever the size (to compare the two), ``--torch`` times
``torch.optim.AdamW`` instead. Prints the median, mean, 90th and 99th percentile and the maximum, in microseconds.

    python benchmarks/numba_small_calls.py --busy 2 [--case small|large] [--steps 1000] [--force parallel]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes beside the timed steps")
    ap.add_argument("--case", choices=["small", "large"], default="small")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--numel", type=int, default=4 << 20, help="--case large: the tensor's elements")
    ap.add_argument("--torch", action="store_true", help="time torch.optim.AdamW instead")
    ap.add_argument("--force", choices=["serial", "parallel"], help="take one kernel whatever the call's size")
    a = ap.parse_args()

    import torch
    from torch import nn

    import adaptlr
    from adaptlr.engines import _numba

    torch.set_num_threads(1)
    if a.force:
        _numba.SERIAL_BELOW = 1 << 62 if a.force == "serial" else 0
    torch.manual_seed(0)
    params = list(nn.Linear(10, 1).parameters()) if a.case == "small" else [nn.Parameter(torch.randn(a.numel))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = (torch.optim.AdamW if a.torch else adaptlr.AdamW)(params, lr=1e-3)
    for _ in range(20):  # compiled or loaded from the disk cache, warmed up
        opt.step()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    try:
        time.sleep(0.5 if hogs else 0.0)
        us = []
        for _ in range(a.steps):
            start = time.perf_counter()
            opt.step()
            us.append((time.perf_counter() - start) * 1e6)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    us.sort()
    name = "torch.optim.AdamW" if a.torch else "adaptlr.AdamW"
    threads = os.environ.get("NUMBA_NUM_THREADS", "default")
    print(
        f"{name} case={a.case} force={a.force} busy={a.busy} NUMBA_NUM_THREADS={threads} steps={a.steps}: "
        f"median {statistics.median(us):.0f} us, mean {statistics.fmean(us):.0f} us, "
        f"p90 {us[int(0.9 * len(us))]:.0f} us, p99 {us[int(0.99 * len(us))]:.0f} us, max {us[-1]:.0f} us"
    )


if __name__ == "__main__":
    main()
