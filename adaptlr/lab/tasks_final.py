"""Final tasks for the tuning-free benchmark: a fourth holdout set, built after every tuner default was fixed, to
judge the tuners at the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, data); all data is generated from numpy with fixed seeds
(nothing downloads):

- ``final-patch-vit``: a small vision transformer (4x4 patches of a 16x16 image, a class token, 2 pre-norm
  encoder layers of width 32) telling apart four noisy outline shapes (ring, square, plus, X); metric: accuracy;
- ``final-tabular-embed``: a tabular classifier, one learned embedding per categorical column (4 columns of
  6 .. 50 Zipf-distributed categories) concatenated with 6 numeric columns into an MLP; 3 classes drawn from a
  softmax of category effects, a category interaction and numeric terms (noisy labels); metric: accuracy; its
  validation accuracy is flat from lr ~3e-3 to 0.1, so its grid is its own (up to 1.0);
- ``final-gru-reverse``: a GRU encoder-decoder with dot-product attention writing a sequence of 10 tokens
  backwards (sequence to sequence, no teacher forcing); cross-entropy per token, metric: per-token accuracy;
- ``final-unet-denoise``: a 1-D U-Net (two down and two up stages, skip connections by concatenation)
  denoising piecewise-constant-plus-sine signals of length 64 under Gaussian noise; MSE to the clean signal.

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1), or on its edge
for some seed, a 7-point half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("final-unet-denoise").metric
'mse'
>>> FINAL[0]
'final-patch-vit'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import Task, mse, register_task

__all__ = [
    "FINAL",
    "GRIDS",
    "PatchViT",
    "Seq2SeqGRU",
    "TabularNet",
    "UNet1d",
    "make_noisy_signals",
    "make_reverse_tokens",
    "make_shapes",
    "make_tabular",
]

FINAL: tuple[str, ...] = ("final-patch-vit", "final-tabular-embed", "final-gru-reverse", "final-unet-denoise")

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1); each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {"final-tabular-embed": (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)}


# ---- final-patch-vit -------------------------------------------------------------------------------------

SHAPE_SIZE, SHAPE_PATCH, SHAPE_CLASSES = 16, 4, 4


@functools.cache
def make_shapes(n: int = 3000, n_test: int = 600, noise: float = 0.5, seed: int = 31) -> D.ArrayData:
    """Images ``(n, 1, 16, 16)``: the outline (width ~1) of a ring, a square, a plus or an X (the label, 0 .. 3)
    of half-size 3 .. 6 around a random point within 2 pixels of the centre, of random contrast 0.6 .. 1.4, plus
    Gaussian pixel noise of std ``noise``. Labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, SHAPE_CLASSES, n)
    centre = (SHAPE_SIZE - 1) / 2 + rng.uniform(-2, 2, (n, 2))
    half = rng.uniform(3.0, 6.0, n)[:, None, None]
    contrast = rng.uniform(0.6, 1.4, n)[:, None, None]
    r, c = np.mgrid[0:SHAPE_SIZE, 0:SHAPE_SIZE].astype(np.float64)
    dr, dc = r[None] - centre[:, 0, None, None], c[None] - centre[:, 1, None, None]
    box = np.maximum(np.abs(dr), np.abs(dc))
    inside = np.where(box <= half, 0.0, np.inf)  # the plus and the X end at the square's edge
    dist = np.select(
        [y[:, None, None] == k for k in range(SHAPE_CLASSES)],
        [
            np.abs(np.hypot(dr, dc) - half),
            np.abs(box - half),
            np.minimum(np.abs(dr), np.abs(dc)) + inside,
            np.minimum(np.abs(dr + dc), np.abs(dr - dc)) / np.sqrt(2) + inside,
        ],
    )
    x = contrast * np.exp(-0.5 * dist**2 / 0.5**2) + noise * rng.standard_normal(dist.shape)
    return D.split_arrays(x[:, None].astype(np.float32), y.astype(np.int64), n_test, seed)


