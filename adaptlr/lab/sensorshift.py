"""The cellar set's fine-tuning task (``cellar-lora-shift``, :mod:`adaptlr.lab.tasks_cellar`): a classifier of
sensor readings pretrained on one domain, fine-tuned with low-rank adapters (LoRA) to a rotated domain; all
deterministic, from fixed seeds (nothing downloads).

>>> import torch
>>> layer = LoRALinear(torch.eye(3), torch.zeros(3), rank=2)
>>> torch.equal(layer(torch.ones(1, 3)), torch.ones(1, 3))  # the adapter starts at zero: the frozen layer
True
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import pretrain

__all__ = [
    "LORA_CLASSES",
    "LORA_FEATURES",
    "BaseClassifier",
    "LoRAClassifier",
    "LoRALinear",
    "make_lora_shift",
    "pretrained_base",
]

LORA_CLASSES, LORA_FEATURES = 8, 20


def _domain(rng: np.random.Generator, n: int, means: np.ndarray, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of one domain: a class uniform on 8, its mean plus standard normal noise, mixed by ``mix`` and
    squashed by tanh (sensor readings ``(n, 20)``, float32), and the class (int64)."""
    y = rng.integers(0, LORA_CLASSES, n)
    z = means[y] + rng.standard_normal((n, LORA_FEATURES))
    return np.tanh(z @ mix).astype(np.float32), y


def _domains() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class means, the source domain's mixing, the target domain's: the source's followed by a partial random
    rotation, ``I + 0.6 (Q - I)``), from seed 75."""
    rng = np.random.default_rng(75)
    means = 1.2 * rng.standard_normal((LORA_CLASSES, LORA_FEATURES))
    mix = rng.standard_normal((LORA_FEATURES, LORA_FEATURES)) / LORA_FEATURES**0.5
    q, _ = np.linalg.qr(rng.standard_normal((LORA_FEATURES, LORA_FEATURES)))
    shifted = mix @ (np.eye(LORA_FEATURES) + 0.3 * (q - np.eye(LORA_FEATURES)))
    return means, mix, shifted


@functools.cache
def make_lora_shift(n: int = 1200, n_test: int = 2000, seed: int = 76) -> D.ArrayData:
    """The target domain's rows (:func:`_domain` under the shifted mixing): 1,200 to fine-tune on (240 of them
    carved for validation), 2,000 to test."""
    means, _, shifted = _domains()
    x, y = _domain(np.random.default_rng(seed), n + n_test, means, shifted)
    return D.split_arrays(x, y, n_test, seed)


class BaseClassifier(nn.Module):
    """The pretrained model: an MLP 20-128-128-8 (GELU)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(LORA_FEATURES, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, LORA_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@functools.cache
def pretrained_base() -> dict[str, torch.Tensor]:
    """The state dict of a :class:`BaseClassifier` trained on 8,000 rows of the source domain (seed 77; AdamW lr
    3e-3, 800 steps of 128, warmup-cosine, by :func:`~adaptlr.lab.tasks.pretrain`: its own seeded generators, the
    global RNG untouched): deterministic, computed once per process."""
    means, mix, _ = _domains()
    x, y = _domain(np.random.default_rng(77), 8000, means, mix)
    return pretrain(BaseClassifier, torch.from_numpy(x), torch.from_numpy(y), F.cross_entropy, steps=800, batch=128)


class LoRALinear(nn.Module):
    """A frozen linear layer (its weight a buffer) plus a trained bias and a low-rank update (LoRA, Hu et al., 2022):
    ``x W^T + b + (alpha / r) x A^T B^T``, ``A`` ``(r, in)`` Gaussian over ``sqrt(in)``, ``B`` ``(out, r)`` zero,
    so that it starts as the frozen layer."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, rank: int, alpha: float = 8.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight.clone())
        self.bias = nn.Parameter(bias.clone())
        self.down = nn.Parameter(torch.randn(rank, weight.shape[1]) / weight.shape[1] ** 0.5)
        self.up = nn.Parameter(torch.zeros(weight.shape[0], rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.scale * (x @ self.down.T) @ self.up.T


class LoRAClassifier(nn.Module):
    """:class:`BaseClassifier` holding :func:`pretrained_base`'s weights, frozen, each layer with a rank-4 LoRA
    update and its bias trained (2,424 trained parameters of 22,392)."""

    def __init__(self, rank: int = 4) -> None:
        super().__init__()
        state = pretrained_base()
        self.layers = nn.ModuleList(
            LoRALinear(state[f"net.{i}.weight"], state[f"net.{i}.bias"], rank) for i in (0, 2, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x) if k == len(self.layers) - 1 else F.gelu(layer(x))
        return x
