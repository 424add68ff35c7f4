"""The tuning-free benchmark's unseen tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks unseen``, its grids)."""

import pytest
import torch
from _task_sets import check_data, check_registered_by_the_lab, check_runs_deterministic, check_training_progress

from adaptlr import lab
from adaptlr.lab import tasks_unseen as U
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS

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
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, 0.03 if name == "unseen-matfac" else 3e-3)


@pytest.mark.parametrize("name", ["unseen-matfac", "unseen-noisy-bn"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


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
    check_registered_by_the_lab("unseen", NAMES)
