"""adaptlr.free against the reference packages: 200 steps, random problems and hyperparameters, every engine,
float64 (rtol 1e-8) and float32 (rtol 1e-5); multiple param groups; effective_lr."""

import contextlib
import io
import logging

import numpy as np
import pytest
import torch
from test_free_common import assert_close, make_problem, run_torch
from test_free_reference import CASES

from adaptlr import free

logging.getLogger("dog").setLevel(logging.ERROR)

OURS = {
    "prodigy": free.Prodigy,
    "dadapt_sgd": free.DAdaptSGD,
    "dadapt_adam": free.DAdaptAdam,
    "dadapt_adagrad": free.DAdaptAdaGrad,
    "dog": free.DoG,
    "ldog": free.LDoG,
    "sf_sgd": free.ScheduleFreeSGD,
    "sf_adamw": free.ScheduleFreeAdamW,
    "sf_radam": free.ScheduleFreeRAdam,
}
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}
STEPS = 200


def _package(name, kw):
    def make(p):
        with contextlib.redirect_stdout(io.StringIO()):
            opt = CASES[name][1](p, **kw)
        if hasattr(opt, "train"):
            opt.train()
        return opt

    return make


def _hparams(name, seed):
    return CASES[name][0](np.random.default_rng(1000 * seed + len(name)))


# every engine on seed 1, the foreach engine on seed 2 too (seed 0: D-Adapt Adam with growth_rate=inf amplifies
# rounding differences to 6e-8 of the parameters' scale over 200 steps -- the package against the float64 NumPy
# reference too)
@pytest.mark.parametrize("seed,engine", [(1, "fused"), (1, "foreach"), (1, "loop"), (2, "foreach")])
@pytest.mark.parametrize("name", list(OURS))
def test_parity_float64(name, seed, engine):
    kw = _hparams(name, seed)
    init, loss_fn = make_problem(seed)
    expected, _ = run_torch(_package(name, kw), init, loss_fn, STEPS)
    actual, opt = run_torch(lambda p: OURS[name](p, **kw, **ENGINES[engine]), init, loss_fn, STEPS)
    assert_close(actual, expected, rtol=1e-8)
    assert opt.effective_lr() > 0


# float32: on most draws the estimate of d amplifies float32 rounding, so that the package's own float32 run
# drifts from its float64 run by 1e-3..1 of the parameters' scale over 200 steps (measured); no implementation can
# then agree with it to 1e-5. These seeds (problem scale 100) are draws where the package's float32 run stays
# within 1e-5 of its float64 run; test_float32_no_worse_than_package covers the sensitive draws.
FLOAT32_SEED = {"prodigy": 1, "dadapt_adam": 2, "dadapt_adagrad": 2}