class PatchViT(nn.Module):
    """A small vision transformer: 4x4 patches embedded by a linear map (a strided conv), a class token and
    learned position embeddings, 2 pre-norm ``nn.TransformerEncoder`` layers (width 32, 4 heads, MLP 64, GELU,
    no dropout), a final LayerNorm and a linear head on the class token."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        tokens = (SHAPE_SIZE // SHAPE_PATCH) ** 2
        self.patch = nn.Conv2d(1, dim, SHAPE_PATCH, stride=SHAPE_PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim, 4, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, SHAPE_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        h = torch.cat([self.cls.expand(len(h), -1, -1), h], 1) + self.pos
        return self.head(self.norm(self.blocks(h))[:, 0])


# ---- final-tabular-embed ---------------------------------------------------------------------------------

CARDINALITIES: tuple[int, ...] = (12, 30, 6, 50)
NUMERIC, TABLE_CLASSES = 6, 3


@functools.cache
def make_tabular(n: int = 5000, n_test: int = 1000, seed: int = 32) -> D.ArrayData:
    """Rows of 4 categorical columns (``CARDINALITIES``; category ``k`` drawn with probability ``~ 1 / (k +
    2)``, so some are rare) and 6 numeric ones (four ``N(0, 1)``, two log-normal); the label (3 classes) is drawn
    from a softmax of per-category effects (N(0, 0.8^2) each), an interaction of columns 0 and 2 (N(0, 0.6^2)
    per pair), a linear map of the numeric columns and ``tanh(x_0 x_1)``. Inputs ``(n, 10)`` float32: the
    category ids (as floats) first, then the numeric columns, standardised; labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    cats = []
    for k in CARDINALITIES:
        p = 1.0 / np.arange(2, k + 2)
        cats.append(rng.choice(k, n, p=p / p.sum()))
    num = rng.standard_normal((n, NUMERIC))
    num[:, 4:] = np.exp(0.8 * num[:, 4:])
    num = (num - num.mean(0)) / num.std(0)
    logits = sum(0.8 * rng.standard_normal((k, TABLE_CLASSES))[c] for k, c in zip(CARDINALITIES, cats, strict=True))
    pair = 0.6 * rng.standard_normal((CARDINALITIES[0], CARDINALITIES[2], TABLE_CLASSES))
    logits = logits + pair[cats[0], cats[2]] + num @ (0.6 * rng.standard_normal((NUMERIC, TABLE_CLASSES)))
    logits[:, 0] += 1.5 * np.tanh(num[:, 0] * num[:, 1])
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    y = (rng.random((n, 1)) > prob.cumsum(1)).sum(1).clip(0, TABLE_CLASSES - 1)
    x = np.concatenate([np.stack(cats, 1), num], 1)
    return D.split_arrays(x.astype(np.float32), y.astype(np.int64), n_test, seed)


class TabularNet(nn.Module):
    """One ``nn.Embedding`` per categorical column (dimension ``min(8, (categories + 1) // 2)``), concatenated
    with the numeric columns into an MLP (hidden 64, 64, ReLU) -> 3 logits."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(k, min(8, (k + 1) // 2)) for k in CARDINALITIES)
        width = sum(e.embedding_dim for e in self.embeddings) + NUMERIC
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, TABLE_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, : len(self.embeddings)].long()
        parts = [e(ids[:, i]) for i, e in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*parts, x[:, len(self.embeddings) :]], 1))


# ---- final-gru-reverse -----------------------------------------------------------------------------------

REVERSE_VOCAB, REVERSE_LENGTH = 12, 10


@functools.cache
def make_reverse_tokens(n: int = 5000, n_test: int = 1000, seed: int = 33) -> D.ArrayData:
    """Distinct sequences of ``REVERSE_LENGTH`` tokens drawn uniformly from ``REVERSE_VOCAB`` (``(n, 10)``
    int64); the target is the sequence backwards (``(n, 10)``)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, REVERSE_VOCAB, (n + 100, REVERSE_LENGTH))
    x = x[np.sort(np.unique(x, axis=0, return_index=True)[1])][:n]  # drop repeats, keep the order
    return D.split_arrays(x.astype(np.int64), np.ascontiguousarray(x[:, ::-1]).astype(np.int64), n_test, seed)


class Seq2SeqGRU(nn.Module):
    """A GRU encoder-decoder with attention: token embeddings (dimension 16) read by a GRU encoder (hidden 48);
    a GRU decoder started at the encoder's last state reads learned step embeddings (no teacher forcing); each
    decoder state attends (scaled dot product) over the encoder's states, and a linear layer on the decoder
    state and the attended context gives each output token's logits ``(batch, 10, vocab)``."""

    def __init__(self, embed: int = 16, hidden: int = 48) -> None:
        super().__init__()
        self.tok = nn.Embedding(REVERSE_VOCAB, embed)
        self.steps = nn.Parameter(0.1 * torch.randn(REVERSE_LENGTH, embed))
        self.encoder = nn.GRU(embed, hidden, batch_first=True)
        self.decoder = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, REVERSE_VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys, h = self.encoder(self.tok(x))
        queries, _ = self.decoder(self.steps.expand(len(x), -1, -1), h)
        context = F.scaled_dot_product_attention(queries, keys, keys)
        return self.head(torch.cat([queries, context], -1))


