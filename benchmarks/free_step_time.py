"""Step time of adaptlr's LR-free and adaptive optimizers against their reference packages, and against their
memory-traffic floor.

A 33.6M-parameter float32 model's tensors (a 10-layer d=512 transformer's shapes: 2 x 4 attention matrices, two
MLP matrices, biases and norms per layer, a 4096 x 512 embedding), random gradients, CPU.

    floor = bytes moved per parameter x parameters / measured bandwidth

where bandwidth is the best of: a one-pass fused kernel streaming 3 arrays in and 1 out, torch's copy, and
torch's fused Adam (4 in, 3 out),
and "bytes moved" counts the passes of our two-phase implementation (each column read once per phase, each
written column written once). Prints the fastest of a few interleaved steps per optimizer.

    python benchmarks/free_step_time.py [--steps 5] [--only Prodigy,DoG]

``--device cuda``: the same optimizers on the triton engine against their packages on a GPU, with the
achieved fraction of copy bandwidth (the GPU part of benchmarks/step_time.py, for these optimizers only).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import time

import torch

import adaptlr

# bytes per parameter (float32) moved by our implementation: (reads + writes) x 4, per phase
OUR_BYTES = {
    "Prodigy": (4 + 1 + 4 + 3) * 4,  # stats: p g p0 s -> s ; update: p g m v -> p m v
    "DAdaptAdam": (4 + 3 + 3 + 1) * 4,  # stats: g m v s -> m v s ; update: p m v -> p
    "DAdaptSGD": (3 + 1 + 3 + 1) * 4,  # stats: g s (p) -> s ; update: p x0 s -> p
    "DoG": (3 + 0 + 2 + 1) * 4,  # stats: p g x0 ; update: p g -> p
    "ScheduleFreeAdamW": (4 + 3) * 4,  # y g z v -> y z v
    "Lion": (3 + 2) * 4,  # p g m -> p m
    "AdaBelief": (4 + 3) * 4,  # p g m s -> p m s
    "LAMB": (4 + 2 + 3 + 1) * 4,  # stats: p g m v -> m v ; update: p m v -> p (per tensor)
    "DAdaptAdaGrad": (4 + 2 + 4 + 1) * 4,  # stats: p g alpha s -> alpha s ; update: p x0 alpha s -> p
    "LDoG": (3 + 0 + 2 + 1) * 4,  # stats: p g x0 ; update: p g -> p (per tensor)
}


def reference(name):
    import dadaptation
    import dog
    import lion_pytorch
    import prodigyopt
    import pytorch_optimizer
    import schedulefree

    return {
        "Prodigy": prodigyopt.Prodigy,
        "DAdaptAdam": dadaptation.DAdaptAdam,
        "DAdaptSGD": dadaptation.DAdaptSGD,
        "DoG": dog.DoG,
        "ScheduleFreeAdamW": schedulefree.AdamWScheduleFree,
        "Lion": lion_pytorch.Lion,
        "AdaBelief": pytorch_optimizer.AdaBelief,
        "LAMB": pytorch_optimizer.Lamb,
        "DAdaptAdaGrad": dadaptation.DAdaptAdaGrad,
        "LDoG": dog.LDoG,
    }[name]


def shapes(layers=10, d=512, vocab=4096):
    out = [(vocab, d)]
    for _ in range(layers):
        out += [(d, d)] * 4 + [(d,)] * 4 + [(4 * d, d), (4 * d,), (d, 4 * d), (d,)] + [(d,)] * 4
    return out


def make_params(layers=10, d=512):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).requires_grad_(True) for s in shapes(layers, d)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return params


def time_pair(ours, theirs, steps):
    """Fastest step of each, the two optimizers' steps interleaved (the minimum is the least disturbed by other
    processes on a shared machine)."""
    for opt in (ours, theirs):
        if hasattr(opt, "train"):
            opt.train()
        with contextlib.redirect_stdout(io.StringIO()):
            opt.step()  # warm-up (state allocation, kernel load)
    best = [math.inf, math.inf]
    for _ in range(steps):
        for i, opt in enumerate((ours, theirs)):
            t = time.perf_counter()
            opt.step()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def bandwidth(n):
    """Bytes/s of the best of: a one-pass fused kernel reading 3 arrays and writing 1, and torch's copy."""
    from adaptlr.engines import get_engine
    from adaptlr.rules.free_dadapt import dadapt_sgd

    a, b, c = (torch.randn(n) for _ in range(3))
    eng = get_engine("fused")
    eng.apply(dadapt_sgd, [[a], [b], [c]], (0,), (0.5, 0.5))
    kernel = min(_timed(lambda: eng.apply(dadapt_sgd, [[a], [b], [c]], (0,), (0.5, 0.5))) for _ in range(10))
    copy = min(_timed(lambda: a.copy_(b)) for _ in range(10))
    d = torch.randn(n)
    adam = torch.optim.Adam([a.requires_grad_(True)], lr=1e-3, fused=True)
    a.grad = d
    adam.step()
    fused_adam = min(_timed(adam.step) for _ in range(10))  # reads 4 arrays, writes 3
    return max(4 * 4 * n / kernel, 2 * 4 * n / copy, 7 * 4 * n / fused_adam)


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--only", default=",".join(OUR_BYTES))
    ap.add_argument("--layers", type=int, default=10, help="(40 with --d 256: 33M parameters in 562 tensors)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.device == "cuda":  # (step_time.py times every rule on CUDA, these among them: run as its own process)
        import os
        import subprocess
        import sys

        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "step_time.py")
        argv = ["--device", "cuda", "--only", args.only, "--repeats", str(max(args.steps, 5))]
        sys.exit(subprocess.call([sys.executable, script, *argv]))
    params = make_params(args.layers, args.d)
    n = sum(p.numel() for p in params)
    bw = bandwidth(n)
    print(
        f"{n / 1e6:.1f}M parameters in {len(params)} tensors, {torch.get_num_threads()} threads, "
        f"bandwidth {bw / 1e9:.1f} GB/s"
    )
    print(f"{'optimizer':18s} {'adaptlr ms':>10s} {'package ms':>10s} {'ratio':>6s} {'floor ms':>9s} {'x floor':>7s}")
    for name in args.only.split(","):
        ours, theirs = time_pair(getattr(adaptlr, name)(params), reference(name)(params), args.steps)
        floor = OUR_BYTES[name] * n / bw
        print(
            f"{name:18s} {ours * 1e3:10.1f} {theirs * 1e3:10.1f} {ours / theirs:6.2f} {floor * 1e3:9.1f} "
            f"{ours / floor:7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
