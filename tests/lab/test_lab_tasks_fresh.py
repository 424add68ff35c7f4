"""The tuning-free benchmark's fresh tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks fresh``, its grids)."""

import pytest
import torch
from _task_sets import check_data, check_registered_by_the_lab, check_runs_deterministic, check_training_progress

from adaptlr import lab
from adaptlr.lab import tasks_fresh as Fr
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS, get_task

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
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 200 if name == "fresh-groupnorm-bars" else 40)


@pytest.mark.parametrize("name", ["fresh-groupnorm-bars", "fresh-poisson-glm"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


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
    check_registered_by_the_lab("fresh", NAMES)
