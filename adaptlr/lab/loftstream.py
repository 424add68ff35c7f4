"""The loft set's drifting stream (``loft-fm-drift``, :mod:`adaptlr.lab.tasks_loft`): a factorization machine
trained on a click stream whose users' pairwise preferences drift from one concept to another while it trains, its
batches served in stream order; all deterministic, from fixed seeds (nothing downloads).

>>> make_fm_drift().x_train.shape
torch.Size([128000, 8])
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D

__all__ = ["FM_FIELDS", "FM_VALUES", "FactorizationMachine", "StreamData", "bce_loss", "drift_logits", "make_fm_drift"]

FM_FIELDS, FM_VALUES, FM_RANK = 8, 40, 8
#: the stream's length in rows: the task's budget (4,000 steps of 32) walks it exactly once
FM_STREAM = 4000 * 32
#: consecutive batches shuffled together: the stream's order is kept at this scale
STREAM_BLOCK = 8


class StreamData(D.ArrayData):
    """:class:`~adaptlr.lab.data.ArrayData` whose training rows are a stream in time order: :meth:`batches` walks
    them front to back, shuffling only within blocks of :data:`STREAM_BLOCK` batches, and starts over at the end."""

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x_train)
        batch_size = min(batch_size, n)
        block = STREAM_BLOCK * batch_size
        while True:
            for start in range(0, n - batch_size + 1, block):
                rows = start + torch.randperm(min(block, n - start), generator=generator)
                for i in range(0, len(rows) - batch_size + 1, batch_size):
                    idx = rows[i : i + batch_size]
                    yield self.x_train[idx], self.y_train[idx]


@functools.cache
def _concepts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The click model's fixed parts (seed 106): per-value biases ``(8, 40)`` and two concepts' value factors
    ``(2, 8, 40, 4)`` (the old preferences and the new)."""
    rng = np.random.default_rng(106)
    bias = 0.3 * rng.standard_normal((FM_FIELDS, FM_VALUES))
    factors = rng.standard_normal((2, FM_FIELDS, FM_VALUES, 4)) * 0.45
    popularity = rng.dirichlet(np.full(FM_VALUES, 0.7), FM_FIELDS)
    return bias, factors, popularity


def drift_logits(x: np.ndarray, time: np.ndarray) -> np.ndarray:
    """The true click logit of rows ``x`` ``(n, 8)`` (value ids) at stream times ``time`` ``(n,)`` in ``[0, 1]``:
    the values' biases plus the pairwise interactions of a concept that turns from the old to the new one
    (``cos``/``sin`` of ``pi t / 2``)."""
    bias, factors, _ = _concepts()
    fields = np.arange(FM_FIELDS)
    lin = bias[fields, x].sum(1)
    out = lin.copy()
    for k, w in enumerate([np.cos(np.pi * time / 2), np.sin(np.pi * time / 2)]):
        v = factors[k][fields, x]  # (n, 8, 4)
        pair = 0.5 * (v.sum(1) ** 2 - (v**2).sum(1)).sum(1)
        out += w * pair
    return out - 0.5


@functools.cache
def make_fm_drift(n: int = FM_STREAM, n_val: int = 3000, n_test: int = 3000, seed: int = 107) -> StreamData:
    """A click stream: rows ``(n, 8)`` int64 (one value of 40 per field, drawn by popularity), in time order from
    ``t = 0`` to ``1``, each clicked (target 1.0, float32) with the probability of :func:`drift_logits` at its
    time; validation and test are drawn at ``t = 1`` (the present). Every row is distinct."""
    _, _, popularity = _concepts()
    rng = np.random.default_rng(seed)
    m = int(1.02 * (n + n_val + n_test))
    x = np.stack([rng.choice(FM_VALUES, m, p=popularity[f]) for f in range(FM_FIELDS)], 1)
    _, first = np.unique(x, axis=0, return_index=True)
    x = x[np.sort(first)][: n + n_val + n_test]
    time = np.concatenate([np.linspace(0, 1, n), np.ones(n_val + n_test)])
    y = (rng.uniform(0, 1, len(x)) < 1 / (1 + np.exp(-drift_logits(x, time)))).astype(np.float32)
    t = torch.from_numpy
    a, b = n, n + n_val
    return StreamData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class FactorizationMachine(nn.Module):
    """A factorization machine (Rendle, 2010) over 8 one-hot fields of 40 values: a global bias, a weight per value
    and a rank-8 factor per value; the logit ``b + sum_i w_i + sum_{i<j} <v_i, v_j>`` ``(n,)``."""

    def __init__(self, rank: int = FM_RANK) -> None:
        super().__init__()
        self.weights = nn.Embedding(FM_FIELDS * FM_VALUES, 1)
        self.factors = nn.Embedding(FM_FIELDS * FM_VALUES, rank)
        nn.init.zeros_(self.weights.weight)
        nn.init.normal_(self.factors.weight, std=0.1)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("offsets", torch.arange(FM_FIELDS) * FM_VALUES, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x + self.offsets
        v = self.factors(idx)
        pair = 0.5 * (v.sum(1).square() - v.square().sum(1)).sum(1)
        return self.bias + self.weights(idx).sum((1, 2)) + pair


def bce_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The binary cross-entropy of click logits ``out`` against clicks ``y`` (0 / 1), the mean over rows (nats)."""
    return F.binary_cross_entropy_with_logits(out, y)
