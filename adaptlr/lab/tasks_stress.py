"""Stress tasks for the tuning-free benchmark: each has one property that breaks a learning-rate tuner, and a
holdout set of tasks that no tuner default may be chosen on.

The **stress** set (issue 19):

- ``charlm-bigval``: the char LM with a validation split that is large against its budget (2,560 validation
  windows of 64 characters, 300 steps of batch 32): one validation pass costs about 27 training steps;
- ``linreg-bigLR``: a linear model on features of small scale (std 0.1) whose targets need large weights:
  its best AdamW + warmup-cosine lr is above 0.1;
- ``tinylr``: a ReLU MLP on raw features of huge scale (std 10,000), its first layer started small: its best
  lr is below 1e-4 (larger ones kill its units);
- ``finetune``: an MLP pretrained on one part of the digits (in the data factory, deterministically, cached in
  the process), fine-tuned on the other part with the images at lower contrast and noised;
- ``near-optimum``: a linear model started at the least-squares fit of its training data (plus a little noise)
  on targets with label noise as large as the signal: any step it takes is mostly noise.

The **holdout** set: ``holdout-lstm-sines`` (an LSTM predicting the next value of a noisy sum of two sines),
``holdout-conv1d-waves`` (a 1-D conv net telling four noisy waveforms apart), ``holdout-diabetes-outliers`` (an
MLP on scikit-learn's diabetes data with 8% of the training targets replaced by outliers; tested on clean
targets).

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1) a 7-point
half-decade grid of their own around it, so that the tuned reference is tuned there too.

>>> from adaptlr.lab.tasks import get_task
>>> get_task("linreg-bigLR").metric
'mse'
>>> STRESS[0], HOLDOUT[0]
('charlm-bigval', 'holdout-lstm-sines')
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import CharTransformer, Task, mlp, mse, pretrain, register_task

__all__ = [
    "GRIDS",
    "HOLDOUT",
    "STRESS",
    "WindowedText",
    "finetune_data",
    "least_squares",
    "make_conv_waves",
    "make_diabetes_outliers",
    "make_near_optimum",
    "make_scaled_linreg",
    "make_sines",
    "pretrained_digits_mlp",
]

STRESS: tuple[str, ...] = ("charlm-bigval", "linreg-bigLR", "tinylr", "finetune", "near-optimum")
HOLDOUT: tuple[str, ...] = ("holdout-lstm-sines", "holdout-conv1d-waves", "holdout-diabetes-outliers")


#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1); each was placed so that a wider scan's best lr is inside it
GRIDS: dict[str, tuple[float, ...]] = {
    "linreg-bigLR": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
    "tinylr": (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4),
}


# ---- charlm-bigval ---------------------------------------------------------------------------------------


class WindowedText:
    """A :class:`~adaptlr.lab.data.TextData` whose held-out splits are read as ``val_windows`` and
    ``test_windows`` evenly spaced windows (the training batches are the text's own)."""

    def __init__(self, text: D.TextData, val_windows: int, test_windows: int) -> None:
        self.text = text
        self.val_windows = val_windows
        self.test_windows = test_windows

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.text.batches(batch_size, generator)

    def eval_batches(self, split: str = "test", size: int = 128) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        windows = self.val_windows if split == "val" else self.test_windows
        return self.text.eval_batches(split, size, windows)


BIGVAL_WINDOWS = 2560


@functools.cache
def _bigval_text() -> WindowedText:
    return WindowedText(D.load_shakespeare(), val_windows=BIGVAL_WINDOWS, test_windows=512)


def _char_model() -> nn.Module:
    d = D.load_shakespeare()
    return CharTransformer(len(d.vocab), d.block)


# ---- linear models at extreme scales ---------------------------------------------------------------------


def make_scaled_linreg(
    n: int = 1200,
    dim: int = 16,
    scale: float = 0.05,
    weight_std: float = 1.0,
    noise: float = 0.1,
    n_test: int = 200,
    seed: int = 0,
) -> D.ArrayData:
    r"""Linear regression whose features have std ``scale``: :math:`z \sim N(0, I)`, :math:`x = \text{scale}\,
    z`, :math:`y = z^\top w + 0.5 + \text{noise}\,\epsilon` with :math:`w \sim N(0, \text{weight\_std}^2 I)`, so
    the weights that fit :math:`x` are :math:`w / \text{scale}`: large for a small ``scale``, tiny for a huge one."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dim))
    w = weight_std * rng.standard_normal((dim, 1))
    y = z @ w + 0.5 + noise * rng.standard_normal((n, 1))
    return D.split_arrays((scale * z).astype(np.float32), y.astype(np.float32), n_test, seed)


TINY_SCALE = 1e4


@functools.cache
def _tiny_data() -> D.ArrayData:
    # the linear targets of make_scaled_linreg, centred, on raw features of std TINY_SCALE
    d = make_scaled_linreg(scale=TINY_SCALE, noise=0.1, seed=1)
    return D.ArrayData(d.x_train, d.y_train - 0.5, d.x_test, d.y_test - 0.5, x_val=d.x_val, y_val=d.y_val - 0.5)


def _tiny_model() -> nn.Module:
    """MLP 16-64-1 (ReLU) whose first layer starts at N(0, (0.1 / TINY_SCALE)^2) with zero biases: its
    pre-activations start at the scale of the targets, and a first-layer step of lr moves them by about
    ``4 lr TINY_SCALE``, so a large lr kills ReLUs for good."""
    model = mlp([16, 64, 1])
    with torch.no_grad():
        model[0].weight.normal_(0.0, 0.1 / TINY_SCALE)
        model[0].bias.zero_()
    return model


# ---- finetune --------------------------------------------------------------------------------------------

PRETRAIN_ROWS = 700


@functools.cache
def pretrained_digits_mlp() -> dict[str, torch.Tensor]:
    """The state dict of an MLP 64-128-10 pretrained on the first ``PRETRAIN_ROWS`` training digits (AdamW lr
    3e-3, 400 steps of batch 64, warmup-cosine; its own seeded generators, the global RNG untouched):
    deterministic, computed once per process."""
    d = D.load_digits()
    x, y = d.x_train[:PRETRAIN_ROWS], d.y_train[:PRETRAIN_ROWS]
    return pretrain(lambda: mlp([64, 128, 10]), x, y, F.cross_entropy, steps=400, batch=64)


def _shift(x: torch.Tensor, generator: torch.Generator, contrast: float, noise: float) -> torch.Tensor:
    """Images at ``contrast`` times their intensity, plus Gaussian pixel noise of std ``noise``."""
    return contrast * x + noise * torch.randn(x.shape, generator=generator)


@functools.cache
def finetune_data(contrast: float = 0.6, noise: float = 0.2) -> D.ArrayData:
    """The fine-tuning task: the training digits *not* used in pretraining (validation carved from them) and
    the test digits, all at lower contrast and with pixel noise (a sensor's shift). The pretrained model starts
    at a validation loss of ~0.55 there; fine-tuning at a moderate lr improves it, a large one destroys it."""
    d = D.load_digits()
    gen = torch.Generator().manual_seed(7)
    xs = torch.cat([d.x_train, d.x_val])[PRETRAIN_ROWS:]
    ys = torch.cat([d.y_train, d.y_val])[PRETRAIN_ROWS:]
    return D.ArrayData(_shift(xs, gen, contrast, noise), ys, _shift(d.x_test, gen, contrast, noise), d.y_test)


def _finetune_model() -> nn.Module:
    model = mlp([64, 128, 10])
    model.load_state_dict(pretrained_digits_mlp())
    return model


# ---- near-optimum ----------------------------------------------------------------------------------------

NEAR_DIM = 20


@functools.cache
def make_near_optimum(n: int = 1000, noise: float = 2.0, n_test: int = 400, seed: int = 3) -> D.ArrayData:
    """Linear regression with label noise as large as the signal: ``y = x w + 0.3 + noise * eps``, ``x ~ N(0,
    I)``, ``w ~ N(0, 0.45^2 I)`` (signal std ~2 for 20 features, noise std 2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, NEAR_DIM))
    w = 0.45 * rng.standard_normal((NEAR_DIM, 1))
    y = x @ w + 0.3 + noise * rng.standard_normal((n, 1))
    return D.split_arrays(x.astype(np.float32), y.astype(np.float32), n_test, seed)


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight ``(1, d)``, bias ``(1,)``) of the ordinary least-squares fit of ``y`` on ``x`` (float64 solve)."""
    a = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(a, y.double()).solution
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous()


@functools.cache
def _near_fit() -> tuple[torch.Tensor, torch.Tensor]:
    d = make_near_optimum()
    return least_squares(d.x_train, d.y_train)


def _near_optimum_model(perturb: float = 0.02) -> nn.Module:
    """``nn.Linear`` at the least-squares fit of the training split plus N(0, perturb^2) noise (from the
    seeded global RNG, so each seed starts at a different point near the optimum)."""
    w, b = _near_fit()
    m = nn.Linear(NEAR_DIM, 1)
    with torch.no_grad():
        m.weight.copy_(w + perturb * torch.randn_like(w))
        m.bias.copy_(b + perturb * torch.randn_like(b))
    return m


# ---- holdout ---------------------------------------------------------------------------------------------


@functools.cache
def make_sines(n: int = 3000, length: int = 40, noise: float = 0.1, n_test: int = 600, seed: int = 5) -> D.ArrayData:
    """Next-value prediction: a sum of two sines (periods 4-20 steps, random phases and amplitudes 0.5-1) seen
    for ``length`` steps with Gaussian noise of std ``noise``; the target is the clean value one step later.
    Inputs ``(n, length, 1)``, targets ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)[None, :]
    clean = np.zeros((n, length + 1))
    for _ in range(2):
        period = rng.uniform(4.0, 20.0, (n, 1))
        clean += rng.uniform(0.5, 1.0, (n, 1)) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, (n, 1)))
    x = clean[:, :length] + noise * rng.standard_normal((n, length))
    return D.split_arrays(x[:, :, None].astype(np.float32), clean[:, length:].astype(np.float32), n_test, seed)


