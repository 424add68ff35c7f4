"""Linear regression from scratch: gradient descent, mini-batch SGD, momentum, RMSprop and Adam.

The classic first experiment with optimizers, done carefully:

* data ``y = theta0 + theta1 * x + noise`` with a known ``theta_true``;
* the loss is the mean squared error ``L(theta) = mean(r^2)`` with residuals ``r = theta0 + theta1 x - y``,
  and its gradient is written out by hand: ``dL/dtheta0 = 2 mean(r)``, ``dL/dtheta1 = 2 mean(r x)``;
* every method starts from the same ``theta = (0, 0)`` and uses the float64 NumPy reference optimizers of
  ``adaptlr.reference`` (the same update rules as ``torch.optim``; Adam includes its bias corrections
  ``1 - beta1^t`` and ``1 - beta2^t``, without which its first steps would be far too small);
* the result is compared with the exact least-squares solution (the normal equations).

Run it: ``python examples/linear_regression_from_scratch.py`` (about a second).
"""

from __future__ import annotations

import numpy as np

from adaptlr import reference

THETA_TRUE = np.array([4.0, 3.0])  # intercept, slope


def make_data(n: int = 1000, noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0, size=n)
    y = THETA_TRUE[0] + THETA_TRUE[1] * x + noise * rng.normal(size=n)
    return x, y


def mse(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((theta[0] + theta[1] * x - y) ** 2))


def mse_grad(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean squared error over the points (x, y): 2 mean(r * (1, x))."""
    r = theta[0] + theta[1] * x - y
    return np.array([2.0 * np.mean(r), 2.0 * np.mean(r * x)])


def train(
    make_optimizer, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int | None, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Train theta from zero; batch_size=None is full-batch gradient descent. Returns (theta, steps)."""
    theta = np.zeros(2)
    opt = make_optimizer([theta])  # the optimizer updates theta in place
    rng = np.random.default_rng(seed)
    n, steps = len(x), 0
    for _ in range(epochs):
        order = rng.permutation(n) if batch_size else np.arange(n)
        for start in range(0, n, batch_size or n):
            batch = order[start : start + (batch_size or n)]
            opt.step([mse_grad(theta, x[batch], y[batch])])
            steps += 1
    return theta, steps


METHODS = {
    # name: (optimizer factory, epochs, batch size)
    "GD (full batch)": (lambda p: reference.SGD(p, lr=0.3), 300, None),
    "mini-batch SGD": (lambda p: reference.SGD(p, lr=0.05), 40, 32),
    "SGD + momentum": (lambda p: reference.SGD(p, lr=0.005, momentum=0.9), 40, 32),
    "RMSprop": (lambda p: reference.RMSprop(p, lr=0.01), 40, 32),
    "Adam": (lambda p: reference.Adam(p, lr=0.05), 40, 32),
}


def main(seed: int = 0, verbose: bool = True) -> list[dict]:
    x, y = make_data(seed=seed)
    design = np.stack([np.ones_like(x), x], axis=1)
    theta_ls = np.linalg.solve(design.T @ design, design.T @ y)  # the exact minimiser of the MSE
    rows = [dict(method="least squares (exact)", mse=mse(theta_ls, x, y), theta=theta_ls, steps=0)]
    for name, (make_optimizer, epochs, batch_size) in METHODS.items():
        theta, steps = train(make_optimizer, x, y, epochs=epochs, batch_size=batch_size, seed=seed)
        rows.append(dict(method=name, mse=mse(theta, x, y), theta=theta, steps=steps))
    for row in rows:
        row["error"] = float(np.linalg.norm(row["theta"] - THETA_TRUE))  # statistical + optimisation error
        row["error_ls"] = float(np.linalg.norm(row["theta"] - theta_ls))  # optimisation error alone
    if verbose:
        print(f"y = {THETA_TRUE[0]} + {THETA_TRUE[1]} x + noise, {len(x)} points\n")
        print(
            f"{'method':<24}{'final MSE':>10}{'theta0':>9}{'theta1':>9}{'|theta - theta_true|':>22}"
            f"{'|theta - theta_ls|':>20}{'steps':>7}"
        )
        for r in rows:
            print(
                f"{r['method']:<24}{r['mse']:>10.4f}{r['theta'][0]:>9.4f}{r['theta'][1]:>9.4f}"
                f"{r['error']:>22.4f}{r['error_ls']:>20.4f}{r['steps']:>7d}"
            )
    return rows


if __name__ == "__main__":
    main()
