"""The tuning-free benchmark's loft tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims where that is cheap to check; the set is wired into the benchmark (``--tasks loft``, its grids)."""

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

from adaptlr.lab import loftstream as Ls
from adaptlr.lab import tasks_loft as Lo
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task

NAMES = list(Lo.LOFT)
FACTORIES = {
    "loft-deq-spirals": Lo.make_deq_spirals,
    "loft-fm-drift": Ls.make_fm_drift,
    "loft-triplet-batch8": Lo.make_triplets,
    "loft-hashbag-docs": Lo.make_hashed_docs,
    "loft-softtree-noisy": Lo.make_softtree_noisy,
    "loft-pinet-long": Lo.make_pinet_poly,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "loft-deq-spirals": ((Lo.DEQ_DIM,), torch.float32, (), torch.int64),
    "loft-fm-drift": ((Ls.FM_FIELDS,), torch.int64, (), torch.float32),
    "loft-triplet-batch8": ((3, Lo.TRIP_DIM), torch.float32, (), torch.int64),
    "loft-hashbag-docs": ((2 * Lo.BAG_LEN,), torch.int64, (), torch.int64),
    "loft-softtree-noisy": ((Lo.TREE_DIM,), torch.float32, (), torch.int64),
    "loft-pinet-long": ((Lo.PI_DIM,), torch.float32, (1,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {
    "loft-deq-spirals": 0.03,
    "loft-fm-drift": 0.03,
    "loft-triplet-batch8": 3e-3,
    "loft-hashbag-docs": 0.1,
    "loft-softtree-noisy": 0.3,
    "loft-pinet-long": 3e-3,
}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("loft", Lo, FACTORIES)
    assert TF.grid_lrs("cellar-duffing-sysid")[-1] == 10.0  # the other sets' grids are still consulted
    assert TF.task_sets()["attic"] == list(TF.tasks_attic.ATTIC)


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["loft-deq-spirals", "loft-fm-drift", "loft-triplet-batch8"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_deq_iterates_to_a_fixed_point_only_while_contractive():
    torch.manual_seed(0)
    model = Lo.DEQNet()
    x = Lo.make_deq_spirals().x_val[:64]
    with torch.no_grad():
        model.mix.weight.mul_(0.5 / torch.linalg.matrix_norm(model.mix.weight, 2))
        u = model.inject(x)
        z = torch.zeros_like(u)
        for _ in range(model.iters):
            z = torch.tanh(model.mix(z) + u)
        assert float((torch.tanh(model.mix(z) + u) - z).abs().max()) < 1e-3  # near its fixed point
        assert torch.allclose(model(x), model.readout(z))
        model.mix.weight.mul_(8.0)  # spectral norm 4: the iteration no longer settles
        z1 = torch.zeros_like(u)
        for _ in range(model.iters):
            z1 = torch.tanh(model.mix(z1) + u)
        assert float((torch.tanh(model.mix(z1) + u) - z1).abs().max()) > 0.1


def test_the_stream_drifts_and_is_served_in_order():
    d = Ls.make_fm_drift()
    task = get_task("loft-fm-drift")
    assert len(d.x_train) == task.steps * task.batch_size == Ls.FM_STREAM  # the budget walks the stream once
    x = d.x_train[:2000].numpy()
    early, late = Ls.drift_logits(x, np.zeros(len(x))), Ls.drift_logits(x, np.ones(len(x)))
    assert np.corrcoef(early, late)[0, 1] < 0.6  # the old concept says little about the present one
    batches = d.batches(task.batch_size, torch.Generator().manual_seed(0))
    first = [next(batches)[0] for _ in range(Ls.STREAM_BLOCK)]
    rows = {r.numpy().tobytes() for b in first for r in b}
    assert rows == {r.numpy().tobytes() for r in d.x_train[: Ls.STREAM_BLOCK * task.batch_size]}
    # a factorization machine's pairwise term is the sum over pairs of fields
    model = Ls.FactorizationMachine()
    with torch.no_grad():
        v = model.factors(d.x_val[:3] + model.offsets)
        pairs = sum((v[:, i] * v[:, j]).sum(1) for i in range(Ls.FM_FIELDS) for j in range(i + 1, Ls.FM_FIELDS))
        assert torch.allclose(model(d.x_val[:3]), pairs + model.weights(d.x_val[:3] + model.offsets).sum((1, 2)))


def test_the_triplet_loss_and_its_batch():
    out = torch.tensor([[-1.0, -3.0], [-2.0, -2.5]])  # (-d(a, p), -d(a, n))
    assert float(Lo.triplet_loss(out, torch.zeros(2, dtype=torch.long))) == pytest.approx((0.0 + 0.5) / 2)
    assert get_task("loft-triplet-batch8").batch_size == 8
    d = Lo.make_triplets()
    assert int(d.y_train.max()) == 0


def test_the_hashed_bag_is_mostly_sparse_embedding():
    model = get_task("loft-hashbag-docs").model()
    sparse, dense = model.bag.weight.numel(), sum(p.numel() for p in model.head.parameters())
    assert sparse > 5000 * dense
    d = Lo.make_hashed_docs()
    assert int(d.x_train.max()) < Lo.BAG_BUCKETS and int(d.x_train[:, : Lo.BAG_LEN].max()) <= Lo.BAG_WORDS
    assert float((model.bag.weight[0] == 0).all()) and bool((d.x_train[:, -1] == 0).all())  # padding


def test_the_soft_tree_is_a_mixture_of_leaves():
    torch.manual_seed(0)
    model = Lo.SoftTree()
    x = torch.randn(5, Lo.TREE_DIM)
    p = model(x).exp()
    assert torch.allclose(p.sum(1), torch.ones(5), atol=1e-5)
    d = Lo.make_softtree_noisy()
    rule = np.random.default_rng(104).uniform(-0.5, 0.5, 3)
    x = d.x_test.numpy()
    clean = 2 * (x[:, 0] > rule[0]) + np.where(x[:, 0] > rule[0], x[:, 1] > rule[1], x[:, 2] > rule[2])
    agree = (clean == d.y_test.numpy()).mean()
    assert 0.72 < agree < 0.8  # 30% relabelled at random: a quarter of those by chance to the right class


def test_the_pinet_is_a_cubic_polynomial():
    torch.manual_seed(0)
    model = Lo.PiNet().double()
    x, t = torch.randn(4, Lo.PI_DIM, dtype=torch.float64), 3.0
    with torch.no_grad():  # a cubic in t along any line: its fourth finite difference vanishes
        f = [model(x * (t + k)) for k in range(5)]
        fourth = f[4] - 4 * f[3] + 6 * f[2] - 4 * f[1] + f[0]
    assert float(fourth.abs().max()) < 1e-8
    assert get_task("loft-pinet-long").steps >= 3000


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("loft", NAMES)
