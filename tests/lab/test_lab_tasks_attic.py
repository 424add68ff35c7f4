"""The tuning-free benchmark's attic tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims where that is cheap to check; the set is wired into the benchmark (``--tasks attic``, its grids)."""

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

from adaptlr.lab import tasks_attic as At
from adaptlr.lab import tuning_free as TF
from adaptlr.lab import twotower as Tt
from adaptlr.lab.tasks import get_task

NAMES = list(At.ATTIC)
FACTORIES = {
    "attic-pinn-heat": At.make_heat,
    "attic-simclr-views": At.make_simclr_views,
    "attic-sage-sbm": At.make_sbm_nodes,
    "attic-ctc-tones": At.make_ctc_tones,
    "attic-twotower-shift": Tt.make_twotower,
    "attic-sort-transformer": At.make_sorting,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "attic-pinn-heat": ((2,), torch.float32, (2,), torch.float32),
    "attic-simclr-views": ((2, At.VIEW_DIM), torch.float32, (), torch.int64),
    "attic-sage-sbm": ((), torch.int64, (), torch.int64),
    "attic-ctc-tones": ((At.CTC_FRAMES, At.CTC_FEATURES), torch.float32, (At.CTC_MAX_LABELS,), torch.int64),
    "attic-twotower-shift": ((3, Tt.TOWER_FEATURES), torch.float32, (), torch.int64),
    "attic-sort-transformer": ((At.SORT_LEN,), torch.int64, (At.SORT_LEN,), torch.int64),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {
    "attic-pinn-heat": 0.01,
    "attic-simclr-views": 0.01,
    "attic-sage-sbm": 0.03,
    "attic-ctc-tones": 0.03,
    "attic-twotower-shift": 3e-3,
    "attic-sort-transformer": 3e-3,
}
#: validation rows, where a task's validation is meant to be small (under ``check_data``'s 100-row floor it is not)
SMALL_VAL = {"attic-sage-sbm": 60}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("attic", At, FACTORIES)
    assert TF.grid_lrs("cellar-duffing-sysid")[-1] == 10.0  # the other sets' grids are still consulted


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name], val_rows=SMALL_VAL.get(name))


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["attic-pinn-heat", "attic-sage-sbm", "attic-twotower-shift"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_pinn_residual_is_the_heat_equation():
    d = At.make_heat()
    assert float(d.y_val[:, 0].min()) == 1.0 and 0 < float(d.y_train[:, 0].mean()) < 0.5  # collocation: flag 0
    task = get_task("attic-pinn-heat")
    assert len(d.x_val) / task.batch_size / 3 > task.steps / 20  # one validation pass: over 5% of the budget
    # the exact solution solves u_t = nu u_xx (central differences)
    tx, h = np.array([[0.3, 0.4], [0.1, 0.7]]), 1e-4
    u = At._heat_exact
    u_t = (u(tx + [h, 0]) - u(tx - [h, 0])) / (2 * h)
    u_xx = (u(tx + [0, h]) - 2 * u(tx) + u(tx - [0, h])) / h**2
    assert np.allclose(u_t, At.HEAT_NU * u_xx, atol=1e-4)
    # the model's residual is the same finite-difference residual of its own u (also under no_grad)
    torch.manual_seed(0)
    model = At.HeatPINN().double()
    x = torch.tensor(tx)
    with torch.no_grad():
        out = model(x)
        net = model.net
        e_t, e_x = torch.tensor([h, 0.0]), torch.tensor([0.0, h])
        fd_t = (net(x + e_t) - net(x - e_t)) / (2 * h)
        fd_xx = (net(x + e_x) - 2 * net(x) + net(x - e_x)) / h**2
    assert not out.requires_grad
    assert torch.allclose(out[:, 1:], fd_t - At.HEAT_NU * fd_xx, atol=1e-5)
    flags = torch.tensor([[0.0, 5.0], [1.0, 2.0]])
    want = float(out[0, 1] ** 2 + (out[1, 0] - 2.0) ** 2) / 2
    assert float(At.pinn_loss(out, flags.double())) == pytest.approx(want)


def test_the_infonce_loss():
    n, d = 4, 8
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), dim=1)
    same = torch.stack([z, z], 1)
    flat = torch.nn.functional.normalize(torch.ones(n, 2, d), dim=2)
    assert float(At.infonce_loss(flat, None)) == pytest.approx(math.log(2 * n - 1), rel=1e-5)  # chance
    assert float(At.infonce_loss(same, None)) < math.log(2 * n - 1)
    d = At.make_simclr_views()
    assert not torch.equal(d.x_train[:, 0], d.x_train[:, 1])  # two different views of each row


def test_the_sbm_graph_and_the_small_validation():
    edges, weight, feats, y = At.sbm_graph()
    assert feats.shape == (At.SBM_NODES, At.SBM_FEATURES)
    same = (y[edges[0].numpy()] == y[edges[1].numpy()]).mean()
    assert 0.45 < same < 0.7  # homophilous, not pure: the graph helps, the features are needed
    sums = torch.zeros(At.SBM_NODES).index_add_(0, edges[0], weight)
    assert torch.allclose(sums[sums > 0], torch.ones(1))  # a mean over neighbours
    assert len(At.make_sbm_nodes().x_val) == 60


def test_the_ctc_loss_and_its_targets():
    d = At.make_ctc_tones()
    lengths = (d.y_train > 0).sum(1)
    assert int(lengths.min()) == 3 and int(lengths.max()) == At.CTC_MAX_LABELS
    assert bool(((d.y_train[:, 1:] > 0) <= (d.y_train[:, :-1] > 0)).all())  # padded at the end only
    # one frame, one label: the loss is -log p(label)
    logp = torch.log_softmax(torch.tensor([[[0.3, 1.2, -0.5]]]), -1)
    assert float(At.ctc_loss(logp, torch.tensor([[1]]))) == pytest.approx(-float(logp[0, 0, 1]), rel=1e-5)


def test_the_twotower_starts_pretrained():
    d = Tt.make_twotower()
    task = get_task("attic-twotower-shift")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = Tt._Towers()
    tuned = task.model()
    acc_fresh, _ = task.evaluate(fresh, d, "test")
    acc_tuned, _ = task.evaluate(tuned, d, "test")
    assert acc_tuned > acc_fresh + 0.25  # near a good solution before any step
    assert torch.equal(task.model().user[0].weight, tuned.user[0].weight)  # deterministic
    assert len(d.x_val) / task.batch_size / 3 > task.steps / 2  # one validation pass: over half the budget


def test_the_sorting_targets():
    d = At.make_sorting()
    assert torch.equal(d.y_test, d.x_test.sort(1).values)
    out = get_task("attic-sort-transformer").model()(d.x_val[:3])
    assert out.shape == (3, At.SORT_LEN, At.SORT_VOCAB)


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("attic", NAMES)