# ---- final-unet-denoise ----------------------------------------------------------------------------------

SIGNAL_LENGTH = 64


@functools.cache
def make_noisy_signals(n: int = 4000, n_test: int = 800, noise: float = 0.5, seed: int = 34) -> D.ArrayData:
    """Clean signals of ``SIGNAL_LENGTH``: piecewise constant (2 .. 4 jumps at random places, levels ~ N(0, 1))
    plus a sine (period 6 .. 32 steps, amplitude 0.2 .. 0.6, random phase); the input is the signal plus
    Gaussian noise of std ``noise``, the target the clean signal (both ``(n, 1, 64)``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SIGNAL_LENGTH)
    jumps = rng.integers(2, 5, n)
    cuts = np.sort(rng.integers(1, SIGNAL_LENGTH, (n, 4)), 1)
    cuts[np.arange(4)[None] >= jumps[:, None]] = SIGNAL_LENGTH  # unused cuts fall past the end
    piece = (t[None, None] >= cuts[:, :, None]).sum(1)  # (n, 64): which piece each step is in
    levels = rng.standard_normal((n, 5))
    period, amp, phase = rng.uniform(6, 32, n), rng.uniform(0.2, 0.6, n), rng.uniform(0, 2 * np.pi, n)
    clean = np.take_along_axis(levels, piece, 1) + amp[:, None] * np.sin(
        2 * np.pi * t / period[:, None] + phase[:, None]
    )
    x = clean + noise * rng.standard_normal(clean.shape)
    return D.split_arrays(x[:, None].astype(np.float32), clean[:, None].astype(np.float32), n_test, seed)


def _conv_block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(a, b, 5, padding=2), nn.ReLU(), nn.Conv1d(b, b, 5, padding=2), nn.ReLU())


class UNet1d(nn.Module):
    """A 1-D U-Net: two conv blocks (two kernel-5 convs, ReLU) each followed by a 2x max-pool (16, 32 channels), a
    bottleneck block (64), then two stages of 2x nearest upsampling, concatenation with the skip at that
    resolution and a conv block (32, 16), and a 1x1 conv to one channel. No normalisation."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.down1, self.down2 = _conv_block(1, width), _conv_block(width, 2 * width)
        self.middle = _conv_block(2 * width, 4 * width)
        self.up2, self.up1 = _conv_block(6 * width, 2 * width), _conv_block(3 * width, width)
        self.out = nn.Conv1d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(x)
        s2 = self.down2(F.max_pool1d(s1, 2))
        h = self.middle(F.max_pool1d(s2, 2))
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), s2], 1))
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), s1], 1))
        return self.out(h)


for _task in [
    Task(
        "final-patch-vit",
        PatchViT,
        make_shapes,
        steps=500,
        batch_size=64,
        target=0.8,
        description="small vision transformer (4x4 patches, class token, 2 pre-norm layers of width 32) telling a "
        "ring, square, plus and X outline apart in noisy 16x16 images (pixel noise std 0.5); metric: test accuracy",
    ),
    Task(
        "final-tabular-embed",
        TabularNet,
        make_tabular,
        steps=400,
        batch_size=128,
        description="tabular classifier: embeddings of 4 categorical columns (6 .. 50 Zipf-distributed categories) "
        "and 6 numeric columns into an MLP (64, 64), 3 classes drawn from a softmax (noisy labels); metric: test "
        "accuracy",
    ),
    Task(
        "final-gru-reverse",
        Seq2SeqGRU,
        make_reverse_tokens,
        steps=500,
        batch_size=64,
        target=0.9,
        description="GRU encoder-decoder (hidden 48) with dot-product attention writing 10 tokens (vocabulary 12) "
        "backwards, no teacher forcing; metric: test per-token accuracy",
    ),
    Task(
        "final-unet-denoise",
        UNet1d,
        make_noisy_signals,
        mse,
        "mse",
        steps=400,
        batch_size=64,
        description="1-D U-Net (16 .. 64 channels, 2 pooling stages, concatenated skips, no normalisation) "
        "denoising piecewise-constant plus sine signals of length 64 (noise std 0.5); MSE to the clean signal",
    ),
]:
    register_task(_task)
