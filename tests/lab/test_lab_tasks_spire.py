"""The tuning-free benchmark's spire tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, AdamW steps lower its training loss and better its validation metric;
each has the property its docstring claims where that is cheap to check; the set is wired into the benchmark
(``--tasks spire``, its grids)."""

import math

import pytest
import torch
from _task_sets import (
    check_data,
    check_held_out_set,
    check_registered_by_the_lab,
    check_runs_deterministic,
    check_training_progress,
)
from torch.nn import functional as F

from adaptlr.lab import tasks_spire as Sp
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task

NAMES = list(Sp.SPIRE)
FACTORIES = {
    "spire-mixup-smoothing": Sp.make_mixup_classes,
    "spire-conv-autoencoder": Sp.make_traces,
    "spire-gpt-copy-offset": Sp.make_copy_offset,
    "spire-huber-outliers": Sp.make_huber_outliers,
    "spire-relabel-finetune": Sp.make_relabel_rows,
    "spire-tiny-batches": Sp.make_wide_rows,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "spire-mixup-smoothing": ((Sp.MIX_DIM,), torch.float32, (), torch.int64),
    "spire-conv-autoencoder": ((Sp.TRACE_LEN,), torch.float32, (Sp.TRACE_LEN,), torch.float32),
    "spire-gpt-copy-offset": ((2 * Sp.GPT_HALF + 1,), torch.int64, (Sp.GPT_HALF,), torch.int64),
    "spire-huber-outliers": ((Sp.HUBER_DIM,), torch.float32, (1,), torch.float32),
    "spire-relabel-finetune": ((Sp.RELABEL_DIM,), torch.float32, (), torch.int64),
    "spire-tiny-batches": ((Sp.WIDE_DIM,), torch.float32, (1,), torch.float32),
}
#: an lr at which a few AdamW steps make clear progress
LRS = {
    "spire-mixup-smoothing": 3e-3,
    "spire-conv-autoencoder": 0.03,
    "spire-gpt-copy-offset": 3e-3,
    "spire-huber-outliers": 3e-3,
    "spire-relabel-finetune": 1e-3,
    "spire-tiny-batches": 3e-3,
}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("spire", Sp, FACTORIES)
    assert TF.grid_lrs("belfry-multitask-scales")[0] == 1e-3  # the other sets' grids are still consulted
    assert list(TF.task_sets())[-1] == "spire"


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("spire-gpt-copy-offset", "spire-huber-outliers")])
def test_a_few_adamw_steps_lower_the_training_loss(name):
    """(The copy task's loss sits on a plateau first, the Huber task's is its outliers': their validation
    metrics, below, are what a short run betters.)"""
    check_training_progress(name, LRS[name], steps=400 if name == "spire-tiny-batches" else 40)


@pytest.mark.parametrize("name", NAMES)
def test_a_short_run_betters_the_validation_metric(name):
    """150 AdamW steps (constant lr; the copy task, whose accuracy sits at chance on a plateau first, its loss)
    better the metric on the whole validation split, in the metric's direction."""
    task, data = get_task(name), get_task(name).data()
    torch.manual_seed(0)
    model = task.model()
    pick = 1 if name == "spire-gpt-copy-offset" else 0
    before = task.evaluate(model, data, "val")[pick]
    opt = torch.optim.AdamW(model.parameters(), lr=LRS[name])
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(0))
    for _ in range(150):
        x, y = next(batches)
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()
    after = task.evaluate(model, data, "val")[pick]
    higher = task.higher_is_better and pick == 0
    assert math.isfinite(after) and (after > before if higher else after < before), (before, after)