class SinesLSTM(nn.Module):
    """A one-layer LSTM (hidden 32) read out by a linear layer from its last hidden state."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(x)
        return self.head(h[-1])


@functools.cache
def make_conv_waves(
    n: int = 4000, length: int = 64, noise: float = 1.0, n_test: int = 800, seed: int = 6
) -> D.ArrayData:
    """Four waveforms (sine, square, triangle, sawtooth; class 0-3) of random period (8-32 steps), phase and
    amplitude (0.5-1.5), seen through Gaussian noise of std ``noise``. Inputs ``(n, length)``, labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, n)
    period = rng.uniform(8.0, 32.0, (n, 1))
    phase = (np.arange(length)[None, :] / period + rng.uniform(0, 1, (n, 1))) % 1.0
    waves = np.stack(
        [np.sin(2 * np.pi * phase), np.where(phase < 0.5, 1.0, -1.0), 4 * np.abs(phase - 0.5) - 1, 2 * phase - 1]
    )
    x = waves[label, np.arange(n)] * rng.uniform(0.5, 1.5, (n, 1)) + noise * rng.standard_normal((n, length))
    return D.split_arrays(x.astype(np.float32), label.astype(np.int64), n_test, seed)


class WavesCNN(nn.Module):
    """Two 1-D convolutions (16 channels, kernel 5, max-pool 2), global average pooling, a linear head."""

    def __init__(self, channels: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool1d(F.relu(self.conv1(x[:, None, :])), 2)
        h = F.max_pool1d(F.relu(self.conv2(h)), 2)
        return self.head(h.mean(-1))


@functools.cache
def make_diabetes_outliers(outliers: float = 0.08, scale: float = 6.0, n_test: int = 88, seed: int = 8) -> D.ArrayData:
    """scikit-learn's diabetes regression (442 rows, 10 features), features and target standardised; in the
    training rows (validation included) a fraction ``outliers`` of the targets is replaced by N(0, scale^2)
    outliers; the test targets stay clean."""
    from sklearn.datasets import load_diabetes

    raw = load_diabetes()
    x = (raw.data - raw.data.mean(0)) / raw.data.std(0)
    y = ((raw.target - raw.target.mean()) / raw.target.std())[:, None]
    d = D.split_arrays(x.astype(np.float32), y.astype(np.float32), n_test, seed)
    rng = np.random.default_rng(seed)

    def corrupt(t: torch.Tensor) -> torch.Tensor:
        bad = torch.from_numpy(rng.random(len(t)) < outliers)
        out = t.clone()
        out[bad, 0] = torch.from_numpy(scale * rng.standard_normal(int(bad.sum())).astype(np.float32))
        return out

    return D.ArrayData(d.x_train, corrupt(d.y_train), d.x_test, d.y_test, x_val=d.x_val, y_val=corrupt(d.y_val))


for _task in [
    Task(
        "charlm-bigval",
        _char_model,
        _bigval_text,
        metric="loss",
        steps=300,
        batch_size=32,
        eval_every=300,
        target=math.log(8),
        description=f"char-lm's transformer and text with {BIGVAL_WINDOWS:,} validation windows (one pass ~ 27 "
        "training steps: validation is large against the 300-step budget); metric: test loss",
    ),
    Task(
        "linreg-bigLR",
        lambda: nn.Linear(16, 1),
        lambda: make_scaled_linreg(scale=0.1, noise=0.5),
        mse,
        "mse",
        steps=300,
        batch_size=32,
        target=0.05,
        description="linear regression on 16 features of std 0.1 (the fitting weights are ~10), noise std 0.5 "
        "(MSE floor 0.25): best lr > 0.1",
    ),
    Task(
        "tinylr",
        _tiny_model,
        _tiny_data,
        mse,
        "mse",
        steps=300,
        batch_size=32,
        target=0.05,
        description="MLP 16-64-1 (ReLU) regressing a linear target from 16 raw features of std 10,000, first "
        "layer initialised N(0, 1e-5^2): best lr < 1e-4",
    ),
    Task(
        "finetune",
        _finetune_model,
        finetune_data,
        metric="loss",
        steps=150,
        batch_size=32,
        target=0.3,
        description="MLP 64-128-10 pretrained on 700 digits, fine-tuned on the other 450 (train + val) at 0.6 "
        "contrast with pixel noise (std 0.2); metric: test cross-entropy",
    ),
    Task(
        "near-optimum",
        _near_optimum_model,
        make_near_optimum,
        mse,
        "mse",
        steps=200,
        batch_size=32,
        target=4.5,
        description="linear regression (20 features, noise std 2 ~ signal std) started at the training split's "
        "least-squares fit + N(0, 0.02^2): the noise floor is MSE 4",
    ),
    Task(
        "holdout-lstm-sines",
        SinesLSTM,
        make_sines,
        mse,
        "mse",
        steps=400,
        batch_size=32,
        target=0.05,
        description="LSTM (hidden 32): the next clean value of a noisy sum of two sines after 40 steps",
    ),
    Task(
        "holdout-conv1d-waves",
        WavesCNN,
        make_conv_waves,
        metric="loss",
        steps=300,
        batch_size=64,
        target=0.5,
        description="1-D CNN telling sine / square / triangle / sawtooth apart under noise std 1; metric: test "
        "cross-entropy",
    ),
    Task(
        "holdout-diabetes-outliers",
        lambda: mlp([10, 64, 1]),
        make_diabetes_outliers,
        mse,
        "mse",
        steps=300,
        batch_size=32,
        target=0.6,
        description="MLP 10-64-1 on scikit-learn's diabetes data (standardised), 8% of training and validation "
        "targets replaced by N(0, 6^2) outliers; test targets clean",
    ),
]:
    register_task(_task)
