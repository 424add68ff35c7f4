"""Step time of adaptlr's classic optimizers on each engine, as ratios to torch.optim, in one process.

Two workloads (float32, CPU, random gradients):
  (a) ~34M parameters in transformer-like shapes: 8 blocks of d=512 (4 attention matrices, a 4d MLP, biases,
      norms) plus a 16384 x 512 embedding;
  (b) 400 tensors of 2,048 elements (per-tensor overhead).
For each optimizer and engine: median and min over repeats, in two rounds (the second is reported; the first
warms caches and JIT), with ``torch.set_num_threads`` fixed; ratios to torch's foreach and, where torch has
one, its fused implementation. Then the first step's time (Numba compile) in a fresh process with an empty
kernel cache, and in a second process that loads the kernels from the disk cache.

    python benchmarks/step_time.py [--threads 2] [--repeats 5] [--only Adam,SGD] [--engines fused,foreach]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import adaptlr

OPTIMIZERS = {  # name -> (kwargs, torch has a fused CPU kernel)
    "SGD": (dict(lr=0.01, momentum=0.9), True),
    "Adagrad": (dict(lr=0.01), True),
    "RMSprop": (dict(lr=0.01), False),
    "Adadelta": (dict(), False),
    "Adam": (dict(lr=1e-3), True),
    "AdamW": (dict(lr=1e-3), True),
    "Adamax": (dict(), False),
    "NAdam": (dict(), False),
    "RAdam": (dict(), False),
    "Rprop": (dict(), False),
    "ASGD": (dict(), False),
    "Adafactor": (dict(), False),  # (Muon: 2-D params only; SparseAdam: sparse grads; LBFGS: closure-driven)
}
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}


def transformer_shapes(blocks: int = 8, d: int = 512, vocab: int = 16384) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(vocab, d)]
    for _ in range(blocks):
        shapes += [(d, d)] * 4 + [(d,)] * 4 + [(4 * d, d), (4 * d,), (d, 4 * d), (d,)] + [(d,)] * 4
    return shapes


WORKLOADS = {"a: 34M transformer": transformer_shapes, "b: 400 x 2048": lambda: [(2048,)] * 400}


def make_params(shapes):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


def time_steps(opt, repeats: int) -> tuple[float, float]:
    opt.step()  # state allocation, kernel load
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def first_step_seconds(cache_dir: str) -> float:
    """The first fused Adam step of a fresh process (imports excluded), with the given kernel cache folder."""
    code = ("import time, torch, adaptlr\n"
            "p = torch.zeros(1000, requires_grad=True); p.grad = torch.ones(1000)\n"
            "opt = adaptlr.Adam([p], fused=True)\n"
            "t = time.perf_counter(); opt.step(); print(time.perf_counter() - t)\n")
    env = {**os.environ, "ADAPTLR_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default=",".join(OPTIMIZERS))
    ap.add_argument("--engines", default="fused,foreach")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(args.threads)
    engines = args.engines.split(",")
    print(f"torch {torch.__version__}, numba {numba.__version__}, {args.threads} threads, "
          f"median (min) of {args.repeats} steps, second of two rounds")
    for workload, make_shapes in WORKLOADS.items():
        params = make_params(make_shapes())
        n = sum(p.numel() for p in params)
        print(f"\n({workload}: {n / 1e6:.1f}M parameters in {len(params)} tensors)")
        print(f"{'optimizer':10s} {'engine':8s} {'ms':>16s} {'torch foreach ms':>17s} {'torch fused ms':>15s} "
              f"{'/foreach':>9s} {'/fused':>7s}")
        for name in args.only.split(","):
            kwargs, has_fused = OPTIMIZERS[name]
            rows = {}
            for _round in range(2):
                rows["tf"] = time_steps(getattr(torch.optim, name)(params, **kwargs, foreach=True), args.repeats)
                if has_fused:
                    rows["tF"] = time_steps(getattr(torch.optim, name)(params, **kwargs, fused=True),
                                            args.repeats)
                for e in engines:
                    rows[e] = time_steps(getattr(adaptlr, name)(params, **kwargs, **ENGINES[e]), args.repeats)
            tf, tF = rows["tf"], rows.get("tF")
            for e in engines:
                med, low = rows[e]
                fused_txt = f"{tF[0] * 1e3:8.1f} ({tF[1] * 1e3:.1f})" if tF else f"{'-':>15s}"
                ratio_fused = f"{med / tF[0]:7.2f}" if tF else f"{'-':>7s}"
                print(f"{name:10s} {e:8s} {med * 1e3:8.1f} ({low * 1e3:.1f}) {tf[0] * 1e3:9.1f} ({tf[1] * 1e3:.1f})"
                      f" {fused_txt} {med / tf[0]:9.2f} {ratio_fused}", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        cold = first_step_seconds(cache)
        warm = first_step_seconds(cache)
    print(f"\nfirst fused Adam step in a fresh process: {cold:.2f} s cold (compile), {warm:.2f} s from the disk cache")


if __name__ == "__main__":
    main()
