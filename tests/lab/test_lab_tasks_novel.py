"""The tuning-free benchmark's novel tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and a few AdamW steps lower its training loss; the set is wired into
the benchmark (``--tasks novel``, its grids)."""

import pytest
import torch
from _task_sets import check_data, check_registered_by_the_lab, check_runs_deterministic, check_training_progress

from adaptlr import lab
from adaptlr.lab import tasks_novel as No
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import TASKS, get_task

NAMES = list(No.NOVEL)
FACTORIES = {
    "novel-tcn-forecast": No.make_series_windows,
    "novel-dyck-lm": No.make_dyck,
    "novel-mixer-textures": No.make_textures,
    "novel-quantile-wn": No.make_quantile_data,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "novel-tcn-forecast": ((1, No.WINDOW), torch.float32, (1,), torch.float32),
    "novel-dyck-lm": ((No.DYCK_LENGTH,), torch.int64, (No.DYCK_LENGTH,), torch.int64),
    "novel-mixer-textures": ((1, No.TEXTURE_SIZE, No.TEXTURE_SIZE), torch.float32, (), torch.int64),
    "novel-quantile-wn": ((No.QUANTILE_FEATURES,), torch.float32, (1,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {"novel-tcn-forecast": 3e-3, "novel-dyck-lm": 1e-2, "novel-mixer-textures": 3e-3, "novel-quantile-wn": 1e-2}


def test_the_set_is_registered_listed_and_new():
    assert len(NAMES) == 4 and all(n.startswith("novel-") for n in NAMES)
    assert set(NAMES) <= set(TASKS) and set(FACTORIES) == set(NAMES)
    sets = TF.task_sets()
    assert sets["novel"] == NAMES
    earlier = ("old", "stress", "holdout", "unseen", "fresh", "final")
    assert not set(NAMES) & {n for s in earlier for n in sets[s]}
    assert TF.resolve_tasks("novel") == NAMES
    assert TF.resolve_tasks("final,novel") == sets["final"] + NAMES
    assert set(NAMES) <= set(TF.resolve_tasks("all"))
    assert lab.NOVEL == No.NOVEL
    for name in NAMES:
        lrs = TF.grid_lrs(name)
        assert lrs == No.GRIDS.get(name, TF.GRID_LRS) and len(lrs) == 7
        assert all(b / a == pytest.approx(10**0.5, rel=0.06) for a, b in zip(lrs, lrs[1:], strict=False))
    assert TF.grid_lrs("fresh-gru-max")[-1] == 3.0 and TF.grid_lrs("final-tabular-embed")[-1] == 1.0  # the others
    assert all(get_task(n).description for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["novel-dyck-lm", "novel-quantile-wn"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def _balanced(row):
    stack = []
    for tok in row:
        if tok in (0, 2):
            stack.append(tok)
        elif not stack or stack.pop() + 1 != tok:
            return False
    return not stack


def test_data_are_what_the_docstrings_say():
    series = No.make_series_windows()
    x = series.x_train[:, 0]
    assert x.mean(1).abs().max() < 1e-4 and (x.std(1, unbiased=False) - 1).abs().max() < 1e-3  # per-row standardised
    assert get_task("novel-tcn-forecast").model()(series.x_train[:3]).shape == (3, 1)
    model = get_task("novel-tcn-forecast").model()
    a, b = series.x_train[:2].clone(), series.x_train[:2].clone()
    b[:, :, -1] += 1.0
    inner = model.blocks(model.inp(a)), model.blocks(model.inp(b))
    assert torch.equal(inner[0][:, :, :-1], inner[1][:, :, :-1])  # causal: no step sees a later one
    dyck = No.make_dyck()
    assert (dyck.x_test[:, 0] == No.DYCK_START).all() and torch.equal(dyck.x_test[:, 1:], dyck.y_test[:, :-1])
    assert all(_balanced(r) for r in dyck.y_train[:500].tolist())
    lm = get_task("novel-dyck-lm").model()
    assert lm(dyck.x_train[:3]).shape == (3, No.DYCK_LENGTH, No.DYCK_VOCAB)
    changed = dyck.x_train[:2].clone()
    changed[:, -1] = (changed[:, -1] + 1) % 4
    lm.eval()
    assert torch.allclose(lm(dyck.x_train[:2])[:, :-1], lm(changed)[:, :-1], atol=1e-5)  # a causal mask
    tex = No.make_textures()
    assert set(tex.y_train.tolist()) == set(range(No.TEXTURE_CLASSES))
    assert get_task("novel-mixer-textures").model()(tex.x_train[:3]).shape == (3, No.TEXTURE_CLASSES)
    q = No.make_quantile_data()
    out = get_task("novel-quantile-wn").model()(q.x_train[:3])
    assert out.shape == (3, len(No.QUANTILES))
    y = q.y_train[:, 0]
    assert (y.quantile(0.9) - y.median()) > (y.median() - y.quantile(0.1))  # skewed right
    assert No.pinball(torch.zeros(2, 3), torch.tensor([[1.0], [-1.0]])).item() == pytest.approx(0.5)  # (1.5 + 1.5) / 6


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("novel", NAMES)
