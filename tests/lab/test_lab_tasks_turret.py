"""The tuning-free benchmark's turret tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims where that is cheap to check; the set is wired into the benchmark (``--tasks turret``, its grids)."""

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
from torch import nn

from adaptlr.lab import tasks_turret as Tu
from adaptlr.lab import tuning_free as TF
from adaptlr.lab import turretprune as Tp
from adaptlr.lab.tasks import get_task

NAMES = list(Tu.TURRET)
FACTORIES = {
    "turret-ordinal-grades": Tu.make_ordinal_grades,
    "turret-elman-recall": Tu.make_recall,
    "turret-pixelcnn-glyphs": Tu.make_glyphs,
    "turret-binaryconnect-bn": Tu.make_binary_teacher,
    "turret-pruned-recovery": Tp.make_pruned_rows,
    "turret-listnet-queries": Tu.make_query_lists,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "turret-ordinal-grades": ((Tu.ORD_DIM,), torch.float32, (), torch.int64),
    "turret-elman-recall": ((Tu.REC_LEN,), torch.int64, (Tu.REC_LEN,), torch.int64),
    "turret-pixelcnn-glyphs": ((Tu.GLYPH_SIDE**2,), torch.float32, (Tu.GLYPH_SIDE**2,), torch.float32),
    "turret-binaryconnect-bn": ((Tu.BIN_DIM,), torch.float32, (), torch.int64),
    "turret-pruned-recovery": ((Tp.PRUNE_DIM,), torch.float32, (), torch.int64),
    "turret-listnet-queries": ((Tu.LIST_DOCS, Tu.LIST_FEATURES), torch.float32, (Tu.LIST_DOCS,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress (more steps where :data:`STEPS` says: a plateau comes first)
LRS = {
    "turret-ordinal-grades": 0.1,
    "turret-elman-recall": 0.01,
    "turret-pixelcnn-glyphs": 0.01,
    "turret-binaryconnect-bn": 0.03,
    "turret-pruned-recovery": 3e-3,
    "turret-listnet-queries": 0.01,
}
STEPS = {"turret-elman-recall": 200}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("turret", Tu, FACTORIES)
    assert TF.grid_lrs("cellar-duffing-sysid")[-1] == 10.0  # the other sets' grids are still consulted
    assert TF.task_sets()["loft"] == list(TF.tasks_loft.LOFT)


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name])


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], STEPS.get(name, 40))


@pytest.mark.parametrize("name", ["turret-ordinal-grades", "turret-binaryconnect-bn", "turret-listnet-queries"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_cumulative_link_gives_ordered_cutpoints_and_a_distribution():
    torch.manual_seed(0)
    model = Tu.CumulativeLink()
    with torch.no_grad():
        model.gaps.normal_()
        p = model(torch.randn(6, Tu.ORD_DIM)).exp()
    assert torch.allclose(p.sum(1), torch.ones(6), atol=1e-5) and bool((p >= 0).all())
    y = Tu.make_ordinal_grades().y_train
    assert sorted(set(y.tolist())) == list(range(Tu.ORD_GRADES))  # every grade occurs
    assert get_task("turret-ordinal-grades").steps >= 2000 and get_task("turret-ordinal-grades").batch_size <= 16


def test_the_elman_net_recalls_after_the_delay_without_gates():
    model = get_task("turret-elman-recall").model()
    assert isinstance(model.rnn, nn.RNN) and model.rnn.nonlinearity == "tanh"
    d = Tu.make_recall()
    assert torch.equal(d.x_train, d.y_train)
    x = d.x_val[:4]
    out = model(x)
    assert out.shape == (4, Tu.REC_LEN, Tu.REC_SYMBOLS)
    embedded = []
    model.rnn.register_forward_hook(lambda m, inp, o: embedded.append(inp[0].shape))
    model(x)
    assert embedded[0][1] == 2 * Tu.REC_LEN + Tu.REC_DELAY  # symbols, blanks, go, blanks


def test_the_pixelcnn_is_autoregressive():
    torch.manual_seed(0)
    model = Tu.PixelCNN()
    x = Tu.make_glyphs().x_val[:1].clone().requires_grad_(True)
    for i in (0, 30, 77, 143):
        (g,) = torch.autograd.grad(model(x)[0, i], x)
        assert float(g[0, i:].abs().max()) == 0.0  # no pixel sees itself or any pixel after it
        assert i == 0 or float(g[0, :i].abs().max()) > 0.0
    x = Tu.make_glyphs().x_train
    assert set(np.unique(x.numpy())) == {0.0, 1.0}


def test_binaryconnect_uses_only_the_signs_and_blocks_the_gradient_beyond_one():
    torch.manual_seed(0)
    model = Tu.BinaryConnectNet().eval()
    x = torch.randn(8, Tu.BIN_DIM)
    before = model(x)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(0.37)
    assert torch.allclose(model(x), before, atol=1e-5)  # a positive rescaling keeps every sign
    layer = model.layers[0]
    with torch.no_grad():
        layer.weight[0, 0] = 1.5
    model(x).sum().backward()
    assert float(layer.weight.grad[0, 0]) == 0.0 and float(layer.weight.grad.abs().sum()) > 0
    assert isinstance(model.norms[-1], nn.BatchNorm1d) and model.norms[-1].num_features == Tu.BIN_CLASSES


def test_the_pruned_net_starts_between_its_dense_self_and_a_fresh_one():
    task = get_task("turret-pruned-recovery")
    model = task.model()
    for i, layer in enumerate(model.hidden):
        mask = getattr(model, f"mask{i}")
        assert abs(float(mask.mean()) - Tp.PRUNE_KEEP) < 0.01 and bool((layer.weight[mask == 0] == 0).all())
    dense = Tp._Dense()
    dense.load_state_dict(Tp.pretrained_dense())
    torch.manual_seed(0)
    fresh = Tp._Dense()
    d = task.data()
    losses = [task.evaluate(m, d, "val")[1] for m in (dense, model, fresh)]
    assert losses[0] < losses[1] < losses[2]
    model(d.x_train[:32]).sum().backward()
    assert bool((model.hidden[0].weight.grad[model.mask0 == 0] == 0).all())


def test_the_listnet_loss_and_its_large_validation():
    y = Tu.make_query_lists().y_val[:5]
    assert float(Tu.listnet_loss(y.clone(), y)) == pytest.approx(0.0, abs=1e-6)
    assert float(Tu.listnet_loss(torch.zeros_like(y), y)) > 0.0
    assert set(np.unique(y.numpy())) == {0.0, 1.0, 2.0, 3.0, 4.0}
    task = get_task("turret-listnet-queries")
    assert len(Tu.make_query_lists().x_val) > task.steps * task.batch_size  # one pass reads more than the run trains


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("turret", NAMES)
