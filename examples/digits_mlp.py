"""An MLP on scikit-learn's bundled 8x8 digits: find the learning rate, schedule it, train, evaluate.

    python examples/digits_mlp.py [--epochs 8]

1. ``adaptlr.lr_find`` runs the LR range test (and restores the model and optimizer afterwards);
2. ``result.schedule`` turns its suggestion into a one-cycle schedule over the whole run;
3. ``adaptlr.AdamW`` takes the schedule as ``lr``; a ``ReduceOnPlateau`` controller multiplies it when the
   held-out loss stops improving.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits

import adaptlr
from adaptlr.controllers import ReduceOnPlateau


def data(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:1500], perm[1500:]
    return (x[train], y[train]), (x[test], y[test])


def batches(x, y, size, seed):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [(x[perm[i : i + size]], y[perm[i : i + size]]) for i in range(0, len(x), size)]


def main(epochs: int = 8, batch: int = 64, seed: int = 0) -> float:
    torch.manual_seed(seed)
    (x, y), (x_test, y_test) = data(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    loss_fn = torch.nn.functional.cross_entropy
    opt = adaptlr.AdamW(model.parameters(), lr=1e-3)

    found = adaptlr.lr_find(model, loss_fn, batches(x, y, batch, seed), opt, start=1e-5, end=1.0, steps=len(x) // batch)
    steps_per_epoch = -(-len(x) // batch)
    opt.set_lr(found.schedule(epochs * steps_per_epoch, kind="one_cycle"))
    plateau = ReduceOnPlateau(opt, patience=1, factor=0.5)
    print(f"lr_find suggests {found.lr:.2e} ({found.suggestion.method}); one-cycle schedule peaks there")

    for epoch in range(epochs):
        model.train()
        for xb, yb in batches(x, y, batch, seed + epoch):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_test)
            test_loss = float(loss_fn(logits, y_test))
            accuracy = float((logits.argmax(1) == y_test).float().mean())
        plateau.observe(test_loss)
        print(f"epoch {epoch + 1}: test loss {test_loss:.3f}, accuracy {accuracy:.1%}, lr {opt.current_lr():.2e}")
    return accuracy


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    main(ap.parse_args().epochs)
