"""The tuning-free benchmark's final tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks final``, its grids)."""

import pytest
import torch
from _task_sets import check_data, check_registered_by_the_lab, check_runs_deterministic, check_training_progress

from adaptlr import lab
from adaptlr.lab import tasks_final as Fi
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS, get_task

NAMES = list(Fi.FINAL)
FACTORIES = {
    "final-patch-vit": Fi.make_shapes,
    "final-tabular-embed": Fi.make_tabular,
    "final-gru-reverse": Fi.make_reverse_tokens,
    "final-unet-denoise": Fi.make_noisy_signals,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "final-patch-vit": ((1, Fi.SHAPE_SIZE, Fi.SHAPE_SIZE), torch.float32, (), torch.int64),
    "final-tabular-embed": ((len(Fi.CARDINALITIES) + Fi.NUMERIC,), torch.float32, (), torch.int64),
    "final-gru-reverse": ((Fi.REVERSE_LENGTH,), torch.int64, (Fi.REVERSE_LENGTH,), torch.int64),
    "final-unet-denoise": ((1, Fi.SIGNAL_LENGTH), torch.float32, (1, Fi.SIGNAL_LENGTH), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {"final-patch-vit": 3e-3, "final-tabular-embed": 3e-3, "final-gru-reverse": 1e-2, "final-unet-denoise": 3e-3}


def test_the_set_is_registered_listed_and_new():
    assert len(NAMES) == 4 and all(n.startswith("final-") for n in NAMES)
    assert set(NAMES) <= set(TASKS) and set(FACTORIES) == set(NAMES)
    sets = TF.task_sets()
    assert sets["final"] == NAMES
    assert not set(NAMES) & set(sets["old"] + sets["stress"] + sets["holdout"] + sets["unseen"] + sets["fresh"])
    assert TF.resolve_tasks("final") == NAMES
    assert TF.resolve_tasks("fresh,final") == sets["fresh"] + NAMES
    assert set(NAMES) <= set(TF.resolve_tasks("all"))
    assert lab.FINAL == Fi.FINAL
    for name in NAMES:
        lrs = TF.grid_lrs(name)
        assert lrs == Fi.GRIDS.get(name, TF.GRID_LRS) and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert TF.grid_lrs("fresh-gru-max")[-1] == 3.0 and TF.grid_lrs("unseen-matfac")[-1] == 1.0  # the others count
    assert all(get_task(n).description for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["final-tabular-embed", "final-gru-reverse"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_labels_and_targets_are_what_the_docstrings_say():
    shapes = Fi.make_shapes()
    assert set(shapes.y_train.tolist()) == set(range(Fi.SHAPE_CLASSES))
    assert get_task("final-patch-vit").model()(shapes.x_train[:3]).shape == (3, Fi.SHAPE_CLASSES)
    tab = Fi.make_tabular()
    ids = tab.x_train[:, : len(Fi.CARDINALITIES)]
    assert torch.equal(ids, ids.round()) and ids.min() >= 0
    assert (ids.amax(0) < torch.tensor(Fi.CARDINALITIES, dtype=torch.float32)).all()  # every id has an embedding
    counts = torch.bincount(ids[:, 1].long(), minlength=Fi.CARDINALITIES[1])
    assert counts[0] > 5 * counts[-1]  # Zipf-like: category k has probability ~ 1 / (k + 2)
    num = torch.cat([tab.x_train, tab.x_val])[:, len(Fi.CARDINALITIES) :]
    assert num.mean(0).abs().max() < 0.1 and (num.std(0) - 1).abs().max() < 0.1  # standardised
    assert set(tab.y_train.tolist()) == set(range(Fi.TABLE_CLASSES))
    rev = Fi.make_reverse_tokens()
    assert torch.equal(rev.y_train, rev.x_train.flip(1)) and torch.equal(rev.y_test, rev.x_test.flip(1))
    assert get_task("final-gru-reverse").model()(rev.x_train[:3]).shape == (3, Fi.REVERSE_LENGTH, Fi.REVERSE_VOCAB)
    sig = Fi.make_noisy_signals()
    assert (sig.x_train - sig.y_train).std().item() == pytest.approx(0.5, rel=0.05)  # the noise
    jumps = ((sig.y_train[:, 0, 1:] - sig.y_train[:, 0, :-1]).abs() > 0.7).sum(1)  # a sine's step is <= 0.6
    assert jumps.float().mean() > 1.0 and jumps.max() <= 4
    assert get_task("final-unet-denoise").model()(sig.x_train[:3]).shape == sig.y_train[:3].shape


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("final", NAMES)
