"""adaptlr.reference.free (float64 NumPy, from the formulas) against the papers' packages, 200 steps."""

import numpy as np
import pytest
import torch
from test_free_common import HPARAMS, assert_close, make_problem, run_reference, run_torch

from adaptlr.reference import free as ref

dadaptation = pytest.importorskip("dadaptation")
prodigyopt = pytest.importorskip("prodigyopt")
dog = pytest.importorskip("dog")
schedulefree = pytest.importorskip("schedulefree")
lion_pytorch = pytest.importorskip("lion_pytorch")
pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

STEPS = 200


PACKAGES = {  # name: (the package's class, the float64 reference, the attribute where gradients are taken)
    "prodigy": (lambda p, **kw: prodigyopt.Prodigy(p, **kw), ref.Prodigy, "x"),
    "dadapt_sgd": (lambda p, **kw: dadaptation.DAdaptSGD(p, **kw), ref.DAdaptSGD, "x"),
    "dadapt_adam": (lambda p, **kw: dadaptation.DAdaptAdam(p, **kw), ref.DAdaptAdam, "x"),
    "dadapt_adagrad": (lambda p, **kw: dadaptation.DAdaptAdaGrad(p, **kw), ref.DAdaptAdaGrad, "x"),
    "dog": (lambda p, **kw: dog.DoG(p, **kw), ref.DoG, "x"),
    "ldog": (lambda p, **kw: dog.LDoG(p, **kw), ref.LDoG, "x"),
    "sf_sgd": (lambda p, **kw: schedulefree.SGDScheduleFree(p, **kw), ref.ScheduleFreeSGD, "y"),
    "sf_adamw": (lambda p, **kw: schedulefree.AdamWScheduleFree(p, **kw), ref.ScheduleFreeAdamW, "y"),
    "sf_radam": (lambda p, **kw: schedulefree.RAdamScheduleFree(p, **kw), ref.ScheduleFreeRAdam, "y"),
    "lion": (lambda p, **kw: lion_pytorch.Lion(p, **kw), ref.Lion, "x"),
    "adabelief": (lambda p, **kw: pytorch_optimizer.AdaBelief(p, **kw), ref.AdaBelief, "x"),
    "lamb": (lambda p, **kw: pytorch_optimizer.Lamb(p, **kw), ref.LAMB, "x"),
}
CASES = {name: (HPARAMS[name], *row) for name, row in PACKAGES.items()}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_package(name, seed):
    hparams_of, package, reference, attr = CASES[name]
    kw = hparams_of(np.random.default_rng(1000 * seed + len(name)))
    init, loss_fn = make_problem(seed)

    def make(p):
        opt = package(p, **kw)
        if hasattr(opt, "train"):
            opt.train()
        return opt

    params, _ = run_torch(make, init, loss_fn, STEPS)
    r = run_reference(reference([p.numpy() for p in init], **kw), loss_fn, STEPS, attr=attr)
    assert_close(getattr(r, attr), params, rtol=1e-8)
    # the run moved: a parity test on a frozen problem would prove nothing
    assert max(float(np.abs(a - p.numpy()).max()) for a, p in zip(getattr(r, attr), init)) > 1e-3


def test_schedulefree_reference_average_point():
    """The reference's x (eval point) equals what the package puts in the parameters after eval()."""
    init, loss_fn = make_problem(0)
    kw = dict(lr=0.01, betas=(0.9, 0.99), warmup_steps=5)
    params, opt = run_torch(lambda p: _train(schedulefree.AdamWScheduleFree(p, **kw)), init, loss_fn, 50)
    opt.eval()
    r = run_reference(ref.ScheduleFreeAdamW([p.numpy() for p in init], **kw), loss_fn, 50, attr="y")
    assert_close(r.x, params, rtol=1e-8)


def test_polynomial_averager_matches_package():
    from dog import PolynomialDecayAverager

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    av = PolynomialDecayAverager(model, gamma=8.0)
    r = ref.PolynomialDecayAverager([p.detach().numpy() for p in model.parameters()], gamma=8.0)
    for _ in range(20):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        av.step()
        r.update([p.detach().numpy() for p in model.parameters()])
    assert_close(r.avg, list(av.averaged_model.parameters()), rtol=1e-12)


def _train(opt):
    opt.train()
    return opt
