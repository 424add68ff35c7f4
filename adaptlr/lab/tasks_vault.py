"""Vault tasks for the tuning-free benchmark: a seventh holdout set, built after every tuner default was fixed, by
someone other than the tuners' author, and kept from the tuners' author until the very end (no default may be
chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, data), and each carries a property known to make automatic
lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads):

- ``vault-fourier-pixels``: a coordinate MLP on random Fourier features (NeRF-like) regressing the grey level of a
  synthetic 64x64 image from pixel coordinates, trained on 2,080 pixels with Gaussian noise (std 0.3); it
  overfits late: from 3e-4 up the validation MSE turns up after a share of the run (at the best lr, ~1e-4, it
  flattens), so the best lr over the full run is well below that of a short run (a tenth of the budget does best
  at 1e-3 .. 3e-3); its grid is its own (1e-5 .. 1e-2: its best lr is the default grid's bottom);
- ``vault-realnvp-rings``: a RealNVP normalising flow (8 affine coupling layers) fitting the density of 2-D points
  on three concentric rings; metric: test negative log-likelihood per point; validation (40,000 rows) is large
  against the short run (200 steps of 256: one validation pass costs about a quarter of the budget);
- ``vault-ssm-volatility``: a diagonal state-space sequence model (S4D-like, 2 residual blocks) reading 128-step
  series whose volatility switches once, regressing their recent log-volatility; the training and validation
  targets carry heavy-tailed noise (Student-t, 2 degrees of freedom) and validation is small (80 series), so
  the validation metric is noisy; the test targets are clean; its grid is its own (1e-3 .. 1.0: its best lrs
  reach the default grid's top);
- ``vault-hypernet-waves``: a hypernetwork writing the weights of a target MLP from a wave's description,
  pretrained (in its model builder) on plain sine waves, fine-tuned to chirped ones; the pretrained weights are
  lost at a large lr (its data and pretraining: :mod:`adaptlr.lab.hyperwaves`);
- ``vault-diffusion-spiral``: a denoising diffusion model's noise predictor (an MLP with a sinusoidal step
  embedding) on noised points of a 2-D spiral; the loss is mostly irreducible noise (its floor ~0.5 of a start
  ~1), so lrs differ by little against a small (200-row) validation split's noise;
- ``vault-gmm-epicentres``: a Gaussian mixture fitted by gradient on its likelihood to earthquake epicentres in
  hectometres, every parameter in the data's units (means ~10, standard deviations ~1 .. 6), so the best lr lies
  well above the default grid's top (0.3 .. 1); its grid is its own (0.01 .. 10).

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1), or on its edge
for some seed, a 7-point half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("vault-realnvp-rings").metric
'loss'
>>> VAULT[0]
'vault-fourier-pixels'
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .hyperwaves import make_waves, pretrained_hypernet_model
from .tasks import Task, mse, register_task

__all__ = [
    "GRIDS",
    "VAULT",
    "DiagonalSSM",
    "FourierFeatureMLP",
    "GaussianMixture",
    "NoisePredictor",
    "RealNVP",
    "make_pixels",
    "make_rings",
    "make_epicentres",
    "make_noised_spiral",
    "make_volatility",
    "mixture_nll",
    "nll_loss",
]

VAULT: tuple[str, ...] = (
    "vault-fourier-pixels",
    "vault-realnvp-rings",
    "vault-ssm-volatility",
    "vault-hypernet-waves",
    "vault-diffusion-spiral",
    "vault-gmm-epicentres",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1), or on its edge for some seed; each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {
    "vault-fourier-pixels": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "vault-ssm-volatility": (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
    "vault-gmm-epicentres": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
}


# ---- vault-fourier-pixels --------------------------------------------------------------------------------

IMAGE_SIDE, PIXEL_NOISE = 64, 0.3


@functools.cache
def make_pixels(n_train: int = 2600, n_test: int = 1400, seed: int = 61) -> D.ArrayData:
    """Pixel coordinates ``(n, 2)`` in ``[0, 1)^2`` of a ``64 x 64`` synthetic image and its grey level ``(n,
    1)``: a smooth shading, three discs, a band of stripes (period 1/10 of the side) and a checkered square; the
    training and validation pixels carry Gaussian noise of std ``PIXEL_NOISE``, the test pixels (disjoint from
    them) none."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.arange(IMAGE_SIDE) / IMAGE_SIDE, np.arange(IMAGE_SIDE) / IMAGE_SIDE, indexing="ij")
    img = 0.4 * np.sin(2.0 * u + 1.0) * np.cos(1.5 * v)
    for cx, cy, r, level in rng.uniform([0.15, 0.15, 0.06, -1.0], [0.85, 0.85, 0.2, 1.0], (3, 4)):
        img += level * ((u - cx) ** 2 + (v - cy) ** 2 < r**2)
    img += 0.5 * ((v > 0.7) & (v < 0.85)) * np.sign(np.sin(20 * np.pi * u))
    img += (
        0.6
        * ((u > 0.05) & (u < 0.3) & (v > 0.05) & (v < 0.3))
        * (-1.0) ** ((u * 16).astype(int) + (v * 16).astype(int))
    )
    x = np.stack([u.ravel(), v.ravel()], 1).astype(np.float32)
    y = img.ravel()[:, None]
    perm = rng.permutation(len(x))
    test, train = perm[:n_test], perm[n_test : n_test + n_train]
    noisy = y[train] + PIXEL_NOISE * rng.standard_normal((n_train, 1))
    t = torch.from_numpy
    return D.ArrayData(t(x[train]), t(noisy.astype(np.float32)), t(x[test]), t(y[test].astype(np.float32)))


