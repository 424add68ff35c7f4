"""The references that keep their own parameters as their packages do (float64 NumPy, from the formulas:
adaptlr.reference.free, and Lion, AdaBelief, LAMB) against the papers' packages, and adaptlr's optimizers against
them, 200 steps (every row of tests/_optim_table.py with such a reference)."""

import numpy as np
import pytest
import torch
from _free_common import assert_close, make_problem, run_reference, run_torch
from _optim_table import counterpart_factory, make, package_style_reference, reference_class, rows

from adaptlr.reference import free as ref

STEPS = 200


def _free_reference(row):
    return package_style_reference(row)


def hparams(row, seed):
    return row.draw(np.random.default_rng(1000 * seed + row.counterpart.seed_offset))


def _point(row):
    """Where the method takes its gradients: Schedule-Free at y (x is the average), the others at x."""
    return "y" if row.schedule_free else "x"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("row", rows(lambda r: _free_reference(r) and r.counterpart is not None))
def test_reference_matches_package(row, seed):
    kw = hparams(row, seed)
    init, loss_fn = make_problem(seed)
    params, _ = run_torch(counterpart_factory(row, **kw), init, loss_fn, STEPS)
    r = run_reference(reference_class(row)([p.numpy() for p in init], **kw), loss_fn, STEPS, attr=_point(row))
    assert_close(getattr(r, _point(row)), params, rtol=1e-8)
    # the run moved: a parity test on a frozen problem would prove nothing
    assert max(float(np.abs(a - p.numpy()).max()) for a, p in zip(getattr(r, _point(row)), init)) > 1e-3


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("row", rows(_free_reference))
def test_optimizer_matches_reference(row, seed):
    """adaptlr against the formulas directly (no package needed): the draws of the package parity, 200 steps, rtol
    1e-8 (seeds 1 and 2, as test_free_parity: on seed 0 D-Adapt Adam with growth_rate=inf amplifies rounding
    differences to 1e-7 of the parameters' scale over 200 steps)."""
    kw = hparams(row, seed) if row.counterpart is not None else row.draw(np.random.default_rng(seed))
    init, loss_fn = make_problem(seed)
    params, _ = run_torch(lambda p: make(row, p, **kw), init, loss_fn, STEPS)
    r = run_reference(reference_class(row)([p.numpy() for p in init], **kw), loss_fn, STEPS, attr=_point(row))
    assert_close(params, getattr(r, _point(row)), rtol=1e-8)


def test_schedulefree_reference_average_point():
    """The reference's x (eval point) equals what the package puts in the parameters after eval()."""
    schedulefree = pytest.importorskip("schedulefree")
    init, loss_fn = make_problem(0)
    kw = dict(lr=0.01, betas=(0.9, 0.99), warmup_steps=5)
    params, opt = run_torch(lambda p: _train(schedulefree.AdamWScheduleFree(p, **kw)), init, loss_fn, 50)
    opt.eval()
    r = run_reference(ref.ScheduleFreeAdamW([p.numpy() for p in init], **kw), loss_fn, 50, attr="y")
    assert_close(r.x, params, rtol=1e-8)


def test_polynomial_averager_matches_package():
    dog = pytest.importorskip("dog")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    av = dog.PolynomialDecayAverager(model, gamma=8.0)
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
