"""Garret tasks for the tuning-free benchmark: an eleventh holdout set, built by someone other than the tuners'
author and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads). "A tenth of the
run" below is a separate run of a tenth of the budget (its own warmup and cosine), as a tuner's short trial is;
every lr named is the AdamW warmup-cosine grid's choice on the final validation metric (seeds 0 and 1, lrs 1e-4 .. 1
unless said otherwise; the numbers are that metric):

- ``garret-curriculum-noise``: an MLP on a stream served once in order whose labels go from clean to 45% redrawn
  at random (validation and test clean), so a tenth of the run sees only the clean start (under 4.5% noise); the
  full run's top is flat (1e-3 .. 0.03 within 0.025 of the best; best 0.01 on seed 0, 3e-3 on seed 1, both 0.780), a
  tenth of the run picks 0.01 on both seeds (0.755; 3e-3 within 0.001); 0.1 and up collapse to one class (0.198) in
  the full run, while a tenth of the run at 0.1 ends at 0.29 .. 0.52; raising the final noise to 70% moves nothing
  (1e-3 .. 0.01 within 0.006);
- ``garret-tied-autoencoder``: an autoencoder whose decoder is its encoder transposed; the full run does best at
  0.03 on both seeds (MSE 0.0129 / 0.0134; 0.01 within 6%), a tenth of the run at 0.1 on both (half a decade
  higher: 0.0209 / 0.0211, where 0.03 is at 0.0243 / 0.0248), and 0.1 diverges in the full run on both seeds (its
  loss back above where it started; 0.53 / 4.6 at the end); 0.3 and up diverge at both horizons;
- ``garret-mos-markov``: a mixture-of-softmaxes language model; the full run does best at 0.01 on both seeds (NLL
  1.74 / 1.72), with a cliff half a decade above it that only the full run shows: 0.03 ends at 2.43 / 2.30 (uniform
  is 3.18) but is within 3% of the best in a tenth of the run (2.95 / 2.94 against 2.86 / 2.84, which picks 0.01 on
  both seeds); 0.1 ends near uniform (3.13), 0.3 and up diverge;
- ``garret-cosine-fewval``: a cosine-softmax classifier whose validation split is 60 rows (one example is 1.7
  points): the test accuracy of the full run rises with the lr all the way up (0.546 at 1e-4, 0.586 at 0.3, 0.593 at
  1, 0.596 .. 0.602 at 3 .. 10) while the validation choice is noise: on the default grid it picks 3e-4 (seed 0) and
  3e-3 (seed 1), on its own grid (0.01 .. 10) 3 (seed 0) and 1 (seed 1, tied with 10); a tenth of the run picks 0.01
  (seed 0) and 0.1 (seed 1) on its own grid (1e-3 .. 0.01 tied on seed 0 on the default grid); no lr up to 10
  diverges; its grid is its own (0.01 .. 10), placed from seeds 0 and 1: the bench's grid chose 10, its edge, on seed
  2 (test 0.596; on seeds 0 and 1 the lrs from 0.3 up end within 0.02 of one another);
- ``garret-hetero-weak``: a heteroscedastic Gaussian regression (NLL) of a weak mean under heavy noise; the full run
  does best at 3e-3 on both seeds (0.9705 / 0.9703; 1e-3 .. 0.03 within 0.01), a tenth of the run at 0.03 on both
  (a decade higher: 0.986 / 0.982, where 3e-3 is at 1.10); 0.1 diverges in the full run on both seeds while a tenth
  of the run at 0.1 ends without diverging (1.11 / 1.10);
- ``garret-attn-recall``: an attention-only transformer on associative recall, which sits on a plateau before the
  recall circuit forms: the full run does best at 0.01 on both seeds (1.000; 3e-3: 0.98 / 0.95), 1e-3 never
  leaves the plateau (0.24 / 0.22), 0.03 collapses (0.14 / 0.08) and 0.1 and up diverge; a tenth of the run is still
  on the plateau at every lr (validation accuracy 0.06 .. 0.18, chance 0.0625) and picks 0.01 on both seeds by a
  margin under 0.05 (0.03 there: 0.136, within 0.04).

Plain-run wall on one core (training and evaluation; the probe's mean over 18 runs): curriculum 1.2 s, tied
autoencoder 1.1 s, mixture of softmaxes 1.2 s, cosine 1.0 s, heteroscedastic 1.1 s, attention 2.1 s.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("garret-mos-markov").metric
'loss'
>>> GARRET[0]
'garret-curriculum-noise'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .loftstream import StreamData
from .tasks import Task, register_task

__all__ = [
    "GARRET",
    "GRIDS",
    "AttentionOnly",
    "CosineClassifier",
    "HeteroNet",
    "MixtureOfSoftmaxes",
    "TiedAutoencoder",
    "gaussian_nll",
    "log_prob_nll",
    "make_curriculum",
    "make_few_val",
    "make_hetero_weak",
    "make_markov_text",
    "make_recall",
    "make_manifold64",
]

GARRET: tuple[str, ...] = (
    "garret-curriculum-noise",
    "garret-tied-autoencoder",
    "garret-mos-markov",
    "garret-cosine-fewval",
    "garret-hetero-weak",
    "garret-attn-recall",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr (or a short run's) lies on the default
#: grid's (1e-4 .. 1e-1) edge or outside it; placed so that neither seed 0's nor seed 1's choice sits on its edge
GRIDS: dict[str, tuple[float, ...]] = {
    "garret-cosine-fewval": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
}


def _split(x: np.ndarray, y: np.ndarray, n: int, n_val: int, data: type[D.ArrayData] = D.ArrayData) -> D.ArrayData:
    """Rows ``[:n]`` train, ``[n:n + n_val]`` validation, the rest test, as tensors."""
    t = torch.from_numpy
    a, b = n, n + n_val
    return data(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


def _teacher_logits(x: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """A fixed random two-layer tanh network's logits ``(n, classes)`` for rows ``x`` (weights from ``seed``)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((x.shape[1], 64)) / x.shape[1] ** 0.5
    w2 = rng.standard_normal((64, classes)) * 1.5
    return np.tanh(2.0 * x @ w1) @ w2


