"""Turret tasks for the tuning-free benchmark: a twelfth holdout set, built by someone other than the tuners' author
and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads). "A tenth of the
run" below is a separate run of a tenth of the budget (its own warmup and cosine), as a tuner's short trial is;
every lr named is the AdamW warmup-cosine grid's choice on the final validation metric (the full run: seeds 0 .. 2;
a tenth of it: seeds 0 and 1; each on the task's grid):

- ``turret-ordinal-grades``: a cumulative-link ordinal model over 3,000 tiny steps of 16 rows (under half a
  millisecond each: wall time counts); its cutpoints start 0.69 apart and must spread to the score's scale of tens:
  the full run does best at 0.03 (seeds 0, 2) and 0.1 (seed 1; validation NLL 0.53 .. 0.59), 1e-3 ends twice as
  high (1.15 .. 1.17), 0.3 and 1 end at 0.63 .. 0.83; a tenth of the run does best at 0.1 on both seeds; its grid
  is its own (1e-3 .. 1: a tenth of the run's best is the default grid's top);
- ``turret-elman-recall``: a vanilla tanh RNN writing back 6 symbols after a delay: every lr first sits on the
  chance plateau (per-symbol accuracy 0.125), only a narrow band leaves it, and which seeds do is luck: the full run
  does best at 0.01 on seeds 0 and 2 (0.60, 0.86) and at 1e-3 on seed 1 (0.25; 0.01 ends at 0.20 there); 0.03 ends
  at 0.15 .. 0.21, 0.1 at chance; a tenth of the run does best at 0.01 (0.23 .. 0.32), where 3e-3 and below are
  still at chance;
- ``turret-pixelcnn-glyphs``: a PixelCNN; the full run's best wanders over a decade with the seed: 0.03 (seed 0),
  0.01 (seed 1), 0.1 (seed 2), the rest of 0.01 .. 0.1 within 2 .. 6% of the seed's best; 0.3 ends 5 .. 6% worse,
  3e-4 23 .. 26% worse; a tenth of the run does best at 0.03 on both seeds; its grid is its own (3e-4 .. 0.3: a
  seed's full run picks the default grid's top);
- ``turret-binaryconnect-bn``: sign-binarised weights, BatchNorm on the logits: the latent weights' lr only sets how
  often signs flip, and the full run is flat from 0.01 to 0.1 (validation cross-entropy 0.980 .. 0.995), picking
  0.01 (seed 0) and 0.03 (seeds 1, 2); 1e-3 ends 9 .. 10% worse, 1 10 .. 14% worse; a tenth of the run is flat from
  0.03 to 0.3 and does best at 0.3 (seed 0) and 0.03 (seed 1); its grid is its own (1e-3 .. 1: a tenth of the run's
  best lies above the default grid);
- ``turret-pruned-recovery``: an MLP pretrained in its builder (:mod:`adaptlr.lab.turretprune`), magnitude-pruned
  to a tenth of its hidden weights, fine-tuned on 600 rows: it starts from a damaged good solution (validation loss
  1.50 before any step; the dense network 0.53, a fresh one 1.80); the full run does best at 3e-3 on every seed (0.60),
  0.01 ends 30% worse and 0.03 2.2x worse (it overfits the 600 rows); a tenth of the run does best at 0.03 on both
  seeds, a decade too high;
- ``turret-listnet-queries``: listwise learning to rank; validation (20,000 queries) is large: one pass costs about
  190 training steps, 40% of the budget; the full run is flat from 0.01 to 0.3 (within 0.6%) and picks 0.03 on every
  seed, 1e-3 ends 11 .. 12% worse; a tenth of the run does best at 0.03 on both seeds, where 0.3 ends 30 .. 45% worse.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("turret-ordinal-grades").metric
'loss'
>>> TURRET[0]
'turret-ordinal-grades'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import Task, register_task
from .turretprune import PrunedMLP, make_pruned_rows

__all__ = [
    "GRIDS",
    "TURRET",
    "BinaryConnectNet",
    "CumulativeLink",
    "ElmanRecall",
    "ListScorer",
    "PixelCNN",
    "listnet_loss",
    "make_binary_teacher",
    "make_glyphs",
    "make_ordinal_grades",
    "make_query_lists",
    "make_recall",
    "ordinal_nll",
    "pixel_nll",
]

TURRET: tuple[str, ...] = (
    "turret-ordinal-grades",
    "turret-elman-recall",
    "turret-pixelcnn-glyphs",
    "turret-binaryconnect-bn",
    "turret-pruned-recovery",
    "turret-listnet-queries",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr (or a short run's) lies on the default
#: grid's (1e-4 .. 1e-1) edge or outside it; each was placed so that no seed's grid choice sits on its edge
GRIDS: dict[str, tuple[float, ...]] = {
    "turret-ordinal-grades": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    "turret-pixelcnn-glyphs": (3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
    "turret-binaryconnect-bn": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    "turret-listnet-queries": (3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
}


_splits = D.split_rows  # (the first n rows train, the next n_val validate, the rest test)


# ---- turret-ordinal-grades -------------------------------------------------------------------------------

ORD_DIM, ORD_GRADES, ORD_NOISE = 10, 7, 0.25
ORD_CUTS = (-11.0, -6.0, -2.5, 0.5, 4.0, 9.0)  # the latent score's thresholds between grades (unevenly spaced)


@functools.cache
def make_ordinal_grades(n: int = 2000, n_val: int = 2000, n_test: int = 4000, seed: int = 111) -> D.ArrayData:
    """Tabular rows ``(n, 10)`` and ordered grades 0 .. 6 (int64): a latent score in units of ~8 (a fixed linear form,
    seed 111, plus a smooth interaction of two features) plus logistic noise of scale 0.25, cut at 6 unevenly spaced
    thresholds (:data:`ORD_CUTS`)."""
    w = np.random.default_rng(111).standard_normal(ORD_DIM) * 2.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, ORD_DIM))
    z = x @ w + 3.0 * np.sin(2.0 * x[:, 0]) * x[:, 1] + rng.logistic(0.0, ORD_NOISE, m)
    y = (z[:, None] > np.array(ORD_CUTS)).sum(1).astype(np.int64)
    return _splits(x.astype(np.float32), y, n, n_val)


class CumulativeLink(nn.Module):
    """A cumulative-link (proportional-odds) ordinal model (McCullagh, 1980): a score MLP 10-16-1 (ReLU) and 6 ordered
    cutpoints ``c_1 = a``, ``c_k = c_{k-1} + softplus(d_k)`` (all started at 0: the cutpoints 0.69 apart);
    ``P(grade <= k) = sigmoid(c_k - score)``; the output ``(n, 7)`` is the grades' log-probabilities."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(ORD_DIM, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.first = nn.Parameter(torch.zeros(1))
        self.gaps = nn.Parameter(torch.zeros(ORD_GRADES - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cuts = torch.cat([self.first, self.first + F.softplus(self.gaps).cumsum(0)])
        cdf = F.pad(torch.sigmoid(cuts - self.score(x)), (1, 0), value=0.0)
        cdf = F.pad(cdf, (0, 1), value=1.0)
        return torch.log((cdf[:, 1:] - cdf[:, :-1]).clamp_min(1e-12))


def ordinal_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of the grade from log-probabilities ``out``, the mean over rows."""
    return F.nll_loss(out, y)


# ---- turret-elman-recall ---------------------------------------------------------------------------------

REC_SYMBOLS, REC_LEN, REC_DELAY = 8, 6, 12


@functools.cache
def make_recall(n: int = 12000, n_val: int = 2000, n_test: int = 2000, seed: int = 112) -> D.ArrayData:
    """Delayed recall: rows ``(n, 6)`` of symbols 0 .. 7 (int64, every row distinct), each its own target ``(n, 6)``
    (the model reads them, waits, then writes them back)."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = np.unique(rng.integers(0, REC_SYMBOLS, (int(1.05 * m), REC_LEN)), axis=0)
    x = x[rng.permutation(len(x))][:m]
    return _splits(x, x.copy(), n, n_val)


class ElmanRecall(nn.Module):
    """A vanilla (Elman) tanh RNN, hidden 64, no gates and no clipping, reading 6 embedded symbols (dimension 16), 12
    blank steps, a go marker and 5 more blanks (24 steps); a linear readout of its last 6 hidden states writes the 6
    symbols' logits ``(n, 6, 8)``."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(REC_SYMBOLS + 2, 16)  # the symbols, blank, go
        self.rnn = nn.RNN(16, hidden, batch_first=True, nonlinearity="tanh")
        self.out = nn.Linear(hidden, REC_SYMBOLS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        blank = torch.full((n, REC_DELAY), REC_SYMBOLS, dtype=x.dtype)
        go = torch.full((n, 1), REC_SYMBOLS + 1, dtype=x.dtype)
        seq = torch.cat([x, blank, go, blank[:, : REC_LEN - 1]], 1)
        h = self.rnn(self.embed(seq))[0]
        return self.out(h[:, -REC_LEN:])


# ---- turret-pixelcnn-glyphs ------------------------------------------------------------------------------

GLYPH_SIDE, GLYPH_KINDS = 12, 16


def _templates() -> np.ndarray:
    """16 glyph templates ``(16, 12, 12)`` of 0/1 (seed 113): each 2 .. 3 strokes (horizontal, vertical or diagonal
    bars, box outlines) at random places."""
    rng = np.random.default_rng(113)
    out = np.zeros((GLYPH_KINDS, GLYPH_SIDE, GLYPH_SIDE))
    for g in out:
        for _ in range(int(rng.integers(2, 4))):
            kind, r, c, size = rng.integers(0, 4), *rng.integers(2, 8, 2), int(rng.integers(3, 6))
            if kind == 0:
                g[r, c : c + size] = 1
            elif kind == 1:
                g[r : r + size, c] = 1
            elif kind == 2:
                g[np.arange(r, r + size), np.arange(c, c + size)] = 1
            else:
                g[[r, r + size - 1], c : c + size] = 1
                g[r : r + size, [c, c + size - 1]] = 1
    return out


@functools.cache
def make_glyphs(n: int = 6000, n_val: int = 2000, n_test: int = 1000, seed: int = 114) -> D.ArrayData:
    """Binary glyphs ``(n, 144)`` float32 (12 x 12, flattened), each row its own target: one of 16 templates
    (:func:`_templates`) shifted by up to 2 pixels each way, 4% of its pixels flipped; every row distinct."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    temp = np.pad(_templates(), ((0, 0), (2, 2), (2, 2)))
    k, (dr, dc) = rng.integers(0, GLYPH_KINDS, int(1.05 * m)), rng.integers(0, 5, (2, int(1.05 * m)))
    img = np.stack([temp[a, r : r + GLYPH_SIDE, c : c + GLYPH_SIDE] for a, r, c in zip(k, dr, dc, strict=True)])
    img = np.abs(img - (rng.uniform(0, 1, img.shape) < 0.04)).reshape(len(img), -1)
    x = np.unique(img, axis=0)
    x = x[rng.permutation(len(x))][:m].astype(np.float32)
    return _splits(x, x.copy(), n, n_val)


class _MaskedConv(nn.Conv2d):
    """A PixelCNN masked convolution: a pixel sees only those above it and to its left (and itself, unless type A)."""

    def __init__(self, c_in: int, c_out: int, k: int, first: bool) -> None:
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, k // 2, k // 2 + (0 if first else 1) :] = 0
        mask[:, :, k // 2 + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    """PixelCNN (van den Oord et al., 2016) for binary images: a type-A masked 7x7 convolution (16 channels), 3
    residual type-B masked 3x3 convolutions (ReLU), a 1x1 convolution to one logit per pixel: ``(n, 144)``."""

    def __init__(self, width: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.first = _MaskedConv(1, width, 7, True)
        self.blocks = nn.ModuleList(_MaskedConv(width, width, 3, False) for _ in range(layers))
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x.reshape(-1, 1, GLYPH_SIDE, GLYPH_SIDE))
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.out(F.relu(h)).flatten(1)


def pixel_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Bernoulli negative log-likelihood of every pixel from its logit, summed over an image (nats per image), the
    mean over images."""
    return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / out.shape[0]


# ---- turret-binaryconnect-bn -----------------------------------------------------------------------------

BIN_DIM, BIN_CLASSES = 32, 10


@functools.cache
def make_binary_teacher(n: int = 8000, n_val: int = 2000, n_test: int = 3000, seed: int = 118) -> D.ArrayData:
    """Rows ``(n, 32)`` (correlated Gaussian features) and classes (10, int64): the argmax of a fixed random teacher
    network's logits (32-64-10, tanh, seed 118), 5% of the labels drawn at random."""
    g = np.random.default_rng(118)
    mix = g.standard_normal((BIN_DIM, BIN_DIM)) / 4
    w1, w2 = g.standard_normal((BIN_DIM, 64)), g.standard_normal((64, BIN_CLASSES))
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, BIN_DIM)) @ (np.eye(BIN_DIM) + mix)
    y = (np.tanh(x @ w1 / BIN_DIM**0.5) @ w2).argmax(1)
    y = np.where(rng.uniform(0, 1, m) < 0.05, rng.integers(0, BIN_CLASSES, m), y).astype(np.int64)
    return _splits(x.astype(np.float32), y, n, n_val)


class _BinaryLinear(nn.Linear):
    """A linear layer whose weights are binarised to their sign in the forward pass, the gradient passed straight
    through to the real-valued latent weights where they lie in [-1, 1] and blocked beyond (the hard-tanh estimator)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clipped = self.weight.clamp(-1.0, 1.0)
        return F.linear(x, clipped + (torch.sign(self.weight) - clipped).detach(), self.bias)


class BinaryConnectNet(nn.Module):
    """BinaryConnect (Courbariaux et al., 2015): an MLP 32-256-256-10 of sign-binarised weights
    (:class:`_BinaryLinear`), each layer followed by BatchNorm, the logits included (a BatchNorm on the output), ReLU
    between."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        sizes = (BIN_DIM, hidden, hidden, BIN_CLASSES)
        self.layers = nn.ModuleList(_BinaryLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            x = norm(layer(x))
            x = F.relu(x) if i < len(self.layers) - 1 else x
        return x


# ---- turret-listnet-queries ------------------------------------------------------------------------------

LIST_DOCS, LIST_FEATURES = 16, 12


@functools.cache
def make_query_lists(n: int = 4000, n_val: int = 20000, n_test: int = 2000, seed: int = 119) -> D.ArrayData:
    """Queries ``(n, 16, 12)``: 16 candidate documents each, a document its 12 query-document features; the target
    ``(n, 16)`` float32 its relevance grade 0 .. 4: a fixed nonlinear relevance (seed 119) plus noise as large as
    its signal, cut at the quintiles. Validation is large (20,000 queries)."""
    g = np.random.default_rng(119)
    w1, w2 = g.standard_normal((LIST_FEATURES, 32)) / LIST_FEATURES**0.5, g.standard_normal(32)
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, LIST_DOCS, LIST_FEATURES))
    rel = np.tanh(x @ w1) @ w2 + 0.5 * x[..., 0] * x[..., 1]
    rel = rel + 0.6 * rel.std() * rng.standard_normal(rel.shape)
    y = np.searchsorted(np.quantile(rel, [0.2, 0.4, 0.6, 0.8]), rel).astype(np.float32)
    return _splits(x.astype(np.float32), y, n, n_val)


