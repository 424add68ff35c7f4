"""Loft tasks for the tuning-free benchmark: a tenth holdout set, built by someone other than the tuners' author
and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads). "A tenth of the
run" below is a separate run of a tenth of the budget (its own warmup and cosine), as a tuner's short trial is;
every lr named is the AdamW warmup-cosine grid's choice on the final validation metric (seeds 0 and 1, lrs 1e-4 .. 1
unless said otherwise):

- ``loft-deq-spirals``: a deep-equilibrium net solved by 12 fixed-point iterations; the full run does best at 3e-3
  on both seeds (0.01 within 0.02), a tenth of the run sits on a plateau at every lr (validation accuracy 0.20 ..
  0.38, chance 0.2) and picks 0.1 (seed 0) and 0.03 (seed 1), which the full run punishes (0.03 ends at 0.27 ..
  0.36 against 0.60); 0.1 and up end at chance, 1 diverges;
- ``loft-fm-drift``: a factorization machine on a click stream whose preferences drift while it trains (validation
  and test are the present): the full run does best at 0.1 (log loss 0.47; 3e-3: 0.63), a tenth of the run, which
  sees only the old concept, at 3e-3 (1.5 decades lower; 0.1 ends it at 1.06 .. 1.08); 0.3 and up diverge; its grid
  is its own (1e-3 .. 1: the full run's best is the default grid's top);
- ``loft-triplet-batch8``: triplet-margin metric learning in batches of 8 triplets (heavy gradient noise); best lr
  3e-3 at both horizons, with a cliff just above it that only the long run shows: 0.01 is within 0.01 of the best
  in a tenth of the run (0.93 .. 0.94 triplet accuracy) but diverges in the full run (its loss back above where it
  started; 0.84 .. 0.87 at the end against 0.98); 0.1 and up diverge at both horizons;
- ``loft-hashbag-docs``: fastText with a 65,536-row hashed embedding table (1M weights, each used by a few documents)
  and a 136-weight head; the full run does best at 0.01 (seed 0) and 3e-3 (seed 1, tied with 0.01), a tenth of the
  run at 0.03 on both seeds, where 3e-3 is still at chance (0.24); lrs up to 3e-4 never leave chance (0.13 .. 0.32)
  in the full run, 1e-3 reaches 0.96;
- ``loft-softtree-noisy``: a soft decision tree on rows with 30% label noise; the full run's accuracy is two-humped
  in the lr (0.69 at 3e-3, 0.66 at 0.03 .. 0.1, 0.72 at 1 .. 10) and does best at 10 on both seeds (30: 0.62 on seed
  0, a tie on seed 1), two decades above the default grid; a tenth of the run does best at 0.3 (seed 0) and 0.1
  (seed 1), where 10 ends at 0.40 .. 0.43; lrs 1e-3 .. 30 probed; its grid is its own (0.03 .. 30);
- ``loft-pinet-long``: a polynomial network (products of linear maps, no normalisation) over 4,000 steps of 16 rows
  (under a millisecond each); the full run does best at 0.01 (3e-3 .. 0.03 within 1% of the noise floor), a tenth
  of the run at 0.03; 0.1 diverges late in the full run on both seeds while a tenth of the run at 0.1 (seed 0) ends
  within 7% of the best.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("loft-fm-drift").metric
'loss'
>>> LOFT[0]
'loft-deq-spirals'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .loftstream import FM_FIELDS, FactorizationMachine, bce_loss, make_fm_drift
from .tasks import Task, register_task

__all__ = [
    "GRIDS",
    "LOFT",
    "DEQNet",
    "HashedBag",
    "PiNet",
    "SoftTree",
    "TripletNet",
    "make_deq_spirals",
    "make_hashed_docs",
    "make_pinet_poly",
    "make_softtree_noisy",
    "make_triplets",
    "nll_loss",
    "triplet_loss",
]

LOFT: tuple[str, ...] = (
    "loft-deq-spirals",
    "loft-fm-drift",
    "loft-triplet-batch8",
    "loft-hashbag-docs",
    "loft-softtree-noisy",
    "loft-pinet-long",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr (or a short run's) lies on the default
#: grid's (1e-4 .. 1e-1) edge or outside it; each was placed so that no seed's grid choice sits on its edge
GRIDS: dict[str, tuple[float, ...]] = {
    "loft-fm-drift": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    "loft-softtree-noisy": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
}


# ---- loft-deq-spirals ------------------------------------------------------------------------------------

DEQ_DIM, DEQ_CLASSES, DEQ_ITERS, DEQ_GRAD_ITERS = 8, 5, 12, 2


@functools.cache
def make_deq_spirals(n: int = 6000, n_val: int = 2000, n_test: int = 2000, seed: int = 101) -> D.ArrayData:
    """Points ``(n, 8)``: a 2-D position on one of 5 interleaved spiral arms (the class, int64), embedded in 8-D by a
    fixed random rotation (seed 101) with noise of std 0.15 in every coordinate."""
    rot = np.linalg.qr(np.random.default_rng(101).standard_normal((DEQ_DIM, DEQ_DIM)))[0][:, :2]
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    y = rng.integers(0, DEQ_CLASSES, m)
    r = rng.uniform(0.1, 1.0, m)
    angle = 3.0 * np.pi * r + 2 * np.pi * y / DEQ_CLASSES + rng.normal(0, 0.12, m)
    plane = np.stack([r * np.cos(angle), r * np.sin(angle)], 1) * 2.0
    x = (plane @ rot.T + 0.15 * rng.standard_normal((m, DEQ_DIM))).astype(np.float32)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class DEQNet(nn.Module):
    """A deep-equilibrium classifier (Bai et al., 2019) solved by a fixed number of plain fixed-point iterations:
    ``z <- tanh(W z + U x + b)`` 12 times from ``z = 0`` (width 64; nothing keeps ``W`` contractive), the gradient
    the phantom one (Geng et al., 2021) through the last 2 iterations only, then a linear readout of the last ``z`` to
    5 logits."""

    def __init__(self, width: int = 64, iters: int = DEQ_ITERS) -> None:
        super().__init__()
        self.inject = nn.Linear(DEQ_DIM, width)
        self.mix = nn.Linear(width, width, bias=False)
        self.readout = nn.Linear(width, DEQ_CLASSES)
        self.iters = iters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.inject(x)
        with torch.no_grad():
            z = torch.zeros_like(u)
            for _ in range(self.iters - DEQ_GRAD_ITERS):
                z = torch.tanh(self.mix(z) + u)
        for _ in range(DEQ_GRAD_ITERS):
            z = torch.tanh(self.mix(z) + u)
        return self.readout(z)


# ---- loft-triplet-batch8 ---------------------------------------------------------------------------------

TRIP_DIM, TRIP_CLASSES = 24, 40


@functools.cache
def make_triplets(n: int = 12000, n_val: int = 2000, n_test: int = 2000, seed: int = 102) -> D.ArrayData:
    """Triplets ``(n, 3, 24)`` (anchor, positive, negative): the anchor and positive from one of 40 identities, the
    negative from another; each point an identity's prototype on a nonlinear 6-D manifold (seed 102) plus heavy
    nuisance variation (std 1.6 through a random mixing); the target ``(n,)`` int64 is 0 (the positive is the
    first candidate) for every row."""
    proto_rng = np.random.default_rng(102)
    protos = np.tanh(proto_rng.standard_normal((TRIP_CLASSES, 6)) @ proto_rng.standard_normal((6, TRIP_DIM)))
    mix = proto_rng.standard_normal((TRIP_DIM, TRIP_DIM)) / TRIP_DIM**0.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    ident = rng.integers(0, TRIP_CLASSES, m)
    other = (ident + rng.integers(1, TRIP_CLASSES, m)) % TRIP_CLASSES

    def draw(c: np.ndarray) -> np.ndarray:
        return protos[c] + 1.6 * rng.standard_normal((len(c), TRIP_DIM)) @ mix

    x = np.stack([draw(ident), draw(ident), draw(other)], 1).astype(np.float32)
    y = np.zeros(m, np.int64)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class TripletNet(nn.Module):
    """A siamese embedding network (MLP 24-128-128-16, ReLU) applied to each of a triplet's points; the output
    ``(n, 2)`` is ``(-d(a, p), -d(a, n))``, the negated Euclidean distances of the anchor to the two candidates, so
    the argmax names the candidate judged closer."""

    def __init__(self, hidden: int = 128, out: int = 16) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Linear(TRIP_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)
        d = (e[:, 1:] - e[:, :1]).square().sum(-1).add(1e-9).sqrt()
        return -d


TRIPLET_MARGIN = 1.0


def triplet_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The triplet margin loss (Schroff et al., 2015) ``max(0, d(a, p) - d(a, n) + 1)`` from :class:`TripletNet`'s
    output, the mean over rows (``y`` unused: the positive is always the first candidate)."""
    return F.relu(out[:, 1] - out[:, 0] + TRIPLET_MARGIN).mean()


