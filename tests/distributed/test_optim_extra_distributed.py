"""Adafactor, Muon and LBFGS on DTensor (FSDP2-style sharded) parameters: whole-tensor statistics, 2 gloo processes.

Adafactor's RMS of the parameter and of the update, its row / column means, and Muon's Newton–Schulz iteration
are functions of the whole tensor. With each parameter sharded over a 2-rank mesh (on its first or its last
dim), every rank's result must equal one process holding the whole tensors, and the local-shard computation
(what a per-shard optimizer would do) must not. L-BFGS's dot products, sums and maxima over its flat vectors
of local shards are all-reduced, so it too takes the steps of one process.
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_free_distributed import _spawn  # noqa: E402  (2 ranks, a rank's traceback in the failure)

import adaptlr  # noqa: E402

pytestmark = pytest.mark.slow
STEPS = 5
CASES = {  # name -> (kwargs, shapes)
    "Muon": (dict(lr=0.02, weight_decay=0.01, ns_dtype="float64"), [(6, 4), (4, 10)]),
    "Adafactor": (dict(lr=0.05, weight_decay=0.01), [(6, 4), (8,), (2, 6, 3)]),
}


def _loss(params, t):
    return sum(((p - 0.3) ** 2).sum() + 0.1 * torch.sin(3 * p + t).sum() for p in params)


def _init(shapes):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def _train(name, kw, params, engine):
    opt = getattr(adaptlr, name)(params, **kw, **engine)
    for t in range(STEPS):
        opt.zero_grad()
        _loss(params, t).backward()
        opt.step()
    return opt


def _worker(rank):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    for name, (kw, shapes) in CASES.items():
        expected = [p.requires_grad_() for p in _init(shapes)]
        _train(name, kw, expected, dict(foreach=True))
        for engine in (dict(foreach=True),):  # (the engines agree on plain tensors: test_optim_extra)
            for where in ("first", "last"):
                params = [
                    torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0 if where == "first" else p.ndim - 1)]))
                    for p in _init(shapes)
                ]
                _train(name, kw, params, engine)
                for p, e in zip(params, expected):
                    got = p.full_tensor().detach()
                    torch.testing.assert_close(
                        got,
                        e.detach(),
                        rtol=1e-10,
                        atol=1e-12,
                        msg=lambda m: f"{name} {engine} sharded on the {where} dim: {m}",
                    )
        # the local shards alone (a per-shard optimizer) give other numbers: the test can tell them apart
        local = [torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0)]).to_local().clone()) for p in _init(shapes)]
        _train(name, kw, local, dict(foreach=True))
        assert any(
            not torch.allclose(
                p.detach(), e.detach()[: p.shape[0]] if rank == 0 else e.detach()[-p.shape[0] :], rtol=1e-6
            )
            for p, e in zip(local, expected)
        ), name


def _lbfgs_run(params, full, offset=0.0):
    """8 L-BFGS steps with the strong-Wolfe line search. ``offset``: a constant added to this rank's loss (the
    ranks' losses differ, as with FSDP's per-rank batches; their mean is the loss of one process)."""
    opt = adaptlr.LBFGS(params, lr=1.0, max_iter=5, history_size=4, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = offset
        for p in params:
            term = ((p - 0.3) ** 4 + torch.sin(2 * p) + 0.5 * p**2).sum()
            loss = loss + (full(term) if full is not None else term)
        loss.backward()
        return loss

    for _ in range(8):
        opt.step(closure)
    return opt


def _lbfgs_worker(rank):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    shapes = [(7, 3), (5,), (4,)]  # uneven shards; the last stays a plain (replicated) tensor
    expected = [p.requires_grad_() for p in _init(shapes)]
    ref = _lbfgs_run(expected, None)

    def sharded():
        init = _init(shapes)
        return [torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0)])) for p in init[:2]] + [
            init[2].requires_grad_()
        ]

    def full(t):
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    params = sharded()
    opt = _lbfgs_run(params, full, offset=0.25 if rank == 0 else -0.25)
    assert opt.state[params[0]]["func_evals"] == ref.state[expected[0]]["func_evals"]
    for p, e in zip(params, expected):
        got = full(p).detach()
        torch.testing.assert_close(got, e.detach(), rtol=1e-10, atol=1e-12, msg=lambda m: f"LBFGS under FSDP2: {m}")
    # L-BFGS on this rank's shards alone (its own dot products; no collectives): other steps, the test can tell
    local = [torch.nn.Parameter(p.to_local().detach().clone()) if hasattr(p, "to_local") else p for p in sharded()]
    _lbfgs_run(local, None)
    mine = [e.detach()[: p.shape[0]] if rank == 0 else e.detach()[-p.shape[0] :] for p, e in zip(local, expected)]
    assert any(not torch.allclose(p.detach(), m, rtol=1e-6) for p, m in zip(local, mine))


def test_whole_tensor_statistics_on_dtensor_shards():
    _spawn(_worker)


def test_lbfgs_on_dtensor_shards_equals_one_process():
    _spawn(_lbfgs_worker)
