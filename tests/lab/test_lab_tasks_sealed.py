"""The tuning-free benchmark's sealed tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss (the sparse parity only after
its plateau); each has the property its docstring claims; the set is wired into the benchmark (``--tasks sealed``,
its grids)."""

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

from adaptlr.lab import reaction as Re
from adaptlr.lab import tasks_sealed as Se
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task, mse
from adaptlr.lab.training import train

NAMES = list(Se.SEALED)
FACTORIES = {
    "sealed-gcn-graphs": Se.make_graphs,
    "sealed-moe-parity": Se.make_parity,
    "sealed-vae-manifold": Se.make_manifold,
    "sealed-fno-reaction": Re.make_reaction,
    "sealed-rbf-terrain": Se.make_terrain,
    "sealed-deepsets-count": Se.make_point_sets,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "sealed-gcn-graphs": ((Se.GRAPH_NODES, Se.GRAPH_NODES + Se.GRAPH_FEATURES), torch.float32, (1,), torch.float32),
    "sealed-moe-parity": ((Se.PARITY_BITS,), torch.float32, (), torch.int64),
    "sealed-vae-manifold": ((Se.MANIFOLD_DIM,), torch.float32, (Se.MANIFOLD_DIM,), torch.float32),
    "sealed-fno-reaction": ((1, Re.FIELD_POINTS), torch.float32, (1, Re.FIELD_POINTS), torch.float32),
    "sealed-rbf-terrain": ((2,), torch.float32, (1,), torch.float32),
    "sealed-deepsets-count": ((Se.SET_SIZE, 2), torch.float32, (1,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress (the parity's plateau is tested on its own)
LRS = {
    "sealed-gcn-graphs": 3e-3,
    "sealed-vae-manifold": 1e-2,
    "sealed-fno-reaction": 3e-3,
    "sealed-rbf-terrain": 1.0,
    "sealed-deepsets-count": 3e-3,
}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("sealed", Se, FACTORIES)
    assert TF.grid_lrs("sealed-rbf-terrain")[3] == 1.0  # the best lr (~1) well above the default grid's top
    assert TF.grid_lrs("novel-quantile-wn")[-1] == 3.0 and TF.grid_lrs("final-tabular-embed")[-1] == 1.0  # the others


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    small = name == "sealed-gcn-graphs"  # (96 validation graphs by design: its small, noisy validation split)
    check_data(name, FACTORIES[name], SHAPES[name], val_rows=96 if small else None)
    if small:
        d = get_task(name).data()
        assert (len(d.x_train), len(d.x_test)) == (1104, 500)


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["sealed-gcn-graphs", "sealed-vae-manifold"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_parity_plateaus_then_drops():
    run = train(get_task("sealed-moe-parity"), TF.grid_spec(1e-2), 0, eval_every=200)
    curve = [p["val_metric"] for p in run["points"] if p.get("val_metric") is not None]
    assert min(curve[:2]) > 0.6  # a fifth of the run at chance (cross-entropy ln 2 ~ 0.69)
    assert run["final_metric"] < 0.1 and not run["diverged"]


def test_graphs_and_their_network():
    d = Se.make_graphs()
    adj = d.x_train[:, :, : Se.GRAPH_NODES]
    assert torch.equal(adj, adj.transpose(1, 2)) and set(adj.unique().tolist()) == {0.0, 1.0}
    assert (adj.diagonal(dim1=1, dim2=2) == 0).all()
    assert len(d.x_val) == 96
    noisy, clean = d.y_train[:, 0], d.y_test[:, 0]
    assert noisy.abs().max() > 3 * clean.abs().max()  # heavy-tailed noise on training targets only
    model = get_task("sealed-gcn-graphs").model()
    x = d.x_test[:4]
    perm = torch.randperm(Se.GRAPH_NODES, generator=torch.Generator().manual_seed(0))
    permuted = x[:, perm].clone()
    permuted[:, :, : Se.GRAPH_NODES] = x[:, perm][:, :, perm]  # relabel the nodes: rows and columns alike
    assert model(x).shape == (4, 1)
    assert torch.allclose(model(x), model(permuted), atol=1e-5)  # invariant to the order of the nodes


def test_parity_labels_are_the_hidden_bits_product():
    d = Se.make_parity()
    x, y = d.x_train, d.y_train
    assert torch.equal(y, (x[:, list(Se.PARITY_SUPPORT)].prod(1) < 0).long())
    assert abs(float(y.float().mean()) - 0.5) < 0.02
    assert all(abs(float(((x[:, i] > 0).long() == y).float().mean()) - 0.5) < 0.02 for i in Se.PARITY_SUPPORT)
    assert get_task("sealed-moe-parity").model()(x[:3]).shape == (3, 2)


def test_the_vae_its_loss_and_its_large_validation():
    d = Se.make_manifold()
    assert len(d.x_val) == 40_000 and len(d.x_val) >= 5 * len(d.x_train) and torch.equal(d.x_val, d.y_val)
    task = get_task("sealed-vae-manifold")
    assert len(d.x_val) / task.batch_size / 3 > task.steps / 5  # a validation pass: over a fifth of the budget
    model = task.model()
    out = model(d.x_train[:3])
    assert out.shape == (3, Se.MANIFOLD_DIM + 2 * Se.LATENT_DIM)
    model.eval()
    assert torch.equal(model(d.x_train[:3]), model(d.x_train[:3]))  # eval uses the posterior mean
    y = torch.randn(2, Se.MANIFOLD_DIM)
    perfect = torch.cat([y, torch.zeros(2, 2 * Se.LATENT_DIM)], 1)  # mu 0, logvar 0: KL 0
    assert Se.elbo_loss(perfect, y).item() == 0.0
    off = torch.cat([y + 0.1, torch.ones(2, Se.LATENT_DIM), torch.zeros(2, Se.LATENT_DIM)], 1)
    want = (0.1**2 * Se.MANIFOLD_DIM / (2 * Se.VAE_NOISE**2) + 0.5 * Se.LATENT_DIM) / Se.MANIFOLD_DIM
    assert Se.elbo_loss(off, y).item() == pytest.approx(want, rel=1e-5)


def test_the_solver_and_the_pretrained_operator():
    grid = np.linspace(0, 2 * np.pi, Re.FIELD_POINTS, endpoint=False)
    u = Re.evolve(np.sin(3 * grid)[None], nu=0.05, r=0.0, time=0.5)[0]
    assert np.allclose(u, math.exp(-0.05 * 9 * 0.5) * np.sin(3 * grid), atol=1e-3)  # heat equation: e^{-nu k^2 t}
    d = Re.make_reaction()
    torch.manual_seed(0)
    fresh, tuned = Re.FNO1d(), get_task("sealed-fno-reaction").model()
    with torch.no_grad():
        assert tuned(d.x_val).shape == d.y_val.shape
        assert mse(tuned(d.x_val), d.y_val) < 0.2 * mse(fresh(d.x_val), d.y_val)  # it starts from what it learned


def test_terrain_is_in_natural_units_and_sets_are_permutation_invariant():
    d = Se.make_terrain()
    assert 30 < float(d.y_train.mean()) < 60 and float(d.x_train.max()) <= Se.TERRAIN_SIZE
    assert (get_task("sealed-rbf-terrain").model()(d.x_train[:5]) == 0).all()  # it starts at 0 dam
    sets = Se.make_point_sets()
    model = get_task("sealed-deepsets-count").model()
    x = sets.x_train[:3]
    with torch.no_grad():
        assert torch.allclose(model(x), model(x.flip(1)), rtol=1e-4)
        assert float(mse(model(x), sets.y_train[:3])) > 100  # the unnormalised sum: a huge initial loss


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("sealed", NAMES)