# ---- garret-curriculum-noise -----------------------------------------------------------------------------

CUR_DIM, CUR_CLASSES, CUR_STEPS, CUR_BATCH, CUR_NOISE = 16, 6, 4000, 32, 0.45


@functools.cache
def make_curriculum(
    n: int = CUR_STEPS * CUR_BATCH, n_val: int = 3000, n_test: int = 3000, seed: int = 111
) -> D.ArrayData:
    """Rows ``(n, 16)`` labelled (6 classes, int64) by a fixed random tanh teacher (seed 111); the training stream
    is a curriculum from clean to noisy: the chance that a row's label is redrawn at random rises linearly along
    the stream from 0 to 0.45 (a :class:`~adaptlr.lab.loftstream.StreamData`: batches come in stream order);
    validation and test are clean."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, CUR_DIM))
    y = _teacher_logits(x, CUR_CLASSES, 111).argmax(1)
    rate = np.concatenate([np.linspace(0, CUR_NOISE, n), np.zeros(n_val + n_test)])
    y = np.where(rng.uniform(0, 1, m) < rate, rng.integers(0, CUR_CLASSES, m), y).astype(np.int64)
    return _split(x.astype(np.float32), y, n, n_val, StreamData)


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLUs between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def curriculum_mlp() -> nn.Sequential:
    """An MLP 16-128-128-6 (ReLU)."""
    return _mlp([CUR_DIM, 128, 128, CUR_CLASSES])


# ---- garret-tied-autoencoder -----------------------------------------------------------------------------

AE_DIM, AE_LATENT, AE_CODE = 64, 8, 24


@functools.cache
def make_manifold64(n: int = 12000, n_val: int = 2000, n_test: int = 2000, seed: int = 112) -> D.ArrayData:
    """Points ``(n, 64)`` on a curved 8-D manifold (a fixed random tanh map, seed 112) plus noise of std 0.05;
    the target is the input itself."""
    gen = np.random.default_rng(112)
    a = gen.standard_normal((AE_LATENT, 48)) / AE_LATENT**0.5
    b = gen.standard_normal((48, AE_DIM)) / 48**0.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    z = rng.standard_normal((m, AE_LATENT))
    x = (np.tanh(1.5 * z @ a) @ b + 0.05 * rng.standard_normal((m, AE_DIM))).astype(np.float32)
    return _split(x, x.copy(), n, n_val)


class TiedAutoencoder(nn.Module):
    """An autoencoder whose decoder is its encoder transposed (weight tying): ``h = tanh(W2 tanh(W1 x + b1) +
    b2)`` (64-48-24), ``x' = W1^T tanh(W2^T h + c2) + c1``; each weight matrix serves twice."""

    def __init__(self, hidden: int = 48, code: int = AE_CODE) -> None:
        super().__init__()
        self.enc1, self.enc2 = nn.Linear(AE_DIM, hidden), nn.Linear(hidden, code)
        self.dec2, self.dec1 = nn.Parameter(torch.zeros(hidden)), nn.Parameter(torch.zeros(AE_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.enc2(torch.tanh(self.enc1(x))))
        back = torch.tanh(h @ self.enc2.weight + self.dec2)
        return back @ self.enc1.weight + self.dec1


# ---- garret-mos-markov -----------------------------------------------------------------------------------

MOS_VOCAB, MOS_CONTEXT, MOS_MIX = 24, 6, 4


@functools.cache
def make_markov_text(n: int = 24000, n_val: int = 3000, n_test: int = 3000, seed: int = 113) -> D.ArrayData:
    """Contexts ``(n, 6)`` of token ids (vocabulary 24, int64) from a second-order Markov chain (its 576
    next-token distributions sparse Dirichlet draws, seed 113; the four earliest tokens are distractors) and the
    next token as target; every context is distinct."""
    gen = np.random.default_rng(113)
    table = gen.dirichlet(np.full(MOS_VOCAB, 0.08), MOS_VOCAB * MOS_VOCAB)
    cum = np.cumsum(table, 1)
    rng = np.random.default_rng(seed)
    length = 3 * (n + n_val + n_test) + MOS_CONTEXT
    seq = np.empty(length, np.int64)
    seq[:2] = rng.integers(0, MOS_VOCAB, 2)
    u = rng.uniform(0, 1, length)
    for i in range(2, length):
        seq[i] = min(np.searchsorted(cum[seq[i - 2] * MOS_VOCAB + seq[i - 1]], u[i]), MOS_VOCAB - 1)
    win = np.lib.stride_tricks.sliding_window_view(seq, MOS_CONTEXT + 1)
    _, first = np.unique(win[:, :-1], axis=0, return_index=True)
    win = win[np.sort(first)]
    win = win[rng.permutation(len(win))][: n + n_val + n_test]
    return _split(np.ascontiguousarray(win[:, :-1]), np.ascontiguousarray(win[:, -1]), n, n_val)


class MixtureOfSoftmaxes(nn.Module):
    """A mixture-of-softmaxes language model (Yang et al., 2018): 6 embedded context tokens (width 16,
    concatenated) through a tanh layer of 64, then 4 components each ``softmax(tanh(P_k h) E^T + b)`` over the
    vocabulary, mixed by ``softmax(V h)``; the output is the mixture's log-probabilities ``(n, 24)``."""

    def __init__(self, width: int = 64, mix: int = MOS_MIX) -> None:
        super().__init__()
        self.embed = nn.Embedding(MOS_VOCAB, 16)
        self.hidden = nn.Linear(16 * MOS_CONTEXT, width)
        self.heads = nn.Linear(width, width * mix)
        self.prior = nn.Linear(width, mix)
        self.out = nn.Linear(width, MOS_VOCAB)
        self.mix, self.width = mix, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(self.embed(x).flatten(1)))
        comps = torch.tanh(self.heads(h)).view(-1, self.mix, self.width)
        logp = torch.log_softmax(self.out(comps), -1)  # (n, mix, vocab)
        return torch.logsumexp(logp + torch.log_softmax(self.prior(h), -1)[..., None], 1)


