"""Unseen tasks for the tuning-free benchmark: a second holdout set, built after every tuner default was fixed,
to judge the tuners at the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, where the best lr lies); all data is generated
from numpy / scikit-learn with fixed seeds (nothing downloads):

- ``unseen-transformer-mode``: a bidirectional transformer encoder (2 layers, d=32) naming the most frequent
  of 8 tokens in a random sequence of 24 (a counting task); cross-entropy, metric: accuracy;
- ``unseen-matfac``: matrix factorisation (user and item embeddings of dim 8 plus biases) of a noisy rank-4
  ratings matrix, 25% of it observed; MSE; its best lr is large (~0.1), its grid its own;
- ``unseen-friedman-ln``: an MLP with LayerNorm and GELU regressing scikit-learn's Friedman #1 target (10
  features, 5 of them noise) under heteroscedastic noise; MSE;
- ``unseen-noisy-bn``: an MLP with BatchNorm and dropout classifying scikit-learn's ``make_classification``
  data with 20% of the labels flipped (it overfits them); metric: test cross-entropy.

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1) a 7-point
half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("unseen-matfac").metric
'mse'
>>> UNSEEN[0]
'unseen-transformer-mode'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from . import data as D
from .tasks import Task, mse, register_task

__all__ = [
    "GRIDS",
    "UNSEEN",
    "CountTransformer",
    "MatFac",
    "make_count_tokens",
    "make_friedman_hetero",
    "make_noisy_classes",
    "make_ratings",
]

UNSEEN: tuple[str, ...] = ("unseen-transformer-mode", "unseen-matfac", "unseen-friedman-ln", "unseen-noisy-bn")

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1); each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {"unseen-matfac": (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)}


# ---- unseen-transformer-count ----------------------------------------------------------------------------

COUNT_VOCAB = 8
COUNT_LENGTH = 24


@functools.cache
def make_count_tokens(n: int = 6000, n_test: int = 1000, seed: int = 11) -> D.ArrayData:
    """Sequences of ``COUNT_LENGTH`` tokens drawn uniformly from ``COUNT_VOCAB``; the label is the most frequent
    token (a tie goes to the smallest token id). Inputs ``(n, 24)`` int64, labels ``(n,)`` in ``0 ..
    COUNT_VOCAB - 1``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, COUNT_VOCAB, (n, COUNT_LENGTH))
    counts = (x[:, :, None] == np.arange(COUNT_VOCAB)).sum(1)
    return D.split_arrays(x.astype(np.int64), counts.argmax(1).astype(np.int64), n_test, seed)


