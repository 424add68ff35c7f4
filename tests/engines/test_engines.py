"""The engine contract (docs/CONTRACTS.md) exercised directly: writes, sums, constants, swaps, every op."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import adaptlr
from adaptlr import engines
from adaptlr.engines import ENGINES, get_engine
from adaptlr.engines._raw import _cache_dir
from adaptlr.rules import _math, elementwise


@elementwise
def everything(a, b, c, s, t, flip):
    """Uses every op of the math module and a flag; returns two new values and two sum terms."""
    x = _math.sqrt(_math.abs(a) + 1.0) * s - _math.sign(b) / (2.0 + _math.exp(-_math.abs(c)))
    y = _math.maximum(a, b) - _math.minimum(b, c) ** 2 + _math.log(1.0 + c * c) * t
    y = _math.where(a - b, y, -y)
    if flip:
        x, y = y, x
    return x, y, x * y, 2.0


@elementwise
def swap(a, b):
    return b, a


def columns(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = [(), (7,), (3, 5), (40_000,)]  # the last one spans two chunks of the fused engine
    return [[torch.randn(s, generator=g, dtype=dtype) for s in shapes] for _ in range(3)]


@pytest.mark.parametrize("flip", [False, True])
def test_every_engine_computes_the_same_writes_and_sums(flip):
    results = {}
    for name in ENGINES:
        cols = columns(0)
        sums = get_engine(name).apply(everything, cols, (0, 1), (0.7, -1.3), (flip,), n_sums=2)
        results[name] = (cols, sums)
    expected_cols, expected_sums = results["loop"]
    assert expected_sums[1] == pytest.approx(2.0 * sum(t.numel() for t in expected_cols[0]))
    for name in ("foreach", "fused"):
        cols, sums = results[name]
        assert sums == pytest.approx(expected_sums, rel=1e-12)
        for got, want in zip(cols, expected_cols):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ENGINES)
def test_writes_that_swap_two_columns(name):
    cols = columns(1)[:2]
    before = [[t.clone() for t in c] for c in cols]
    get_engine(name).apply(swap, cols, (0, 1))
    for got, want in zip(cols[0] + cols[1], before[1] + before[0]):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ENGINES)
def test_a_constant_column_is_a_placeholder(name):
    cols = columns(2)[:2]
    before = [t.clone() for t in cols[1]]
    get_engine(name).apply(swap, [cols[0], 0.0], (0, 1))  # writes 0.0 into column 0; column 1 absent
    assert all(bool((t == 0).all()) for t in cols[0])
    assert all(torch.equal(a, b) for a, b in zip(cols[1], before))


def test_kernel_cache_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ADAPTLR_CACHE_DIR", str(blocker))
    path = _cache_dir()
    assert path.is_dir() and str(blocker) not in str(path)


def test_unknown_engine():
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("no-such-engine")


# ------------------------------------------------------------------------------------- the public face
ROOT = Path(adaptlr.__file__).resolve().parent


def _imports(path):
    """(module, names) of every import in ``path``, at any depth (lazy imports inside functions count)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_nothing_outside_the_engines_imports_their_private_names():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT / "engines":
            continue
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_")] if module == "adaptlr.engines" else []
            if module.startswith("adaptlr.engines._") or private:
                found.append(f"{path.relative_to(ROOT)}: {module} {private or ''}")
    assert not found, "\n".join(found)


def test_the_one_pass_engines_do_not_import_the_selection_back():
    """No import cycle inside the engines: the selection imports the engines, never the other way round."""
    for name in ("_numba", "_triton", "_triton_source", "_raw", "_trace", "_foreach", "_loop", "_layout"):
        modules = {m for m, _ in _imports(ROOT / "engines" / f"{name}.py")}
        assert not modules & {"adaptlr.engines", "adaptlr.engines._select", "adaptlr.engines._registry"}, name


def test_partition_names_engines_and_the_fused_preference_is_the_users_word():
    cpu = [[torch.ones(3)], [torch.ones(3)]]
    assert engines.partition("fused", cpu) == [("numba", [0])]
    assert engines.partition(None, cpu) == [("numba", [0])]
    assert get_engine("numba") is get_engine("fused")  # ("fused" asks for the one-pass engine of the device)
    assert set(engines.ENGINE_NAMES) == {"numba", "triton", "foreach", "loop"}


@pytest.mark.parametrize("name", ["numba", "foreach", "loop"])
def test_every_engine_answers_the_one_call_shape(name):
    """``apply_checked(fn, columns, writes, scalars, flags, n_sums, pointers=...)`` on every engine, as
    :func:`adaptlr.engines.execute` calls it, gives what ``apply`` gives."""
    a, b = columns(3), columns(3)
    engine = get_engine(name)
    pointers = [[t.data_ptr() for t in c] for c in a]
    got = engine.apply_checked(everything, a, (0, 1), (0.7, -1.3), (True,), 2, pointers=pointers)
    want = engine.apply(everything, b, (0, 1), (0.7, -1.3), (True,), n_sums=2)
    assert got == pytest.approx(want, rel=1e-12)
    for x, y in zip(a, b):
        for s, t in zip(x, y):
            torch.testing.assert_close(s, t, rtol=0, atol=0)