def log_prob_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of the target from log-probabilities ``out``, the mean over rows."""
    return F.nll_loss(out, y)


# ---- garret-cosine-fewval --------------------------------------------------------------------------------

FEW_DIM, FEW_CLASSES, FEW_VAL = 24, 10, 60


@functools.cache
def make_few_val(n: int = 6000, n_val: int = FEW_VAL, n_test: int = 4000, seed: int = 114) -> D.ArrayData:
    """Rows ``(n, 24)`` labelled (10 classes, int64) by a fixed random tanh teacher (seed 114) with 15% of labels
    redrawn; the validation split is only 60 rows (a decision on it is an error rate over 60 examples)."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, FEW_DIM))
    y = _teacher_logits(x, FEW_CLASSES, 114).argmax(1)
    y = np.where(rng.uniform(0, 1, m) < 0.15, rng.integers(0, FEW_CLASSES, m), y).astype(np.int64)
    return _split(x.astype(np.float32), y, n, n_val)


class CosineClassifier(nn.Module):
    """A cosine-softmax classifier (NormFace, Wang et al., 2017): an MLP 24-128-64 (ReLU) whose L2-normalised
    features meet L2-normalised class weights; the logits are their cosines times a learned scale (init 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _mlp([FEW_DIM, 128, 64])
        self.classes = nn.Parameter(torch.randn(FEW_CLASSES, 64) / 8)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.body(x), dim=1)
        return self.scale * f @ F.normalize(self.classes, dim=1).T


# ---- garret-hetero-weak ----------------------------------------------------------------------------------

HET_DIM = 10


@functools.cache
def make_hetero_weak(n: int = 20000, n_val: int = 4000, n_test: int = 4000, seed: int = 115) -> D.ArrayData:
    """Regression rows ``(n, 10)`` and targets ``(n, 1)``: a weak nonlinear mean (std about 0.2, seed 115) under
    heteroscedastic noise whose std runs from 0.5 to 3 with the input (signal-to-noise under 0.05)."""
    gen = np.random.default_rng(115)
    w, v = gen.standard_normal((HET_DIM, 8)) / HET_DIM**0.5, gen.standard_normal(8) / 8**0.5
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, HET_DIM))
    mean = 0.3 * np.sin(2 * x @ w) @ v
    std = 0.5 + 2.5 / (1 + np.exp(-2 * x[:, 0] * x[:, 1]))
    y = (mean + std * rng.standard_normal(m))[:, None]
    return _split(x.astype(np.float32), y.astype(np.float32), n, n_val)


class HeteroNet(nn.Module):
    """An MLP 10-64-64-2 (tanh) that outputs a Gaussian's mean and log-variance ``(n, 2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(HET_DIM, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Gaussian negative log-likelihood (without its constant) of ``y`` ``(n, 1)`` under mean ``out[:, 0]``
    and log-variance ``out[:, 1]``, the mean over rows."""
    mean, logvar = out[:, :1], out[:, 1:]
    return 0.5 * (logvar + (y - mean).square() * torch.exp(-logvar)).mean()


# ---- garret-attn-recall ----------------------------------------------------------------------------------

REC_KEYS, REC_PAIRS = 16, 8


@functools.cache
def make_recall(n: int = 20000, n_val: int = 2000, n_test: int = 2000, seed: int = 116) -> D.ArrayData:
    """Associative recall: sequences ``(n, 17)`` int64 of 8 (key, value) pairs (keys distinct, of 16; values of 16,
    written as ids 16 .. 31) then a query key from among the pairs; the target is the query's value (0 .. 15).
    Every sequence is distinct."""
    rng = np.random.default_rng(seed)
    m = int(1.05 * (n + n_val + n_test))
    keys = np.argsort(rng.uniform(0, 1, (m, REC_KEYS)), 1)[:, :REC_PAIRS]
    values = rng.integers(0, REC_KEYS, (m, REC_PAIRS))
    pick = rng.integers(0, REC_PAIRS, m)
    seq = np.empty((m, 2 * REC_PAIRS + 1), np.int64)
    seq[:, 0:-1:2], seq[:, 1:-1:2], seq[:, -1] = keys, values + REC_KEYS, keys[np.arange(m), pick]
    _, first = np.unique(seq, axis=0, return_index=True)
    keep = np.sort(first)[: n + n_val + n_test]
    return _split(seq[keep], values[np.arange(m), pick][keep], n, n_val)


class AttentionOnly(nn.Module):
    """An attention-only transformer (no MLPs, no normalisation): token and position embeddings (width 32), two
    residual layers of 4-head causal self-attention, and a linear readout of the last position to 16 values."""

    def __init__(self, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(2 * REC_KEYS, width)
        self.pos = nn.Parameter(0.1 * torch.randn(2 * REC_PAIRS + 1, width))
        self.attn = nn.ModuleList(nn.MultiheadAttention(width, 4, batch_first=True) for _ in range(layers))
        self.readout = nn.Linear(width, REC_KEYS)
        self.register_buffer("mask", torch.triu(torch.ones(2 * REC_PAIRS + 1, 2 * REC_PAIRS + 1, dtype=torch.bool), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for attn in self.attn:
            h = h + attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]
        return self.readout(h[:, -1])


for _task in [
    Task(
        "garret-curriculum-noise",
        curriculum_mlp,
        make_curriculum,
        metric="accuracy",
        steps=CUR_STEPS,
        batch_size=CUR_BATCH,
        description="MLP (16-128-128-6) on a curriculum stream served once in order, from clean labels to "
        "45% of them redrawn at random; validation and test clean; metric: test accuracy",
    ),
    Task(
        "garret-tied-autoencoder",
        TiedAutoencoder,
        make_manifold64,
        F.mse_loss,
        "mse",
        steps=5000,
        batch_size=64,
        description="weight-tied autoencoder (64-48-24, tanh; the decoder is the encoder transposed) on a noisy "
        "curved 8-D manifold in 64-D; metric: test reconstruction MSE",
    ),
    Task(
        "garret-mos-markov",
        MixtureOfSoftmaxes,
        make_markov_text,
        log_prob_nll,
        "loss",
        steps=2000,
        batch_size=64,
        description="mixture-of-softmaxes language model (4 components, 6-token context, vocabulary 24) on a "
        "sparse second-order Markov chain; metric: test next-token NLL",
    ),
    Task(
        "garret-cosine-fewval",
        CosineClassifier,
        make_few_val,
        metric="accuracy",
        steps=2500,
        batch_size=32,
        description="cosine-softmax classifier (MLP features and class weights L2-normalised, learned scale) on "
        "10 teacher classes with 15% label noise; validation only 60 rows; metric: test accuracy",
    ),
    Task(
        "garret-hetero-weak",
        HeteroNet,
        make_hetero_weak,
        gaussian_nll,
        "loss",
        steps=5000,
        batch_size=32,
        description="heteroscedastic Gaussian regression (MLP 10-64-64 to a mean and a log-variance, Gaussian "
        "NLL) of a weak nonlinear mean under input-dependent noise (SNR < 0.05); metric: test NLL",
    ),
    Task(
        "garret-attn-recall",
        AttentionOnly,
        make_recall,
        metric="accuracy",
        steps=1000,
        batch_size=32,
        description="attention-only transformer (2 layers of 4-head causal self-attention, no MLPs or "
        "normalisation) recalling the value paired with a query key among 8 pairs; metric: test accuracy",
    ),
]:
    register_task(_task)
