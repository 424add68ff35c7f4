"""The tuning-free benchmark's belfry tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, AdamW steps lower its training loss and better its validation metric;
each has the property its docstring claims where that is cheap to check; the set is wired into the benchmark
(``--tasks belfry``, its grids)."""

import math

import numpy as np
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

from adaptlr.lab import belfrydistill as Bd
from adaptlr.lab import tasks_belfry as Be
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task

NAMES = list(Be.BELFRY)
FACTORIES = {
    "belfry-multitask-scales": Be.make_multitask,
    "belfry-teacher-forcing": Be.make_prefix_sums,
    "belfry-dann-shift": Be.make_domain_shift,
    "belfry-vqvae-codes": Be.make_vq_points,
    "belfry-kelly-barrier": Be.make_kelly_returns,
    "belfry-distill-t4": Bd.make_distill_rows,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "belfry-multitask-scales": ((Be.MT_DIM,), torch.float32, (2,), torch.float32),
    "belfry-teacher-forcing": ((2 * Be.S2S_LEN,), torch.int64, (Be.S2S_LEN,), torch.int64),
    "belfry-dann-shift": ((Be.DA_DIM,), torch.float32, (), torch.int64),
    "belfry-vqvae-codes": ((Be.VQ_DIM,), torch.float32, (Be.VQ_DIM,), torch.float32),
    "belfry-kelly-barrier": ((Be.KELLY_FEATURES,), torch.float32, (Be.KELLY_ASSETS,), torch.float32),
    "belfry-distill-t4": ((Bd.DISTILL_DIM,), torch.float32, (Bd.DISTILL_CLASSES,), torch.float32),
}
#: an lr at which a few AdamW steps make clear progress
LRS = {
    "belfry-multitask-scales": 0.03,
    "belfry-teacher-forcing": 0.01,
    "belfry-dann-shift": 0.01,
    "belfry-vqvae-codes": 0.03,
    "belfry-kelly-barrier": 3e-3,
    "belfry-distill-t4": 0.03,
}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("belfry", Be, FACTORIES)
    assert TF.grid_lrs("turret-ordinal-grades")[0] == 1e-3  # the other sets' grids are still consulted
    assert list(TF.task_sets())[-3:] == ["turret", "belfry", "spire"]


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name])


@pytest.mark.parametrize("name", NAMES)
def test_a_short_run_betters_the_validation_metric(name):
    """150 AdamW steps (constant lr) better the metric on the whole validation split, in the metric's direction."""
    task, data = get_task(name), get_task(name).data()
    torch.manual_seed(0)
    model = task.model()
    before = task.evaluate(model, data, "val")[0]
    opt = torch.optim.AdamW(model.parameters(), lr=LRS[name])
    batches = data.batches(task.batch_size, torch.Generator().manual_seed(0))
    for _ in range(150):
        x, y = next(batches)
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()
    after = task.evaluate(model, data, "val")[0]
    assert math.isfinite(after) and (after > before if task.higher_is_better else after < before), (before, after)


