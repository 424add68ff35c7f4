"""Fresh tasks for the tuning-free benchmark: a third holdout set, built after every tuner default was fixed, to
judge the tuners at the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, where the best lr lies); all data is generated
from numpy with fixed seeds (nothing downloads):

- ``fresh-groupnorm-bars``: a 2-D conv net with GroupNorm telling apart four orientations of a noisy bar in a
  12x12 image; cross-entropy, metric: accuracy;
- ``fresh-gru-max``: a GRU reading a noisy sequence of 20 values and regressing the maximum of the clean
  values (sequence to one); MSE; its best lr is large (~0.1 .. 0.3), its grid its own;
- ``fresh-deep-tanh``: a deep narrow MLP (10 tanh layers of width 32, no normalisation) regressing a smooth
  function of 8 inputs; MSE;
- ``fresh-poisson-glm``: a Poisson regression (a log-linear model) of overdispersed counts on 2000 correlated
  features, about as many as training rows; ``poisson_nll_loss``, metric: test loss; its best lr is small
  (~3e-4).

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1) a 7-point
half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("fresh-poisson-glm").metric
'loss'
>>> FRESH[0]
'fresh-groupnorm-bars'
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
    "FRESH",
    "GRIDS",
    "BarsNet",
    "GRUMax",
    "make_bars",
    "make_deep_target",
    "make_poisson_counts",
    "make_seq_max",
]

FRESH: tuple[str, ...] = ("fresh-groupnorm-bars", "fresh-gru-max", "fresh-deep-tanh", "fresh-poisson-glm")

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1); each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {"fresh-gru-max": (3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)}


# ---- fresh-groupnorm-bars --------------------------------------------------------------------------------

BARS_SIZE = 12
BARS_CLASSES = 4


@functools.cache
def make_bars(n: int = 3000, n_test: int = 600, noise: float = 0.8, seed: int = 21) -> D.ArrayData:
    """Images ``(n, 1, 12, 12)``: a bright bar of half-length 2.5 .. 4.5 and width ~1 through a random point
    near the centre, at one of 4 orientations (0, 45, 90, 135 degrees, the label) jittered by up to +-15
    degrees, of random contrast 0.6 .. 1.4, plus Gaussian pixel noise of std ``noise``. Labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, BARS_CLASSES, n)
    theta = np.deg2rad(45.0 * y + rng.uniform(-15, 15, n))
    centre = (BARS_SIZE - 1) / 2 + rng.uniform(-2, 2, (n, 2))
    half = rng.uniform(2.5, 4.5, n)
    contrast = rng.uniform(0.6, 1.4, n)
    r, c = np.mgrid[0:BARS_SIZE, 0:BARS_SIZE].astype(np.float64)
    dr, dc = r[None] - centre[:, 0, None, None], c[None] - centre[:, 1, None, None]
    ur, uc = -np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]  # unit vector along the bar
    along = dr * ur + dc * uc
    across = dr * uc - dc * ur
    bar = np.exp(-0.5 * across**2 / 0.6**2) * (np.abs(along) <= half[:, None, None])
    x = contrast[:, None, None] * bar + noise * rng.standard_normal(bar.shape)
    return D.split_arrays(x[:, None].astype(np.float32), y.astype(np.int64), n_test, seed)


