"""examples/linear_regression_from_scratch.py runs and every method recovers the true line."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "examples" / "linear_regression_from_scratch.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("linear_regression_from_scratch", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_analytic_gradient_matches_finite_differences(example):
    x, y = example.make_data(n=50, seed=3)
    theta, h = np.array([0.7, -1.3]), 1e-6
    numeric = [(example.mse(theta + h * e, x, y) - example.mse(theta - h * e, x, y)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(example.mse_grad(theta, x, y), numeric, rtol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_method_recovers_theta(example, seed, capsys):
    rows = example.main(seed=seed)
    table = capsys.readouterr().out
    assert [r["method"] for r in rows] == ["least squares (exact)", *example.METHODS]
    best_mse = rows[0]["mse"]
    for r in rows:
        assert r["method"] in table
        assert r["error"] < 0.1, f"{r['method']}: theta = {r['theta']}, true {example.THETA_TRUE}"
        assert r["error_ls"] < 0.08, f"{r['method']}: theta = {r['theta']}, least squares {rows[0]['theta']}"
        assert best_mse * (1 - 1e-12) <= r["mse"] < 1.02 * best_mse, r["method"]
    assert all(r["steps"] > 0 for r in rows[1:])
