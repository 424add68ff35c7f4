"""The sealed set's operator-learning task (``sealed-fno-reaction``, :mod:`adaptlr.lab.tasks_sealed`): random
smooth periodic fields, a pseudo-spectral Allen-Cahn solver, and a 1-D Fourier neural operator pretrained on one
equation to be fine-tuned on another; all deterministic, from fixed seeds (nothing downloads).

>>> import numpy as np
>>> float(evolve(np.zeros((1, FIELD_POINTS)), nu=0.05, r=1.0, time=0.5).max())  # 0 is a steady state
0.0
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import mse, pretrain

__all__ = [
    "FIELD_POINTS",
    "FNO1d",
    "FNO_MODES",
    "as_pairs",
    "evolve",
    "make_reaction",
    "pretrained_fno",
    "pretrained_fno_model",
    "random_fields",
]


FIELD_POINTS, FNO_MODES = 64, 12


def random_fields(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random smooth periodic fields ``(n, 64)``: Fourier modes 1 .. 8 with amplitudes ``N(0, 1) / k``, random
    phases, plus a mean ``N(0, 0.3^2)``; scaled so that each field's max magnitude is 0.9 .. 1.5."""
    k = np.arange(1, 9)
    grid = np.linspace(0, 2 * np.pi, FIELD_POINTS, endpoint=False)
    amp = rng.standard_normal((n, 8)) / k
    phase = rng.uniform(0, 2 * np.pi, (n, 8))
    u = (amp[:, :, None] * np.sin(k[None, :, None] * grid + phase[:, :, None])).sum(1)
    u += 0.3 * rng.standard_normal((n, 1))
    return u * rng.uniform(0.9, 1.5, (n, 1)) / np.abs(u).max(1, keepdims=True)


def evolve(u: np.ndarray, nu: float, r: float, time: float, dt: float = 0.005) -> np.ndarray:
    """``u_t = nu u_xx + r (u - u^3)`` on the periodic ``[0, 2 pi)`` for ``time``: pseudo-spectral, implicit
    diffusion and explicit reaction (a semi-implicit Euler step of ``dt``)."""
    k2 = np.fft.rfftfreq(FIELD_POINTS, 1.0 / FIELD_POINTS) ** 2
    for _ in range(round(time / dt)):
        u = np.fft.irfft((np.fft.rfft(u) + dt * r * np.fft.rfft(u - u**3)) / (1 + dt * nu * k2), FIELD_POINTS)
    return u


def as_pairs(u0: np.ndarray, u1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields ``(n, 64)`` as float32 channel-first inputs and targets ``(n, 1, 64)``."""
    return u0[:, None].astype(np.float32), u1[:, None].astype(np.float32)


@functools.cache
def make_reaction(n: int = 3000, n_test: int = 600, seed: int = 54) -> D.ArrayData:
    """Initial fields ``(n, 1, 64)`` (see :func:`random_fields`) and the Allen-Cahn solution ``u_t = 0.02 u_xx + 2 (u -
    u^3)`` at time 0.5 ``(n, 1, 64)``: the fine-tuning task of :func:`pretrained_fno` (which learned
    ``u_t = 0.05 u_xx + (u - u^3)``)."""
    rng = np.random.default_rng(seed)
    u0 = random_fields(rng, n)
    x, y = as_pairs(u0, evolve(u0, nu=0.02, r=2.0, time=0.5))
    return D.split_arrays(x, y, n_test, seed)


class _SpectralConv(nn.Module):
    """Multiply the lowest ``modes`` Fourier modes by learned complex ``(in, out)`` matrices."""

    def __init__(self, channels: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        scale = 1.0 / channels
        self.weight = nn.Parameter(scale * torch.randn(channels, channels, modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x)
        w = torch.view_as_complex(self.weight)
        out = torch.zeros_like(spec)
        out[:, :, : self.modes] = torch.einsum("bim,iom->bom", spec[:, :, : self.modes], w)
        return torch.fft.irfft(out, x.shape[-1])


class FNO1d(nn.Module):
    """A Fourier neural operator (Li et al., 2021) on 1-D periodic fields: the field and the coordinate lifted to
    24 channels, 3 Fourier layers (``gelu(spectral conv over the lowest 12 modes + 1x1 conv)``, the last without
    the GELU) and a projection 24-64-1 per point: ``(batch, 1, 64) -> (batch, 1, 64)``."""

    def __init__(self, channels: int = 24, layers: int = 3) -> None:
        super().__init__()
        self.lift = nn.Conv1d(2, channels, 1)
        self.spectral = nn.ModuleList(_SpectralConv(channels, FNO_MODES) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in range(layers))
        self.proj = nn.Sequential(nn.Conv1d(channels, 64, 1), nn.GELU(), nn.Conv1d(64, 1, 1))
        self.register_buffer("coord", torch.linspace(0, 1, FIELD_POINTS + 1)[:-1].view(1, 1, -1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(torch.cat([x, self.coord.expand(len(x), 1, -1)], 1))
        for i, (spec, point) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            h = spec(h) + point(h)
            h = F.gelu(h) if i < len(self.spectral) - 1 else h
        return self.proj(h)


@functools.cache
def pretrained_fno() -> dict[str, torch.Tensor]:
    """The state dict of an :class:`FNO1d` pretrained on ``u_t = 0.05 u_xx + (u - u^3)`` at time 0.5 (2000
    fields of seed 55: AdamW lr 3e-3, 300 steps of batch 64, warmup-cosine; its own seeded generators, the global
    RNG untouched): deterministic, computed once per process."""
    rng = np.random.default_rng(55)
    u0 = random_fields(rng, 2000)
    x, y = (torch.from_numpy(a) for a in as_pairs(u0, evolve(u0, nu=0.05, r=1.0, time=0.5)))
    return pretrain(FNO1d, x, y, mse, steps=300, batch=64)


def pretrained_fno_model() -> nn.Module:
    """A fresh :class:`FNO1d` holding the weights of :func:`pretrained_fno`."""
    model = FNO1d()
    model.load_state_dict(pretrained_fno())
    return model
