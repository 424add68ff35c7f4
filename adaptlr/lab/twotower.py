"""The attic set's fine-tuning task (``attic-twotower-shift``, :mod:`adaptlr.lab.tasks_attic`): a two-tower
recommender pretrained with BPR on last year's implicit feedback, fine-tuned after its users' preferences drift; all
deterministic, from fixed seeds (nothing downloads).

>>> make_twotower().x_val.shape
torch.Size([60000, 3, 16])
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import pretrain

__all__ = ["TOWER_FEATURES", "TwoTower", "make_twotower", "pretrained_towers"]

TOWER_FEATURES = 16


def _interactions(rng: np.random.Generator, n: int, prefs: np.ndarray) -> np.ndarray:
    """``n`` implicit-feedback triples ``(n, 3, 16)``: a user's features, an item it chose (by softmax of the true
    affinity ``u^T P i`` over 20 random candidates) and a random item it did not."""
    users = rng.standard_normal((n, TOWER_FEATURES))
    cands = rng.standard_normal((n, 20, TOWER_FEATURES))
    aff = np.einsum("nd,de,nke->nk", users, prefs, cands) + np.tanh(cands[..., 0] * 2)
    p = np.exp(aff - aff.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pick = (p.cumsum(1) < rng.uniform(0, 1, (n, 1))).sum(1).clip(0, 19)
    pos = cands[np.arange(n), pick]
    neg = rng.standard_normal((n, TOWER_FEATURES))
    return np.stack([users, pos, neg], 1).astype(np.float32)


def _prefs() -> tuple[np.ndarray, np.ndarray]:
    """The true preference matrices, last year's and this year's (a drift of a third of its size), from seed 86."""
    rng = np.random.default_rng(86)
    old = rng.standard_normal((TOWER_FEATURES, TOWER_FEATURES)) / TOWER_FEATURES**0.5 * 1.2
    new = old + 0.6 * rng.standard_normal(old.shape) / TOWER_FEATURES**0.5
    return old, new


@functools.cache
def make_twotower(n: int = 3000, n_val: int = 60000, n_test: int = 20000, seed: int = 87) -> D.ArrayData:
    """This year's triples (:func:`_interactions` under the drifted preferences): ``n`` train, ``n_val`` validate
    (large: one pass costs a large part of the short budget), ``n_test`` test; the target ``(n,)`` is 1 (the chosen
    item is the second of the two scores)."""
    _, new = _prefs()
    x = _interactions(np.random.default_rng(seed), n + n_val + n_test, new)
    y = np.ones(len(x), np.int64)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class _Towers(nn.Module):
    """A user tower and an item tower (MLPs 16-64-32, GELU); the score is their dot product; output ``(n, 2)``: the
    scores of the not-chosen and the chosen item, as logits (their cross-entropy with class 1 is BPR's loss)."""

    def __init__(self, hidden: int = 64, out: int = 32) -> None:
        super().__init__()
        self.user = nn.Sequential(nn.Linear(TOWER_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, out))
        self.item = nn.Sequential(nn.Linear(TOWER_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.user(x[:, 0])
        pos, neg = self.item(x[:, 1]), self.item(x[:, 2])
        return torch.stack([(u * neg).sum(1), (u * pos).sum(1)], 1)


@functools.cache
def pretrained_towers() -> dict[str, torch.Tensor]:
    """The state dict of :class:`_Towers` trained with BPR on 20,000 of last year's triples (seed 88; AdamW lr 3e-3,
    600 steps of 128, by :func:`~adaptlr.lab.tasks.pretrain`, the global RNG untouched): computed once per process."""
    old, _ = _prefs()
    x = torch.from_numpy(_interactions(np.random.default_rng(88), 20000, old))
    return pretrain(_Towers, x, torch.ones(len(x), dtype=torch.long), F.cross_entropy, steps=600, batch=128)


class TwoTower(_Towers):
    """A two-tower recommender (:class:`_Towers`) holding :func:`pretrained_towers`'s weights, to be fine-tuned."""

    def __init__(self) -> None:
        super().__init__()
        self.load_state_dict(pretrained_towers())
