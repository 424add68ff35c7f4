"""The tuning-free benchmark's fresh tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks fresh``, its grids)."""

import math
import subprocess
import sys

import pytest
import torch

from adaptlr import lab
from adaptlr.lab import tasks_fresh as Fr
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS, get_task
from adaptlr.lab.training import train

NAMES = list(Fr.FRESH)
FACTORIES = {
    "fresh-groupnorm-bars": Fr.make_bars,
    "fresh-gru-max": Fr.make_seq_max,
    "fresh-deep-tanh": Fr.make_deep_target,
    "fresh-poisson-glm": Fr.make_poisson_counts,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "fresh-groupnorm-bars": ((1, Fr.BARS_SIZE, Fr.BARS_SIZE), torch.float32, (), torch.int64),
    "fresh-gru-max": ((Fr.SEQ_LENGTH, 1), torch.float32, (1,), torch.float32),
    "fresh-deep-tanh": ((Fr.DEEP_IN,), torch.float32, (1,), torch.float32),
    "fresh-poisson-glm": ((Fr.GLM_FEATURES,), torch.float32, (1,), torch.float32),
}
#: an lr at which 40 AdamW steps (the bars: 200, they start on a plateau) make clear progress
LRS = {"fresh-groupnorm-bars": 1e-2, "fresh-gru-max": 1e-2, "fresh-deep-tanh": 3e-3, "fresh-poisson-glm": 1e-3}
SPLITS = ("train", "val", "test")


def _split(d, name):
    return getattr(d, f"x_{name}"), getattr(d, f"y_{name}")


def test_the_set_is_registered_listed_and_new():
    assert len(NAMES) == 4 and all(n.startswith("fresh-") for n in NAMES)
    assert set(NAMES) <= set(TASKS) and set(FACTORIES) == set(NAMES)
    sets = TF.task_sets()
    assert sets["fresh"] == NAMES
    assert not set(NAMES) & set(sets["old"] + sets["stress"] + sets["holdout"] + sets["unseen"])
    assert TF.resolve_tasks("fresh") == NAMES
    assert TF.resolve_tasks("unseen,fresh") == sets["unseen"] + NAMES
    assert lab.FRESH == Fr.FRESH
    for name, lrs in Fr.GRIDS.items():
        assert name in NAMES and TF.grid_lrs(name) == lrs and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert TF.grid_lrs("fresh-deep-tanh") == TF.GRID_LRS
    assert max(TF.grid_lrs("tinylr")) <= 1e-4 and TF.grid_lrs("unseen-matfac")[-1] == 1.0  # the others still count


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
        rows |= {r.numpy().tobytes() for r in xa}
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
    opt = torch.optim.AdamW(model.parameters(), lr=LRS[name])
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(0))
    model.train()
    for _ in range(200 if name == "fresh-groupnorm-bars" else 40):
        xb, yb = next(batches)
        opt.zero_grad()
        task.loss(model(xb), yb).backward()
        opt.step()
    after = loss()
    assert math.isfinite(before) and after < 0.95 * before, (before, after)


@pytest.mark.parametrize("name", ["fresh-groupnorm-bars", "fresh-poisson-glm"])
def test_runs_are_deterministic_by_seed(name):
    task = get_task(name)
    runs = [
        train(task, "adamw(lr=0.001) + cosine(warmup=0.05)", s, steps=4, eval_every=4, log_every=1) for s in (0, 0, 1)
    ]
    losses = [[p["train_loss"] for p in r["points"]] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert all(math.isfinite(r["final_metric"]) and math.isfinite(r["final_val_metric"]) for r in runs)


def test_labels_and_targets_are_what_the_docstrings_say():
    bars = Fr.make_bars()
    assert set(bars.y_train.tolist()) == set(range(Fr.BARS_CLASSES))
    s = Fr.make_seq_max()
    assert abs(s.y_train.mean().item()) < 0.1 and abs(s.y_train.std().item() - 1.0) < 0.1  # standardised
    assert torch.corrcoef(torch.stack([s.x_train.amax((1, 2)), s.y_train[:, 0]]))[0, 1] > 0.8  # the noisy max
    d = Fr.make_deep_target()
    assert abs(d.y_train.std().item() - 1.0) < 0.1
    p = Fr.make_poisson_counts()
    assert p.y_train.min() >= 0 and torch.equal(p.y_train, p.y_train.round())  # counts
    assert p.y_train.var() > 2 * p.y_train.mean()  # overdispersed
    assert len(p.x_train) < 1.5 * Fr.GLM_FEATURES  # about as many training rows as features
    model = get_task("fresh-poisson-glm").model()
    assert model.weight.abs().max() == 0 and model.bias.item() == 2.0  # started at the mean rate


def test_importing_the_lab_registers_them():
    """A spawned worker imports the lab package (not this module): the tasks are registered there too."""
    code = (
        "import adaptlr.lab.comparison as c, adaptlr.lab.tasks as t; print(sorted(n for n in t.TASKS if 'fresh' in n))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(NAMES))
