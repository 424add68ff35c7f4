"""The lab's newer task kinds (recurrent, autoencoder, deep ill-conditioned regression, residual CNN with
BatchNorm) train, and train() evaluates validation and test, feeding controllers validation only."""

import numpy as np
import pytest
import torch

from adaptlr.lab import data as D
from adaptlr.lab import train
from adaptlr.lab.tasks import get_task

NEW = ["adding-gru", "digits-autoencoder", "illcond-regression", "digits-resnet"]


@pytest.mark.parametrize("name", NEW)
def test_new_task_trains(name):
    task = get_task(name)
    steps = 60
    result = train(task, "adamw(lr=0.01) + cosine(warmup=0.05)", seed=0, steps=steps, eval_every=steps)
    first = result["points"][0]["train_loss"]
    last = result["points"][-1]
    assert not result["diverged"] and last["step"] == steps
    assert last["train_loss"] < first  # it learns something in 60 steps
    assert last["val_metric"] is not None and last["metric"] is not None
    torch.manual_seed(0)
    untrained, _ = task.evaluate(task.model(), task.data(), "val")
    better = last["val_metric"] > untrained if task.higher_is_better else last["val_metric"] < untrained
    assert better


def test_adding_problem_targets():
    d = D.make_adding(n=200, length=10, n_test=40)
    x = torch.cat([d.x_train, d.x_val, d.x_test])
    y = torch.cat([d.y_train, d.y_val, d.y_test])
    assert x.shape == (200, 10, 2) and y.shape == (200, 1)
    assert torch.all(x[:, :5, 1].sum(1) == 1) and torch.all(x[:, 5:, 1].sum(1) == 1)  # one marker per half
    torch.testing.assert_close(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(1))


def test_illcond_inputs_have_the_stated_condition_number():
    d = D.make_illcond_regression(n=4000, dim=16, condition=100.0, n_test=500)
    x = torch.cat([d.x_train, d.x_val, d.x_test]).double().numpy()
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    assert 50 < s[0] / s[-1] < 200  # singular values span about 1/condition (sampling noise aside)
    y = torch.cat([d.y_train, d.y_val, d.y_test])
    assert abs(float(y.std()) - 1.0) < 0.05


def test_autoencoder_targets_are_its_inputs():
    d = get_task("digits-autoencoder").data()
    assert torch.equal(d.x_train, d.y_train) and torch.equal(d.x_val, d.y_val) and torch.equal(d.x_test, d.y_test)
    assert torch.equal(d.x_val, D.load_digits().x_val)  # the digits' own validation rows


def test_resnet_has_batchnorm_and_eval_uses_running_stats():
    task = get_task("digits-resnet")
    torch.manual_seed(0)
    model = task.model()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    model.train()
    task.evaluate(model, task.data(), "val")
    assert model.training  # evaluate restores the mode


def test_points_carry_validation_and_controllers_see_it(monkeypatch):
    from adaptlr.controllers import ReduceOnPlateau

    seen = []
    original = ReduceOnPlateau.observe

    def spy(self, value, *args, **kwargs):
        seen.append(value)
        return original(self, value, *args, **kwargs)

    monkeypatch.setattr(ReduceOnPlateau, "observe", spy)
    result = train("digits-logreg", "adam(lr=0.01) + plateau(patience=1)", seed=0, steps=40, eval_every=10)
    evals = [p for p in result["points"] if p["metric"] is not None]
    assert len(evals) == 4
    assert seen == [p["val_metric"] for p in evals]  # validation, never test
    assert any(p["val_metric"] != p["metric"] for p in evals)
    assert result["final_val_metric"] == evals[-1]["val_metric"]
    assert result["best_val_metric"] == max(p["val_metric"] for p in evals)
    assert all(p["val_loss"] is not None and p["test_loss"] is not None for p in evals)
