"""The triton engine (adaptlr/engines/_triton.py) in Triton's interpreter: the generated kernels run on CPU tensors.

Every test here sets ``TRITON_INTERPRET=1`` (Triton reads it when a kernel is defined, and the engine keys its
kernels by it). Oracles: the foreach engine (float64 to 1e-12), torch.optim, and a float32 run for bfloat16 /
float16 (within one rounding of the narrow dtype). CUDA speed is not measured here (benchmarks/step_time.py
--device cuda).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _optim_table import ROWS, rows, trainable
from test_engines import columns, everything, swap

import adaptlr
from adaptlr.engines import _registry, _select, get_engine
from adaptlr.engines._trace import trace
from adaptlr.engines._triton import TritonEngine, _load, kernel_source
from adaptlr.rules import _math, classic, elementwise

triton = pytest.importorskip("triton", reason="the triton engine needs triton (pip install adaptlr[triton])")


@pytest.fixture(autouse=True)
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


# ------------------------------------------------------------------------------------------ the contract
@pytest.mark.parametrize("flip", [False, True])
def test_every_op_writes_and_sums_match_the_loop_engine(flip):
    got, want = columns(0), columns(0)
    sums = get_engine("triton").apply(everything, got, (0, 1), (0.7, -1.3), (flip,), n_sums=2)
    expected = get_engine("loop").apply(everything, want, (0, 1), (0.7, -1.3), (flip,), n_sums=2)
    assert expected[1] == 2.0 * sum(t.numel() for t in want[0])
    assert sums == pytest.approx(expected, rel=1e-12)
    for a, b in zip(sum(got, []), sum(want, [])):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_writes_that_swap_two_columns_and_a_constant_placeholder():
    cols = columns(1)[:2]
    before = [[t.clone() for t in c] for c in cols]
    get_engine("triton").apply(swap, cols, (0, 1))
    assert all(torch.equal(a, b) for a, b in zip(cols[0] + cols[1], before[1] + before[0]))
    get_engine("triton").apply(swap, [cols[0], 0.0], (0, 1))  # writes 0.0 into column 0; column 1 absent
    assert all(bool((t == 0).all()) for t in cols[0])


@elementwise
def second(a, b):
    return (b,)


@elementwise
def powers(a, b, s):
    """Every shape of ``**`` the code generator special-cases, and the general one (negative bases included)."""
    return a**2 + b**3 + _math.abs(a) ** 0.5 + a**s + _math.abs(b) ** a + b**0.0, a**-1.0


def test_pow_matches_torch_for_literal_and_traced_exponents():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(301, generator=g, dtype=torch.float64)
    b = torch.randn(301, generator=g, dtype=torch.float64)
    a[:5] = torch.tensor([0.0, -2.0, 2.0, -0.5, 3.0], dtype=torch.float64)
    for s in (2.0, 3.0, -1.0):
        want = [[a.clone()], [b.clone()]]
        got = [[a.clone()], [b.clone()]]
        get_engine("loop").apply(powers, want, (0, 1), (s,))
        get_engine("triton").apply(powers, got, (0, 1), (s,))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_a_new_learning_rate_reuses_the_kernel_and_is_not_in_its_source():
    engine = TritonEngine()
    p, g, m, v = (torch.randn(100, dtype=torch.float32, generator=torch.Generator().manual_seed(k)) for k in range(4))
    v = v.abs()
    args = (0.9, 0.999, 1e-8, 0.3, 0.0, 1.0)  # adam's per-step scalars after the step size
    flags = (False, False, False, False)
    for step_size in (1e-3, 2e-3, 0.123456):
        engine.apply(classic.adam, [[p], [g], [m], [v], 0.0], (0, 2, 3, 4), (step_size, *args), flags)
    assert len(engine._modules) == 1 and len(engine.compile_seconds) == 1
    program = trace(classic.adam, (None, None, None, None, 0.0), 7, flags, 4)
    source = kernel_source(program, (0, 2, 3, 4), 0, "float32", True)
    assert "0.123456" not in source and "h0: tl.float32" in source


# --------------------------------------------------------------------------------------- many tensors
def test_hundreds_of_small_tensors_and_tensors_spanning_chunks():
    """300 tensors of odd sizes (and two spanning several chunks) in one launch, against the foreach engine;
    a small block and chunk exercise full blocks, masked tails and multi-chunk tensors cheaply."""
    rng = np.random.default_rng(0)
    sizes = [int(n) for n in rng.integers(1, 40, size=300)] + [1000, 777]
    g = torch.Generator().manual_seed(1)
    base = [[torch.randn(n, generator=g, dtype=torch.float64) for n in sizes] for _ in range(3)]
    for engine in (TritonEngine(block=64, chunk=256), get_engine("triton")):
        got = [[t.clone() for t in c] for c in base]
        want = [[t.clone() for t in c] for c in base]
        sums = engine.apply(everything, got, (0, 1), (0.5, 2.0), (False,), n_sums=2)
        expected = get_engine("foreach").apply(everything, want, (0, 1), (0.5, 2.0), (False,), n_sums=2)
        assert sums == pytest.approx(expected, rel=1e-12)
        assert sums[1] == 2.0 * sum(sizes)
        for a, b in zip(sum(got, []), sum(want, [])):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------- dtypes
def _adam_columns(dtype, n=(513, 7, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    p, grad, m, v = ([torch.randn(k, generator=g) for k in n] for _ in range(4))
    return [[t.to(dtype) for t in c] for c in (p, grad, m, [t.abs() for t in v])]


ADAM_SCALARS = (0.3, 0.9, 0.999, 1e-8, 0.0447, 0.0, 1.0)  # step_size, betas, eps, bc2_sqrt, wd, decay_factor
ADAM_FLAGS = (False, False, False, False)


def test_float32_matches_the_foreach_engine_in_norm():
    got, want = _adam_columns(torch.float32), _adam_columns(torch.float32)
    get_engine("triton").apply(classic.adam, [*got, 0.0], (0, 2, 3, 4), ADAM_SCALARS, ADAM_FLAGS)
    get_engine("foreach").apply(classic.adam, [*want, 0.0], (0, 2, 3, 4), ADAM_SCALARS, ADAM_FLAGS)
    for a, b in zip(sum(got, []), sum(want, [])):
        assert float((a - b).norm() / b.norm()) <= 1e-6


@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 8), (torch.float16, 11)])
def test_narrow_dtypes_round_once_from_float32_math(dtype, bits):
    """Loaded in the narrow dtype, computed in float32, stored once: within half a unit in the last place of a
    float32 run from the same (representable) inputs."""
    narrow = _adam_columns(dtype)
    wide = [[t.float() for t in c] for c in narrow]
    get_engine("triton").apply(classic.adam, [*narrow, 0.0], (0, 2, 3, 4), ADAM_SCALARS, ADAM_FLAGS)
    get_engine("foreach").apply(classic.adam, [*wide, 0.0], (0, 2, 3, 4), ADAM_SCALARS, ADAM_FLAGS)
    for a, b in zip(sum(narrow, []), sum(wide, [])):
        assert a.dtype == dtype
        tiny = torch.finfo(dtype).tiny
        assert bool(((a.float() - b).abs() <= b.abs() * 2.0 ** -(bits - 1) + tiny).all())


# ------------------------------------------------------------------------------------------------- checks
def _two_columns(**change):
    p = [torch.randn(5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]
    q = [t.clone() for t in p]
    for k, v in change.items():
        q[int(k[1:])] = v
    return p, q


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(t1=torch.randn(4, 3, dtype=torch.float64)), "shape"),
        (dict(t1=torch.randn(3, 4, dtype=torch.float32)), "float32"),
        (dict(t1=torch.randn(4, 3, dtype=torch.float64).t()), "strides"),
        (dict(t0=torch.randn(5, dtype=torch.float64, device="meta")), "meta"),
    ],
)
def test_a_tensor_that_does_not_match_its_row_is_refused_before_anything_runs(bad, match):
    p, q = _two_columns(**bad)
    before = [t.clone() for t in p]
    with pytest.raises(RuntimeError, match=match):
        get_engine("triton").apply(swap, [p, q], (0, 1))
    assert all(torch.equal(a, b) for a, b in zip(p, before))


def test_refused_tensors_strided_subclass_dtype_count_and_device():
    engine = get_engine("triton")
    strided = [torch.randn(4, 6, dtype=torch.float64)[:, ::2] for _ in range(2)]
    with pytest.raises(RuntimeError, match="not dense"):
        engine.apply(swap, [[strided[0]], [strided[1]]], (0, 1))

    class Sub(torch.Tensor):
        pass

    sub = torch.randn(3, dtype=torch.float64).as_subclass(Sub)
    with pytest.raises(RuntimeError, match="Sub"):
        engine.apply(swap, [[torch.randn(3, dtype=torch.float64)], [sub]], (0, 1))
    with pytest.raises(RuntimeError, match="not one of"):
        engine.apply(swap, [[torch.ones(3, dtype=torch.int32)], [torch.ones(3, dtype=torch.int32)]], (0, 1))
    with pytest.raises(RuntimeError, match="holds 1 tensors"):
        engine.apply(swap, [[torch.ones(3), torch.ones(2)], [torch.ones(3)]], (0, 1))


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        get_engine("triton").apply(swap, [[torch.ones(3)], [torch.zeros(3)]], (0, 1))


def test_writes_bump_version_counters_as_in_place_ops_do():
    p, q = [torch.ones(3)], [torch.zeros(3)]
    v0 = p[0]._version
    get_engine("triton").apply(second, [p, q], (0,))
    assert p[0]._version == v0 + 1 and bool((p[0] == 0).all())


# -------------------------------------------------------------------------------- optimizers end to end
@pytest.fixture
def on_triton(monkeypatch):
    """Route every row the triton engine can address to it (CPU tensors, in the interpreter); count the calls."""
    calls = []
    engine = get_engine("triton")
    apply = engine.apply_checked

    def counted(*args, **kwargs):
        calls.append(args[0])
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "apply_checked", counted)
    with _select.override("triton"):
        yield calls


def test_the_override_routes_dense_rows_to_triton_and_the_rest_elsewhere():
    dense = [torch.ones(3, 4), torch.ones(3, 4)]
    transposed = [torch.ones(4, 3).t(), torch.ones(3, 4)]  # the row's strides differ
    half = [torch.ones(5, dtype=torch.float16)] * 2
    cols = [[dense[0], transposed[0], half[0]], [dense[1], transposed[1], half[1]]]
    assert _select.partition(None, cols) == [("numba", [0]), ("foreach", [1, 2])]
    with _select.override("triton"):
        assert _select.partition(None, cols) == [("triton", [0]), ("foreach", [1]), ("triton", [2])]
        assert _select.partition("foreach", cols) == [("foreach", [0, 1, 2])]
    with pytest.raises(ValueError, match="triton"):
        with _select.override("fused"):
            pass


def test_a_transposed_parameter_goes_to_foreach_and_the_step_is_still_right(on_triton):
    g = torch.Generator().manual_seed(2)
    init = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    results = []
    for make in (lambda ps: adaptlr.Adam(ps, lr=0.1), lambda ps: torch.optim.Adam(ps, lr=0.1, foreach=False)):
        params = [init[0].clone().requires_grad_(), init[1].clone().t().requires_grad_()]  # the second: transposed
        opt = make(params)
        for _ in range(3):
            for p in params:
                p.grad = (p.detach() * 2.0 + 1.0).contiguous()  # a contiguous grad: the row's strides differ
            opt.step()
        results.append([p.detach() for p in params])
    assert on_triton  # the contiguous parameter ran on triton
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


#: every row of tests/_optim_table.py whose rules run on an engine (all but L-BFGS's)
CASES = rows(lambda r: r.triton)
SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (33,)]


def _run(name, kwargs, steps, dtype=torch.float64, shapes=SHAPES):
    row = ROWS[name]
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]
    params = trainable(row, params)  # (Muon: the matrices)
    centers = [torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) for p in params]
    opt = row.cls(params, **kwargs)
    for t in range(steps):
        for p, c in zip(params, centers):
            grad = (p.detach() - c) * (1.0 + 0.1 * t)
            p.grad = grad.to_sparse() if row.sparse_grads else grad
        opt.step()
    return params, opt


@pytest.mark.parametrize("row", CASES)
def test_every_optimizer_on_triton_matches_the_foreach_engine(row, on_triton):
    name, kwargs = row.name, row.draw(np.random.default_rng(7))
    params, opt = _run(name, kwargs, steps=4)
    assert on_triton, f"{name} never reached the triton engine"
    on_triton.clear()
    ref_params, ref_opt = _run(name, {**kwargs, "foreach": True}, steps=4)
    assert not on_triton
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for p, q in zip(params, ref_params):
        for key, value in opt.state[p].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, ref_opt.state[q][key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
        ("AdamW", dict(lr=1e-2)),
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adagrad", dict(lr=0.1)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_classic_optimizers_on_triton_match_torch_optim(name, kwargs, dtype, on_triton):
    params, _ = _run(name, kwargs, steps=5, dtype=dtype)
    assert on_triton
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in SHAPES]
    centers = [torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) for p in ref]
    opt = getattr(torch.optim, name)(ref, **kwargs, foreach=False)
    for t in range(5):
        for p, c in zip(ref, centers):
            p.grad = (p.detach() - c) * (1.0 + 0.1 * t)
        opt.step()
    for a, b in zip(params, ref):
        a, b = a.detach(), b.detach()
        if dtype == torch.float64:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        else:
            assert float((a - b).norm()) <= 1e-6 * max(float(b.norm()), 1.0)


def test_complex_parameters_run_as_real_views(on_triton):
    g = torch.Generator().manual_seed(5)
    init = torch.randn(6, 3, dtype=torch.complex128, generator=g)
    target = torch.randn(6, 3, dtype=torch.complex128, generator=g)
    results = []
    for make in (lambda ps: adaptlr.Adam(ps, lr=0.05), lambda ps: torch.optim.Adam(ps, lr=0.05, foreach=False)):
        p = init.clone().requires_grad_()
        opt = make([p])
        for _ in range(3):
            p.grad = p.detach() - target
            opt.step()
        results.append(p.detach())
        if not results[1:]:
            assert on_triton  # adaptlr's run went through the triton engine
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 8), (torch.float16, 11)])
def test_adam_in_a_narrow_dtype_tracks_a_float32_run(dtype, bits, on_triton):
    """One step of adaptlr.Adam on bfloat16 / float16 params (via the triton engine) from representable inputs
    equals the float32 step rounded once; then a few more steps stay within a few roundings."""
    narrow, _ = _run("Adam", dict(lr=1e-2), steps=1, dtype=dtype)
    assert on_triton
    g = torch.Generator().manual_seed(0)
    wide = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).float().requires_grad_() for s in SHAPES]
    centers = [torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype).float() for p in wide]
    opt = torch.optim.Adam(wide, lr=1e-2, foreach=False)
    for p, c in zip(wide, centers):
        p.grad = ((p.detach() - c).to(dtype)).float()  # the narrow run's gradient, exactly
    opt.step()
    for a, b in zip(narrow, wide):
        a, b = a.detach(), b.detach()
        assert a.dtype == dtype
        assert bool(((a.float() - b).abs() <= b.abs() * 2.0 ** -(bits - 1) + 1e-3 * 2.0**-bits).all())
    several, _ = _run("Adam", dict(lr=1e-2), steps=5, dtype=dtype)
    reference, _ = _run("Adam", dict(lr=1e-2), steps=5, dtype=torch.float32)
    for a, b in zip(several, reference):
        a, b = a.detach(), b.detach()
        assert float((a.float() - b).norm() / b.norm()) <= 8 * 2.0**-bits


def test_compile_time_of_the_first_launch_is_recorded():
    engine = TritonEngine()
    engine.apply(swap, [[torch.ones(3)], [torch.zeros(3)]], (0, 1))
    ((name, seconds),) = engine.compile_seconds.items()
    assert name == "swap[float32]" and 0.0 <= seconds < 60.0 and math.isfinite(seconds)


# ------------------------------------------------------------------------- compiled for a GPU, without one
def _as_launched_on_hopper(module, hoisted, n_sums: int):
    """What ``kernel[grid](...)`` does before it launches, for an sm_90 target, without a GPU: Triton's binder
    specializes the engine's own launch arguments (pointer tables, partial sums, scalars, launch options), and its
    CUDA backend compiles the kernel to PTX. Returns (the specialization's cache key, the PTX)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import compute_cache_key, create_function_from_signature

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    kernel = module.kernel
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    args = [torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64)]
    args += [torch.zeros(2, n_sums, dtype=torch.float64)] if n_sums else []
    kwargs = TritonEngine().launch_options()
    bound, specialization, options = binder(*args, *hoisted, **kwargs)
    key = compute_cache_key({}, specialization, options)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)
    return key, compiled.asm["ptx"]


