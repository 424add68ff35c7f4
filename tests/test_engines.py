"""The engine contract (docs/CONTRACTS.md) exercised directly: writes, sums, constants, swaps, every op."""

from __future__ import annotations

import pytest
import torch

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
