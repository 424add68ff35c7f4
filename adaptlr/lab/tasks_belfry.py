"""Belfry tasks for the tuning-free benchmark: a thirteenth holdout set, built by someone other than the tuners'
author and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads):

- ``belfry-multitask-scales``: one trunk, two heads, their losses summed: a regression in units of 40 (MSE ~1,600
  at the start, floor 1) and a 5-way classification (cross-entropy ~1.6): the summed loss, and its gradient, is the
  regression's ~1,000 to 1 at the start, the two comparable at the end; a step size set by the gradient's norm or by
  the early loss is set by one head, and the heads want lrs far apart (the classifier, on 1,000 rows, overfits at
  the lrs the regression needs; its own grid, 1e-3 .. 1);
- ``belfry-teacher-forcing``: a GRU encoder-decoder trained with teacher forcing (the loss a tuner reads) and
  scored by greedy decoding (each token fed back), on a target where one wrong token spoils the rest: the training
  loss ranks lrs by the forced next-token fit, the metric by the greedy decoding's;
- ``belfry-dann-shift``: domain-adversarial training (a gradient-reversal layer) for an unlabelled shifted target
  domain: the features ascend the domain classifier's loss while it descends it, so the training loss is a game's
  and no longer falls with progress; the metric is the target domain's accuracy, which the loss does not see;
- ``belfry-vqvae-codes``: a VQ-VAE, a straight-through estimator through a nearest-code lookup whose codebook
  starts inside the encoder's outputs (most codes dead at the start): the lr sets how many codes come alive;
- ``belfry-kelly-barrier``: a growth-optimal (Kelly) portfolio policy: the log of wealth has a barrier at ruin
  (a row whose bet loses everything), near which its curvature is unbounded; the best bets lie close to it, so a
  step a little too long ruins rows, whose gradient is then zero;
- ``belfry-distill-t4``: knowledge distillation at temperature 4 (:mod:`adaptlr.lab.belfrydistill`): noise-free soft
  targets from a wide teacher trained in the builder, a narrow student whose capacity gap leaves a floor far above
  zero under the loss.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("belfry-dann-shift").metric
'accuracy'
>>> BELFRY[0]
'belfry-multitask-scales'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .belfrydistill import Student, distill_loss, make_distill_rows
from .tasks import Task, register_task

__all__ = [
    "BELFRY",
    "GRIDS",
    "DomainAdversarial",
    "KellyPolicy",
    "MultiTaskNet",
    "Seq2Seq",
    "VQAutoencoder",
    "dann_loss",
    "kelly_loss",
    "make_domain_shift",
    "make_kelly_returns",
    "make_multitask",
    "make_prefix_sums",
    "make_vq_points",
    "multitask_loss",
    "vq_loss",
]

BELFRY: tuple[str, ...] = (
    "belfry-multitask-scales",
    "belfry-teacher-forcing",
    "belfry-dann-shift",
    "belfry-vqvae-codes",
    "belfry-kelly-barrier",
    "belfry-distill-t4",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies on the default grid's edge or outside it
GRIDS: dict[str, tuple[float, ...]] = {"belfry-multitask-scales": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)}


_splits = D.split_rows  # (the first n rows train, the next n_val validate, the rest test)


# ---- belfry-multitask-scales -----------------------------------------------------------------------------

MT_DIM, MT_CLASSES, MT_SCALE = 16, 5, 40.0


@functools.cache
def make_multitask(n: int = 1000, n_val: int = 2000, n_test: int = 2000, seed: int = 121) -> D.ArrayData:
    """Rows ``(n, 16)`` (Gaussian; 1,000 train: the classifier overfits) and targets ``(n, 2)`` float32: a class
    0 .. 4 (the argmax of a fixed random tanh network's scores, seed 121, 10% of the labels drawn at random) and a
    regression target in units of 40: 40 times a fixed unit-variance linear form of the row plus noise of std 1
    (its MSE floor)."""
    g = np.random.default_rng(121)
    w1, w2 = g.standard_normal((MT_DIM, 32)), g.standard_normal((32, MT_CLASSES))
    v = g.standard_normal(MT_DIM)
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, MT_DIM))
    cls = (np.tanh(x @ w1 / 2) @ w2).argmax(1)
    cls = np.where(rng.uniform(0, 1, m) < 0.1, rng.integers(0, MT_CLASSES, m), cls)
    reg = MT_SCALE * x @ v / np.linalg.norm(v) + rng.standard_normal(m)
    return _splits(x.astype(np.float32), np.stack([cls, reg], 1).astype(np.float32), n, n_val)


class MultiTaskNet(nn.Module):
    """A shared trunk, an MLP 16-128-128 (ReLU), and two linear heads: 5 class logits and one regression value,
    side by side in the output ``(n, 6)``."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(MT_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.classify = nn.Linear(hidden, MT_CLASSES)
        self.regress = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return torch.cat([self.classify(h), self.regress(h)], 1)


def multitask_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The classification head's cross-entropy plus the regression head's MSE, unweighted (each a mean over rows)."""
    return F.cross_entropy(out[:, :MT_CLASSES], y[:, 0].long()) + F.mse_loss(out[:, MT_CLASSES], y[:, 1])


# ---- belfry-teacher-forcing ------------------------------------------------------------------------------

S2S_LEN, S2S_VOCAB = 6, 10


@functools.cache
def make_prefix_sums(n: int = 8000, n_val: int = 2000, n_test: int = 2000, seed: int = 122) -> D.ArrayData:
    """Digit strings ``(n, 6)`` 0 .. 9 (every row distinct) and their reversed running sums modulo 10 ``(n, 6)``
    (int64): ``y_t = (y_{t-1} + s_{5-t}) mod 10``, ``y_{-1} = 0``. The input ``(n, 12)`` is the string and its target
    side by side: :class:`Seq2Seq` reads the target only when training (teacher forcing)."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    s = np.unique(rng.integers(0, S2S_VOCAB, (int(1.05 * m), S2S_LEN)), axis=0)
    s = s[rng.permutation(len(s))][:m]
    y = np.cumsum(s[:, ::-1], 1) % S2S_VOCAB
    return _splits(np.concatenate([s, y], 1), y.copy(), n, n_val)


class Seq2Seq(nn.Module):
    """A GRU encoder-decoder (Sutskever et al., 2014; embeddings 32, hidden 64, no attention): the encoder reads the
    6 digits, its last state starts the decoder. Training mode: teacher forcing, the decoder reading the true target
    shifted by one (a start token first). Eval mode: greedy decoding, each step fed the previous step's argmax; the
    target half of the input is not read. Output: the 6 steps' logits ``(n, 6, 10)``."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(S2S_VOCAB + 1, 32)  # the digits and a start token
        self.encoder = nn.GRU(32, hidden, batch_first=True)
        self.decoder = nn.GRU(32, hidden, batch_first=True)
        self.out = nn.Linear(hidden, S2S_VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src, tgt = x[:, :S2S_LEN], x[:, S2S_LEN:]
        h = self.encoder(self.embed(src))[1]
        start = torch.full_like(src[:, :1], S2S_VOCAB)
        if self.training:
            return self.out(self.decoder(self.embed(torch.cat([start, tgt[:, :-1]], 1)), h)[0])
        steps, token = [], start
        for _ in range(S2S_LEN):
            o, h = self.decoder(self.embed(token), h)
            steps.append(self.out(o))
            token = steps[-1].argmax(-1)
        return torch.cat(steps, 1)


# ---- belfry-dann-shift -----------------------------------------------------------------------------------

DA_DIM, DA_CLASSES, DA_ANGLE = 10, 4, 1.2


def _domain_rows(rng: np.random.Generator, m: int, target: bool) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows of 4 Gaussian classes (fixed centres, seed 123, spread 1.2 against a unit noise) and their classes;
    the target domain's rows are turned by a fixed rotation (1.2 rad in each of two random planes) and shifted."""
    g = np.random.default_rng(123)
    centres = 1.2 * g.standard_normal((DA_CLASSES, DA_DIM))
    planes = np.linalg.qr(g.standard_normal((DA_DIM, 4)))[0].T
    shift = 1.5 * g.standard_normal(DA_DIM)
    y = rng.integers(0, DA_CLASSES, m)
    x = centres[y] + rng.standard_normal((m, DA_DIM))
    if target:
        c, s = np.cos(DA_ANGLE), np.sin(DA_ANGLE)
        for a, b in (planes[:2], planes[2:]):
            pa, pb = x @ a, x @ b
            x = x + np.outer(pa * (c - 1) - pb * s, a) + np.outer(pa * s + pb * (c - 1), b)
        x = x + shift
    return x, y


@functools.cache
def make_domain_shift(n: int = 2000, n_val: int = 500, n_test: int = 2000, seed: int = 124) -> D.ArrayData:
    """Training rows ``(2n, 10)``: ``n`` labelled source rows and ``n`` unlabelled target rows (class -1),
    shuffled; validation and test: labelled target rows (:func:`_domain_rows`). Classes int64."""
    rng = np.random.default_rng(seed)
    xs, ys = _domain_rows(rng, n, False)
    xt, yt = _domain_rows(rng, n + n_val + n_test, True)
    x = np.concatenate([xs, xt[:n]])
    y = np.concatenate([ys, np.full(n, -1)])
    order = rng.permutation(2 * n)
    x, y = np.concatenate([x[order], xt[n:]]), np.concatenate([y[order], yt[n:]])
    return _splits(x.astype(np.float32), y.astype(np.int64), 2 * n, n_val)


class _ReverseGradient(torch.autograd.Function):
    """The identity forward; the gradient times ``-scale`` backward (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.scale * grad, None


class DomainAdversarial(nn.Module):
    """DANN (Ganin et al., 2016): features, an MLP 10-64-64 (ReLU); a label head (64 -> 4); a domain head (MLP
    64-64-1) behind a gradient-reversal layer (scale 1). Training mode: the class logits and the domain logit
    ``(n, 5)``; eval mode: the class logits ``(n, 4)``."""

    def __init__(self, hidden: int = 64, reversal: float = 1.0) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(DA_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.label = nn.Linear(hidden, DA_CLASSES)
        self.domain = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.reversal = reversal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if not self.training:
            return self.label(h)
        return torch.cat([self.label(h), self.domain(_ReverseGradient.apply(h, self.reversal))], 1)


def dann_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of the labelled rows (class -1: unlabelled, skipped), plus, from a training-mode output,
    the domain head's binary cross-entropy (the target domain: the unlabelled rows)."""
    loss = F.cross_entropy(out[:, :DA_CLASSES], y, ignore_index=-1)
    if out.shape[1] > DA_CLASSES:
        loss = loss + F.binary_cross_entropy_with_logits(out[:, DA_CLASSES], (y < 0).to(out.dtype))
    return loss


# ---- belfry-vqvae-codes ----------------------------------------------------------------------------------

VQ_DIM, VQ_CODES, VQ_LATENT, VQ_BETA = 16, 32, 4, 0.25


@functools.cache
def make_vq_points(n: int = 6000, n_val: int = 2000, n_test: int = 2000, seed: int = 125) -> D.ArrayData:
    """Points ``(n, 16)`` float32, each its own target: one of 24 short segments (fixed centres and directions,
    seed 125: a centre plus ``t`` in [-0.8, 0.8] times a unit direction) plus noise of std 0.1."""
    g = np.random.default_rng(125)
    centres, dirs = g.standard_normal((24, VQ_DIM)), g.standard_normal((24, VQ_DIM))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    k, t = rng.integers(0, 24, m), rng.uniform(-0.8, 0.8, (m, 1))
    x = centres[k] + t * dirs[k] + 0.1 * rng.standard_normal((m, VQ_DIM))
    return _splits(x.astype(np.float32), x.astype(np.float32), n, n_val)


class VQAutoencoder(nn.Module):
    """VQ-VAE (van den Oord et al., 2017) on vectors: an encoder MLP 16-64-4 (ReLU), a codebook of 32 codes of
    dimension 4 started uniform in [-1/32, 1/32] (the paper's), the nearest code passed on straight through (its
    gradient copied to the encoder), a decoder MLP 4-64-16. Training mode: the reconstruction ``(n, 16)`` and, as a
    17th column, each row's codebook plus 0.25 x commitment loss; eval mode: the reconstruction alone."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(VQ_DIM, hidden), nn.ReLU(), nn.Linear(hidden, VQ_LATENT))
        self.codebook = nn.Parameter(torch.empty(VQ_CODES, VQ_LATENT).uniform_(-1 / VQ_CODES, 1 / VQ_CODES))
        self.decoder = nn.Sequential(nn.Linear(VQ_LATENT, hidden), nn.ReLU(), nn.Linear(hidden, VQ_DIM))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The index of each row's nearest code ``(n,)``."""
        return torch.cdist(self.encoder(x), self.codebook).argmin(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        q = self.codebook[torch.cdist(z, self.codebook).argmin(1)]
        recon = self.decoder(z + (q - z).detach())
        if not self.training:
            return recon
        penalty = ((z.detach() - q) ** 2).mean(1) + VQ_BETA * ((z - q.detach()) ** 2).mean(1)
        return torch.cat([recon, penalty[:, None]], 1)


def vq_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reconstruction's MSE, plus a training-mode output's codebook and commitment losses (the mean over rows)."""
    loss = F.mse_loss(out[:, :VQ_DIM], y)
    return loss + out[:, VQ_DIM].mean() if out.shape[1] > VQ_DIM else loss


# ---- belfry-kelly-barrier --------------------------------------------------------------------------------

KELLY_FEATURES, KELLY_ASSETS = 8, 4
#: the growth the loss is measured from: the loss is this less the mean log growth, positive for every sound policy
#: (the best reach about 0.03 of log growth a period); the benchmark's ratios need a positive metric
KELLY_TARGET = 0.1
#: a ruined row's wealth: the log's argument is held at it or above (its gradient is zero there)
KELLY_RUIN = 1e-3


@functools.cache
def make_kelly_returns(n: int = 6000, n_val: int = 10000, n_test: int = 10000, seed: int = 126) -> D.ArrayData:
    """Market features ``(n, 8)`` (Gaussian) and the next period's returns of 4 assets ``(n, 4)`` float32: a mean
    of 0.01 x tanh of a fixed linear form of the features (seed 126) plus Student-t noise (3 dof) of std 0.06,
    held above -0.9 (limited liability)."""
    mix = np.random.default_rng(126).standard_normal((KELLY_FEATURES, KELLY_ASSETS)) / KELLY_FEATURES**0.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, KELLY_FEATURES))
    r = 0.01 * np.tanh(2 * x @ mix) + 0.06 / 3**0.5 * rng.standard_t(3, (m, KELLY_ASSETS))
    return _splits(x.astype(np.float32), np.maximum(r, -0.9).astype(np.float32), n, n_val)


class KellyPolicy(nn.Module):
    """A portfolio policy: an MLP 8-64-64-4 (tanh) from the features to each asset's position as a multiple of
    wealth (unbounded: any leverage, long or short)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(KELLY_FEATURES, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, KELLY_ASSETS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def kelly_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The growth-optimal (Kelly, 1956) criterion as a loss: :data:`KELLY_TARGET` less the mean log of the wealth
    ``1 + positions . returns`` after one period, the wealth held at :data:`KELLY_RUIN` or above (a ruined row)."""
    wealth = 1.0 + (out * y).sum(1)
    return KELLY_TARGET - torch.log(wealth.clamp_min(KELLY_RUIN)).mean()


for _task in [
    Task(
        "belfry-multitask-scales",
        MultiTaskNet,
        make_multitask,
        multitask_loss,
        "loss",
        steps=1000,
        batch_size=64,
        description="multi-task MLP (trunk 16-128-128, a 5-class head and a regression head) trained on the sum "
        "of its heads' losses on 1,000 rows, the regression's in units of 40 (MSE ~1,600 at the start against a "
        "cross-entropy ~1.6); metric: test cross-entropy plus MSE",
    ),
    Task(
        "belfry-teacher-forcing",
        Seq2Seq,
        make_prefix_sums,
        metric="accuracy",
        steps=1000,
        batch_size=64,
        description="GRU encoder-decoder (hidden 64, no attention) writing the reversed running sums mod 10 of 6 "
        "digits, trained with teacher forcing, scored by greedy decoding (an early error spoils the rest); metric: "
        "test per-token accuracy of the greedy decoding",
    ),
    Task(
        "belfry-dann-shift",
        DomainAdversarial,
        make_domain_shift,
        dann_loss,
        "accuracy",
        steps=2000,
        batch_size=64,
        description="domain-adversarial network (DANN: features 10-64-64, a label head, a domain head behind a "
        "gradient-reversal layer) on 2,000 labelled source rows and 2,000 unlabelled rows of a rotated, shifted "
        "target domain (4 Gaussian classes); metric: test accuracy on the target domain",
    ),
    Task(
        "belfry-vqvae-codes",
        VQAutoencoder,
        make_vq_points,
        vq_loss,
        "mse",
        steps=2000,
        batch_size=64,
        description="VQ-VAE on vectors (encoder 16-64-4, 32 codes started at the origin, straight-through, "
        "commitment 0.25, decoder 4-64-16) reconstructing noisy points on 24 segments in 16-D; metric: test "
        "reconstruction MSE",
    ),
    Task(
        "belfry-kelly-barrier",
        KellyPolicy,
        make_kelly_returns,
        kelly_loss,
        "loss",
        steps=2000,
        batch_size=64,
        description="growth-optimal (Kelly) portfolio: an MLP 8-64-64-4 (tanh) choosing unbounded leveraged "
        "positions in 4 assets with fat-tailed (Student-t) returns, maximising the mean log wealth, which has a "
        "barrier at ruin; metric: test 0.1 less the mean log growth",
    ),
    Task(
        "belfry-distill-t4",
        Student,
        make_distill_rows,
        distill_loss,
        "loss",
        steps=3000,
        batch_size=64,
        description="knowledge distillation at temperature 4: a student MLP 20-3-10 fitting the softened logits "
        "of a teacher MLP 20-256-256-10 trained in the builder, on 3,000 transfer rows; metric: test T^2 x KL "
        "divergence from the teacher",
    ),
]:
    register_task(_task)
