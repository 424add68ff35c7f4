"""The belfry set's distillation task (``belfry-distill-t4``, :mod:`adaptlr.lab.tasks_belfry`): a wide teacher
trained in its builder on labelled rows, a narrow student trained on the teacher's logits softened at temperature 4
(Hinton et al., 2015); all deterministic, from fixed seeds (nothing downloads).

>>> make_distill_rows().y_train.shape
torch.Size([3000, 10])
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .tasks import mlp, pretrain

__all__ = [
    "DISTILL_CLASSES",
    "DISTILL_DIM",
    "DISTILL_T",
    "Student",
    "Teacher",
    "distill_loss",
    "make_distill_rows",
    "teacher_state",
]

DISTILL_DIM, DISTILL_CLASSES = 20, 10
#: the distillation temperature: both the teacher's and the student's logits are divided by it
DISTILL_T = 4.0


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows ``(n, 20)`` (Gaussian, a fixed mixing, seed 131) and classes (10, int64): the argmax of a fixed
    random two-layer tanh network's scores (seed 131), 10% of the labels drawn at random."""
    g = np.random.default_rng(131)
    mix = np.eye(DISTILL_DIM) + g.standard_normal((DISTILL_DIM, DISTILL_DIM)) / 3
    w1, w2 = g.standard_normal((DISTILL_DIM, 48)), g.standard_normal((48, DISTILL_CLASSES))
    x = rng.standard_normal((n, DISTILL_DIM)) @ mix
    y = (np.tanh(x @ w1 / DISTILL_DIM**0.5) @ w2).argmax(1)
    y = np.where(rng.uniform(0, 1, n) < 0.1, rng.integers(0, DISTILL_CLASSES, n), y)
    return x.astype(np.float32), y.astype(np.int64)


class Teacher(nn.Module):
    """The teacher: an MLP 20-256-256-10 (ReLU)."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = mlp([DISTILL_DIM, hidden, hidden, DISTILL_CLASSES])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@functools.cache
def teacher_state() -> dict[str, torch.Tensor]:
    """The state dict of :class:`Teacher` trained on 20,000 labelled rows (seed 132; AdamW lr 3e-3, 800 steps of
    128, by :func:`~adaptlr.lab.tasks.pretrain`, the global RNG untouched): computed once per process."""
    x, y = _rows(np.random.default_rng(132), 20000)
    return pretrain(Teacher, torch.from_numpy(x), torch.from_numpy(y), F.cross_entropy, steps=800, batch=128)


@functools.cache
def make_distill_rows(n: int = 3000, n_val: int = 2000, n_test: int = 3000, seed: int = 133) -> D.ArrayData:
    """The transfer rows (:func:`_rows`' inputs, their labels unused) and as targets ``(n, 10)`` float32 the
    trained teacher's logits (:func:`teacher_state`): ``n`` train, ``n_val`` validate, ``n_test`` test."""
    x = torch.from_numpy(_rows(np.random.default_rng(seed), n + n_val + n_test)[0])
    teacher = Teacher()
    teacher.load_state_dict(teacher_state())
    with torch.no_grad():
        logits = teacher(x)
    a, b = n, n + n_val
    return D.ArrayData(x[:a], logits[:a], x[b:], logits[b:], x_val=x[a:b], y_val=logits[a:b])


class Student(nn.Module):
    """The student: an MLP 20-3-10 (ReLU), a bottleneck of 3 units: it cannot match the teacher (a capacity gap)."""

    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DISTILL_DIM, hidden), nn.ReLU(), nn.Linear(hidden, DISTILL_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def distill_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The distillation loss from the student's logits ``out`` and the teacher's ``y``: the KL divergence of the
    student's softened distribution from the teacher's, times :math:`T^2` (so its gradients keep the scale of a
    hard-label loss), the mean over rows: :math:`T^2\,\mathrm{KL}(\sigma(y/T)\,\|\,\sigma(out/T))`."""
    target = torch.log_softmax(y / DISTILL_T, 1)
    return DISTILL_T**2 * (target.exp() * (target - torch.log_softmax(out / DISTILL_T, 1))).sum(1).mean()
