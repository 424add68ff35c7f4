"""Lion, AdaBelief and LAMB against lion-pytorch and pytorch-optimizer: 200 steps, random hyperparameters,
every engine, float64 (rtol 1e-8) and float32 (rtol 1e-5)."""

import numpy as np
import pytest
import torch
from test_free_common import HPARAMS, assert_close, make_problem, run_torch

from adaptlr import free

lion_pytorch = pytest.importorskip("lion_pytorch")
pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

CASES = {
    "lion": (free.Lion, lambda p, **kw: lion_pytorch.Lion(p, **kw), HPARAMS["lion"]),
    "adabelief": (free.AdaBelief, lambda p, **kw: pytorch_optimizer.AdaBelief(p, **kw), HPARAMS["adabelief"]),
    # lamb: larger lr: chaotic, rounding grows
    "lamb": (free.LAMB, lambda p, **kw: pytorch_optimizer.Lamb(p, **kw), HPARAMS["lamb"]),
}
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name", list(CASES))
def test_parity_float64(name, engine):
    ours, theirs, hp = CASES[name]
    kw = hp(np.random.default_rng(len(name)))
    init, loss_fn = make_problem(1)
    expected, _ = run_torch(lambda p: theirs(p, **kw), init, loss_fn, 200)
    actual, opt = run_torch(lambda p: ours(p, **kw, **ENGINES[engine]), init, loss_fn, 200)
    assert_close(actual, expected, rtol=1e-8)
    assert opt.effective_lr() > 0


@pytest.mark.parametrize("name", list(CASES))
def test_parity_float32(name):
    ours, theirs, hp = CASES[name]
    kw = hp(np.random.default_rng(len(name)))
    init, loss_fn = make_problem(1, dtype=torch.float32, scale=100.0)
    expected, _ = run_torch(lambda p: theirs(p, **kw), init, loss_fn, 200)
    actual, _ = run_torch(lambda p: ours(p, **kw), init, loss_fn, 200)
    assert_close(actual, expected, rtol=1e-5)