def _compiled(source: str, monkeypatch):
    """The generated module loaded as on a GPU (kernels compiled, not interpreted)."""
    from triton.runtime.jit import JITFunction

    if not isinstance(triton.language.standard._sum_combine, JITFunction):
        pytest.skip("triton was imported with TRITON_INTERPRET=1: its library is interpreted in this process")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return _load(source)


ADAM_KINDS = (None, None, None, None, 0.0)
COMPILED = [  # rule, column kinds, n_scalars, flags, writes, n_sums, dtype, aligned, tensor columns read
    (classic.adam, ADAM_KINDS, 7, ADAM_FLAGS, (0, 2, 3, 4), 0, "float32", True, 4),
    (classic.adam, ADAM_KINDS, 7, (True, True, False, True), (0, 2, 3, 4), 0, "bfloat16", True, 4),
    (classic.adam, ADAM_KINDS, 7, ADAM_FLAGS, (0, 2, 3, 4), 0, "float16", False, 4),
    (everything, (None, None, None), 2, (False,), (0, 1), 2, "float64", True, 3),
    (powers, (None, None), 1, (), (0, 1), 0, "float32", True, 2),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", COMPILED, ids=[f"{c[0].__name__}-{c[6]}" for c in COMPILED])
def test_the_generated_kernels_compile_for_a_gpu_with_vectorized_loads(case, monkeypatch):
    """The interpreter runs the kernels' Python; this compiles them as a GPU launch would (Triton's binder on the
    engine's arguments, its frontend and CUDA backend down to PTX for sm_90): aligned tensors get 128-bit loads and
    stores, float32 division and square root are the IEEE ones, sums accumulate in float64."""
    fn, kinds, n_scalars, flags, writes, n_sums, dtype, aligned, n_read = case
    program = trace(fn, kinds, n_scalars, flags, len(writes) + n_sums)
    module = _compiled(kernel_source(program, writes, n_sums, dtype, aligned), monkeypatch)
    _, ptx = _as_launched_on_hopper(module, module.host([0.5] * n_scalars), n_sums)
    assert ".entry kernel" in ptx
    vector = len(re.findall(r"ld\.global(?:\.\w+)*\.v[24]", ptx))
    if aligned:
        assert vector >= n_read
        assert re.search(r"st\.global(?:\.\w+)*\.v[24]", ptx)
    else:
        assert vector == 0
    ops = {n.op for n in program.nodes if n.tensor}
    if dtype != "float64":
        assert ("div.rn.f32" in ptx) == ("div" in ops) and ("sqrt.rn.f32" in ptx) == ("sqrt" in ops or fn is powers)
    if n_sums:
        assert "add.f64" in ptx or "add.rn.f64" in ptx


@pytest.mark.slow
def test_a_new_learning_rate_never_recompiles_on_a_gpu(monkeypatch):
    program = trace(classic.adam, ADAM_KINDS, 7, ADAM_FLAGS, 4)
    module = _compiled(kernel_source(program, (0, 2, 3, 4), 0, "float32", True), monkeypatch)
    keys = {
        _as_launched_on_hopper(module, module.host([lr, 0.9, 0.999, 1e-8, 0.3, 0.0, 1.0]), 0)[0]
        for lr in (1e-3, 1.0, 16.0, 0.123456)
    }  # (values Triton would specialize if they were ints: 1, 16)
    assert len(keys) == 1


@pytest.mark.slow
def test_every_rule_the_optimizers_run_compiles_for_a_gpu(monkeypatch):
    """One step of every optimizer (through the override, in the interpreter) records the kernels the library
    generates; each rule's kernel (one per rule and number of sums) is then compiled for sm_90."""
    engine = TritonEngine()
    monkeypatch.setitem(_registry._instances, "triton", engine)  # (the engine the selection runs triton rows on)
    with _select.override("triton"):
        for (row,) in (p.values for p in CASES):
            _run(row.name, row.draw(np.random.default_rng(7)), steps=1, dtype=torch.float32)
    kernels = {}
    for key, module in engine._modules.items():
        kernels.setdefault((key[0].__name__, key[5]), module)  # (rule, n_sums)
    assert len({rule for rule, _ in kernels}) >= 20
    for (rule, n_sums), module in kernels.items():
        compiled = _compiled(Path(module.__file__).read_text(), monkeypatch)
        n_args = len(module.host([0.5] * 64))  # (host ignores the scalars it does not read)
        _, ptx = _as_launched_on_hopper(compiled, [0.5] * n_args, n_sums)
        assert ".entry kernel" in ptx, rule


# ------------------------------------------------------------------------------------------- benchmark
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "step_time.py"


@pytest.mark.slow
def test_the_gpu_benchmark_dry_runs_in_the_interpreter_and_refuses_cleanly_without_cuda():
    env = {**os.environ, "ADAPTLR_CACHE_DIR": os.environ.get("ADAPTLR_CACHE_DIR", ""), "TRITON_INTERPRET": "1"}
    env = {k: v for k, v in env.items() if v}
    out = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--engine", "triton", "--tiny", "--only", "Adam,Prodigy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line[:1].isalpha()}
    assert float(rows["Adam"][1]) > 0 and float(rows["Adam"][2]) > 0  # adaptlr and torch foreach timed
    assert float(rows["Prodigy"][4]) > 0  # the prodigyopt package timed
    assert "adam[float32]" in out.stdout and "prodigy_stats[float32, sums]" in out.stdout
    assert "did not run on the triton engine" not in out.stdout
    if not torch.cuda.is_available():
        out = subprocess.run(
            [sys.executable, str(BENCH), "--device", "cuda"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 2 and "no CUDA device" in out.stdout


def test_fused_supported_names_what_a_cpu_tensor_can_run_fused():
    assert _select.fused_supported(torch.zeros(2, dtype=torch.float64))
    assert _select.fused_supported(torch.zeros(2, dtype=torch.complex64))
    assert not _select.fused_supported(torch.zeros(2, dtype=torch.bfloat16))  # (bfloat16: triton, on CUDA only)
    assert not _select.fused_supported(torch.zeros(2, dtype=torch.float32, device="meta"))