@pytest.mark.parametrize("name", ["belfry-multitask-scales", "belfry-dann-shift", "belfry-kelly-barrier"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_multitask_heads_losses_and_gradients_differ_a_thousandfold_at_the_start():
    torch.manual_seed(0)
    model = Be.MultiTaskNet()
    d = Be.make_multitask()
    x, y = d.x_val, d.y_val
    out = model(x)
    ce = F.cross_entropy(out[:, : Be.MT_CLASSES], y[:, 0].long())
    mse = F.mse_loss(out[:, Be.MT_CLASSES], y[:, 1])
    assert 500 < float(mse.detach() / ce.detach()) < 2000
    assert float(Be.multitask_loss(out, y).detach()) == pytest.approx(float((ce + mse).detach()), rel=1e-6)
    first = model.trunk[0].weight
    g_ce, g_mse = (torch.autograd.grad(part, first, retain_graph=True)[0].norm() for part in (ce, mse))
    assert float(g_mse / g_ce) > 100  # the shared trunk hears the regression
    assert set(y[:, 0].long().tolist()) == set(range(Be.MT_CLASSES)) and len(d.x_train) == 1000


def test_the_decoder_is_teacher_forced_in_training_and_greedy_in_eval():
    d = Be.make_prefix_sums()
    s, y = d.x_train[:, : Be.S2S_LEN], d.y_train
    assert torch.equal(d.x_train[:, Be.S2S_LEN :], y)
    assert torch.equal(y[:, 0], s[:, -1]) and torch.equal(y[:, 1:], (y[:, :-1] + s.flip(1)[:, 1:]) % Be.S2S_VOCAB)
    torch.manual_seed(0)
    model = Be.Seq2Seq()
    x = d.x_val[:16]
    other = x.clone()
    other[:, Be.S2S_LEN :] = (other[:, Be.S2S_LEN :] + 1) % Be.S2S_VOCAB
    model.eval()
    with torch.no_grad():
        greedy = model(x)
        assert greedy.shape == (16, Be.S2S_LEN, Be.S2S_VOCAB)
        assert torch.equal(greedy, model(other))  # the target half is never read when decoding
        model.train()
        forced = model(x)
        assert torch.equal(forced[:, 0], greedy[:, 0])  # the first step sees only the start token
        assert not torch.allclose(forced[:, 1:], model(other)[:, 1:])  # later steps read the true previous token


def test_dann_reverses_the_domain_gradient_and_the_target_domain_is_shifted():
    d = Be.make_domain_shift()
    assert float((d.y_train < 0).float().mean()) == 0.5 and bool((d.y_val >= 0).all() and (d.y_test >= 0).all())
    source, target = d.x_train[d.y_train >= 0], d.x_train[d.y_train < 0]
    assert float((source.mean(0) - target.mean(0)).norm()) > 2.0
    assert float((target.mean(0) - d.x_test.mean(0)).norm()) < 0.5  # unlabelled rows are the test's domain
    grads = []
    for reversal in (1.0, -1.0):  # -1: plain backpropagation
        torch.manual_seed(0)
        model = Be.DomainAdversarial(reversal=reversal)
        out = model(d.x_train[:64])
        assert out.shape == (64, Be.DA_CLASSES + 1)
        F.binary_cross_entropy_with_logits(out[:, -1], (d.y_train[:64] < 0).float()).backward()
        grads.append((model.features[0].weight.grad.clone(), model.domain[0].weight.grad.clone()))
    assert torch.allclose(grads[0][0], -grads[1][0]) and torch.allclose(grads[0][1], grads[1][1])
    assert model.eval()(d.x_val[:8]).shape == (8, Be.DA_CLASSES)
    with torch.no_grad():
        assert float(Be.dann_loss(model.train()(d.x_train[:64]), d.y_train[:64])) > float(
            Be.dann_loss(model.eval()(d.x_train[:64]), d.y_train[:64])
        )


def test_most_codes_start_dead_and_the_quantiser_passes_gradients_straight_through():
    torch.manual_seed(0)
    model = Be.VQAutoencoder()
    d = Be.make_vq_points()
    used = model.codes(d.x_val).unique().numel()
    assert used < Be.VQ_CODES // 2, used  # most codes are nobody's nearest
    out = model(d.x_train[:32])
    assert out.shape == (32, Be.VQ_DIM + 1) and bool((out[:, -1] >= 0).all())
    F.mse_loss(out[:, : Be.VQ_DIM], d.y_train[:32]).backward()
    assert float(model.encoder[0].weight.grad.abs().sum()) > 0  # through the argmin, straight through
    assert model.eval()(d.x_val[:4]).shape == (4, Be.VQ_DIM)


def test_the_kelly_loss_has_a_barrier_at_ruin_where_the_gradient_vanishes():
    d = Be.make_kelly_returns()
    r = d.y_train
    assert float(Be.kelly_loss(torch.zeros_like(r), r)) == pytest.approx(Be.KELLY_TARGET)
    kurtosis = float(((r - r.mean(0)) ** 4).mean(0).min() / r.var(0).max() ** 2)
    assert kurtosis > 6  # fat tails: a Gaussian's is 3
    bets = torch.full_like(r[:2000], 3.0, requires_grad=True)
    ruined = (1 + (bets * r[:2000]).sum(1)) <= Be.KELLY_RUIN
    assert 0 < int(ruined.sum()) < 200  # a leverage of 12 ruins a few rows
    Be.kelly_loss(bets, r[:2000]).backward()
    assert float(bets.grad[ruined].abs().max()) == 0.0 and float(bets.grad[~ruined].abs().min()) > 0
    losses = [float(Be.kelly_loss(torch.full_like(r, k), r)) for k in (0.5, 3.0)]
    assert losses[1] > 1.5 * losses[0]  # six times the bet: far worse, near the barrier


def test_distillation_softens_a_trained_teacher_for_a_narrow_student():
    d = Bd.make_distill_rows()
    y = d.y_val
    assert float(Bd.distill_loss(y.clone(), y)) == pytest.approx(0.0, abs=1e-5)
    assert float(Bd.distill_loss(y + 3.0, y)) == pytest.approx(0.0, abs=1e-5)  # a shift of every logit is no error
    hard, soft = torch.softmax(y, 1).max(1)[0].mean(), torch.softmax(y / Bd.DISTILL_T, 1).max(1)[0].mean()
    assert float(hard) > 0.6 and float(soft) < 0.5  # a confident teacher, softened
    x, labels = Bd._rows(np.random.default_rng(0), 2000)
    teacher = Bd.Teacher()
    teacher.load_state_dict(Bd.teacher_state())
    with torch.no_grad():
        accuracy = float((teacher(torch.from_numpy(x)).argmax(1) == torch.from_numpy(labels)).float().mean())
    assert accuracy > 0.6  # trained: chance is 0.1 (10% of the labels are random)
    width = sum(p.numel() for p in Bd.Student().parameters()) / sum(p.numel() for p in teacher.parameters())
    assert width < 0.01


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("belfry", NAMES)
