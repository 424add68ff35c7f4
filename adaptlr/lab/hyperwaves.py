"""The vault set's fine-tuning task (``vault-hypernet-waves``, :mod:`adaptlr.lab.tasks_vault`): a hypernetwork that
writes the weights of a small target network from a description of a 1-D wave, pretrained on one family of waves
to be fine-tuned on another; all deterministic, from fixed seeds (nothing downloads).

>>> import numpy as np
>>> wave(np.array([[2.0, 1.0, 0.0, 1.0]]), np.array([[0.0]]), chirp=0.0)  # a sin(w x + phi), a = 2, phi = pi / 2
array([[2.]])
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from . import data as D
from .tasks import mse, pretrain

__all__ = ["HyperNet", "make_waves", "pretrained_hypernet", "pretrained_hypernet_model", "wave", "wave_rows"]

#: the target network's layer sizes: 1 -> 24 -> 24 -> 1 (tanh)
TARGET_SIZES = (1, 24, 24, 1)


def wave(context: np.ndarray, x: np.ndarray, chirp: float) -> np.ndarray:
    """``a sin(w x + phi + chirp x^2)`` at ``x`` for contexts ``(a, w, cos phi, sin phi)`` (rows of ``(n, 4)``;
    ``x``: ``(n, k)``)."""
    a, w = context[:, :1], context[:, 1:2]
    phi = np.arctan2(context[:, 3:4], context[:, 2:3])
    return a * np.sin(w * x + phi + chirp * x**2)


def wave_rows(rng: np.random.Generator, n: int, chirp: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows ``(a, w, cos phi, sin phi, x)`` (amplitude 0.5 .. 2, frequency 0.5 .. 2, phase uniform, ``x``
    uniform on -3 .. 3) and their :func:`wave` values ``(n, 1)``, as float32."""
    a, w, phi = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n), rng.uniform(0, 2 * np.pi, n)
    context = np.stack([a, w, np.cos(phi), np.sin(phi)], 1)
    x = rng.uniform(-3, 3, (n, 1))
    return np.concatenate([context, x], 1).astype(np.float32), wave(context, x, chirp).astype(np.float32)


@functools.cache
def make_waves(n: int = 3000, n_test: int = 1000, seed: int = 64) -> D.ArrayData:
    """Rows ``(n, 5)`` = a wave's description ``(a, w, cos phi, sin phi)`` and a point ``x``, the target ``(n,
    1)``: the chirped wave ``a sin(w x + phi + 0.15 x^2)`` there (the fine-tuning task of
    :func:`pretrained_hypernet`, which learned the plain waves, chirp 0)."""
    rng = np.random.default_rng(seed)
    x, y = wave_rows(rng, n, chirp=0.15)
    return D.split_arrays(x, y, n_test, seed)


class HyperNet(nn.Module):
    """A hypernetwork (Ha et al., 2017): an MLP 4-64-64-P (ReLU) maps a wave's description to the ``P`` weights of
    a target MLP 1-24-24-1 (tanh; each generated weight matrix scaled by ``1 / sqrt(fan-in)``), which is then
    evaluated at the row's ``x``: ``(batch, 5) -> (batch, 1)``."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.shapes = [(o, i) for i, o in zip(TARGET_SIZES[:-1], TARGET_SIZES[1:], strict=True)]
        size = sum(o * i + o for o, i in self.shapes)
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params, h = self.out(self.net(x[:, :4])), x[:, 4:]
        start = 0
        for k, (o, i) in enumerate(self.shapes):
            w = params[:, start : start + o * i].view(-1, o, i) / i**0.5
            b = params[:, start + o * i : start + o * i + o]
            start += o * i + o
            h = torch.einsum("boi,bi->bo", w, h) + b
            h = torch.tanh(h) if k < len(self.shapes) - 1 else h
        return h


@functools.cache
def pretrained_hypernet() -> dict[str, torch.Tensor]:
    """The state dict of a :class:`HyperNet` pretrained on the plain waves (chirp 0; 8000 rows of seed 66: AdamW
    lr 3e-3, 600 steps of batch 128, warmup-cosine; its own seeded generators, the global RNG untouched):
    deterministic, computed once per process."""
    x, y = (torch.from_numpy(a) for a in wave_rows(np.random.default_rng(66), 8000, chirp=0.0))
    return pretrain(HyperNet, x, y, mse, steps=600, batch=128)


def pretrained_hypernet_model() -> nn.Module:
    """A fresh :class:`HyperNet` holding the weights of :func:`pretrained_hypernet`."""
    model = HyperNet()
    model.load_state_dict(pretrained_hypernet())
    return model
