"""The numba engine's serial kernel: a call too small to split runs the same generated lines on the calling thread
(no parallel region to start and join), and gives what the parallel kernel gives, bit for bit."""

from __future__ import annotations

import numba
import pytest
import torch

import adaptlr
from adaptlr.engines import _numba, get_engine
from adaptlr.rules import _math, elementwise


@pytest.fixture
def two_threads():
    """Numba's pool with two threads where it has them (the suite runs with one), so ``prange`` splits."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)


def _steps(make, dtype, kernel, monkeypatch, shapes=((70_000,), (3, 5), ())):
    """Five steps of ``make(params)`` on tensors spanning several chunks, every call through one ``kernel``."""
    monkeypatch.setattr(_numba, "SERIAL_BELOW", 1 << 62 if kernel == "serial" else 0)
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g, dtype=dtype, requires_grad=True) for s in shapes]
    opt = make(params)
    for _ in range(5):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
        opt.step()
    state = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
    return [p.detach() for p in params], state


OPTIMIZERS = {
    "AdamW": lambda ps: adaptlr.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True),
    "Lion": lambda ps: adaptlr.Lion(ps, lr=1e-3, weight_decay=0.1, fused=True),
    "LAMB": lambda ps: adaptlr.LAMB(ps, lr=1e-2, weight_decay=0.01, fused=True),  # a phase with sums
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_serial_and_parallel_kernels_give_identical_steps(name, dtype, monkeypatch, two_threads):
    serial = _steps(OPTIMIZERS[name], dtype, "serial", monkeypatch)
    parallel = _steps(OPTIMIZERS[name], dtype, "parallel", monkeypatch)
    for got, want in zip(serial[0] + serial[1], parallel[0] + parallel[1]):
        assert torch.equal(got, want)


@elementwise
def _scaled(a, b, s):
    x = _math.sqrt(_math.abs(a) + 1.0) * s - b
    return x, x * b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("sizes", [(11,), (70_000, 5)], ids=["one-chunk", "three-chunks"])
def test_both_kernels_write_the_same_bits_and_sum_alike(sizes, dtype, monkeypatch, two_threads):
    """Writes are elementwise, hence identical; a sum over one chunk is identical too, and over several it is
    added in another order (per thread, then across threads), so equal to rounding."""
    engine = get_engine("numba")
    results = []
    for kernel in ("serial", "parallel"):
        monkeypatch.setattr(_numba, "SERIAL_BELOW", 1 << 62 if kernel == "serial" else 0)
        g = torch.Generator().manual_seed(1)
        cols = [[torch.randn(n, generator=g, dtype=dtype) for n in sizes] for _ in range(2)]
        results.append((cols, engine.apply(_scaled, cols, (0,), (0.7,), (), n_sums=1)))
    (cols_s, sums_s), (cols_p, sums_p) = results
    for got, want in zip(cols_s[0] + cols_s[1], cols_p[0] + cols_p[1]):
        assert torch.equal(got, want)
    if len(sizes) == 1:
        assert sums_s == sums_p
    assert sums_s == pytest.approx(sums_p, rel=1e-12 if dtype == torch.float64 else 1e-6)


def _spy(monkeypatch) -> list[str]:
    """Record which of a rule's two kernels each call of the engine runs."""
    ran: list[str] = []
    kernel = _numba.NumbaEngine.kernel

    def spied(self, *args):
        k = kernel(self, *args)

        def record(which, fn):
            return lambda *a: (ran.append(which), fn(*a))[1]

        return _numba.Kernels(record("parallel", k.parallel), record("serial", k.serial))

    monkeypatch.setattr(_numba.NumbaEngine, "kernel", spied)
    return ran


def test_a_small_call_runs_the_serial_kernel_and_a_large_one_the_parallel_kernel(monkeypatch):
    ran = _spy(monkeypatch)
    model = torch.nn.Linear(10, 1)  # 11 parameters: one chunk
    big = torch.zeros(_numba.SERIAL_BELOW, requires_grad=True)  # the smallest call that is split
    for params, want in ((list(model.parameters()), "serial"), ([big], "parallel")):
        opt = adaptlr.AdamW(params, lr=1e-3, fused=True)
        for p in params:
            p.grad = torch.ones_like(p)
        ran.clear()
        opt.step()
        assert ran == [want]


def test_the_threshold_counts_every_tensor_of_the_call(monkeypatch):
    """Many small tensors whose elements add up past the threshold are split like one large tensor."""
    assert _numba.serial(1) and _numba.serial(_numba.CHUNK) and _numba.serial(_numba.SERIAL_BELOW - 1)
    assert not _numba.serial(_numba.SERIAL_BELOW)
    ran = _spy(monkeypatch)
    cols = [[torch.ones(_numba.SERIAL_BELOW // 4) for _ in range(4)] for _ in range(2)]
    get_engine("numba").apply(_scaled, cols, (0,), (0.5,), (), n_sums=1)
    assert ran == ["parallel"]


def test_each_kernel_has_a_module_of_its_own_with_the_same_lines():
    # (one function a module: Numba's disk cache is not safe for processes that compile a module's functions in
    # different orders, numba/numba#10128; the parallel module is the one this engine generated before)
    from adaptlr.engines._trace import trace

    program = trace(_scaled, [None, None], 1, (), 2)
    parallel, serial = (_numba.kernel_source(program, (0,), 1, "float32", mode) for mode in (True, False))
    assert parallel.count("@njit(") == serial.count("@njit(") == 1
    assert "parallel=True" in parallel and "prange(" in parallel and "parallel=False" in serial
    assert parallel.replace("prange(", "range(").replace("parallel=True", "parallel=False") == serial


def test_the_benchmark_runs_and_reports_its_percentiles():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "numba_small_calls.py"
    out = subprocess.run(
        [sys.executable, str(script), "--steps", "5", "--force", "serial"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "adaptlr.AdamW case=small force=serial busy=0" in out and "median" in out and "p99" in out