# ---- loft-hashbag-docs -----------------------------------------------------------------------------------

BAG_WORDS, BAG_LEN, BAG_CLASSES, BAG_BUCKETS = 4000, 24, 8, 2**16


@functools.cache
def make_hashed_docs(n: int = 8000, n_val: int = 2000, n_test: int = 2000, seed: int = 103) -> D.ArrayData:
    """Documents of 24 words (vocabulary 4,000, Zipfian) from 8 classes, each class boosting its own 60 words and
    word pairs; the input ``(n, 48)`` int64 is the 24 word ids and 24 hashed bigram ids (fastText's hashing trick,
    into 65,536 buckets; 0 pads), the target the class."""
    lex = np.random.default_rng(103)
    zipf = 1.0 / np.arange(1, BAG_WORDS + 1) ** 1.05
    topics = np.stack([lex.choice(BAG_WORDS, 60, replace=False) for _ in range(BAG_CLASSES)])
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    y = rng.integers(0, BAG_CLASSES, m)
    docs = np.empty((m, BAG_LEN), np.int64)
    for c in range(BAG_CLASSES):
        p = zipf.copy()
        p[topics[c]] += 0.25 * zipf.sum() / 60
        rows = np.flatnonzero(y == c)
        docs[rows] = rng.choice(BAG_WORDS, (len(rows), BAG_LEN), p=p / p.sum())
    bigrams = (docs[:, :-1] * 1_000_003 + docs[:, 1:] * 7919) % (BAG_BUCKETS - BAG_WORDS - 1) + BAG_WORDS + 1
    x = np.concatenate([docs + 1, bigrams, np.zeros((m, 1), np.int64)], 1)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class HashedBag(nn.Module):
    """fastText (Joulin et al., 2017): the mean of a 65,536 x 16 embedding table's rows for a document's words and
    hashed bigrams (``EmbeddingBag``, 0 pads; fastText's uniform init of +-1/16), then a linear layer to 8 logits:
    1,048,576 sparsely used embedding weights and 136 dense ones."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(BAG_BUCKETS, dim, mode="mean", padding_idx=0)
        nn.init.uniform_(self.bag.weight, -1.0 / dim, 1.0 / dim)
        with torch.no_grad():
            self.bag.weight[0].zero_()
        self.head = nn.Linear(dim, BAG_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(x))


# ---- loft-softtree-noisy ---------------------------------------------------------------------------------

TREE_DIM, TREE_CLASSES, TREE_DEPTH = 12, 4, 5


@functools.cache
def make_softtree_noisy(n: int = 1500, n_val: int = 2000, n_test: int = 3000, seed: int = 104) -> D.ArrayData:
    """Tabular rows ``(n, 12)``: the class (4, int64) set by axis-aligned thresholds on 3 of the features (a tree's
    rule, seed 104) and 30% of the labels in every split replaced by a uniformly drawn class."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, TREE_DIM))
    rule = np.random.default_rng(104).uniform(-0.5, 0.5, 3)
    y = 2 * (x[:, 0] > rule[0]) + np.where(x[:, 0] > rule[0], x[:, 1] > rule[1], x[:, 2] > rule[2])
    noisy = rng.uniform(0, 1, m) < 0.3
    y = np.where(noisy, rng.integers(0, TREE_CLASSES, m), y).astype(np.int64)
    x = x.astype(np.float32)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class SoftTree(nn.Module):
    """A soft decision tree (Frosst & Hinton, 2017) of depth 5: each of 31 inner nodes routes right with probability
    ``sigmoid(w . x + b)``, each of 32 leaves holds class logits; the output is the log of the path-weighted mixture
    of the leaves' class distributions ``(n, 4)`` (log-probabilities)."""

    def __init__(self, depth: int = TREE_DEPTH) -> None:
        super().__init__()
        self.depth = depth
        self.gates = nn.Linear(TREE_DIM, 2**depth - 1)
        self.leaves = nn.Parameter(0.1 * torch.randn(2**depth, TREE_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = torch.sigmoid(self.gates(x))
        path = torch.ones(x.shape[0], 1)
        start = 0
        for level in range(self.depth):
            g = right[:, start : start + 2**level]
            path = torch.stack([path * (1 - g), path * g], 2).reshape(x.shape[0], -1)
            start += 2**level
        return torch.log(path @ torch.softmax(self.leaves, 1) + 1e-12)


def nll_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of the class from log-probabilities ``out``, the mean over rows."""
    return F.nll_loss(out, y)


# ---- loft-pinet-long -------------------------------------------------------------------------------------

PI_DIM, PI_DEGREE = 6, 3


@functools.cache
def make_pinet_poly(n: int = 8000, n_val: int = 2000, n_test: int = 2000, seed: int = 105) -> D.ArrayData:
    """Regression rows ``(n, 6)`` uniform on ``[-1, 1]^6`` and targets ``(n, 1)``: a fixed cubic polynomial (seed
    105: a product of three random affine forms plus a random quadratic form) plus noise of std 0.1."""
    poly = np.random.default_rng(105)
    forms = poly.standard_normal((PI_DEGREE, PI_DIM + 1)) / 2
    quad = poly.standard_normal((PI_DIM, PI_DIM)) / PI_DIM
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.uniform(-1, 1, (m, PI_DIM))
    x1 = np.concatenate([x, np.ones((m, 1))], 1)
    y = np.prod(x1 @ forms.T, 1) + np.einsum("ni,ij,nj->n", x, quad, x) + 0.1 * rng.standard_normal(m)
    x, y = x.astype(np.float32), y[:, None].astype(np.float32)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class PiNet(nn.Module):
    """A polynomial network (Chrysos et al., 2020, Pi-nets' CCP form), no normalisation and no activation: ``h_1 =
    A_1 x``, ``h_k = (A_k x) * h_{k-1} + h_{k-1}`` for k = 2, 3 (width 32), output ``C h_3 + c``: a degree-3
    polynomial in the input, its weights multiplied together."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(PI_DIM, width) for _ in range(PI_DEGREE))
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maps[0](x)
        for a in self.maps[1:]:
            h = a(x) * h + h
        return self.out(h)


for _task in [
    Task(
        "loft-deq-spirals",
        DEQNet,
        make_deq_spirals,
        metric="accuracy",
        steps=2000,
        batch_size=64,
        description="deep-equilibrium classifier (z <- tanh(Wz + Ux + b), 12 fixed-point iterations from zero, "
        "width 64, phantom gradient through the last 2) on 5 interleaved noisy spiral arms embedded in 8-D; "
        "metric: test accuracy",
    ),
    Task(
        "loft-fm-drift",
        FactorizationMachine,
        make_fm_drift,
        bce_loss,
        "loss",
        steps=4000,
        batch_size=32,
        description=f"factorization machine (rank 8) on a click stream of {FM_FIELDS} categorical fields whose "
        "pairwise preferences drift from one concept to another over the run (the batches come in stream order); "
        "validation and test are the stream's present; metric: test log loss",
    ),
    Task(
        "loft-triplet-batch8",
        TripletNet,
        make_triplets,
        triplet_loss,
        "accuracy",
        steps=3000,
        batch_size=8,
        description="siamese MLP embedding (24-128-128-16) trained with the triplet margin loss (margin 1) in "
        "batches of 8 triplets of 40 noisy identities; metric: test triplet accuracy (the positive nearer)",
    ),
    Task(
        "loft-hashbag-docs",
        HashedBag,
        make_hashed_docs,
        metric="accuracy",
        steps=800,
        batch_size=128,
        description="fastText: mean of a 65,536 x 16 embedding table's rows for a document's words and hashed "
        "bigrams, a linear head to 8 topics (1M sparse weights, 136 dense); metric: test accuracy",
    ),
    Task(
        "loft-softtree-noisy",
        SoftTree,
        make_softtree_noisy,
        nll_loss,
        "accuracy",
        steps=2500,
        batch_size=32,
        description="soft decision tree (depth 5, sigmoid gates, leaf class distributions) on 1,500 tabular rows "
        "with 30% label noise in every split; metric: test accuracy",
    ),
    Task(
        "loft-pinet-long",
        PiNet,
        make_pinet_poly,
        metric="mse",
        loss=F.mse_loss,
        steps=4000,
        batch_size=16,
        description="polynomial network (Pi-net, CCP form: three Hadamard-multiplied linear maps of width 32, no "
        "normalisation or activation) fitting a noisy cubic in 6-D, 4,000 tiny steps of 16 rows; metric: test MSE",
    ),
]:
    register_task(_task)
