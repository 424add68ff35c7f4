"""The tuning-free benchmark's cellar tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims where that is cheap to check; the set is wired into the benchmark (``--tasks cellar``, its grids)."""

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

from adaptlr.lab import sensorshift as Ss
from adaptlr.lab import tasks_cellar as Ce
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task
from adaptlr.lab.training import train

NAMES = list(Ce.CELLAR)
FACTORIES = {
    "cellar-kan-additive": Ce.make_kan_additive,
    "cellar-modular-sums": Ce.make_modular_sums,
    "cellar-duffing-sysid": Ce.make_duffing,
    "cellar-cox-survival": Ce.make_survival,
    "cellar-lora-shift": Ss.make_lora_shift,
    "cellar-sgns-topics": Ce.make_sgns,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "cellar-kan-additive": ((5,), torch.float32, (1,), torch.float32),
    "cellar-modular-sums": ((2,), torch.int64, (), torch.int64),
    "cellar-duffing-sysid": ((3,), torch.float32, (Ce.DUFFING_TIMES,), torch.float32),
    "cellar-cox-survival": ((Ce.SURVIVAL_FEATURES,), torch.float32, (2,), torch.float32),
    "cellar-lora-shift": ((Ss.LORA_FEATURES,), torch.float32, (), torch.int64),
    "cellar-sgns-topics": ((2 + Ce.NEGATIVES,), torch.int64, (1,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {
    "cellar-kan-additive": 0.03,
    "cellar-modular-sums": 0.03,
    "cellar-duffing-sysid": 1.0,
    "cellar-cox-survival": 0.01,
    "cellar-lora-shift": 3e-3,
    "cellar-sgns-topics": 0.03,
}
#: validation rows, where a task's validation is meant to be small (under ``check_data``'s 100-row floor it is not)
SMALL_VAL = {"cellar-cox-survival": 100}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("cellar", Ce, FACTORIES)
    assert TF.grid_lrs("cellar-duffing-sysid")[-1] == 10.0 and TF.grid_lrs("cellar-modular-sums")[-1] == 0.3
    assert TF.grid_lrs("vault-gmm-epicentres")[3] == 0.3  # the other sets' grids are still consulted


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name], val_rows=SMALL_VAL.get(name))


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["cellar-cox-survival", "cellar-lora-shift"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_kan_its_basis_and_its_noisy_targets():
    d = Ce.make_kan_additive()
    assert float(d.y_train.var()) > float(d.y_test.var()) + 0.5 * Ce.KAN_NOISE**2  # noisy training targets only
    layer = Ce.KANLayer(2, 3, basis=5)
    x = torch.tensor([[0.0, 1.0]])
    phi = torch.exp(-(((x[..., None] - layer.centres) / layer.width) ** 2))
    want = torch.einsum("bik,oik->bo", phi, layer.coef) + layer.base(torch.nn.functional.silu(x))
    assert torch.allclose(layer(x), want)  # a sum over edges of learned 1-D functions
    assert get_task("cellar-kan-additive").model()(d.x_val[:4]).shape == (4, 1)


def test_the_modular_sums_generalise_only_late_at_a_large_lr():
    d = Ce.make_modular_sums()
    assert torch.equal(d.y_train, d.x_train.sum(1) % Ce.MODULUS)
    task = get_task("cellar-modular-sums")
    chance = math.log(Ce.MODULUS)
    short = train(task, TF.grid_spec(0.1), 0, steps=task.steps // 10)
    assert short["final_val_metric"] > 1.3 * chance  # a tenth of the run at 0.1: memorised, worse than chance


@pytest.mark.slow
def test_the_modular_sums_full_run_at_a_large_lr_generalises():
    task = get_task("cellar-modular-sums")
    run = train(task, TF.grid_spec(0.1), 0)
    assert run["final_val_metric"] < 0.3 * math.log(Ce.MODULUS)


def test_the_duffing_model_integrates_the_true_oscillator():
    d = Ce.make_duffing()
    model = Ce.DuffingModel()
    with torch.no_grad():
        for k, v in Ce.DUFFING_TRUE.items():
            model.physical[k].fill_(v)
        err = Ce.DUFFING_NOISE_CM**2  # at the true parameters: the measurement noise only
        assert float(((model(d.x_test) - d.y_test) ** 2).mean()) == pytest.approx(err, rel=0.1)
        guess = get_task("cellar-duffing-sysid").model()
        assert float(((guess(d.x_test) - d.y_test) ** 2).mean()) > 100 * err  # the guess is far off
    assert {k: float(v) for k, v in guess.physical.items()} == Ce.DUFFING_GUESS


def test_the_cox_loss_and_its_small_validation():
    d = Ce.make_survival()
    assert len(d.x_val) == 100 and 0.3 < float(d.y_train[:, 1].mean()) < 0.8  # censored rows: event 0
    time, event = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    risk = torch.tensor([[0.5], [-0.2], [1.0]])
    # Breslow: the event at t=1 has all three at risk, the one at t=3 only itself
    want = -((-0.2 - math.log(math.exp(0.5) + math.exp(-0.2) + math.exp(1.0))) + (0.5 - 0.5)) / 2
    assert float(Ce.cox_loss(risk, torch.stack([time, event], 1))) == pytest.approx(want, rel=1e-6)


def test_the_lora_model_starts_from_its_pretrained_base():
    d = Ss.make_lora_shift()
    task = get_task("cellar-lora-shift")
    torch.manual_seed(0)
    fresh, tuned = Ss.BaseClassifier(), task.model()
    with torch.no_grad():
        assert task.loss(tuned(d.x_val), d.y_val) < 0.5 * task.loss(fresh(d.x_val), d.y_val)
        base = Ss.BaseClassifier()
        base.load_state_dict(Ss.pretrained_base())
        assert torch.allclose(tuned(d.x_val), base(d.x_val), atol=1e-5)  # the adapters start at zero
    names = {n for n, _ in tuned.named_parameters()}
    assert all(("down" in n or "up" in n or "bias" in n) for n in names)  # the base weights are frozen (buffers)
    again = task.model()
    assert torch.equal(again.layers[0].weight, tuned.layers[0].weight)  # deterministic


def test_the_skipgram_pairs_and_the_large_validation():
    d = Ce.make_sgns()
    task = get_task("cellar-sgns-topics")
    assert len(d.x_val) / task.batch_size / 3 > task.steps / 5  # one validation pass: over a fifth of the budget
    assert int(d.x_train.max()) < Ce.VOCAB and int(d.x_train.min()) >= 0
    counts = np.bincount(d.x_train[:, 0].numpy(), minlength=Ce.VOCAB)
    assert counts[:10].sum() > counts[-100:].sum()  # Zipf-distributed centre words
    out = torch.zeros(2, 1 + Ce.NEGATIVES)
    want = (1 + Ce.NEGATIVES) * math.log(2)
    assert float(Ce.sgns_loss(out, torch.zeros(2, 1))) == pytest.approx(want)


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("cellar", NAMES)