class FourierFeatureMLP(nn.Module):
    """A coordinate MLP on Fourier features (Tancik et al., 2020): ``gamma(v) = [cos 2 pi B v, sin 2 pi B v]``
    with 128 fixed frequencies ``B ~ N(0, 12^2)`` (drawn from the global RNG at build, a buffer), then an MLP
    256-256-256-1 (ReLU)."""

    def __init__(self, frequencies: int = 128, scale: float = 6.0, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("B", scale * torch.randn(2, frequencies))
        self.net = nn.Sequential(
            nn.Linear(2 * frequencies, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * x @ self.B
        return self.net(torch.cat([proj.cos(), proj.sin()], -1))


# ---- vault-realnvp-rings ---------------------------------------------------------------------------------


@functools.cache
def make_rings(n_train: int = 6000, n_val: int = 40000, n_test: int = 6000, seed: int = 62) -> D.ArrayData:
    """2-D points ``(n, 2)`` on three concentric noisy rings (radii 1, 2, 3, weights 1 : 2 : 3 by circumference,
    radial noise std 0.1), the target a copy of the input (density estimation). Validation (``n_val`` rows) is
    given, large, not carved."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    radius = rng.choice([1.0, 2.0, 3.0], n, p=[1 / 6, 2 / 6, 3 / 6]) + 0.1 * rng.standard_normal(n)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).astype(np.float32)
    t = torch.from_numpy
    a, b, c = t(x[:n_train]), t(x[n_train : n_train + n_val]), t(x[n_train + n_val :])
    return D.ArrayData(a, a.clone(), c, c.clone(), x_val=b, y_val=b.clone())


def nll_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The negative log-likelihood per point (nats) of a :class:`RealNVP`'s ``out`` = ``(z, log|det J|)``
    concatenated, under a standard normal base: :math:`\tfrac12\lVert z\rVert^2 + \log 2\pi - \log|\det J|`
    (``y`` unused: the density is of the input itself)."""
    z, logdet = out[:, :2], out[:, 2]
    return (0.5 * z.pow(2).sum(1) + math.log(2 * math.pi) - logdet).mean()


class RealNVP(nn.Module):
    """A RealNVP normalising flow (Dinh et al., 2017) on 2-D points: 8 affine coupling layers, alternately
    transforming one coordinate given the other, ``z_b = z_b exp(s) + t`` with ``(s, t)`` from an MLP 1-64-64-2
    (SiLU) and ``s`` bounded by ``2 tanh``. Returns ``(z, log|det J|)`` concatenated, ``(batch, 3)``."""

    def __init__(self, layers: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, logdet = x, x.new_zeros(len(x))
        for i, net in enumerate(self.nets):
            a, b = (z[:, :1], z[:, 1:]) if i % 2 == 0 else (z[:, 1:], z[:, :1])
            s, t = net(a).chunk(2, -1)
            s = 2 * torch.tanh(s / 2)
            b = b * s.exp() + t
            z = torch.cat([a, b], 1) if i % 2 == 0 else torch.cat([b, a], 1)
            logdet = logdet + s[:, 0]
        return torch.cat([z, logdet[:, None]], 1)


# ---- vault-ssm-volatility --------------------------------------------------------------------------------

SERIES_LENGTH = 128


@functools.cache
def make_volatility(n: int = 2600, n_test: int = 800, seed: int = 63) -> D.ArrayData:
    """Series ``(n, 128, 1)``: AR(1) noise (coefficient uniform in ``(-0.8, 0.8)``) whose volatility switches
    once, at a random step, from one level to another (log-uniform, a factor of 4 either way); the target ``(n,
    1)``: the log of the exponentially weighted mean (timescale 24 steps) of the squared series at its last
    step, standardised; the training and validation targets get Student-t noise (2 degrees of freedom, scale
    0.3), the test targets none. Validation: 80 series carved from the 1800 training ones."""
    rng = np.random.default_rng(seed)
    rho = rng.uniform(-0.8, 0.8, (n, 1))
    shocks = rng.standard_normal((n, SERIES_LENGTH))
    switch = rng.integers(16, SERIES_LENGTH - 8, (n, 1))
    levels = np.exp(rng.uniform(-np.log(4), np.log(4), (n, 2)))
    vol = np.where(np.arange(SERIES_LENGTH) < switch, levels[:, :1], levels[:, 1:])
    x = np.zeros((n, SERIES_LENGTH))
    for i in range(SERIES_LENGTH):
        x[:, i] = (rho[:, 0] * x[:, i - 1] if i else 0.0) + vol[:, i] * shocks[:, i]
    decay = np.exp(-1 / 24) ** np.arange(SERIES_LENGTH)[::-1]
    y = np.log((decay * x**2).sum(1) / decay.sum())
    y = (y - y.mean()) / y.std()
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    noisy = y[train] + 0.3 * rng.standard_t(2.0, len(train))
    t = torch.from_numpy
    return D.ArrayData(
        t(x[train, :, None].astype(np.float32)),
        t(noisy[:, None].astype(np.float32)),
        t(x[test, :, None].astype(np.float32)),
        t(y[test, None].astype(np.float32)),
        val_fraction=80 / (n - n_test),
    )


class _SSMLayer(nn.Module):
    """A diagonal state-space layer (S4D, Gu et al., 2022): per channel ``x' = A x + B u``, ``y = Re(C x) + D u``
    with 8 complex modes ``A_n = -0.5 + i pi n`` (S4D-Lin), a learned step ``dt`` (log-uniform 1e-3 ..
    1e-1), discretised by zero-order hold and run as a causal convolution (FFT) with its kernel."""

    def __init__(self, channels: int, modes: int = 8) -> None:
        super().__init__()
        self.log_a_real = nn.Parameter(torch.full((channels, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes).float().expand(channels, modes).clone())
        self.log_dt = nn.Parameter(torch.empty(channels, 1).uniform_(math.log(1e-3), math.log(1e-1)))
        self.c = nn.Parameter(torch.randn(channels, modes, 2) * 0.5**0.5)
        self.d = nn.Parameter(torch.randn(channels))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (batch, channels, length)
        length = u.shape[-1]
        a = torch.complex(-self.log_a_real.exp(), self.a_imag)
        dta = a * self.log_dt.exp()
        c = torch.view_as_complex(self.c) * (dta.exp() - 1) / a
        kernel = 2 * torch.einsum("hn,hnl->hl", c, (dta[:, :, None] * torch.arange(length)).exp()).real
        y = torch.fft.irfft(torch.fft.rfft(u, 2 * length) * torch.fft.rfft(kernel, 2 * length), 2 * length)
        return y[..., :length] + self.d[:, None] * u


class DiagonalSSM(nn.Module):
    """A diagonal state-space sequence model: a linear encoder 1 -> 32 channels, 2 residual blocks
    ``u + W silu(SSM(LayerNorm(u)))``, and a linear readout of the last step: ``(batch, 128, 1) -> (batch, 1)``."""

    def __init__(self, channels: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.encode = nn.Linear(1, channels)
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(blocks))
        self.ssms = nn.ModuleList(_SSMLayer(channels) for _ in range(blocks))
        self.mixes = nn.ModuleList(nn.Linear(channels, channels) for _ in range(blocks))
        self.readout = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.encode(x)  # (batch, length, channels)
        for norm, ssm, mix in zip(self.norms, self.ssms, self.mixes, strict=True):
            u = u + mix(F.silu(ssm(norm(u).transpose(1, 2)).transpose(1, 2)))
        return self.readout(u[:, -1])


# ---- vault-diffusion-spiral ------------------------------------------------------------------------------

DIFFUSION_STEPS = 100


@functools.cache
def make_noised_spiral(n: int = 20000, n_test: int = 6000, seed: int = 67) -> D.ArrayData:
    """Denoising pairs of a diffusion model (Ho et al., 2020) on 2-D points of a two-armed spiral (radius 0.3 ..
    2, jitter std 0.05): the input ``(n, 3)`` is a point ``x_0`` noised to a step ``k`` uniform on 1 .. 100 of a
    linear schedule (``beta`` 1e-4 .. 0.05), ``x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps``, and ``k / 100``;
    the target ``(n, 2)``: the noise ``eps ~ N(0, I)`` (fixed per row, so the splits are deterministic).
    Validation: 200 rows carved from the 14,000 training ones (its metric, mostly the irreducible noise, is noisy
    against the differences between lrs)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1, n)
    angle = 3 * np.pi * s + np.pi * rng.integers(0, 2, n)
    x0 = (0.3 + 1.7 * s)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.05 * rng.standard_normal((n, 2))
    abar = np.cumprod(1 - np.linspace(1e-4, 0.05, DIFFUSION_STEPS))
    k = rng.integers(1, DIFFUSION_STEPS + 1, n)
    eps = rng.standard_normal((n, 2))
    xk = np.sqrt(abar[k - 1])[:, None] * x0 + np.sqrt(1 - abar[k - 1])[:, None] * eps
    x = np.concatenate([xk, (k / DIFFUSION_STEPS)[:, None]], 1)
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    t = torch.from_numpy
    x, eps = x.astype(np.float32), eps.astype(np.float32)
    return D.ArrayData(t(x[train]), t(eps[train]), t(x[test]), t(eps[test]), val_fraction=200 / len(train))


class NoisePredictor(nn.Module):
    """A diffusion model's noise predictor: the noised point and a sinusoidal embedding of its step (16
    frequencies) into an MLP 34-128-128-128-2 (SiLU)."""

    def __init__(self, hidden: int = 128, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(200.0), frequencies)), persistent=False)
        self.net = nn.Sequential(
            nn.Linear(2 + 2 * frequencies, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = x[:, 2:] * self.freqs
        return self.net(torch.cat([x[:, :2], arg.sin(), arg.cos()], 1))


# ---- vault-gmm-epicentres --------------------------------------------------------------------------------

REGION_SIZE = 50.0  # hectometres on a side (5 km), centred on the origin


@functools.cache
def make_epicentres(n: int = 20000, n_test: int = 4000, seed: int = 68) -> D.ArrayData:
    """Epicentres ``(n, 2)`` of small earthquakes in hectometres east and north of a 5 km region's centre: 8
    swarms (centres uniform at least 500 m inside the region, standard deviations 80 .. 400 m per axis, Dirichlet
    weights), the target a copy of the input (density estimation)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-REGION_SIZE / 2 + 5, REGION_SIZE / 2 - 5, (8, 2))
    stds, weights = rng.uniform(0.8, 4.0, (8, 2)), rng.dirichlet(np.full(8, 3.0))
    swarm = rng.choice(8, n, p=weights)
    x = (centres[swarm] + stds[swarm] * rng.standard_normal((n, 2))).astype(np.float32)
    return D.split_arrays(x, x.copy(), n_test, seed)


def mixture_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood per point of a :class:`GaussianMixture`'s ``out`` (the log-density of each
    input, ``(batch, 1)``; ``y`` unused)."""
    return -out.mean()


class GaussianMixture(nn.Module):
    """A mixture of 16 axis-aligned Gaussians fitted by gradient on its likelihood, every parameter in the data's
    units: means uniform on the region (hectometres), standard deviations from 6 (hectometres; the sign does not
    matter, 0.01 is added), mixture logits from 0. Returns the log-density of each point, ``(batch, 1)``."""

    def __init__(self, components: int = 16) -> None:
        super().__init__()
        self.means = nn.Parameter(REGION_SIZE * (torch.rand(components, 2) - 0.5))
        self.stds = nn.Parameter(torch.full((components, 2), 6.0))
        self.logits = nn.Parameter(torch.zeros(components))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = self.stds.abs() + 0.01
        z = (x[:, None] - self.means) / std
        logp = -0.5 * z.pow(2).sum(-1) - std.log().sum(-1) - math.log(2 * math.pi) + torch.log_softmax(self.logits, 0)
        return torch.logsumexp(logp, 1, keepdim=True)


for _task in [
    Task(
        "vault-fourier-pixels",
        FourierFeatureMLP,
        make_pixels,
        mse,
        "mse",
        steps=2000,
        batch_size=64,
        description="coordinate MLP on 128 random Fourier features (scale 6), 256-128-128-1, regressing a synthetic "
        "64x64 image's grey level from 2,080 noisy pixels (std 0.3); overfits late; metric: test MSE on clean pixels",
    ),
    Task(
        "vault-realnvp-rings",
        RealNVP,
        make_rings,
        nll_loss,
        "loss",
        steps=200,
        batch_size=256,
        description="RealNVP normalising flow (8 affine couplings, MLPs 1-64-64-2) on 2-D points of three concentric "
        "rings; 40,000 validation rows against 200 steps of 256; metric: test negative log-likelihood per point",
    ),
    Task(
        "vault-ssm-volatility",
        DiagonalSSM,
        make_volatility,
        mse,
        "mse",
        steps=400,
        batch_size=32,
        description="diagonal state-space model (S4D-Lin, 2 residual blocks of 32 channels) regressing the recent "
        "log-volatility of 128-step AR(1) series with a volatility switch; Student-t (2 dof) noise on the training "
        "and the small (80-series) validation targets, clean test; metric: test MSE",
    ),
    Task(
        "vault-hypernet-waves",
        pretrained_hypernet_model,
        make_waves,
        mse,
        "mse",
        steps=1000,
        batch_size=128,
        description="hypernetwork (MLP 4-64-64 writing a tanh MLP 1-24-24-1) pretrained on sine waves, fine-tuned "
        "to chirped waves a sin(w x + phi + 0.15 x^2) from their description and a point; metric: test MSE",
    ),
    Task(
        "vault-diffusion-spiral",
        NoisePredictor,
        make_noised_spiral,
        mse,
        "mse",
        steps=1500,
        batch_size=128,
        description="denoising diffusion model's noise predictor (MLP 34-128-128-128-2, sinusoidal step embedding) on "
        "noised 2-D spiral points (100 linear-schedule steps); a 200-row validation split; metric: test MSE of the "
        "predicted noise",
    ),
    Task(
        "vault-gmm-epicentres",
        GaussianMixture,
        make_epicentres,
        mixture_nll,
        "loss",
        steps=1000,
        batch_size=2048,
        description="Gaussian mixture (16 axis-aligned components) fitted by gradient to earthquake epicentres in "
        "hectometres (8 swarms in a 5 km region), every parameter in the data's units: best lr above 0.1; metric: "
        "test negative log-likelihood per point",
    ),
]:
    register_task(_task)