class BarsNet(nn.Module):
    """Conv 1->16 (3x3) -> GroupNorm(4) -> ReLU -> conv 16->32 (3x3, stride 2) -> GroupNorm(8) -> ReLU -> conv
    32->32 (3x3) -> GroupNorm(8) -> ReLU -> global average pool -> linear 32->4."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.GroupNorm(4, 16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.GroupNorm(8, 32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.GroupNorm(8, 32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(32, BARS_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ---- fresh-gru-max ---------------------------------------------------------------------------------------

SEQ_LENGTH = 20


@functools.cache
def make_seq_max(n: int = 4000, n_test: int = 800, noise: float = 0.3, seed: int = 22) -> D.ArrayData:
    """Clean sequences ``s_t ~ N(0, 1)`` of ``SEQ_LENGTH``; the input is ``s_t + noise * eps_t`` (``(n, 20, 1)``),
    the target the maximum of the clean ``s_t``, standardised (``(n, 1)``)."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, SEQ_LENGTH))
    x = s + noise * rng.standard_normal(s.shape)
    y = s.max(1)
    y = (y - y.mean()) / y.std()
    return D.split_arrays(x[:, :, None].astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


class GRUMax(nn.Module):
    """A 1-layer GRU (hidden 32) over the sequence; a linear head on its last hidden state."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


# ---- fresh-deep-tanh -------------------------------------------------------------------------------------

DEEP_IN, DEEP_WIDTH, DEEP_LAYERS = 8, 32, 10


@functools.cache
def make_deep_target(n: int = 3000, n_test: int = 600, noise: float = 0.1, seed: int = 23) -> D.ArrayData:
    """Inputs ``x ~ N(0, I_8)``; the target ``sin(x . a) + 0.5 cos(x . b) + 0.3 (x . c)^2 / |c|^2`` (``a, b,
    c ~ N(0, I / 8)``), standardised, plus Gaussian noise of std ``noise``. Inputs ``(n, 8)``, targets
    ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.standard_normal((3, DEEP_IN)) / np.sqrt(DEEP_IN)
    x = rng.standard_normal((n, DEEP_IN))
    y = np.sin(x @ a) + 0.5 * np.cos(x @ b) + 0.3 * (x @ c) ** 2 / (c @ c)
    y = (y - y.mean()) / y.std() + noise * rng.standard_normal(n)
    return D.split_arrays(x.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


def _deep_tanh_model() -> nn.Module:
    """MLP 8 -> 32 x 10 tanh layers -> 1, no normalisation, no residuals, the hidden weights Xavier-normal
    with gain 5/3 (tanh's)."""
    layers: list[nn.Module] = []
    width = DEEP_IN
    for _ in range(DEEP_LAYERS):
        linear = nn.Linear(width, DEEP_WIDTH)
        nn.init.xavier_normal_(linear.weight, gain=5 / 3)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.Tanh()]
        width = DEEP_WIDTH
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


# ---- fresh-poisson-glm -----------------------------------------------------------------------------------

GLM_FEATURES = 2000


@functools.cache
def make_poisson_counts(n: int = 4000, n_test: int = 800, seed: int = 24) -> D.ArrayData:
    """Many dense features (``GLM_FEATURES`` = 2000, ``x ~ N(0, I)`` plus a shared factor: pairwise correlation
    0.2), the log-rate ``2.0 + x . w`` with every weight small, ``w ~ N(0, 0.018^2)`` (log-rate std ~0.8), counts
    from a gamma-Poisson (negative binomial, shape 5: overdispersed). Inputs ``(n, 2000)``, targets ``(n, 1)``
    float counts: about as many features as training rows (2,560), so it overfits."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, 1))
    x = (rng.standard_normal((n, GLM_FEATURES)) + 0.5 * shared) / np.sqrt(1.25)
    w = 0.018 * rng.standard_normal(GLM_FEATURES)
    rate = np.exp(np.clip(2.0 + x @ w, None, 6.0))
    y = rng.poisson(rate * rng.gamma(5.0, 1 / 5.0, n))
    return D.split_arrays(x.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


def _glm_model() -> nn.Module:
    """The log-linear model: one linear layer 2000 -> 1 (the log-rate), started as a GLM fit is: zero weights,
    the intercept at the log of the mean count (2.0)."""
    model = nn.Linear(GLM_FEATURES, 1)
    nn.init.zeros_(model.weight)
    nn.init.constant_(model.bias, 2.0)
    return model


def _poisson_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood of counts ``y`` under the log-rate ``out`` (``log y!`` included)."""
    return F.poisson_nll_loss(out, y, log_input=True) + torch.lgamma(y + 1).mean()


for _task in [
    Task(
        "fresh-groupnorm-bars",
        BarsNet,
        make_bars,
        steps=300,
        batch_size=64,
        target=0.8,
        description="3-layer conv net with GroupNorm telling 4 orientations of a noisy bar in 12x12 images apart "
        "(angle jitter +-15 deg, pixel noise std 0.8); metric: test accuracy",
    ),
    Task(
        "fresh-gru-max",
        GRUMax,
        make_seq_max,
        mse,
        "mse",
        steps=400,
        batch_size=64,
        target=0.2,
        description="GRU (hidden 32) regressing the maximum of 20 clean N(0, 1) values from their noisy copies "
        "(noise std 0.3), the target standardised; MSE; best lr large (~0.1 .. 0.3)",
    ),
    Task(
        "fresh-deep-tanh",
        _deep_tanh_model,
        make_deep_target,
        mse,
        "mse",
        steps=500,
        batch_size=64,
        target=0.1,
        description="deep narrow MLP (10 tanh layers of width 32, no normalisation) regressing a smooth function "
        "of 8 Gaussian inputs, standardised, noise std 0.1; MSE",
    ),
    Task(
        "fresh-poisson-glm",
        _glm_model,
        make_poisson_counts,
        _poisson_nll,
        "loss",
        steps=600,
        batch_size=128,
        description="Poisson regression (a log-linear model, started at the mean rate) of overdispersed counts on "
        "2000 correlated features, 2560 training rows (it overfits): best lr small; poisson_nll_loss, metric: "
        "test loss",
    ),
]:
    register_task(_task)