@pytest.mark.parametrize("name", ["spire-mixup-smoothing", "spire-huber-outliers", "spire-relabel-finetune"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_mixup_mixes_rows_in_training_and_smooths_the_labels():
    d = Sp.make_mixup_classes()
    torch.manual_seed(0)
    model = Sp.MixupMLP()
    x, y = d.x_train[:64], d.y_train[:64]
    out = model(x)
    assert out.shape == (64, Sp.MIX_CLASSES + 2)
    perm, lam = out[:, Sp.MIX_CLASSES].long(), out[:, -1].detach()
    assert sorted(perm.tolist()) == list(range(64)) and bool((lam == lam[0]).all()) and 0 <= float(lam[0]) <= 1
    with torch.no_grad():
        logits = model.eval()(x)
        assert logits.shape == (64, Sp.MIX_CLASSES)
        perfect = 50.0 * F.one_hot(y, Sp.MIX_CLASSES).float()
        assert float(Sp.mixup_loss(perfect, y)) > 0.3  # the smoothed target: no loss reaches zero
    stds = d.x_train.std(0)
    assert float(stds.max() / stds.min()) > 5


def test_the_traces_are_in_natural_units_and_the_loss_starts_huge():
    d = Sp.make_traces()
    assert 120 < float(d.x_train.mean()) < 180 and float(d.x_train.std()) > 25
    torch.manual_seed(0)
    model = Sp.ConvAutoencoder()
    out = model(d.x_val[:32])
    assert out.shape == (32, Sp.TRACE_LEN)
    assert float(F.mse_loss(out.detach(), d.y_val[:32])) > 5000
    assert Sp.GRIDS["spire-conv-autoencoder"][-1] == 1.0


def test_the_copy_is_offset_and_the_model_is_causal():
    d = Sp.make_copy_offset()
    x, y = d.x_train, d.y_train
    k, a = x[:, :1], x[:, 1 : Sp.GPT_HALF + 1]
    assert bool((k >= 1).all()) and bool((x[:, Sp.GPT_HALF + 1] == Sp.GPT_SEP).all())
    assert torch.equal(y, (a + k) % Sp.GPT_VOCAB) and torch.equal(x[:, Sp.GPT_HALF + 2 :], y[:, :-1])
    torch.manual_seed(0)
    model = Sp.TinyGPT().eval()
    with torch.no_grad():
        out = model(x[:8])
        assert out.shape == (8, Sp.GPT_HALF, Sp.GPT_VOCAB)
        later = x[:8].clone()
        later[:, -1] = (later[:, -1] + 1) % Sp.GPT_VOCAB
        changed = model(later)
        assert torch.allclose(out[:, :-1], changed[:, :-1], atol=1e-5)  # no position reads the future
        assert not torch.allclose(out[:, -1], changed[:, -1])


def test_outliers_are_in_the_training_targets_only():
    d = Sp.make_huber_outliers()
    big = d.y_train.abs() > 8
    assert 0.25 < float(big.float().mean()) < 0.35
    assert float(d.y_val.abs().max()) < 8 and float(d.y_test.abs().max()) < 8
    pred = torch.zeros_like(d.y_train)
    assert float(Sp.huber_loss(pred, d.y_train)) > 5 * float(Sp.huber_loss(torch.zeros_like(d.y_val), d.y_val))


def test_the_pretrained_net_is_right_on_the_source_map_and_wrong_on_the_shifted_one():
    d = Sp.make_relabel_rows()
    assert len(d.x_train) == 600
    model = Sp.RelabelMLP().eval()
    source = torch.as_tensor(Sp.RELABEL_MAP).argsort()[d.y_val]  # the shifted labels mapped back
    with torch.no_grad():
        pred = model(d.x_val).argmax(1)
    assert float((pred == source).float().mean()) > 0.7
    assert float((pred == d.y_val).float().mean()) < 0.5
    again = Sp.RelabelMLP()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True))


def test_the_wide_net_trains_on_batches_of_four():
    task = get_task("spire-tiny-batches")
    assert task.batch_size == 4 and task.steps >= 3000
    assert sum(p.numel() for p in Sp.WideShallow().parameters()) > 20000


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("spire", NAMES)
