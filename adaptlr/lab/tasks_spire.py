"""Spire tasks for the tuning-free benchmark: a fourteenth holdout set, built by someone other than the tuners'
author and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads):

- ``spire-mixup-smoothing``: an MLP trained with mixup (Beta(0.4, 0.4) pairs within the batch) and label smoothing
  (0.1) on noisy tabular classes: the soft, freshly mixed targets keep the training loss far above zero and noisy
  from batch to batch, its fall small beside its noise, while the metric (accuracy) moves a lot;
- ``spire-conv-autoencoder``: a 1-D convolutional autoencoder of sensor traces in natural units (millivolts,
  std ~40 about a baseline of ~150, no normalisation): the MSE starts in the tens of thousands, the best lr lies at
  the default grid's top edge and a cliff just above it kills the ReLUs (the output stuck at the mean trace; its
  own grid, 1e-3 .. 1);
- ``spire-gpt-copy-offset``: a tiny GPT-style causal transformer continuing a string of 8 random tokens with its
  copy, each token shifted by an offset given first: the loss sits on a plateau until an induction-like circuit
  forms and then falls abruptly (a tuner reading the early loss sees no progress); metric: the copy's accuracy;
- ``spire-huber-outliers``: a Huber-loss regression MLP whose training targets are 30% gross outliers (clean
  validation and test): the training loss is the outliers' (~7 of its ~8 at the start: their floor, which stays)
  while the clean fit, scored, is a small part of it; a large step follows the outliers;
- ``spire-relabel-finetune``: a two-layer MLP pretrained in its builder on one label map, fine-tuned on 600 rows
  of a shifted map (the labels of 6 classes of 10 rotated): the start is confidently wrong on most rows (a large
  initial gradient at the head) over features that are already right, which a long step destroys;
- ``spire-tiny-batches``: a wide, shallow network (one hidden layer of 2,048) trained on batches of 4 for 3,000
  steps: the gradient is nearly all noise, so a tuner that estimates a step size from gradient norms or distances
  travelled reads the noise.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("spire-gpt-copy-offset").metric
'accuracy'
>>> SPIRE[0]
'spire-mixup-smoothing'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import Task, mlp, pretrain, register_task

__all__ = [
    "GRIDS",
    "SPIRE",
    "ConvAutoencoder",
    "MixupMLP",
    "RelabelMLP",
    "TinyGPT",
    "WideShallow",
    "huber_loss",
    "make_copy_offset",
    "make_huber_outliers",
    "make_mixup_classes",
    "make_relabel_rows",
    "make_traces",
    "make_wide_rows",
    "mixup_loss",
    "pretrained_relabel",
    "relabel_source_rows",
]

SPIRE: tuple[str, ...] = (
    "spire-mixup-smoothing",
    "spire-conv-autoencoder",
    "spire-gpt-copy-offset",
    "spire-huber-outliers",
    "spire-relabel-finetune",
    "spire-tiny-batches",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies on the default grid's edge or outside it
GRIDS: dict[str, tuple[float, ...]] = {"spire-conv-autoencoder": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)}


_splits = D.split_rows  # (the first n rows train, the next n_val validate, the rest test)


# ---- spire-mixup-smoothing -------------------------------------------------------------------------------

MIX_DIM, MIX_CLASSES, MIX_ALPHA, MIX_SMOOTH = 24, 8, 0.4, 0.1


@functools.cache
def make_mixup_classes(n: int = 4000, n_val: int = 2000, n_test: int = 2000, seed: int = 131) -> D.ArrayData:
    """Rows ``(n, 24)`` float32 and classes 0 .. 7 (int64): the argmax of a fixed random tanh network's scores
    (seed 131) of Gaussian rows, 15% of the labels drawn at random; each column then scaled by a fixed factor in
    0.3 .. 3 (tabular units)."""
    g = np.random.default_rng(131)
    w1, w2 = g.standard_normal((MIX_DIM, 48)), g.standard_normal((48, MIX_CLASSES))
    scale = np.exp(g.uniform(np.log(0.3), np.log(3.0), MIX_DIM))
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, MIX_DIM))
    y = (np.tanh(x @ w1 / 3) @ w2).argmax(1)
    y = np.where(rng.uniform(0, 1, m) < 0.15, rng.integers(0, MIX_CLASSES, m), y)
    return _splits((x * scale).astype(np.float32), y.astype(np.int64), n, n_val)


class MixupMLP(nn.Module):
    """An MLP 24-128-128-8 (ReLU). Training mode: mixup (Zhang et al., 2018) inside the batch, each row mixed with
    a random other row with weight ``lam ~ Beta(0.4, 0.4)`` (one per batch, drawn from the global RNG); the output
    ``(n, 10)`` is the mixed rows' logits, the partner's index and ``lam``. Eval mode: the logits ``(n, 8)``."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = mlp([MIX_DIM, hidden, hidden, MIX_CLASSES])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.net(x)
        lam = float(torch.distributions.Beta(MIX_ALPHA, MIX_ALPHA).sample())
        perm = torch.randperm(len(x))
        out = self.net(lam * x + (1 - lam) * x[perm])
        extra = torch.stack([perm.to(out.dtype), torch.full_like(out[:, 0], lam)], 1)
        return torch.cat([out, extra], 1)


