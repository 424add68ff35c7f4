"""Step time of adaptlr's classic optimizers on each engine, as ratios to torch.optim, in one process.

Two workloads (float32, CPU, random gradients):
  (a) ~34M parameters in transformer-like shapes: 8 blocks of d=512 (4 attention matrices, a 4d MLP, biases,
      norms) plus a 16384 x 512 embedding;
  (b) 400 tensors of 2,048 elements and (c) 2,000 tensors of 16 elements (per-tensor overhead);
  Muon, SparseAdam and LBFGS on workloads of their own (2-D matrices, a sparse embedding gradient, a closure).
For each optimizer and engine: median and min over repeats, in two rounds (the second is reported; the first
warms caches and JIT), with ``torch.set_num_threads`` fixed; ratios to torch's foreach and, where torch has
one, its fused implementation. Then the first step's time (Numba compile) in a fresh process with an empty
kernel cache, and in a second process that loads the kernels from the disk cache.

    python benchmarks/step_time.py [--threads 2] [--repeats 5] [--only Adam,SGD] [--engines fused,foreach]

On a GPU (``--device cuda``): every optimizer on the triton engine, against torch.optim's fused and foreach
implementations and the LR-free methods' own packages, in one process, for (a) ~354M float32 parameters in
transformer shapes (24 blocks of d=1024 and a 50304 x 1024 embedding) and (b) 2,000 small tensors of 1 to 8,192
elements; plus the achieved bandwidth (bytes the kernels move per step / step time) as a fraction of the
device's measured copy bandwidth, and the first launch (compile) time of each kernel. Times are CUDA-event
medians after warm-up steps. Without a CUDA device it says so and exits (status 2).

    python benchmarks/step_time.py --device cuda [--repeats 20] [--only Adam,Prodigy]

``--device cpu --engine triton --tiny`` runs the same code on tiny workloads in Triton's interpreter (a dry run
of the GPU benchmark's code paths; its times mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import io
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
    "Adafactor": (dict(), False),  # (Muon, SparseAdam, LBFGS: workloads of their own, see rest_of_torch_optim)
}
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}


def transformer_shapes(blocks: int = 8, d: int = 512, vocab: int = 16384) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(vocab, d)]
    for _ in range(blocks):
        shapes += [(d, d)] * 4 + [(d,)] * 4 + [(4 * d, d), (4 * d,), (d, 4 * d), (d,)] + [(d,)] * 4
    return shapes


WORKLOADS = {
    "a: 34M transformer": transformer_shapes,
    "b: 400 x 2048": lambda: [(2048,)] * 400,
    "c: 2000 x 16": lambda: [(16,)] * 2000,
}


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


def rest_of_torch_optim(repeats: int) -> None:
    """Muon, SparseAdam and LBFGS need workloads of their own: the matrices of two of workload (a)'s blocks (Muon takes
    2-D parameters only), the 16384 x 512 embedding with a sparse gradient on 4,096 rows, and a least-squares
    problem on 1M parameters (LBFGS steps with a closure: 20 iterations and their evaluations per step)."""
    print("\n(the rest of torch.optim, on workloads of their own; default engines; ratio to torch.optim)")
    print(f"{'optimizer':10s} {'workload':34s} {'ms':>16s} {'torch ms':>16s} {'ratio':>7s}")
    g = torch.Generator().manual_seed(0)
    mats = [s for s in transformer_shapes(blocks=2)[1:] if len(s) == 2]
    params = make_params(mats)
    emb = torch.randn(16384, 512, generator=g).requires_grad_()
    rows = torch.randperm(16384, generator=g)[:4096]
    emb.grad = torch.sparse_coo_tensor(
        rows[None], torch.randn(4096, 512, generator=g), (16384, 512), check_invariants=True
    ).coalesce()
    a, b = torch.randn(1 << 20, generator=g), torch.randn(1 << 20, generator=g)

    def lbfgs(cls):
        x = torch.zeros(1 << 20, requires_grad=True)
        opt = cls([x], lr=1, max_iter=20, history_size=10, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = ((a * x - b) ** 2).sum() + 0.1 * (x**4).sum()
            loss.backward()
            return loss

        return opt, closure

    cases = [
        (
            "Muon",
            f"{len(mats)} matrices ({sum(p.numel() for p in params) / 1e6:.1f}M)",
            lambda cls: (cls(params), None),
        ),
        ("SparseAdam", "16384 x 512, 4,096 rows", lambda cls: (cls([emb]), None)),
        ("LBFGS", "1M least squares, 20 iterations", lbfgs),
    ]
    for name, workload, make in cases:
        times = {}
        for _round in range(2):
            for side, cls in (("torch", getattr(torch.optim, name)), ("ours", getattr(adaptlr, name))):
                opt, closure = make(cls)
                step = functools.partial(opt.step, closure) if closure is not None else opt.step
                step()
                ts = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    step()
                    ts.append(time.perf_counter() - t)
                times[side] = (statistics.median(ts), min(ts))
        (om, ol), (tm, tl) = times["ours"], times["torch"]
        print(
            f"{name:10s} {workload:34s} {om * 1e3:8.1f} ({ol * 1e3:.1f}) {tm * 1e3:8.1f} ({tl * 1e3:.1f}) {om / tm:7.2f}",
            flush=True,
        )


def first_step_seconds(cache_dir: str) -> float:
    """The first fused Adam step of a fresh process (imports excluded), with the given kernel cache folder."""
    code = (
        "import time, torch, adaptlr\n"
        "p = torch.zeros(1000, requires_grad=True); p.grad = torch.ones(1000)\n"
        "opt = adaptlr.Adam([p], fused=True)\n"
        "t = time.perf_counter(); opt.step(); print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "ADAPTLR_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- the triton engine
# optimizer -> (kwargs, the reference to compare with): "torch" (torch.optim's foreach and fused) or a package
TRITON_OPTIMIZERS = {
    **{name: (kwargs, "torch") for name, (kwargs, _) in OPTIMIZERS.items()},
    **{
        name: ({}, "package")
        for name in ("Prodigy", "DAdaptAdam", "DAdaptSGD", "DoG", "ScheduleFreeAdamW", "Lion", "AdaBelief")
    },
}
# goals of issue 14 (for the printed verdicts): step time vs torch fused, fraction of copy bandwidth, speed-up
FUSED_GOAL = {"Adam": 1.05, "AdamW": 1.05, "SGD": 1.05, "Adagrad": 1.05}
BANDWIDTH_GOAL = 0.85
PACKAGE_GOAL = {"Prodigy": 3.0, "DAdaptAdam": 3.0, "ScheduleFreeAdamW": 3.0}


def triton_workloads(tiny: bool) -> dict[str, list[tuple[int, ...]]]:
    """(a) transformer shapes, (b) many small tensors of random sizes; tiny versions for the interpreter."""
    import numpy as np

    sizes = np.random.default_rng(0).integers(1, 8193, size=20 if tiny else 2000)
    if tiny:
        a = transformer_shapes(blocks=1, d=32, vocab=256)
        return {
            f"a: {_count(a) / 1e3:.0f}K transformer (tiny)": a,
            "b: 20 small tensors (tiny)": [(int(n) // 64 + 1,) for n in sizes],
        }
    a = transformer_shapes(blocks=24, d=1024, vocab=50304)
    return {f"a: {_count(a) / 1e6:.0f}M transformer": a, "b: 2000 small tensors": [(int(n),) for n in sizes]}


def _count(shapes) -> int:
    return sum(int(torch.Size(s).numel()) for s in shapes)


class _Clock:
    """Step times on the device: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, repeats: int, warmup: int) -> float:
        """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)


def copy_bandwidth(device: torch.device, n: int, clock: _Clock) -> float:
    """Bytes per second of ``b.copy_(a)`` over ``n`` float32 elements (read + write)."""
    a = torch.randn(n, device=device)
    b = torch.empty_like(a)
    seconds = clock.time(lambda: b.copy_(a), repeats=10, warmup=3)
    return 2 * a.numel() * a.element_size() / seconds


def _make_device_params(shapes, device: torch.device, scale: float) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    params = [torch.randn(s, generator=g, device=device).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, device=device) * scale
    return params


def _quiet_step(opt):
    with contextlib.redirect_stdout(io.StringIO()):  # (some packages print their estimates)
        opt.step()


def _timed_optimizer(make, params, clock: _Clock, repeats: int, warmup: int) -> float | None:
    """Median step time of a fresh optimizer on ``params`` (None, and a line saying why, when it cannot be built
    or stepped here)."""
    try:
        opt = make(params)
        if hasattr(opt, "train"):
            opt.train()
        _quiet_step(opt)
    except (RuntimeError, ValueError, TypeError, ImportError) as e:
        print(f"    ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
        return None
    seconds = clock.time(functools.partial(_quiet_step, opt), repeats, warmup)
    opt.state.clear()
    if clock.cuda:
        torch.cuda.empty_cache()
    return seconds


def _ms(t: float | None) -> str:
    return f"{t * 1e3:.2f}" if t is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b is not None else "-"


def triton_main(args) -> int:
    """The GPU benchmark (or, with ``--device cpu``, its dry run in Triton's interpreter); the exit status."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here (torch.cuda.is_available() is False); nothing was measured")
        return 2
    if device.type == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    from adaptlr.engines import _select, get_engine
    from adaptlr.engines._triton import available

    if not available():
        print("the triton engine needs triton (pip install adaptlr[triton]); nothing was measured")
        return 2
    import triton

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from free_step_time import reference

    names = [n for n in args.only.split(",") if n] if args.only else list(TRITON_OPTIMIZERS)
    unknown = sorted(set(names) - set(TRITON_OPTIMIZERS))
    if unknown:
        print(f"unknown optimizers {unknown}; choose from {', '.join(TRITON_OPTIMIZERS)}")
        return 2
    engine = get_engine("triton")
    clock = _Clock(device)
    warmup, repeats = (1, 2) if args.tiny else (3, args.repeats)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)"
    bw = copy_bandwidth(device, 1 << 14 if args.tiny else 1 << 28, clock)
    print(
        f"{where}, torch {torch.__version__}, triton {triton.__version__}; copy bandwidth {bw / 1e9:.0f} GB/s; "
        f"median of {repeats} steps after {warmup} warm-up steps"
    )
    verdicts = []
    for workload, shapes in triton_workloads(args.tiny).items():
        print(f"\n({workload}: {_count(shapes) / 1e6:.2f}M float32 parameters in {len(shapes)} tensors)")
        print(
            f"{'optimizer':18s} {'adaptlr ms':>10s} {'foreach ms':>10s} {'fused ms':>9s} {'package ms':>10s} "
            f"{'/foreach':>8s} {'/fused':>7s} {'/package':>8s} {'GB/s':>7s} {'x copy':>6s}"
        )
        for name in names:
            kwargs, kind = TRITON_OPTIMIZERS[name]
            params = _make_device_params(shapes, device, 1e-3 if kind == "package" else 1.0)
            # (on a GPU the engine selection sends CUDA tensors to triton; on CPU the override does)
            with _select.override("triton") if device.type == "cpu" else contextlib.nullcontext():
                before = engine.bytes_moved
                ours = _timed_optimizer(
                    functools.partial(getattr(adaptlr, name), **kwargs), params, clock, repeats, warmup
                )
                moved = (engine.bytes_moved - before) / (1 + warmup + repeats)
            if ours is not None and moved == 0:
                print(f"    ({name} did not run on the triton engine: check adaptlr.engines._select's routing)")
            tf = tF = tp = None
            if kind == "torch":
                cls = getattr(torch.optim, name)
                tf = _timed_optimizer(functools.partial(cls, **kwargs, foreach=True), params, clock, repeats, warmup)
                if "fused" in inspect.signature(cls).parameters:
                    tF = _timed_optimizer(functools.partial(cls, **kwargs, fused=True), params, clock, repeats, warmup)
            else:
                tp = _timed_optimizer(reference(name), params, clock, repeats, warmup)
            del params
            achieved = moved / ours if ours else 0.0
            print(
                f"{name:18s} {_ms(ours):>10s} {_ms(tf):>10s} {_ms(tF):>9s} {_ms(tp):>10s} {_ratio(ours, tf):>8s} "
                f"{_ratio(ours, tF):>7s} {_ratio(ours, tp):>8s} {achieved / 1e9:7.1f} {achieved / bw:6.2f}",
                flush=True,
            )
            if ours is not None and workload.startswith("a"):
                if name in FUSED_GOAL and tF is not None:
                    verdicts.append((f"{name} <= {FUSED_GOAL[name]}x torch fused (a)", ours / tF <= FUSED_GOAL[name]))
                elif name not in FUSED_GOAL:
                    verdicts.append(
                        (f"{name} >= {BANDWIDTH_GOAL:.0%} of copy bandwidth (a)", achieved / bw >= BANDWIDTH_GOAL)
                    )
            if ours is not None and name in PACKAGE_GOAL and tp is not None:
                verdicts.append(
                    (
                        f"{name} >= {PACKAGE_GOAL[name]}x faster than its package ({workload[:1]})",
                        tp / ours >= PACKAGE_GOAL[name],
                    )
                )
    print("\nfirst launch of each kernel (compile included):")
    for kernel, seconds in sorted(engine.compile_seconds.items()):
        print(f"  {kernel:40s} {seconds:6.2f} s")
    if device.type == "cuda":
        print("\ngoals (issue 14):")
        for text, ok in verdicts:
            print(f"  {'met    ' if ok else 'NOT met'}  {text}")
    else:
        print("\n(interpreter dry run: the times above are not GPU times, and no goal is judged)")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated optimizer names (default: all)")
    ap.add_argument("--engines", default="fused,foreach")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument(
        "--engine",
        default=None,
        choices=("triton",),
        help="with --device cpu: the triton engine in Triton's interpreter (a dry run; see --tiny)",
    )
    ap.add_argument("--tiny", action="store_true", help="tiny workloads (for the interpreter dry run)")
    ap.add_argument("--no-rest", action="store_true", help="skip Muon, SparseAdam and LBFGS (their own workloads)")
    args = ap.parse_args()
    if args.device == "cuda" or args.engine == "triton":
        sys.exit(triton_main(args))
    args.only = args.only or ",".join(OPTIMIZERS)
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(args.threads)
    engines = args.engines.split(",")
    print(
        f"torch {torch.__version__}, numba {numba.__version__}, {args.threads} threads, "
        f"median (min) of {args.repeats} steps, second of two rounds"
    )
    for workload, make_shapes in WORKLOADS.items():
        params = make_params(make_shapes())
        n = sum(p.numel() for p in params)
        print(f"\n({workload}: {n / 1e6:.1f}M parameters in {len(params)} tensors)")
        print(
            f"{'optimizer':10s} {'engine':8s} {'ms':>16s} {'torch foreach ms':>17s} {'torch fused ms':>15s} "
            f"{'/foreach':>9s} {'/fused':>7s}"
        )
        for name in args.only.split(","):
            kwargs, has_fused = OPTIMIZERS[name]
            rows = {}
            for _round in range(2):
                rows["tf"] = time_steps(getattr(torch.optim, name)(params, **kwargs, foreach=True), args.repeats)
                if has_fused:
                    rows["tF"] = time_steps(getattr(torch.optim, name)(params, **kwargs, fused=True), args.repeats)
                for e in engines:
                    rows[e] = time_steps(getattr(adaptlr, name)(params, **kwargs, **ENGINES[e]), args.repeats)
            tf, tF = rows["tf"], rows.get("tF")
            for e in engines:
                med, low = rows[e]
                fused_txt = f"{tF[0] * 1e3:8.1f} ({tF[1] * 1e3:.1f})" if tF else f"{'-':>15s}"
                ratio_fused = f"{med / tF[0]:7.2f}" if tF else f"{'-':>7s}"
                print(
                    f"{name:10s} {e:8s} {med * 1e3:8.1f} ({low * 1e3:.1f}) {tf[0] * 1e3:9.1f} ({tf[1] * 1e3:.1f})"
                    f" {fused_txt} {med / tf[0]:9.2f} {ratio_fused}",
                    flush=True,
                )
    if not args.no_rest:
        rest_of_torch_optim(args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        cold = first_step_seconds(cache)
        warm = first_step_seconds(cache)
    print(f"\nfirst fused Adam step in a fresh process: {cold:.2f} s cold (compile), {warm:.2f} s from the disk cache")


if __name__ == "__main__":
    main()