class CountTransformer(nn.Module):
    """Token and learned position embeddings, a 2-layer bidirectional ``nn.TransformerEncoder`` (pre-norm, 4
    heads, no dropout), mean pooling over positions and a linear head."""

    def __init__(self, vocab: int = COUNT_VOCAB, length: int = COUNT_LENGTH, dim: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(length, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.tok(idx) + self.pos[: idx.shape[1]])
        return self.head(self.norm(h).mean(1))


# ---- unseen-matfac ---------------------------------------------------------------------------------------

USERS, ITEMS = 300, 200


@functools.cache
def make_ratings(
    rank: int = 4, observed: float = 0.25, noise: float = 0.5, n_test: int = 3000, seed: int = 12
) -> D.ArrayData:
    """A ratings matrix ``USERS x ITEMS``: ``r = u . v + b_user + b_item + noise * eps`` with ``u, v ~ N(0,
    I / sqrt(rank))`` of dimension ``rank`` and biases ~ N(0, 0.3^2); a fraction ``observed`` of the entries
    (drawn without replacement) are the rows. Inputs ``(n, 2)`` int64 (user, item), targets ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((USERS, rank)) / rank**0.25
    v = rng.standard_normal((ITEMS, rank)) / rank**0.25
    bu, bi = 0.3 * rng.standard_normal(USERS), 0.3 * rng.standard_normal(ITEMS)
    cells = rng.choice(USERS * ITEMS, int(observed * USERS * ITEMS), replace=False)
    user, item = cells // ITEMS, cells % ITEMS
    r = (u[user] * v[item]).sum(1) + bu[user] + bi[item] + noise * rng.standard_normal(len(cells))
    x = np.stack([user, item], 1).astype(np.int64)
    return D.split_arrays(x, r[:, None].astype(np.float32), n_test, seed)


class MatFac(nn.Module):
    """Biased matrix factorisation: ``user_emb . item_emb + user_bias + item_bias + mean``, embeddings of
    dimension ``dim`` started at N(0, 0.1^2), biases at zero."""

    def __init__(self, users: int = USERS, items: int = ITEMS, dim: int = 8) -> None:
        super().__init__()
        self.user = nn.Embedding(users, dim)
        self.item = nn.Embedding(items, dim)
        self.user_bias = nn.Embedding(users, 1)
        self.item_bias = nn.Embedding(items, 1)
        self.mean = nn.Parameter(torch.zeros(1))
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[:, 0], x[:, 1]
        dot = (self.user(u) * self.item(i)).sum(-1, keepdim=True)
        return dot + self.user_bias(u) + self.item_bias(i) + self.mean


# ---- unseen-friedman-ln ----------------------------------------------------------------------------------


@functools.cache
def make_friedman_hetero(n: int = 2000, n_test: int = 400, seed: int = 13) -> D.ArrayData:
    """scikit-learn's Friedman #1 (10 uniform features, the target depends on the first 5), inputs centred and
    scaled to unit variance, target standardised, plus heteroscedastic Gaussian noise of std ``0.1 + 0.8
    u_4`` (``u_4`` the fifth feature in [0, 1]: std 0.1 .. 0.9)."""
    from sklearn.datasets import make_friedman1

    u, y = make_friedman1(n_samples=n, n_features=10, noise=0.0, random_state=seed)
    rng = np.random.default_rng(seed)
    y = (y - y.mean()) / y.std() + (0.1 + 0.8 * u[:, 4]) * rng.standard_normal(n)
    x = (u - 0.5) * np.sqrt(12.0)
    return D.split_arrays(x.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


def _friedman_model() -> nn.Module:
    """MLP 10-64-64-1, each hidden layer Linear -> LayerNorm -> GELU."""
    return nn.Sequential(
        nn.Linear(10, 64),
        nn.LayerNorm(64),
        nn.GELU(),
        nn.Linear(64, 64),
        nn.LayerNorm(64),
        nn.GELU(),
        nn.Linear(64, 1),
    )


# ---- unseen-noisy-bn -------------------------------------------------------------------------------------


@functools.cache
def make_noisy_classes(n: int = 1600, n_test: int = 400, flip: float = 0.2, seed: int = 14) -> D.ArrayData:
    """scikit-learn's ``make_classification``: 3 classes, 20 features (6 informative, 4 redundant), 2 clusters
    per class, ``flip_y=flip`` (that fraction of labels, test included, drawn at random). Inputs ``(n, 20)``,
    labels ``(n,)``."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=6,
        n_redundant=4,
        n_classes=3,
        n_clusters_per_class=2,
        flip_y=flip,
        class_sep=1.0,
        random_state=seed,
    )
    return D.split_arrays(x.astype(np.float32), y.astype(np.int64), n_test, seed)


def _noisy_bn_model() -> nn.Module:
    """MLP 20-128-128-3, each hidden layer Linear -> BatchNorm1d -> ReLU -> Dropout(0.2)."""
    return nn.Sequential(
        nn.Linear(20, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 3),
    )


for _task in [
    Task(
        "unseen-transformer-mode",
        CountTransformer,
        make_count_tokens,
        steps=300,
        batch_size=64,
        target=0.9,
        description="2-layer transformer encoder (d=32, mean-pooled) naming the most frequent of 8 tokens in a "
        "random sequence of 24 (ties: the smallest id); metric: test accuracy",
    ),
    Task(
        "unseen-matfac",
        MatFac,
        make_ratings,
        mse,
        "mse",
        steps=400,
        batch_size=128,
        target=0.5,
        description=f"biased matrix factorisation (dim 8) of a noisy rank-4 {USERS}x{ITEMS} ratings matrix, "
        "25% observed, noise std 0.5 (MSE floor 0.25): best lr ~0.1",
    ),
    Task(
        "unseen-friedman-ln",
        _friedman_model,
        make_friedman_hetero,
        mse,
        "mse",
        steps=600,
        batch_size=64,
        target=0.42,
        description="MLP 10-64-64-1 with LayerNorm and GELU on Friedman #1 (standardised) with heteroscedastic "
        "noise std 0.1 .. 0.9 (MSE floor ~0.30)",
    ),
    Task(
        "unseen-noisy-bn",
        _noisy_bn_model,
        make_noisy_classes,
        metric="loss",
        steps=500,
        batch_size=64,
        target=0.8,
        description="MLP 20-128-128-3 with BatchNorm and dropout on make_classification with 20% of the labels "
        "flipped (960 training rows: it overfits); metric: test cross-entropy",
    ),
]:
    register_task(_task)
