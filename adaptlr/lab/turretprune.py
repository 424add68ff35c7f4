"""The turret set's fine-tuning task (``turret-pruned-recovery``, :mod:`adaptlr.lab.tasks_turret`): a dense MLP
pretrained in its builder, magnitude-pruned to a tenth of its hidden weights and fine-tuned to recover, the pruning
mask fixed; all deterministic, from fixed seeds (nothing downloads).

>>> make_pruned_rows().x_train.shape
torch.Size([600, 24])
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import pretrain

__all__ = ["PRUNE_CLASSES", "PRUNE_DIM", "PRUNE_KEEP", "PrunedMLP", "make_pruned_rows", "pretrained_dense"]

PRUNE_DIM, PRUNE_CLASSES, PRUNE_HIDDEN = 24, 6, 128
#: the share of each hidden layer's weights the pruning keeps (the largest in magnitude)
PRUNE_KEEP = 0.1


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows ``(n, 24)`` and their classes (6, int64): 4 latent factors through a fixed nonlinear map (seed 115)
    plus noise of std 0.3; the class is the argmax of a fixed random quadratic form of the factors (with 5% of the
    labels drawn at random)."""
    g = np.random.default_rng(115)
    lift, bias = g.standard_normal((4, PRUNE_DIM)), g.standard_normal(PRUNE_DIM)
    forms = g.standard_normal((PRUNE_CLASSES, 4, 4)) / 2
    z = rng.standard_normal((n, 4))
    x = np.tanh(z @ lift + 0.5 * bias) + 0.3 * rng.standard_normal((n, PRUNE_DIM))
    score = np.einsum("ni,kij,nj->nk", z, forms, z) + z @ g.standard_normal((4, PRUNE_CLASSES))
    y = np.where(rng.uniform(0, 1, n) < 0.05, rng.integers(0, PRUNE_CLASSES, n), score.argmax(1))
    return x.astype(np.float32), y.astype(np.int64)


@functools.cache
def make_pruned_rows(n: int = 600, n_val: int = 2000, n_test: int = 3000, seed: int = 116) -> D.ArrayData:
    """The fine-tuning rows (:func:`_rows`): ``n`` train, ``n_val`` validate, ``n_test`` test (the pretraining's own
    rows are another draw, seed 117)."""
    x, y = _rows(np.random.default_rng(seed), n + n_val + n_test)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class _Dense(nn.Module):
    """An MLP 24-128-128-6 (ReLU): the dense network that is pretrained, then pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(PRUNE_DIM, PRUNE_HIDDEN), nn.Linear(PRUNE_HIDDEN, PRUNE_HIDDEN)])
        self.out = nn.Linear(PRUNE_HIDDEN, PRUNE_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


@functools.cache
def pretrained_dense() -> dict[str, torch.Tensor]:
    """The state dict of :class:`_Dense` trained on 20,000 rows (seed 117; AdamW lr 3e-3, 600 steps of 128, by
    :func:`~adaptlr.lab.tasks.pretrain`, the global RNG untouched): computed once per process."""
    x, y = _rows(np.random.default_rng(117), 20000)
    return pretrain(_Dense, torch.from_numpy(x), torch.from_numpy(y), F.cross_entropy, steps=600, batch=128)


class PrunedMLP(_Dense):
    """:class:`_Dense` holding :func:`pretrained_dense`'s weights with each hidden layer magnitude-pruned to its
    largest tenth (Han et al., 2015): the masks are buffers, the pruned weights held at zero in the forward pass
    (their gradient is zero), the output layer dense; to be fine-tuned."""

    def __init__(self) -> None:
        super().__init__()
        self.load_state_dict(pretrained_dense())
        for i, layer in enumerate(self.hidden):
            w = layer.weight.detach().abs()
            cut = torch.quantile(w.flatten(), 1.0 - PRUNE_KEEP)
            self.register_buffer(f"mask{i}", (w > cut).float(), persistent=False)
            with torch.no_grad():
                layer.weight.mul_(getattr(self, f"mask{i}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.hidden):
            x = F.relu(F.linear(x, layer.weight * getattr(self, f"mask{i}"), layer.bias))
        return self.out(x)
