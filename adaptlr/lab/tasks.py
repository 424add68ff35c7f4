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

from .._validation import check_choice
from . import data as D

__all__ = ["TASKS", "Task", "get_task", "mse", "pretrain", "register_task"]


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@dataclass
class Task:
    """A training problem. ``data(**options)`` returns an object with ``batches(batch_size, generator)`` (training
    minibatches) and ``eval_batches(split)`` for the held-out splits ``"val"`` and ``"test"`` (see
    :mod:`adaptlr.lab.data`; an object with only ``test_batches()`` still works for ``split="test"``);
    ``metric`` is ``"accuracy"``, ``"mse"`` or ``"loss"`` (the held-out loss), measured on a held-out split:
    validation for decisions, test for reports."""

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

    def evaluate(self, model: nn.Module, data: Any, split: str = "test") -> tuple[float, float]:
        """(metric, mean loss) over the whole held-out ``split`` (``"val"`` or ``"test"``), in eval mode (the
        model's train/eval mode is restored afterwards)."""
        check_choice("split", split, D.SPLITS)
        if hasattr(data, "eval_batches"):
            batches = data.eval_batches(split)
        elif split == "test" and hasattr(data, "test_batches"):
            batches = data.test_batches()
        else:
            raise AttributeError(f"task {self.name!r}: its data has no {split!r} split (no eval_batches method)")
        was_training = model.training
        model.eval()
        total, correct, count, n_out = 0.0, 0.0, 0, 0
        with torch.no_grad():
            for x, y in batches:
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
    check_choice("metric", task.metric, ("accuracy", "mse", "loss"))
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
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(block), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.tok(idx) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


class AddingGRU(nn.Module):
    """A one-layer GRU (hidden 32) read out by a linear layer from its last hidden state: sequence -> scalar."""

    def __init__(self, inputs: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.GRU(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x)
        return self.head(h[-1])


class _Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity, then ReLU (He et al., 2016, the basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


class DigitsResNet(nn.Module):
    """A small residual CNN with BatchNorm for 8x8 digits: a 3x3 stem (16 channels, BN), two basic residual
    blocks, global average pooling and a linear head."""

    def __init__(self, channels: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[_Residual(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.view(-1, 1, 8, 8)))
        return self.head(h.mean(dim=(2, 3)))


def deep_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with tanh between them (a deep, saturating regression net)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _digits_autoencoder_data() -> D.ArrayData:
    d = D.load_digits()
    return D.ArrayData(d.x_train, d.x_train, d.x_test, d.x_test, x_val=d.x_val, y_val=d.x_val)


def _char_model() -> nn.Module:
    d = D.load_shakespeare()
    return CharTransformer(len(d.vocab), d.block)


def _mnist(data_dir: str | None = None) -> D.ArrayData:
    return D.load_mnist_idx(str(data_dir)) if data_dir else D.load_mnist_5k()


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean squared error, as a module-level function (a task's loss is pickled to worker processes)."""
    return F.mse_loss(out, y)


def pretrain(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    batch: int,
    lr: float = 3e-3,
) -> dict[str, torch.Tensor]:
    """The state dict of ``build()`` trained on ``(x, y)``: AdamW at ``lr`` after a linear warmup over the first
    5% of ``steps`` then cosine, ``batch`` rows a step drawn with replacement. Deterministic, with its own seeded
    generators (the model built under seed 0, the rows drawn by a generator of seed 0): the global RNG is left as
    it was. The fine-tuning tasks' "pretrained" weights (cache the result: it is the same in every call)."""
    import adaptlr

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build()
    warm = steps // 20
    sched = adaptlr.schedules.join(
        [adaptlr.schedules.linear(0.0, lr, warm), adaptlr.schedules.cosine(lr, steps - warm)], boundaries=[warm]
    )
    opt = adaptlr.AdamW(model.parameters(), lr=sched)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss(model(x[idx]), y[idx]).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


for _task in [
    Task(
        "linreg",
        lambda: nn.Linear(10, 1),
        lambda: D.make_linreg(),
        mse,
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
        description="2-layer causal transformer (d=64) on the bundled Shakespeare text; metric: test loss (nats/char)",
    ),
    Task(
        "adding-gru",
        AddingGRU,
        D.make_adding,
        mse,
        "mse",
        steps=600,
        batch_size=64,
        target=0.05,
        description="GRU (hidden 32) on the adding problem: 30-step sequences, predict the sum of the two marked "
        "values (MSE 0.167 for the mean guess)",
    ),
    Task(
        "digits-autoencoder",
        lambda: mlp([64, 32, 8, 32, 64]),
        _digits_autoencoder_data,
        mse,
        "mse",
        steps=400,
        batch_size=64,
        target=0.03,
        description="MLP autoencoder 64-32-8-32-64 (ReLU) reconstructing scikit-learn's 8x8 digits; metric: "
        "reconstruction MSE",
    ),
    Task(
        "illcond-regression",
        lambda: deep_mlp([32, 64, 64, 64, 64, 1]),
        D.make_illcond_regression,
        mse,
        "mse",
        steps=500,
        batch_size=64,
        target=0.3,
        description="5-layer tanh MLP regressing a nonlinear target from inputs with condition number 1e3 (the "
        "target depends on the whitened input; noise std 0.05 on a unit-variance target)",
    ),
    Task(
        "digits-resnet",
        DigitsResNet,
        D.load_digits,
        steps=300,
        batch_size=64,
        target=0.95,
        description="residual CNN with BatchNorm (16 channels, 2 basic blocks, global pooling) on 8x8 digits",
    ),
]:
    register_task(_task)
