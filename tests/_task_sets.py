"""Checks every held-out task set of the tuning-free benchmark passes (tests/lab/test_lab_tasks_unseen.py,
test_lab_tasks_fresh.py): deterministic data of the right shapes in disjoint splits, training that makes progress,
runs deterministic by seed, and the set registered wherever the lab is imported."""

import math
import subprocess
import sys

import torch

from adaptlr.lab.tasks import get_task
from adaptlr.lab.training import train

SPLITS = ("train", "val", "test")


def _split(d, name):
    return getattr(d, f"x_{name}"), getattr(d, f"y_{name}")


def check_data(name, factory, shapes, val_rows=None):
    """The cached data equals a fresh build from the same seed, and another seed differs; each split's inputs and
    targets have ``shapes`` = (input shape after the batch, dtype, target shape after the batch, dtype); no row is
    in two splits (nor twice in one). Every split has over 100 rows, or validation exactly ``val_rows`` where a
    task's validation is small by design."""
    a, b = get_task(name).data(), factory.__wrapped__()
    x_shape, x_dtype, y_shape, y_dtype = shapes
    rows = set()
    for split in SPLITS:
        (xa, ya), (xb, yb) = _split(a, split), _split(b, split)
        assert torch.equal(xa, xb) and torch.equal(ya, yb), split
        if split == "val" and val_rows is not None:
            assert len(xa) == len(ya) == val_rows
        else:
            assert len(xa) == len(ya) > 100
        assert xa.shape[1:] == x_shape and xa.dtype == x_dtype
        assert ya.shape[1:] == y_shape and ya.dtype == y_dtype
        rows |= {r.numpy().tobytes() for r in xa}
    assert len(rows) == sum(len(_split(a, s)[0]) for s in SPLITS)
    other = factory.__wrapped__(seed=99)
    assert not torch.equal(other.x_train[:50], a.x_train[:50])  # the seed is what fixes it


def check_training_progress(name, lr, steps=40):
    """``steps`` AdamW steps at ``lr`` cut the loss on 512 training rows by more than 5%."""
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
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(0))
    model.train()
    for _ in range(steps):
        xb, yb = next(batches)
        opt.zero_grad()
        task.loss(model(xb), yb).backward()
        opt.step()
    after = loss()
    assert math.isfinite(before) and after < 0.95 * before, (before, after)


def check_runs_deterministic(name):
    runs = [
        train(get_task(name), "adamw(lr=0.001) + cosine(warmup=0.05)", s, steps=4, eval_every=4, log_every=1)
        for s in (0, 0, 1)
    ]
    losses = [[p["train_loss"] for p in r["points"]] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert all(math.isfinite(r["final_metric"]) and math.isfinite(r["final_val_metric"]) for r in runs)


def check_registered_by_the_lab(prefix, names):
    """A spawned worker imports the lab package (not the set's module): the tasks are registered there too."""
    code = (
        f"import adaptlr.lab.comparison, adaptlr.lab.tasks as t; print(sorted(n for n in t.TASKS if {prefix!r} in n))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(names))


def check_held_out_set(set_name, module, factories):
    """The set ``set_name`` (its tasks: ``module.<SET_NAME>``) is registered, listed by ``--tasks`` after every
    earlier set and disjoint from them, exported by the lab, described, and has a 7-point half-decade grid per task
    (its own ``module.GRIDS`` where given); ``factories`` (name -> data factory) cover it."""
    import pytest

    from adaptlr import lab
    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import TASKS

    names = list(getattr(module, set_name.upper()))
    assert len(names) == 6 and all(n.startswith(f"{set_name}-") for n in names)
    assert set(names) <= set(TASKS) and set(factories) == set(names)
    sets = TF.task_sets()
    assert sets[set_name] == names
    order = list(sets)
    earlier = order[: order.index(set_name)]
    assert not set(names) & {n for s in earlier for n in sets[s]}
    assert TF.resolve_tasks(set_name) == names
    assert TF.resolve_tasks(f"{earlier[-1]},{set_name}") == sets[earlier[-1]] + names
    assert set(names) <= set(TF.resolve_tasks("all"))
    assert getattr(lab, set_name.upper()) == getattr(module, set_name.upper())
    for name in names:
        lrs = TF.grid_lrs(name)
        assert lrs == module.GRIDS.get(name, TF.GRID_LRS) and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert all(get_task(n).description for n in names)