class ListScorer(nn.Module):
    """A document scorer, an MLP 12-64-64-1 (GELU) applied to each of a query's 16 documents: ``(n, 16, 12) ->
    (n, 16)`` scores."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(LIST_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def listnet_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ListNet's top-one loss (Cao et al., 2007) less its floor: the KL divergence of the scores' softmax over a
    query's documents from the grades' softmax (the cross-entropy less the grades' entropy), the mean over queries."""
    target = torch.log_softmax(y, 1)
    return (target.exp() * (target - torch.log_softmax(out, 1))).sum(1).mean()


for _task in [
    Task(
        "turret-ordinal-grades",
        CumulativeLink,
        make_ordinal_grades,
        ordinal_nll,
        "loss",
        steps=3000,
        batch_size=16,
        description="cumulative-link (proportional-odds) ordinal regression: a score MLP 10-16-1 and 6 ordered "
        "cutpoints, on 2,000 tabular rows graded 0 .. 6 from a latent score in units of ~8; 3,000 tiny steps of 16 "
        "rows; metric: test negative log-likelihood",
    ),
    Task(
        "turret-elman-recall",
        ElmanRecall,
        make_recall,
        metric="accuracy",
        steps=2000,
        batch_size=64,
        description="vanilla (Elman) tanh RNN, hidden 64, no gates or clipping, reading 6 symbols of 8 and writing "
        "them back after a delay of 12 blank steps and a go marker; metric: test per-symbol accuracy",
    ),
    Task(
        "turret-pixelcnn-glyphs",
        PixelCNN,
        make_glyphs,
        pixel_nll,
        "loss",
        steps=600,
        batch_size=32,
        description="PixelCNN (a type-A masked 7x7 convolution, 3 residual type-B masked 3x3 ones, 16 channels) "
        "modelling 12 x 12 binary glyphs (16 shifted templates, 4% of pixels flipped) pixel by pixel; metric: test "
        "negative log-likelihood (nats per image)",
    ),
    Task(
        "turret-binaryconnect-bn",
        BinaryConnectNet,
        make_binary_teacher,
        metric="loss",
        steps=1500,
        batch_size=64,
        description="BinaryConnect: an MLP 32-256-256-10 with sign-binarised weights (straight-through hard-tanh "
        "gradient to real latent weights), BatchNorm after every layer including the logits; 10 classes of a random "
        "teacher network; metric: test cross-entropy",
    ),
    Task(
        "turret-pruned-recovery",
        PrunedMLP,
        make_pruned_rows,
        metric="loss",
        steps=500,
        batch_size=64,
        description="an MLP 24-128-128-6 pretrained in its builder, its hidden layers magnitude-pruned to their "
        "largest tenth (fixed masks), fine-tuned on 600 rows to recover; metric: test cross-entropy",
    ),
    Task(
        "turret-listnet-queries",
        ListScorer,
        make_query_lists,
        listnet_loss,
        "loss",
        steps=500,
        batch_size=32,
        description="listwise learning to rank: an MLP document scorer (12-64-64-1) trained with ListNet's top-one "
        "loss on queries of 16 documents with noisy relevance grades 0 .. 4; 20,000 validation queries; metric: "
        "test ListNet loss",
    ),
]:
    register_task(_task)
