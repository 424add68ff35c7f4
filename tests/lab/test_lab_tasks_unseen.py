"""The tuning-free benchmark's unseen tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks unseen``, its grids)."""

import math
import subprocess
import sys

import pytest
import torch

from adaptlr import lab
from adaptlr.lab import tasks_unseen as U
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS, get_task
from adaptlr.lab.training import train

NAMES = list(U.UNSEEN)
FACTORIES = {
    "unseen-transformer-mode": U.make_count_tokens,
    "unseen-matfac": U.make_ratings,
    "unseen-friedman-ln": U.make_friedman_hetero,
    "unseen-noisy-bn": U.make_noisy_classes,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "unseen-transformer-mode": ((U.COUNT_LENGTH,), torch.int64, (), torch.int64),
    "unseen-matfac": ((2,), torch.int64, (1,), torch.float32),
    "unseen-friedman-ln": ((10,), torch.float32, (1,), torch.float32),
    "unseen-noisy-bn": ((20,), torch.float32, (), torch.int64),
}
SPLITS = ("train", "val", "test")


def _split(d, name):
    return getattr(d, f"x_{name}"), getattr(d, f"y_{name}")


def test_the_set_is_registered_listed_and_new():
    assert len(NAMES) == 4 and all(n.startswith("unseen-") for n in NAMES)
    assert set(NAMES) <= set(TASKS) and set(FACTORIES) == set(NAMES)
    sets = TF.task_sets()
    assert sets["unseen"] == NAMES
    assert not set(NAMES) & set(sets["old"] + sets["stress"] + sets["holdout"])
    assert TF.resolve_tasks("unseen") == NAMES
    assert lab.UNSEEN == U.UNSEEN
    for name, lrs in U.GRIDS.items():
        assert name in NAMES and TF.grid_lrs(name) == lrs and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert TF.grid_lrs("unseen-friedman-ln") == TF.GRID_LRS
    assert max(TF.grid_lrs("tinylr")) <= 1e-4  # the stress grids still count


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    task = get_task(name)
    a, b = task.data(), FACTORIES[name].__wrapped__()  # the cached data and a fresh build from the same seed
    x_shape, x_dtype, y_shape, y_dtype = SHAPES[name]
    rows = set()
    for split in SPLITS:
        (xa, ya), (xb, yb) = _split(a, split), _split(b, split)
        assert torch.equal(xa, xb) and torch.equal(ya, yb), split
        assert len(xa) == len(ya) > 100
        assert xa.shape[1:] == x_shape and xa.dtype == x_dtype
        assert ya.shape[1:] == y_shape and ya.dtype == y_dtype
        rows |= {tuple(r.tolist()) for r in xa}
    assert len(rows) == sum(len(_split(a, s)[0]) for s in SPLITS)  # no row in two splits (nor twice in one)
    other = FACTORIES[name].__wrapped__(seed=99)
    assert not torch.equal(other.x_train[:50], a.x_train[:50])  # the seed is what fixes it


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    task = get_task(name)
    data = task.data()
    torch.manual_seed(0)
    model = task.model()
    x, y = data.x_train[:512], data.y_train[:512]

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(task.loss(model(x), y))

    before = loss()
    lr = 0.03 if name == "unseen-matfac" else 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(0))
    model.train()
    for _ in range(40):
        xb, yb = next(batches)
        opt.zero_grad()
        task.loss(model(xb), yb).backward()
        opt.step()
    after = loss()
    assert math.isfinite(before) and after < 0.95 * before, (before, after)


@pytest.mark.parametrize("name", ["unseen-matfac", "unseen-noisy-bn"])
def test_runs_are_deterministic_by_seed(name):
    task = get_task(name)
    runs = [
        train(task, "adamw(lr=0.001) + cosine(warmup=0.05)", s, steps=4, eval_every=4, log_every=1) for s in (0, 0, 1)
    ]
    losses = [[p["train_loss"] for p in r["points"]] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert all(math.isfinite(r["final_metric"]) and math.isfinite(r["final_val_metric"]) for r in runs)


def test_labels_and_targets_are_what_the_docstrings_say():
    d = U.make_count_tokens()
    counts = torch.nn.functional.one_hot(d.x_test, U.COUNT_VOCAB).sum(1)
    assert torch.equal(counts.argmax(1), d.y_test)  # argmax takes the first (smallest id) of tied counts
    assert len(d.y_test.unique()) == U.COUNT_VOCAB
    r = U.make_ratings()
    assert r.x_train[:, 0].max() < U.USERS and r.x_train[:, 1].max() < U.ITEMS
    assert 1.0 < r.y_train.var().item() < 2.5  # signal ~1.2 + noise 0.25
    f = U.make_friedman_hetero()
    assert abs(f.x_train.std().item() - 1.0) < 0.05
    n = U.make_noisy_classes()
    assert set(n.y_train.tolist()) == {0, 1, 2}


def test_importing_the_lab_registers_them():
    """A spawned worker imports the lab package (not this module): the tasks are registered there too."""
    code = (
        "import adaptlr.lab.comparison as c, adaptlr.lab.tasks as t; print(sorted(n for n in t.TASKS if 'unseen' in n))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(NAMES))
