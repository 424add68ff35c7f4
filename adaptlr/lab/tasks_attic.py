"""Attic tasks for the tuning-free benchmark: a ninth holdout set, built by someone other than the tuners' author
and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads). "A tenth of the
run" below is a separate run of a tenth of the budget (its own warmup and cosine), as a tuner's short trial is;
every lr named is the AdamW warmup-cosine grid's choice on the final validation metric (seeds 0 and 1, lrs 3e-5 .. 1):

- ``attic-pinn-heat``: a physics-informed network solving the heat equation from its residual alone; best lr 0.03 at
  both horizons, with a cliff just above it (0.1 ends 15 .. 25x worse, no better than 3e-5; 0.3 diverges); validation
  (30,000 points, each needing a double backward) is large: one pass costs 8% of the budget's steps;
- ``attic-simclr-views``: a SimCLR encoder under NT-Xent; the full run is flat from 0.01 to 0.3 and does best at 0.3
  (seed 0) and 0.1 (seed 1), outside or on the default grid's top, a tenth of the run at 0.01: a short horizon
  prefers an lr 1 to 1.5 decades too low; its grid is its own (1e-3 .. 1);
- ``attic-sage-sbm``: GraphSAGE node classification with a 60-node validation split: its accuracy moves in steps of
  0.017 and swings by 0.05 .. 0.07 between evaluations at 0.03 (more than separates 3e-3 .. 0.03); the full run
  picks 0.01 (seed 0) and 0.03 (seed 1), a tenth of the run 0.03;
- ``attic-ctc-tones``: CTC transcription; every lr first sits on the blank plateau (loss ~11 nats), which small lrs
  never leave (1e-3: 10); the full run does best at 0.03, a tenth of the run at 0.1 (a half-decade too high; 0.3
  and up fail); its grid is its own (1e-3 .. 1: the short runs' best is the default grid's top);
- ``attic-twotower-shift``: a two-tower recommender pretrained in its builder (:mod:`adaptlr.lab.twotower`) on last
  year's feedback, fine-tuned after a drift: it starts near a good solution (validation ranking accuracy 0.90 before
  any step; a fresh model 0.52); best lr 1e-3 at both horizons, 0.03 loses 0.04, 0.1 and up diverge; validation
  (60,000 triples) is very large: one pass costs about the whole budget;
- ``attic-sort-transformer``: a Transformer with learned positions sorting tokens; best lr 0.01 at both horizons, with
  a cliff just above it (0.03 ends at 0.6 .. 0.65 per-token accuracy, 0.1 at chance).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("attic-ctc-tones").metric
'loss'
>>> ATTIC[0]
'attic-pinn-heat'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import Task, register_task
from .twotower import TwoTower, make_twotower

__all__ = [
    "ATTIC",
    "GRIDS",
    "CTCNet",
    "GraphSAGE",
    "HeatPINN",
    "SimCLREncoder",
    "SortTransformer",
    "ctc_loss",
    "infonce_loss",
    "make_ctc_tones",
    "make_heat",
    "make_sbm_nodes",
    "make_simclr_views",
    "make_sorting",
    "pinn_loss",
    "sbm_graph",
]

ATTIC: tuple[str, ...] = (
    "attic-pinn-heat",
    "attic-simclr-views",
    "attic-sage-sbm",
    "attic-ctc-tones",
    "attic-twotower-shift",
    "attic-sort-transformer",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr (or a short run's) lies on the default
#: grid's (1e-4 .. 1e-1) edge or outside it; each was placed so that no seed's grid choice sits on its edge
GRIDS: dict[str, tuple[float, ...]] = {
    "attic-simclr-views": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    "attic-ctc-tones": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
}


# ---- attic-pinn-heat -------------------------------------------------------------------------------------

HEAT_NU = 0.05  # diffusivity (m^2 per unit time on the unit rod)
HEAT_MODES = {1: 1.0, 3: 0.5, 5: 0.25}  # the initial profile: sum of a_k sin(k pi x)


def _heat_exact(tx: np.ndarray) -> np.ndarray:
    """The heat equation's exact solution ``u(t, x) = sum_k a_k exp(-nu k^2 pi^2 t) sin(k pi x)`` at rows ``(t, x)``."""
    t, x = tx[:, 0], tx[:, 1]
    return sum(a * np.exp(-HEAT_NU * (k * np.pi) ** 2 * t) * np.sin(k * np.pi * x) for k, a in HEAT_MODES.items())


