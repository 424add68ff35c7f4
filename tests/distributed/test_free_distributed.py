"""Shard-correct global statistics and replica consistency, with 2 processes on the gloo backend.

- manual split: rank r holds every other parameter; with ``process_group`` set, its steps equal those of one
  process holding all parameters (and without it they do not: the reference packages' failure mode);
- ZeRO: ``ZeroRedundancyOptimizer(..., optimizer_class=X, sharded=True)`` equals the single-process run.

Every optimizer under FSDP2, DDP and ZeRO, and checkpoint resumes, are in ``test_distributed_matrix.py``.
"""

import datetime
import glob
import os
import sys
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _free_common import make_problem, run_torch  # noqa: E402
from _optim_table import ROWS  # noqa: E402

import adaptlr  # noqa: E402

STEPS = 30
#: the methods with global sums over a group's tensors (process_group / sharded), and non-default settings that
#: exercise them (each row's example, tests/_optim_table.py)
SHARDED = {row.name: row.example for row in ROWS.values() if row.sums == "global" and row.process_group}


def _rendezvous():
    """A file rendezvous: free TCP ports found in advance can be taken by other processes before the store binds
    them (seen on a shared machine as a SIGABRT in rank 0); the gloo pairs still connect over 127.0.0.1."""
    fd, path = tempfile.mkstemp(prefix="adaptlr_gloo_")
    os.close(fd)
    os.unlink(path)
    return path


def _init(rank, path):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    # generous: under load (pytest -n 2, Numba compiling into a cold cache) a rank can be minutes late
    timeout = datetime.timedelta(minutes=4)  # (a deadlocked collective fails the test within minutes)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2, timeout=timeout)


def _main(rank, worker, path):
    """Run ``worker(rank)`` in a process group. A failure is written to ``<path>.rank<r>`` before anything of
    gloo is torn down, so the test shows its message even when the teardown then aborts the process."""
    _init(rank, path)
    try:
        worker(rank)
    except BaseException:
        with open(f"{path}.rank{rank}", "w") as f:
            f.write(traceback.format_exc())
        _leave(1)  # no destroy_process_group: the peer may be blocked in a collective, and gloo can abort
    dist.barrier()
    _leave(0)


def _leave(code):
    """Exit without running gloo's destructors: on this machine the normal teardown aborted ("terminate
    called without an active exception") in about one run in five, after all the work."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _spawn(worker):
    """Run ``worker`` on 2 ranks; a rank's failure fails the test with that rank's traceback."""
    path = _rendezvous()
    try:
        mp.spawn(_main, args=(worker, path), nprocs=2, join=True)
    except Exception as e:
        reports = []
        for report in sorted(glob.glob(f"{path}.rank*")):
            with open(report) as f:
                reports.append(f"--- {report.rsplit('.', 1)[1]}\n{f.read()}")
        if reports:
            pytest.fail(f"{e}\n" + "\n".join(reports), pytrace=False)
        raise
    finally:
        for leftover in glob.glob(f"{path}*"):
            os.unlink(leftover)


def _close(a, b, rtol=1e-10):
    scale = max(float(x.detach().abs().max()) for x in b)
    return all(torch.allclose(x.detach(), y.detach(), rtol=rtol, atol=rtol * scale) for x, y in zip(a, b))


def _manual_split(rank, name, kw, process_group):
    init, loss_fn = make_problem(1)
    params = [p.clone().requires_grad_(True) for p in init]
    mine = [p for i, p in enumerate(params) if i % 2 == rank]
    opt = getattr(adaptlr, name)(mine, foreach=True, process_group=process_group, **kw)
    for _ in range(STEPS):
        for p in params:
            p.grad = None
        loss_fn(params).backward()
        opt.step()
        with torch.no_grad():
            for i, p in enumerate(params):
                dist.broadcast(p, src=i % 2)
    return params


def _zero(rank, name, kw):
    from torch.distributed.optim import ZeroRedundancyOptimizer

    init, loss_fn = make_problem(1)
    params = [p.clone().requires_grad_(True) for p in init]
    opt = ZeroRedundancyOptimizer(params, optimizer_class=getattr(adaptlr, name), foreach=True, sharded=True, **kw)
    assert 0 < len(opt.optim.param_groups[0]["params"]) < len(params)  # really sharded
    for _ in range(STEPS):
        opt.zero_grad()
        loss_fn(params).backward()
        opt.step()
    return params


def _sharded_worker(rank):
    for name, kw in SHARDED.items():
        init, loss_fn = make_problem(1)
        expected, _ = run_torch(lambda p: getattr(adaptlr, name)(p, foreach=True, **kw), init, loss_fn, STEPS)
        got = _manual_split(rank, name, kw, process_group=True)
        assert _close(got, expected), f"{name}: manual split differs from one process"
        unreduced = _manual_split(rank, name, kw, process_group=None)
        assert not _close(unreduced, expected, rtol=1e-6), f"{name}: the test cannot tell local sums apart"
        got = _zero(rank, name, kw)
        assert _close(got, expected), f"{name}: ZeRO differs from one process"


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_sharded_statistics_equal_one_process():
    _spawn(_sharded_worker)
