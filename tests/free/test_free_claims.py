"""The claims of the learning-rate-free methods, measured on convex logistic regression.

Problem: scikit-learn's breast_cancer (569 x 30, standardised, bundled with scikit-learn), a linear model with a
bias (two parameter tensors), mean logistic loss + 5e-4 ||w||^2 (strongly convex: a finite optimum), full batch,
500 steps, float64. Each method runs at its defaults except the initial estimate (d0 = reps_rel = 1e-6 is the
default).

- quality: each method's final loss at default settings over the best final loss of Adam on a 7-point
  learning-rate grid (1e-4 .. 1e-1);
- robustness: the spread (max / min final loss) when d0 -- DoG's reps_rel -- goes from 1e-8 to 1e-2;
- every method beats Adam at a badly chosen lr of 1e-5.

Run ``python tests/test_free_claims.py`` to print the table.
"""

import functools
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (tests/: the shared helpers)
from _optim_table import ROWS  # noqa: E402

import adaptlr  # noqa: E402

sklearn = pytest.importorskip("sklearn") if __name__ != "__main__" else __import__("sklearn")

STEPS = 500
ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
INITIAL = (1e-8, 1e-6, 1e-4, 1e-2)
#: name: (class, keyword of the initial estimate): every method of tests/_optim_table.py that estimates its step size
METHODS = {row.name: (row.cls, row.lr_free) for row in ROWS.values() if row.lr_free is not None}


@functools.cache
def _data():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = np.hstack([X, np.ones((len(X), 1))])  # the bias is the last weight (not decayed)
    decay = np.r_[np.full(X.shape[1] - 1, 5e-4), 0.0]
    return torch.tensor(X), torch.tensor(y, dtype=torch.float64), torch.tensor(decay)


def _loss_and_grad(theta):
    """Mean logistic loss + 5e-4 ||w||^2 and its gradient (written out: autograd would dominate the time)."""
    X, y, decay = _data()
    z = X @ theta
    loss = torch.nn.functional.softplus(z).mean() - (y * z).mean() + (decay * theta * theta).sum()
    grad = X.T @ (torch.sigmoid(z) - y) / len(y) + 2 * decay * theta
    return float(loss), grad


def final_loss(make_opt, steps=STEPS, average=False):
    """Final loss of ``steps`` full-batch steps from zero (at the polynomial-decay average if ``average``).
    The weights and the bias are two parameter tensors (LDoG gives each its own step size)."""
    model = torch.nn.Module()
    n = _data()[0].shape[1]
    model.w = torch.nn.Parameter(torch.zeros(n - 1, dtype=torch.float64))
    model.b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = make_opt([model.w, model.b])
    averager = adaptlr.PolynomialDecayAverager(model) if average else None
    for _ in range(steps):
        grad = _loss_and_grad(torch.cat([model.w.detach(), model.b.detach()]))[1]
        model.w.grad, model.b.grad = grad[:-1].clone(), grad[-1:].clone()
        opt.step()
        if averager is not None:
            averager.step()
    final = averager.averaged_model if average else model
    return _loss_and_grad(torch.cat([final.w.detach(), final.b.detach()]))[0]


@functools.cache
def measure():
    adam = {lr: final_loss(lambda p, lr=lr: torch.optim.Adam(p, lr=lr)) for lr in ADAM_GRID}
    best_adam = min(adam.values())
    bad_adam = final_loss(lambda p: torch.optim.Adam(p, lr=1e-5))
    rows = {}
    for name, (cls, key) in METHODS.items():
        by_initial = {
            v: final_loss(lambda p, cls=cls, key=key, v=v: cls(p, **{key: v}, foreach=False)) for v in INITIAL
        }
        default = by_initial[1e-6]  # the default d0 and reps_rel
        rows[name] = dict(
            loss=default,
            vs_best_adam=default / best_adam,
            spread=max(by_initial.values()) / min(by_initial.values()),
            worst=max(by_initial.values()),
        )
    sf = final_loss(lambda p: adaptlr.ScheduleFreeAdamW(p))
    return dict(adam=adam, best_adam=best_adam, bad_adam=bad_adam, rows=rows, sf_adamw=sf)


def extras():
    """For the printed table only: a tuned-SGD grid (the DoG and D-Adapt SGD papers' baseline), DoG with the
    paper's iterate averaging, Schedule-Free at its eval point."""
    sgd = {lr: final_loss(lambda p, lr=lr: torch.optim.SGD(p, lr=lr)) for lr in (0.01, 0.03, 0.1, 0.3, 1, 3, 10)}
    dog_avg = final_loss(lambda p: adaptlr.DoG(p, foreach=False), average=True)
    ldog_avg = final_loss(lambda p: adaptlr.LDoG(p, foreach=False), average=True)
    return dict(sgd=sgd, dog_avg=dog_avg, ldog_avg=ldog_avg)


@pytest.mark.parametrize("name", list(METHODS))
def test_spread_over_initial_estimates_is_under_2x(name):
    assert measure()["rows"][name]["spread"] < 2.0


@pytest.mark.parametrize("name", list(METHODS))
def test_beats_adam_at_a_bad_learning_rate(name):
    m = measure()
    assert m["rows"][name]["worst"] < m["bad_adam"]


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptAdam", "DoG"])
def test_close_to_tuned_adam(name):
    """The headline claim: without tuning, within a small factor of Adam's best grid point."""
    assert measure()["rows"][name]["vs_best_adam"] < 1.5


def main():
    m = measure()
    print("Adam grid (final loss): " + ", ".join(f"{lr:g}: {v:.4f}" for lr, v in m["adam"].items()))
    print(
        f"best Adam {m['best_adam']:.4f}; Adam lr=1e-5: {m['bad_adam']:.4f}; "
        f"ScheduleFreeAdamW default: {m['sf_adamw']:.4f}"
    )
    print(f"{'method':15s} {'final loss':>10s} {'/best Adam':>10s} {'spread d0 1e-8..1e-2':>22s} {'worst':>8s}")
    for name, r in m["rows"].items():
        print(f"{name:15s} {r['loss']:10.4f} {r['vs_best_adam']:10.3f} {r['spread']:22.3f} {r['worst']:8.4f}")
    e = extras()
    best_sgd = min(e["sgd"].values())
    print("SGD grid (final loss): " + ", ".join(f"{lr:g}: {v:.4f}" for lr, v in e["sgd"].items()))
    print(
        f"best SGD {best_sgd:.4f}; DoG + polynomial averaging {e['dog_avg']:.4f} "
        f"({e['dog_avg'] / m['best_adam']:.3f} x best Adam); LDoG + averaging {e['ldog_avg']:.4f}"
    )


if __name__ == "__main__":
    main()