def mixup_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Label-smoothed (0.1) cross-entropy; from a training-mode output, mixup's: ``lam`` times that for the rows'
    own labels plus ``1 - lam`` times that for their partners'."""
    if out.shape[1] == MIX_CLASSES:
        return F.cross_entropy(out, y, label_smoothing=MIX_SMOOTH)
    logits, perm, lam = out[:, :MIX_CLASSES], out[:, MIX_CLASSES].long(), out[0, MIX_CLASSES + 1]
    own = F.cross_entropy(logits, y, label_smoothing=MIX_SMOOTH)
    return lam * own + (1 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=MIX_SMOOTH)


# ---- spire-conv-autoencoder ------------------------------------------------------------------------------

TRACE_LEN = 64


@functools.cache
def make_traces(n: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 132) -> D.ArrayData:
    """Sensor traces ``(n, 64)`` float32 in millivolts, each its own target: a baseline of 150 +- 20, two sines
    (periods 8 .. 40 samples, amplitudes up to 40), a Gaussian spike of 60 .. 120 at a random place (width 1 .. 3
    samples), and noise of std 2."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    t = np.arange(TRACE_LEN)[None, :]
    x = 150 + 20 * rng.standard_normal((m, 1))
    for _ in range(2):
        period, phase = rng.uniform(8, 40, (m, 1)), rng.uniform(0, 2 * np.pi, (m, 1))
        x = x + rng.uniform(0, 40, (m, 1)) * np.sin(2 * np.pi * t / period + phase)
    at, width = rng.uniform(4, TRACE_LEN - 4, (m, 1)), rng.uniform(1, 3, (m, 1))
    x = x + rng.uniform(60, 120, (m, 1)) * np.exp(-0.5 * ((t - at) / width) ** 2)
    x = (x + 2 * rng.standard_normal((m, TRACE_LEN))).astype(np.float32)
    return _splits(x, x.copy(), n, n_val)


class ConvAutoencoder(nn.Module):
    """A 1-D convolutional autoencoder on the raw traces (no normalisation): encoder convs 1-8-16 (kernel 5,
    stride 2, ReLU) and a 1x1 conv to a bottleneck of 8 channels x 16; decoder transposed convs 8-16-8 (stride 2,
    ReLU) and a 1x1 conv to one channel. Output ``(n, 64)``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(1, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(8, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(16, 8, 1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(8, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(8, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x[:, None]))[:, 0]


# ---- spire-gpt-copy-offset -------------------------------------------------------------------------------

GPT_VOCAB, GPT_HALF = 16, 8
#: the separator's token: after the vocabulary's
GPT_SEP = GPT_VOCAB


@functools.cache
def make_copy_offset(n: int = 20000, n_val: int = 1000, n_test: int = 1000, seed: int = 133) -> D.ArrayData:
    """Strings ``(n, 17)`` int64 (every row distinct): an offset ``k`` in 1 .. 15, 8 random tokens ``a`` of 16,
    a separator, then the copy ``(a + k) mod 16`` less its last token; the target ``(n, 8)``: the whole copy (what
    each position from the separator on must predict)."""
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    rows = np.concatenate(
        [rng.integers(1, GPT_VOCAB, (int(1.02 * m), 1)), rng.integers(0, GPT_VOCAB, (int(1.02 * m), GPT_HALF))], 1
    )
    rows = np.unique(rows, axis=0)
    rows = rows[rng.permutation(len(rows))][:m]
    k, a = rows[:, :1], rows[:, 1:]
    copy = (a + k) % GPT_VOCAB
    x = np.concatenate([k, a, np.full((m, 1), GPT_SEP), copy[:, :-1]], 1)
    return _splits(x.astype(np.int64), copy.astype(np.int64), n, n_val)


class TinyGPT(nn.Module):
    """A GPT-style decoder (Radford et al., 2018): token and learned positional embeddings of width 32, 2 pre-norm
    blocks of 2-head causal self-attention and a GELU MLP (width 64), a final LayerNorm and a linear head. It reads
    the 17-token strings and outputs the next-token logits of the last 8 positions (the copy) ``(n, 8, 16)``."""

    def __init__(self, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        length = 2 * GPT_HALF + 1
        self.embed = nn.Embedding(GPT_VOCAB + 1, width)
        self.pos = nn.Parameter(0.02 * torch.randn(length, width))
        block = nn.TransformerEncoderLayer(
            width, 2, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, GPT_VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embed(x) + self.pos, mask=self.mask, is_causal=True)
        return self.head(self.norm(h[:, GPT_HALF + 1 :]))


# ---- spire-huber-outliers --------------------------------------------------------------------------------

HUBER_DIM, HUBER_BAD = 12, 0.3


@functools.cache
def make_huber_outliers(n: int = 4000, n_val: int = 1500, n_test: int = 1500, seed: int = 134) -> D.ArrayData:
    """Rows ``(n, 12)`` (Gaussian) and targets ``(n, 1)`` float32: a fixed smooth function of the row (seed 134:
    ``sin`` of one linear form plus the product of two others, std ~1) plus noise of std 0.1; 30% of the training
    targets (only) replaced by gross outliers, ``+-U(10, 40)``."""
    g = np.random.default_rng(134)
    u, v, w = (g.standard_normal(HUBER_DIM) / HUBER_DIM**0.5 for _ in range(3))
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.standard_normal((m, HUBER_DIM))
    y = np.sin(2 * x @ u) + (x @ v) * (x @ w) + 0.1 * rng.standard_normal(m)
    bad = np.flatnonzero(rng.uniform(0, 1, n) < HUBER_BAD)
    y[bad] = rng.choice([-1.0, 1.0], len(bad)) * rng.uniform(10, 40, len(bad))
    return _splits(x.astype(np.float32), y[:, None].astype(np.float32), n, n_val)


def huber_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Huber loss (delta 1): half the squared error within 1, linear beyond."""
    return F.huber_loss(out, y, delta=1.0)


# ---- spire-relabel-finetune ------------------------------------------------------------------------------

RELABEL_DIM, RELABEL_CLASSES, RELABEL_HIDDEN = 20, 10, 256
#: the fine-tuning's label map: classes 0 .. 5 rotated by one (0 -> 1 .. 5 -> 0), 6 .. 9 kept
RELABEL_MAP = (1, 2, 3, 4, 5, 0, 6, 7, 8, 9)


def _relabel_rows(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` Gaussian rows ``(m, 20)`` float32 and their source classes 0 .. 9: the argmax of a fixed random tanh
    network's scores (seed 135), 5% drawn at random."""
    g = np.random.default_rng(135)
    w1, w2 = g.standard_normal((RELABEL_DIM, 64)), g.standard_normal((64, RELABEL_CLASSES))
    x = rng.standard_normal((m, RELABEL_DIM))
    y = (np.tanh(x @ w1 / 3) @ w2).argmax(1)
    y = np.where(rng.uniform(0, 1, m) < 0.05, rng.integers(0, RELABEL_CLASSES, m), y)
    return x.astype(np.float32), y.astype(np.int64)


def relabel_source_rows() -> tuple[np.ndarray, np.ndarray]:
    """The pretraining's 20,000 rows and source labels (seed 1350: none of the fine-tuning's)."""
    return _relabel_rows(np.random.default_rng(1350), 20000)


@functools.cache
def make_relabel_rows(n: int = 600, n_val: int = 1000, n_test: int = 2000, seed: int = 136) -> D.ArrayData:
    """The fine-tuning rows ``(n, 20)`` float32 (:func:`_relabel_rows`, 600 train) with their classes under
    :data:`RELABEL_MAP` (int64)."""
    x, y = _relabel_rows(np.random.default_rng(seed), n + n_val + n_test)
    return _splits(x, np.asarray(RELABEL_MAP)[y], n, n_val)


def _relabel_net() -> nn.Module:
    return mlp([RELABEL_DIM, RELABEL_HIDDEN, RELABEL_HIDDEN, RELABEL_CLASSES])


@functools.cache
def pretrained_relabel() -> dict[str, torch.Tensor]:
    """The two-hidden-layer MLP trained on :func:`relabel_source_rows` (:func:`~adaptlr.lab.tasks.pretrain`, the
    global RNG untouched): computed once per process."""
    x, y = relabel_source_rows()
    return pretrain(_relabel_net, torch.from_numpy(x), torch.from_numpy(y), F.cross_entropy, steps=800, batch=128)


class RelabelMLP(nn.Module):
    """An MLP 20-256-256-10 (ReLU) holding :func:`pretrained_relabel`'s weights."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _relabel_net()
        self.net.load_state_dict(pretrained_relabel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---- spire-tiny-batches ----------------------------------------------------------------------------------

WIDE_DIM, WIDE_HIDDEN = 8, 2048


@functools.cache
def make_wide_rows(n: int = 5000, n_val: int = 1500, n_test: int = 1500, seed: int = 137) -> D.ArrayData:
    """Rows ``(n, 8)`` (uniform in [-2, 2]) and targets ``(n, 1)`` float32: a fixed sum of 8 random ridge
    functions ``cos`` of linear forms (seed 137, unit std) plus noise of std 0.5."""
    g = np.random.default_rng(137)
    w, c = g.standard_normal((WIDE_DIM, 8)), g.uniform(0, 2 * np.pi, 8)
    rng = np.random.default_rng(seed)
    m = n + n_val + n_test
    x = rng.uniform(-2, 2, (m, WIDE_DIM))
    y = np.cos(x @ w / 2 + c).sum(1) / 2 + 0.5 * rng.standard_normal(m)
    return _splits(x.astype(np.float32), y[:, None].astype(np.float32), n, n_val)


class WideShallow(nn.Module):
    """A wide, shallow network: one hidden layer of 2,048 ReLU units, 8-2048-1."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp([WIDE_DIM, WIDE_HIDDEN, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y)


for _task in [
    Task(
        "spire-mixup-smoothing",
        MixupMLP,
        make_mixup_classes,
        mixup_loss,
        "accuracy",
        steps=1200,
        batch_size=64,
        description="MLP 24-128-128-8 trained with mixup (Beta(0.4, 0.4)) and label smoothing 0.1 on 4,000 noisy "
        "tabular rows of 8 classes (15% of the labels random, columns in scales 0.3 .. 3); metric: test accuracy",
    ),
    Task(
        "spire-conv-autoencoder",
        ConvAutoencoder,
        make_traces,
        _mse,
        "mse",
        steps=1000,
        batch_size=64,
        description="1-D convolutional autoencoder (strided convs 1-8-16 to a bottleneck of 8 x 16, transposed "
        "convs back, no normalisation) of 64-sample sensor traces in millivolts (baseline ~150, sines, a spike); "
        "metric: test reconstruction MSE",
    ),
    Task(
        "spire-gpt-copy-offset",
        TinyGPT,
        make_copy_offset,
        metric="accuracy",
        steps=1200,
        batch_size=64,
        description="tiny GPT (2 pre-norm causal blocks of width 32, 2 heads) continuing 8 random tokens of 16 with "
        "their copy shifted by an offset given first; metric: test per-token accuracy of the copy",
    ),
    Task(
        "spire-huber-outliers",
        functools.partial(mlp, [HUBER_DIM, 64, 64, 1]),
        make_huber_outliers,
        huber_loss,
        "loss",
        steps=1500,
        batch_size=64,
        description="MLP 12-64-64-1 under the Huber loss (delta 1) regressing a smooth function from 4,000 rows "
        "whose training targets are 30% gross outliers (+-10 .. 40), validation and test clean; metric: test "
        "Huber loss",
    ),
    Task(
        "spire-relabel-finetune",
        RelabelMLP,
        make_relabel_rows,
        metric="loss",
        steps=600,
        batch_size=32,
        description="MLP 20-256-256-10 pretrained in its builder on one label map, fine-tuned on 600 rows of a "
        "shifted one (6 of its 10 classes rotated); metric: test cross-entropy",
    ),
    Task(
        "spire-tiny-batches",
        WideShallow,
        make_wide_rows,
        _mse,
        "mse",
        steps=3000,
        batch_size=4,
        description="wide, shallow MLP 8-2048-1 (ReLU) regressing a sum of 8 ridge functions (noise std 0.5) on "
        "batches of 4 for 3,000 steps; metric: test MSE",
    ),
]:
    register_task(_task)