@pytest.mark.parametrize("name", list(OURS))
def test_parity_float32(name):
    seed = FLOAT32_SEED.get(name, 1)
    kw = _hparams(name, seed)
    init, loss_fn = make_problem(seed, dtype=torch.float32, scale=100.0)
    expected, _ = run_torch(_package(name, kw), init, loss_fn, STEPS)
    actual, _ = run_torch(lambda p: OURS[name](p, **kw), init, loss_fn, STEPS)
    assert actual[0].dtype == torch.float32
    assert_close(actual, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adam"])
def test_float32_no_worse_than_package(name):
    """On a draw that amplifies rounding, our float32 run is as close to the float64 truth as the package's."""
    kw = _hparams(name, 0)
    init, loss_fn = make_problem(0, dtype=torch.float32, scale=100.0)
    init64, loss64 = make_problem(0, scale=100.0)
    truth, _ = run_torch(_package(name, kw), init64, loss64, STEPS)
    package, _ = run_torch(_package(name, kw), init, loss_fn, STEPS)
    ours, _ = run_torch(lambda p: OURS[name](p, **kw), init, loss_fn, STEPS)

    def err(xs):
        return max(float((x.detach().double() - t.detach()).abs().max()) for x, t in zip(xs, truth))

    assert err(package) > 1e-4  # the draw is a sensitive one
    assert err(ours) < 3 * err(package)


@pytest.mark.parametrize("name", list(OURS))
def test_parity_param_groups(name):
    """Two groups with different weight decay (same lr, as the packages require): one shared estimate."""
    kw = _hparams(name, 1)
    wd = kw.pop("weight_decay", 0.0)
    groups = [([0, 2], dict(weight_decay=wd)), ([1, 3], dict(weight_decay=0.0))]
    if name == "dadapt_sgd":  # the package applies group 0's weight decay to every group
        groups = [([0, 2], dict(weight_decay=wd)), ([1, 3], dict(weight_decay=wd))]
    init, loss_fn = make_problem(2)
    expected, _ = run_torch(_package(name, kw), init, loss_fn, 100, groups=groups)
    actual, opt = run_torch(lambda p: OURS[name](p, **kw), init, loss_fn, 100, groups=groups)
    assert_close(actual, expected, rtol=1e-8)


def test_effective_lr_values():
    init, loss_fn = make_problem(0)
    _, opt = run_torch(lambda p: free.Prodigy(p, lr=0.5), init, loss_fn, 20)
    assert opt.effective_lr() == pytest.approx(opt.param_groups[0]["d"] * 0.5)
    _, opt = run_torch(lambda p: free.DAdaptAdam(p), init, loss_fn, 20)
    assert opt.effective_lr() == pytest.approx(opt.param_groups[0]["d"])
    _, opt = run_torch(lambda p: free.DoG(p), init, loss_fn, 20)
    g = opt.param_groups[0]
    assert opt.effective_lr() == pytest.approx(g["rbar"] / g["G"] ** 0.5)
    _, opt = run_torch(lambda p: free.ScheduleFreeAdamW(p, lr=0.01, warmup_steps=40), init, loss_fn, 20)
    assert opt.effective_lr() == pytest.approx(0.01 * 21 / 40)


OPTIONS = [  # every option path, against the package (100 steps, foreach engine, float64); where d overshoots
    # (growth_rate=inf with beta2=0.999) D-Adapt Adam turns chaotic and rounding grows to 1e-1 in 100 steps
    ("prodigy", dict(slice_p=3)),
    ("prodigy", dict(betas=(0.0, 0.99))),
    ("prodigy", dict(use_bias_correction=True, safeguard_warmup=True)),
    ("prodigy", dict(decouple=False, weight_decay=0.01)),
    ("prodigy", dict(decouple=True, weight_decay=0.01, growth_rate=1.02, d_coef=0.5, beta3=0.9)),
    ("dadapt_adam", dict(use_bias_correction=True)),
    ("dadapt_adam", dict(decouple=False, weight_decay=0.01)),
    ("dadapt_adam", dict(decouple=True, weight_decay=0.01, betas=(0.5, 0.99), growth_rate=1.02)),
    ("dadapt_sgd", dict(momentum=0.0)),
    ("dadapt_sgd", dict(momentum=0.5, weight_decay=0.01)),
    ("dadapt_adagrad", dict(momentum=0.5)),
    ("dadapt_adagrad", dict(weight_decay=0.01, growth_rate=1.05)),
    ("dog", dict()),
    ("dog", dict(init_eta=1e-3)),
    ("dog", dict(weight_decay=0.01, reps_rel=1e-4)),
    ("ldog", dict()),
    ("ldog", dict(weight_decay=0.01, init_eta=1e-3)),
    ("sf_sgd", dict(warmup_steps=10, r=1.0)),
    ("sf_adamw", dict(lr=0.01, warmup_steps=10, weight_decay=0.01)),
    ("sf_radam", dict(lr=0.01, silent_sgd_phase=False, r=1.0)),
]


@pytest.mark.parametrize("name,kw", OPTIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIONS)])
def test_parity_options(name, kw):
    init, loss_fn = make_problem(1)
    expected, _ = run_torch(_package(name, kw), init, loss_fn, 100)
    actual, _ = run_torch(lambda p: OURS[name](p, **kw, foreach=True), init, loss_fn, 100)
    assert_close(actual, expected, rtol=1e-8)
