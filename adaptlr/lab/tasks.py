"""Tasks: a model factory, a data source, a loss, a metric and a default budget.

>>> from adaptlr.lab.tasks import get_task
>>> task = get_task("digits-logreg")
>>> task.metric, task.higher_is_better, task.steps
('accuracy', True, 300)

Register your own with :func:`register_task` (the runner looks tasks up by name in each worker process, so
register them at import time of a module the workers import too, or run with ``jobs=1``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import data as D

__all__ = ["TASKS", "Task", "get_task", "register_task"]


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@dataclass
class Task:
    """A training problem. ``data(**options)`` returns an object with ``batches(batch_size, generator)`` and
    ``test_batches()`` (see :mod:`adaptlr.lab.data`); ``metric`` is ``"accuracy"``, ``"mse"`` or ``"loss"``
    (the test loss), measured on the held-out split."""

    name: str
    model: Callable[[], nn.Module]
    data: Callable[..., Any]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _cross_entropy
    metric: str = "accuracy"
    steps: int = 300
    batch_size: int = 64
    eval_every: int | None = None  # default: steps // 10
    target: float | None = None  # metric value for "time to target" in reports
    description: str = ""
    reference: dict[str, float] = field(default_factory=dict)  # published results to compare with

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def evaluate(self, model: nn.Module, data: Any) -> tuple[float, float]:
        """(metric, mean test loss) over the whole held-out split."""
        was_training = model.training
        model.eval()
        total, correct, count, n_out = 0.0, 0.0, 0, 0
        with torch.no_grad():
            for x, y in data.test_batches():
                out = model(x)
                k = y.numel()
                total += float(self.loss(out, y)) * k
                count += k
                if self.metric == "accuracy":
                    correct += float((out.reshape(-1, out.shape[-1]).argmax(-1) == y.reshape(-1)).sum())
                n_out += k
        model.train(was_training)
        loss = total / max(count, 1)
        if self.metric == "accuracy":
            return correct / max(n_out, 1), loss
        return loss, loss  # "mse" / "loss": the metric is the test loss itself


TASKS: dict[str, Task] = {}


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to the registry (``replace=True`` to overwrite a name)."""
    if task.name in TASKS and not replace:
        raise ValueError(f"task {task.name!r} is already registered (pass replace=True)")
    if task.metric not in ("accuracy", "mse", "loss"):
        raise ValueError(f"Invalid metric: {task.metric!r} (expected 'accuracy', 'mse' or 'loss')")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``; a ``KeyError`` with a did-you-mean otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown task {name!r}{hint} (tasks: {', '.join(TASKS)})") from None


# ---- models --------------------------------------------------------------------------------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MnistCNN(nn.Module):
    """Two 3x3 conv + max-pool blocks (8 and 16 channels) and a linear head: 28x28 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


class Mnist1dCNN(nn.Module):
    """The MNIST-1D paper's ConvBase: three strided 1-D convolutions (25 channels) and a linear head."""

    def __init__(self, channels: int = 25) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, x.shape[-1])
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.linear(x.flatten(1))


class CharTransformer(nn.Module):
    """A small causal (GPT-style, pre-norm) transformer over characters."""

    def __init__(self, vocab: int, block: int = 64, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(block, dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(block), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.tok(idx) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def _char_model() -> nn.Module:
    d = D.load_shakespeare()
    return CharTransformer(len(d.vocab), d.block)


def _mnist(data_dir: str | None = None) -> D.ArrayData:
    return D.load_mnist_idx(str(data_dir)) if data_dir else D.load_mnist_5k()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y)


for _task in [
    Task(
        "linreg",
        lambda: nn.Linear(10, 1),
        lambda: D.make_linreg(),
        _mse,
        "mse",
        steps=200,
        batch_size=32,
        target=0.02,
        description="linear regression on generated data, 10 features, noise 0.1 (MSE floor 0.01)",
    ),
    Task(
        "digits-logreg",
        lambda: nn.Linear(64, 10),
        D.load_digits,
        steps=300,
        batch_size=64,
        target=0.9,
        description="logistic regression on scikit-learn's 8x8 digits (1,437 train / 360 test)",
    ),
    Task(
        "digits-mlp",
        lambda: mlp([64, 64, 10]),
        D.load_digits,
        steps=300,
        batch_size=64,
        target=0.95,
        description="MLP 64-64-10 on scikit-learn's 8x8 digits",
    ),
    Task(
        "mnist-mlp",
        lambda: mlp([784, 128, 10]),
        _mnist,
        steps=250,
        batch_size=64,
        target=0.9,
        description="MLP 784-128-10 on 5,000 MNIST digits (4,000 train, 1,000 test; 250 steps = 4 epochs)",
    ),
    Task(
        "mnist-cnn",
        MnistCNN,
        _mnist,
        steps=300,
        batch_size=64,
        target=0.93,
        description="small CNN (8, 16 channels) on 5,000 real MNIST digits",
    ),
    Task(
        "mnist1d-mlp",
        lambda: mlp([40, 100, 100, 10]),
        D.load_mnist1d,
        steps=6000,
        batch_size=100,
        eval_every=250,
        target=0.6,
        reference={"accuracy": 0.68},
        description="MNIST-1D paper's MLP (40-100-100-10) and recipe: Adam lr 1e-2, batch 100, 6,000 steps",
    ),
    Task(
        "mnist1d-cnn",
        Mnist1dCNN,
        D.load_mnist1d,
        steps=6000,
        batch_size=100,
        eval_every=250,
        target=0.85,
        reference={"accuracy": 0.94},
        description="MNIST-1D paper's CNN (3 strided conv, 25 channels) and recipe: Adam lr 1e-2, batch 100",
    ),
    Task(
        "char-lm",
        _char_model,
        D.load_shakespeare,
        metric="loss",
        steps=400,
        batch_size=32,
        target=math.log(8),
        description="2-layer causal transformer (d=64) on the bundled Shakespeare text; metric: test loss "
        "(nats/char)",
    ),
]:
    register_task(_task)