@functools.cache
def make_heat(
    n_colloc: int = 4000, n_edge: int = 800, n_val: int = 30000, n_test: int = 2000, seed: int = 81
) -> D.ArrayData:
    """Physics-informed rows ``(t, x)`` ``(n, 2)`` on ``[0, 1]^2`` and targets ``(flag, value)`` ``(n, 2)``: training
    holds ``n_colloc`` collocation points (flag 0: the PDE residual should vanish) and ``n_edge`` initial and
    boundary points (flag 1: ``u`` should equal the value: the initial profile at ``t = 0``, zero at ``x = 0, 1``);
    validation and test hold interior points with the exact solution (flag 1), so their loss is the MSE against it."""
    rng = np.random.default_rng(seed)
    colloc = rng.uniform(0, 1, (n_colloc, 2))
    init = np.stack([np.zeros(n_edge // 2), rng.uniform(0, 1, n_edge // 2)], 1)
    side = np.stack([rng.uniform(0, 1, n_edge - n_edge // 2), rng.integers(0, 2, n_edge - n_edge // 2)], 1)
    edge = np.concatenate([init, side.astype(float)])
    x_train = np.concatenate([colloc, edge])
    y_train = np.concatenate([np.zeros((n_colloc, 2)), np.stack([np.ones(n_edge), _heat_exact(edge)], 1)])
    held = rng.uniform(0, 1, (n_val + n_test, 2))
    y_held = np.stack([np.ones(len(held)), _heat_exact(held)], 1)
    perm = rng.permutation(len(x_train))
    t = torch.from_numpy
    f32 = np.float32
    return D.ArrayData(
        t(x_train[perm].astype(f32)),
        t(y_train[perm].astype(f32)),
        t(held[n_val:].astype(f32)),
        t(y_held[n_val:].astype(f32)),
        x_val=t(held[:n_val].astype(f32)),
        y_val=t(y_held[:n_val].astype(f32)),
    )


class HeatPINN(nn.Module):
    """A physics-informed network (Raissi et al., 2019) for ``u_t = nu u_xx``: an MLP 2-48-48-48-1 (tanh) writing
    ``u(t, x)``; the output ``(n, 2)`` is ``u`` and the PDE residual ``u_t - nu u_xx`` (by autograd in the inputs,
    also under ``no_grad``)."""

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
            nn.Linear(width, 1),
        )  # fmt: skip

    def forward(self, tx: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            tx = tx.detach().requires_grad_(True)
            u = self.net(tx)
            (du,) = torch.autograd.grad(u.sum(), tx, create_graph=True)
            (du2,) = torch.autograd.grad(du[:, 1].sum(), tx, create_graph=True)
        residual = du[:, :1] - HEAT_NU * du2[:, 1:]
        out = torch.cat([u, residual], 1)
        return out if torch.is_grad_enabled() else out.detach()


def pinn_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row: the squared PDE residual at a collocation point (flag 0), the squared error of ``u`` against the
    value elsewhere (flag 1); the mean over rows."""
    flag, value = y[:, 0], y[:, 1]
    return (flag * (out[:, 0] - value) ** 2 + (1 - flag) * out[:, 1] ** 2).mean()


# ---- attic-simclr-views ----------------------------------------------------------------------------------

VIEW_DIM, VIEW_CLASSES = 32, 24


def _views(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """One augmented view of each row: a random scaling (0.7 .. 1.3), 30% of the coordinates masked, Gaussian jitter
    of std 0.4."""
    scale = rng.uniform(0.7, 1.3, (len(base), 1))
    keep = rng.uniform(0, 1, base.shape) > 0.3
    return base * scale * keep + 0.4 * rng.standard_normal(base.shape)


@functools.cache
def make_simclr_views(n: int = 6000, n_val: int = 1000, n_test: int = 2000, seed: int = 82) -> D.ArrayData:
    """Pairs of augmented views ``(n, 2, 32)`` of latent points: each a class prototype (24 classes on a random
    nonlinear manifold) plus within-class variation; the target ``(n,)`` is the class (unused by the loss)."""
    rng = np.random.default_rng(82)  # the classes are the same for every seed
    protos = np.tanh(rng.standard_normal((VIEW_CLASSES, 8)) @ rng.standard_normal((8, VIEW_DIM)) / 2)
    mix = rng.standard_normal((VIEW_DIM, VIEW_DIM)) / VIEW_DIM**0.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    y = rng.integers(0, VIEW_CLASSES, m)
    base = protos[y] + 0.5 * np.tanh(rng.standard_normal((m, VIEW_DIM)) @ mix)
    x = np.stack([_views(rng, base), _views(rng, base)], 1).astype(np.float32)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class SimCLREncoder(nn.Module):
    """SimCLR's encoder and projection head (Chen et al., 2020): an MLP 32-128-128 (ReLU, BatchNorm) then a head
    128-64 (ReLU) -32, L2-normalised; input ``(n, 2, 32)`` (two views), output ``(n, 2, 32)``."""

    def __init__(self, hidden: int = 128, out: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(VIEW_DIM, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Linear(hidden, 64), nn.ReLU(), nn.Linear(64, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        z = self.head(self.encoder(x.reshape(2 * n, VIEW_DIM)))
        return F.normalize(z, dim=1).reshape(n, 2, -1)


SIMCLR_TEMPERATURE = 0.2


def infonce_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""SimCLR's NT-Xent (InfoNCE) loss of the views ``out`` ``(n, 2, d)``: each view's positive is the other view of
    its row, its negatives the other ``2n - 2`` views of the batch; cosine similarities over a temperature of 0.2,
    the mean cross-entropy over the ``2n`` views (``y`` unused)."""
    n = out.shape[0]
    z = torch.cat([out[:, 0], out[:, 1]])
    sim = z @ z.T / SIMCLR_TEMPERATURE
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


# ---- attic-sage-sbm --------------------------------------------------------------------------------------

SBM_NODES, SBM_CLASSES, SBM_FEATURES = 2000, 6, 16


@functools.cache
def sbm_graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """A degree-corrected stochastic block model (seed 83): 2,000 nodes in 6 communities, mean degree ~10 (45% of
    edges drawn within a community), node features ``(2000, 16)`` a weak class signal under noise; returns (the
    directed edges ``(2, e)`` int64, both ways, as (target, source); each edge's weight, 1 / the target's degree;
    the features, float32; the classes, int64)."""
    rng = np.random.default_rng(83)
    y = rng.integers(0, SBM_CLASSES, SBM_NODES)
    degree = rng.pareto(2.5, SBM_NODES) + 1
    m = SBM_NODES * 5
    src = rng.choice(SBM_NODES, m, p=degree / degree.sum())
    same = rng.uniform(0, 1, m) < 0.45
    dst = np.empty(m, np.int64)
    members = [np.flatnonzero(y == c) for c in range(SBM_CLASSES)]
    for i in range(m):
        dst[i] = rng.choice(members[y[src[i]]]) if same[i] else rng.integers(0, SBM_NODES)
    keep = src != dst
    ij = np.unique(np.concatenate([np.stack([src, dst], 1)[keep], np.stack([dst, src], 1)[keep]]), axis=0)
    deg = np.bincount(ij[:, 0], minlength=SBM_NODES).clip(1)
    edges = torch.from_numpy(ij.T.copy())
    weight = torch.from_numpy((1.0 / deg[ij[:, 0]]).astype(np.float32))
    means = rng.standard_normal((SBM_CLASSES, SBM_FEATURES))
    feats = 0.35 * means[y] + rng.standard_normal((SBM_NODES, SBM_FEATURES))
    return edges, weight, torch.from_numpy(feats.astype(np.float32)), y


@functools.cache
def make_sbm_nodes(n_train: int = 240, n_val: int = 60, n_test: int = 1000, seed: int = 84) -> D.ArrayData:
    """Transductive node classification on :func:`sbm_graph`: the rows are node ids (int64 ``(n,)``), the target the
    node's community; ``n_train`` labelled nodes train, ``n_val`` (a small split: its accuracy moves in steps of
    1/60) validate, ``n_test`` test, chosen by ``seed``."""
    *_, y = sbm_graph()
    perm = np.random.default_rng(seed).permutation(SBM_NODES)
    tr, va, te = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val : n_train + n_val + n_test]
    t = torch.from_numpy
    return D.ArrayData(t(tr), t(y[tr]), t(te), t(y[te]), x_val=t(va), y_val=t(y[va]))


class GraphSAGE(nn.Module):
    """GraphSAGE (Hamilton et al., 2017) with the mean aggregator on :func:`sbm_graph` (held as buffers): two layers
    of width 64, each ``relu(W_self h + W_neigh mean_{N(v)} h)``, dropout 0.5, then a linear readout; the input is
    node ids, the output their class logits (every step runs the whole graph)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        edges, weight, feats, _ = sbm_graph()
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("feats", feats, persistent=False)
        sizes = (SBM_FEATURES, width, width)
        self.self_w = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.neigh_w = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.readout = nn.Linear(width, SBM_CLASSES)
        self.dropout = nn.Dropout(0.5)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        h = self.feats
        for s, n in zip(self.self_w, self.neigh_w, strict=True):
            mean = torch.zeros_like(h).index_add_(0, self.edges[0], h[self.edges[1]] * self.weight[:, None])
            h = self.dropout(F.relu(s(h) + n(mean)))
        return self.readout(h[nodes])


# ---- attic-ctc-tones -------------------------------------------------------------------------------------

CTC_SYMBOLS, CTC_FRAMES, CTC_MAX_LABELS, CTC_FEATURES = 8, 40, 6, 16


@functools.cache
def make_ctc_tones(n: int = 5000, n_test: int = 1500, seed: int = 85) -> D.ArrayData:
    """Unsegmented sequence labelling: frames ``(n, 40, 16)`` of 3 .. 6 symbols (8 kinds), each held for 2 .. 6
    frames with silent gaps of 0 .. 2 frames, each symbol's frames its fixed signature (seed 85) with a slow drift,
    under noise of std 0.8; the target ``(n, 6)`` int64: the symbols 1 .. 8, padded with 0 (CTC's blank). No
    alignment is given."""
    sig = np.random.default_rng(85).standard_normal((CTC_SYMBOLS + 1, CTC_FEATURES))
    sig[0] = 0.0  # silence
    rng = np.random.default_rng(seed)
    x = np.zeros((n + n_test, CTC_FRAMES, CTC_FEATURES))
    y = np.zeros((n + n_test, CTC_MAX_LABELS), np.int64)
    for r in range(n + n_test):
        k = rng.integers(3, CTC_MAX_LABELS + 1)
        labels = rng.integers(1, CTC_SYMBOLS + 1, k)
        y[r, :k] = labels
        frames = []
        for s in labels:
            frames += [0] * int(rng.integers(0, 3)) + [s] * int(rng.integers(2, 7))
        frames = frames[:CTC_FRAMES] + [0] * max(0, CTC_FRAMES - len(frames))
        drift = np.linspace(0, 1, CTC_FRAMES)[:, None] * rng.standard_normal(CTC_FEATURES) * 0.3
        x[r] = sig[frames] + drift + 0.8 * rng.standard_normal((CTC_FRAMES, CTC_FEATURES))
    # a symbol cut off by the frame limit is still a label: rare, and the model must guess it (a little label noise)
    return D.split_arrays(x.astype(np.float32), y, n_test, seed)


class CTCNet(nn.Module):
    """A bidirectional GRU (hidden 32 each way) over the frames, a linear layer to 9 per-frame log-probabilities
    (blank and the 8 symbols): ``(n, 40, 16) -> (n, 40, 9)``."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.GRU(CTC_FEATURES, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, CTC_SYMBOLS + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.out(self.rnn(x)[0]), -1)


def ctc_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Connectionist temporal classification (Graves et al., 2006): the negative log-likelihood of each row's label
    sequence (``y``, 0-padded) summed over its alignments to the frames, the mean over rows (nats per sequence)."""
    lengths = (y > 0).sum(1)
    frames = torch.full((out.shape[0],), out.shape[1], dtype=torch.long)
    return F.ctc_loss(out.transpose(0, 1), y, frames, lengths, reduction="sum", zero_infinity=True) / out.shape[0]


# ---- attic-sort-transformer ------------------------------------------------------------------------------

SORT_LEN, SORT_VOCAB = 12, 20


@functools.cache
def make_sorting(n: int = 20000, n_val: int = 2000, n_test: int = 2000, seed: int = 89) -> D.ArrayData:
    """Sequences ``(n, 12)`` of tokens 0 .. 19 (repeats allowed) and their sorted copies ``(n, 12)``; every row
    distinct."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = np.unique(rng.integers(0, SORT_VOCAB, (int(1.02 * m), SORT_LEN)), axis=0)
    x = x[rng.permutation(len(x))][:m]
    y = np.sort(x, 1)
    t = torch.from_numpy
    a, b = n, n + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


class SortTransformer(nn.Module):
    """A Transformer encoder (2 post-norm layers, width 64, 4 heads, ReLU feed-forward 128, no dropout) with token and
    learned positional embeddings, writing at each position the logits of the sorted sequence's token there."""

    def __init__(self, width: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.tokens = nn.Embedding(SORT_VOCAB, width)
        self.positions = nn.Parameter(0.02 * torch.randn(SORT_LEN, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, SORT_VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(self.tokens(x) + self.positions))


for _task in [
    Task(
        "attic-pinn-heat",
        HeatPINN,
        make_heat,
        pinn_loss,
        "mse",
        steps=1000,
        batch_size=128,
        description="physics-informed network (MLP 2-48-48-48-1, tanh) solving the 1-D heat equation u_t = 0.05 u_xx "
        "from its PDE residual at 4,000 collocation points and 800 initial/boundary values (no solution data); "
        "metric: test MSE against the exact solution",
    ),
    Task(
        "attic-simclr-views",
        SimCLREncoder,
        make_simclr_views,
        infonce_loss,
        "loss",
        steps=500,
        batch_size=128,
        description="SimCLR: an MLP encoder 32-128-128 (BatchNorm) and projection head trained with NT-Xent "
        "(temperature 0.2, in-batch negatives) on pairs of augmented views (scaling, masking, jitter) of 24-class "
        "synthetic points; metric: test NT-Xent in batches of 1000",
    ),
    Task(
        "attic-sage-sbm",
        GraphSAGE,
        make_sbm_nodes,
        metric="accuracy",
        steps=300,
        batch_size=60,
        description="GraphSAGE (mean aggregator, 2 layers of 64, dropout 0.5) classifying the nodes of a "
        "degree-corrected stochastic block model (2,000 nodes, 6 communities, weak features) from 240 labelled "
        "nodes; a 60-node validation split; metric: test accuracy",
    ),
    Task(
        "attic-ctc-tones",
        CTCNet,
        make_ctc_tones,
        ctc_loss,
        "loss",
        steps=400,
        batch_size=32,
        description="bidirectional GRU (hidden 32) trained with CTC to transcribe 3 .. 6 symbols from 40 unsegmented "
        "noisy frames (no alignment given); metric: test CTC loss (nats per sequence)",
    ),
    Task(
        "attic-twotower-shift",
        TwoTower,
        make_twotower,
        metric="accuracy",
        steps=300,
        batch_size=64,
        description="two-tower recommender (user and item MLPs 16-64-32, dot-product score) pretrained in its builder "
        "with BPR on last year's implicit feedback, fine-tuned on 3,000 triples after a preference drift; 60,000 "
        "validation triples; metric: test pairwise ranking accuracy (AUC)",
    ),
    Task(
        "attic-sort-transformer",
        SortTransformer,
        make_sorting,
        metric="accuracy",
        steps=300,
        batch_size=64,
        description="Transformer encoder (2 layers of width 64, learned positional embeddings) sorting 12 tokens "
        "of 20 (repeats allowed) position by position; metric: test per-token accuracy",
    ),
]:
    register_task(_task)
