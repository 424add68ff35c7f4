"""Novel tasks for the tuning-free benchmark: a fifth holdout set, built after every tuner default was fixed, to
judge the tuners at the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, data); all data is generated from numpy with fixed seeds
(nothing downloads):

- ``novel-tcn-forecast``: a temporal convolutional network (dilated causal 1-D convs, dilations 1, 2, 4, 8,
  residual) forecasting the next value of a noisy seasonal AR(2) series from its last 48 values; MSE; its
  grid is its own (1e-3 .. 1.0: one seed's best lr was the default grid's top, 0.1);
- ``novel-dyck-lm``: a causal transformer decoder language model (2 pre-norm layers of width 32) on strings of
  the Dyck-2 language (balanced ``()`` and ``[]``, length 24); metric: test cross-entropy per token;
- ``novel-mixer-textures``: an MLP-Mixer (4x4 patches of a 16x16 image, 2 mixer blocks of width 32) telling four
  generated textures apart (gratings, checkerboards, dot lattices, smoothed noise) under pixel noise; accuracy;
  its grid is its own (1e-3 .. 1.0: one seed's best lr was 0.1);
- ``novel-quantile-wn``: a weight-normalised MLP predicting the 0.1, 0.5 and 0.9 quantiles of a skewed,
  heteroscedastic target (pinball loss); metric: test pinball loss; its grid is its own (3e-3 .. 3.0: every
  seed's best lr was 0.1, its validation loss flat from ~3e-3 up).

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1), or on its edge
for some seed, a 7-point half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("novel-dyck-lm").metric
'loss'
>>> NOVEL[0]
'novel-tcn-forecast'
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
    "GRIDS",
    "NOVEL",
    "QUANTILES",
    "DyckLM",
    "MixerNet",
    "QuantileMLP",
    "TCN",
    "make_dyck",
    "make_quantile_data",
    "make_series_windows",
    "make_textures",
    "pinball",
]

NOVEL: tuple[str, ...] = ("novel-tcn-forecast", "novel-dyck-lm", "novel-mixer-textures", "novel-quantile-wn")

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1), or on its edge for some seed; each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {
    "novel-tcn-forecast": (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
    "novel-mixer-textures": (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
    "novel-quantile-wn": (3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0),
}


# ---- novel-tcn-forecast ----------------------------------------------------------------------------------

WINDOW = 48


@functools.cache
def make_series_windows(n: int = 4000, n_test: int = 800, seed: int = 41) -> D.ArrayData:
    """Each row from its own series: an AR(2) process (poles of radius 0.8 .. 0.97 at angle 0 .. 0.3 rad, unit
    innovations scaled by 0.3) plus a seasonal sine (period 8 .. 24 steps, amplitude 0.5 .. 1.5, random phase) and a
    random level; the series is standardised by its first ``WINDOW`` values, which are the input ``(n, 1, 48)``; the
    target is the next value ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    length = WINDOW + 1 + 100  # 100 burn-in steps of the AR part
    radius, angle = rng.uniform(0.8, 0.97, n), rng.uniform(0.0, 0.3, n)
    a1, a2 = 2 * radius * np.cos(angle), -(radius**2)
    eps = 0.3 * rng.standard_normal((n, length))
    ar = np.zeros((n, length))
    for t in range(2, length):
        ar[:, t] = a1 * ar[:, t - 1] + a2 * ar[:, t - 2] + eps[:, t]
    ar = ar[:, 100:]
    t = np.arange(WINDOW + 1)
    period, amp, phase = rng.uniform(8, 24, n), rng.uniform(0.5, 1.5, n), rng.uniform(0, 2 * np.pi, n)
    series = ar + amp[:, None] * np.sin(2 * np.pi * t / period[:, None] + phase[:, None]) + rng.normal(0, 2, (n, 1))
    mu, sd = series[:, :WINDOW].mean(1, keepdims=True), series[:, :WINDOW].std(1, keepdims=True)
    series = (series - mu) / sd
    x, y = series[:, None, :WINDOW], series[:, WINDOW:]
    return D.split_arrays(x.astype(np.float32), y.astype(np.float32), n_test, seed)


class _CausalBlock(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.pad = 2 * dilation  # kernel 3: (3 - 1) * dilation on the left only, so no step sees its future
        self.conv1 = nn.Conv1d(channels, channels, 3, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 3, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(F.pad(x, (self.pad, 0))))
        return F.relu(x + self.conv2(F.pad(h, (self.pad, 0))))


class TCN(nn.Module):
    """A temporal convolutional network: a 1x1 conv to 24 channels, four residual blocks of two causal kernel-3
    convs (dilations 1, 2, 4, 8; ReLU), and a linear head on the last step's features -> the next value."""

    def __init__(self, channels: int = 24) -> None:
        super().__init__()
        self.inp = nn.Conv1d(1, channels, 1)
        self.blocks = nn.Sequential(*(_CausalBlock(channels, d) for d in (1, 2, 4, 8)))
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.inp(x))[:, :, -1])


