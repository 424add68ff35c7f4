"""The tuning-free benchmark's vault tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims; the set is wired into the benchmark (``--tasks vault``, its grids)."""

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

from adaptlr.lab import hyperwaves as Hw
from adaptlr.lab import tasks_vault as Va
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task, mse
from adaptlr.lab.training import train

NAMES = list(Va.VAULT)
FACTORIES = {
    "vault-fourier-pixels": Va.make_pixels,
    "vault-realnvp-rings": Va.make_rings,
    "vault-ssm-volatility": Va.make_volatility,
    "vault-hypernet-waves": Hw.make_waves,
    "vault-diffusion-spiral": Va.make_noised_spiral,
    "vault-gmm-epicentres": Va.make_epicentres,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "vault-fourier-pixels": ((2,), torch.float32, (1,), torch.float32),
    "vault-realnvp-rings": ((2,), torch.float32, (2,), torch.float32),
    "vault-ssm-volatility": ((Va.SERIES_LENGTH, 1), torch.float32, (1,), torch.float32),
    "vault-hypernet-waves": ((5,), torch.float32, (1,), torch.float32),
    "vault-diffusion-spiral": ((3,), torch.float32, (2,), torch.float32),
    "vault-gmm-epicentres": ((2,), torch.float32, (2,), torch.float32),
}
#: an lr at which 40 AdamW steps make clear progress
LRS = {
    "vault-fourier-pixels": 1e-3,
    "vault-realnvp-rings": 3e-3,
    "vault-ssm-volatility": 1e-2,
    "vault-hypernet-waves": 3e-3,
    "vault-diffusion-spiral": 3e-3,
    "vault-gmm-epicentres": 1.0,
}
#: validation rows, where a task's validation is meant to be small (under ``check_data``'s 100-row floor it is not)
SMALL_VAL = {"vault-ssm-volatility": 80, "vault-diffusion-spiral": 200}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("vault", Va, FACTORIES)
    assert TF.grid_lrs("vault-fourier-pixels")[0] == 1e-5 and TF.grid_lrs("vault-ssm-volatility")[-1] == 1.0
    assert TF.grid_lrs("vault-gmm-epicentres")[3:5] == (0.3, 1.0)  # its best lrs, above the default grid's top
    assert TF.grid_lrs("sealed-rbf-terrain")[3] == 1.0  # the other sets' grids are still consulted


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name], val_rows=SMALL_VAL.get(name))


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 40)


@pytest.mark.parametrize("name", ["vault-ssm-volatility", "vault-diffusion-spiral"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_fourier_pixels_overfit_late():
    d = Va.make_pixels()
    assert float(d.y_train.var()) > float(d.y_test.var()) + 0.5 * Va.PIXEL_NOISE**2  # noisy training pixels only
    run = train(get_task("vault-fourier-pixels"), TF.grid_spec(3e-4), 0, eval_every=200)
    curve = [p["val_metric"] for p in run["points"] if p.get("val_metric") is not None]
    best = int(np.argmin(curve))
    assert 0 < best < len(curve) // 2 and curve[-1] > 1.1 * curve[best]  # it falls, then turns up


def test_the_flow_its_loss_and_its_large_validation():
    d = Va.make_rings()
    task = get_task("vault-realnvp-rings")
    assert len(d.x_val) == 40_000 and torch.equal(d.x_val, d.y_val)
    assert len(d.x_val) / task.batch_size / 3 > task.steps / 5  # a validation pass: over a fifth of the budget
    model = task.model()
    out = model(d.x_train[:4])
    assert out.shape == (4, 3)
    z = torch.randn(3, 2)  # the identity flow: the standard normal's NLL
    want = (0.5 * z.pow(2).sum(1) + math.log(2 * math.pi)).mean()
    assert Va.nll_loss(torch.cat([z, torch.zeros(3, 1)], 1), z) == pytest.approx(float(want))
    with torch.no_grad():  # the flow is invertible: log|det J| matches a finite-difference Jacobian
        x = d.x_train[:1].double()
        jac = torch.autograd.functional.jacobian(lambda v: model.double()(v)[:, :2], x)[0, :, 0]
        assert float(torch.linalg.det(jac).abs().log()) == pytest.approx(float(model(x)[0, 2]), rel=1e-6)


def test_the_series_and_their_noisy_small_validation():
    d = Va.make_volatility()
    assert len(d.x_val) == 80 and d.y_train.abs().max() > 3 * d.y_test.abs().max()  # heavy tails on train only
    model = get_task("vault-ssm-volatility").model()
    x = d.x_test[:2]
    with torch.no_grad():
        early, late = x.clone(), x.clone()
        early[:, 10] += 5.0
        late[:, -1] += 5.0
        assert model(x).shape == (2, 1) and not torch.allclose(model(x), model(late))  # the last step is read
        assert not torch.allclose(model(x), model(early))  # and the early ones, through the state


def test_the_waves_and_the_pretrained_hypernetwork():
    grid = np.linspace(-3, 3, 7)[None]
    context = np.array([[1.5, 0.8, np.cos(0.3), np.sin(0.3)]])
    assert np.allclose(Hw.wave(context, grid, chirp=0.15), 1.5 * np.sin(0.8 * grid + 0.3 + 0.15 * grid**2))
    d = Hw.make_waves()
    torch.manual_seed(0)
    fresh, tuned = Hw.HyperNet(), get_task("vault-hypernet-waves").model()
    with torch.no_grad():
        assert tuned(d.x_val).shape == d.y_val.shape
        assert mse(tuned(d.x_val), d.y_val) < 0.5 * mse(fresh(d.x_val), d.y_val)  # it starts from what it learned
    assert torch.equal(tuned.out.weight, get_task("vault-hypernet-waves").model().out.weight)  # deterministic


def test_the_diffusion_pairs_are_noised_points():
    d = Va.make_noised_spiral()
    x, eps = d.x_train, d.y_train
    k = x[:, 2]
    assert torch.equal((k * Va.DIFFUSION_STEPS).round().unique(), torch.arange(1.0, Va.DIFFUSION_STEPS + 1))
    assert abs(float(eps.mean())) < 0.03 and abs(float(eps.std()) - 1) < 0.03
    late = k > 0.95  # nearly pure noise: the input is mostly its noise
    assert float(torch.nn.functional.cosine_similarity(x[late, :2], eps[late]).mean()) > 0.8
    assert get_task("vault-diffusion-spiral").model()(x[:3]).shape == (3, 2)


def test_the_mixture_is_in_natural_units_and_a_density():
    d = Va.make_epicentres()
    assert float(d.x_train.abs().max()) < Va.REGION_SIZE and float(d.x_train.std()) > 5  # hectometres
    model = get_task("vault-gmm-epicentres").model()
    grid = torch.linspace(-40, 40, 161)
    cells = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        mass = float(model(cells).exp().sum()) * float(grid[1] - grid[0]) ** 2
        assert mass == pytest.approx(1.0, abs=0.02)  # it integrates to 1 (the region and its margin)
        assert Va.mixture_nll(model(d.x_val), d.y_val) > 0


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("vault", NAMES)