# ---- novel-dyck-lm ---------------------------------------------------------------------------------------

DYCK_LENGTH = 24
DYCK_VOCAB = 5  # ( ) [ ] and the start token
DYCK_START = 4


@functools.cache
def make_dyck(n: int = 5000, n_test: int = 1000, seed: int = 42) -> D.ArrayData:
    """Distinct Dyck-2 strings of ``DYCK_LENGTH`` tokens (``(`` 0, ``)`` 1, ``[`` 2, ``]`` 3), each built left to
    right: open a bracket (either kind, equally likely) with probability 0.5 while the string can still close,
    else close the innermost one. Inputs: the start token then the string's first 23 tokens ``(n, 24)``; targets:
    the string ``(n, 24)`` (next-token prediction; only a closing bracket's kind is ever determined)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(rows) < n:
        stack: list[int] = []
        out: list[int] = []
        for i in range(DYCK_LENGTH):
            left = DYCK_LENGTH - i
            if stack and (len(stack) == left or rng.random() >= 0.5):
                out.append(stack.pop() + 1)
            else:
                kind = 2 * int(rng.integers(0, 2))
                stack.append(kind)
                out.append(kind)
        row = tuple(out)
        if row not in seen:
            seen.add(row)
            rows.append(row)
    s = np.array(rows, dtype=np.int64)
    x = np.concatenate([np.full((n, 1), DYCK_START), s[:, :-1]], 1)
    return D.split_arrays(x.astype(np.int64), s, n_test, seed)


class DyckLM(nn.Module):
    """A causal transformer decoder language model: token and learned position embeddings (width 32), 2 pre-norm
    ``nn.TransformerEncoder`` layers under a causal mask (4 heads, MLP 64, GELU, no dropout), a final LayerNorm
    and a linear head -> next-token logits ``(batch, 24, 5)``."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(DYCK_VOCAB, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, DYCK_LENGTH, dim))
        layer = nn.TransformerEncoderLayer(
            dim, 4, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, DYCK_VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(DYCK_LENGTH), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos[:, : x.shape[1]]
        return self.head(self.norm(self.blocks(h, mask=self.mask, is_causal=True)))


# ---- novel-mixer-textures --------------------------------------------------------------------------------

TEXTURE_SIZE, TEXTURE_PATCH, TEXTURE_CLASSES = 16, 4, 4


@functools.cache
def make_textures(n: int = 3000, n_test: int = 600, noise: float = 0.8, seed: int = 43) -> D.ArrayData:
    """Images ``(n, 1, 16, 16)`` of one of four textures (the label, 0 .. 3), each at a random orientation,
    period 3 .. 6 pixels and phase: a sine grating, a checkerboard (the sign of the product of two orthogonal
    sines), a lattice of Gaussian dots, or Gaussian noise smoothed over ~the period; each scaled to unit std
    then times a contrast 0.6 .. 1.4, plus Gaussian pixel noise of std ``noise``. Labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, TEXTURE_CLASSES, n)
    theta, period = rng.uniform(0, np.pi, n)[:, None, None], rng.uniform(3.0, 6.0, n)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (2, n))[:, :, None, None]
    r, c = np.mgrid[0:TEXTURE_SIZE, 0:TEXTURE_SIZE].astype(np.float64)
    u = (np.cos(theta) * r[None] + np.sin(theta) * c[None]) * 2 * np.pi / period
    v = (-np.sin(theta) * r[None] + np.cos(theta) * c[None]) * 2 * np.pi / period
    su, sv = np.sin(u + phase[0]), np.sin(v + phase[1])
    dots = np.exp(-0.5 * ((1 - np.cos(u + phase[0])) + (1 - np.cos(v + phase[1]))) / 0.15)
    white = rng.standard_normal((n, TEXTURE_SIZE, TEXTURE_SIZE))
    spectrum = np.fft.fft2(white)
    fr = np.fft.fftfreq(TEXTURE_SIZE)
    f2 = fr[None, :, None] ** 2 + fr[None, None, :] ** 2
    smooth = np.real(np.fft.ifft2(spectrum * np.exp(-0.5 * f2 * (period / 2.0) ** 2 * (2 * np.pi) ** 2 / 4)))
    img = np.select([y[:, None, None] == k for k in range(4)], [su, np.tanh(4 * su * sv), dots, smooth])
    img = (img - img.mean((1, 2), keepdims=True)) / (img.std((1, 2), keepdims=True) + 1e-8)
    x = rng.uniform(0.6, 1.4, n)[:, None, None] * img + noise * rng.standard_normal(img.shape)
    return D.split_arrays(x[:, None].astype(np.float32), y.astype(np.int64), n_test, seed)


class _MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.token_mlp(self.norm1(h).transpose(1, 2)).transpose(1, 2)
        return h + self.channel_mlp(self.norm2(h))


class MixerNet(nn.Module):
    """An MLP-Mixer: 4x4 patches embedded by a linear map (a strided conv, width 32), 2 mixer blocks (a
    token-mixing MLP 16-32-16 and a channel-mixing MLP 32-64-32, each pre-LayerNorm and residual, GELU), a final
    LayerNorm, mean pooling over patches and a linear head -> 4 logits."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        tokens = (TEXTURE_SIZE // TEXTURE_PATCH) ** 2
        self.patch = nn.Conv2d(1, dim, TEXTURE_PATCH, stride=TEXTURE_PATCH)
        self.blocks = nn.Sequential(_MixerBlock(tokens, dim), _MixerBlock(tokens, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, TEXTURE_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.patch(x).flatten(2).transpose(1, 2))  # (batch, patches, dim)
        return self.head(self.norm(h).mean(1))


# ---- novel-quantile-wn -----------------------------------------------------------------------------------

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
QUANTILE_FEATURES = 8


@functools.cache
def make_quantile_data(n: int = 5000, n_test: int = 1000, seed: int = 44) -> D.ArrayData:
    """Inputs ``(n, 8)``, ``N(0, 1)``; the target ``(n, 1)``: a smooth mean (``sin(x_0) + 0.5 x_1 x_2 + 0.3
    x_3``) plus noise of scale ``0.2 + 0.8 sigmoid(2 x_4)`` drawn from a centred, right-skewed Gamma(2) (so
    the quantiles are not symmetric about the median); ``x_5 .. x_7`` are irrelevant."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, QUANTILE_FEATURES))
    mean = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3]
    scale = 0.2 + 0.8 / (1 + np.exp(-2 * x[:, 4]))
    y = mean + scale * (rng.gamma(2.0, 1.0, n) - 2.0) / np.sqrt(2.0)
    return D.split_arrays(x.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


def pinball(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean pinball (quantile) loss of ``out`` ``(batch, 3)``, one column per quantile of ``QUANTILES``,
    against ``y`` ``(batch, 1)``."""
    q = torch.tensor(QUANTILES, dtype=out.dtype, device=out.device)
    err = y - out
    return torch.maximum(q * err, (q - 1) * err).mean()


class QuantileMLP(nn.Module):
    """An MLP 8-64-64-3 (SiLU) whose linear layers are weight-normalised (``weight_norm``: each output row's
    direction and norm learned apart) -> one output per quantile of ``QUANTILES``."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm
        self.net = nn.Sequential(
            wn(nn.Linear(QUANTILE_FEATURES, hidden)),
            nn.SiLU(),
            wn(nn.Linear(hidden, hidden)),
            nn.SiLU(),
            wn(nn.Linear(hidden, len(QUANTILES))),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


for _task in [
    Task(
        "novel-tcn-forecast",
        TCN,
        make_series_windows,
        mse,
        "mse",
        steps=400,
        batch_size=64,
        description="temporal conv net (dilated causal convs, dilations 1 .. 8, 24 channels, residual) forecasting "
        "the next value of a standardised noisy seasonal AR(2) series from its last 48 values; metric: test MSE",
    ),
    Task(
        "novel-dyck-lm",
        DyckLM,
        make_dyck,
        metric="loss",
        steps=300,
        batch_size=64,
        description="causal transformer decoder LM (2 pre-norm layers of width 32) on Dyck-2 strings (balanced () "
        "and [], length 24); metric: test cross-entropy per token",
    ),
    Task(
        "novel-mixer-textures",
        MixerNet,
        make_textures,
        steps=400,
        batch_size=64,
        description="MLP-Mixer (4x4 patches, 2 blocks of width 32) telling gratings, checkerboards, dot lattices "
        "and smoothed noise apart in noisy 16x16 images (random orientation and period); metric: test accuracy",
    ),
    Task(
        "novel-quantile-wn",
        QuantileMLP,
        make_quantile_data,
        pinball,
        "loss",
        steps=500,
        batch_size=128,
        description="weight-normalised MLP 8-64-64-3 predicting the 0.1 / 0.5 / 0.9 quantiles of a skewed, "
        "heteroscedastic target (pinball loss); metric: test pinball loss",
    ),
]:
    register_task(_task)
