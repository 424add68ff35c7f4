"""adaptlr.Auto under torch.distributed (issue 20): with real 2-process gloo groups, DDP and FSDP2, each rank
racing on its own training and validation shards, every rank makes the same decisions (scores all-reduced,
divergence decided together, plans from rank 0's measurements) and the replicas end identical."""

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
from torch import nn
from torch.nn import functional as F

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")]
STEPS = 60


def _main(rank, worker, path):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    timeout = datetime.timedelta(minutes=4)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2, timeout=timeout)
    try:
        worker(rank)
    except BaseException:
        with open(f"{path}.rank{rank}", "w") as f:
            f.write(traceback.format_exc())
        sys.stdout.flush()
        os._exit(1)
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)  # (gloo's teardown can abort after all the work: skip it)


def _spawn(worker):
    fd, path = tempfile.mkstemp(prefix="adaptlr_auto_gloo_")
    os.close(fd)
    os.unlink(path)
    try:
        mp.spawn(_main, args=(worker, path), nprocs=2, join=True)
    except Exception as e:
        reports = []
        for report in sorted(glob.glob(f"{path}.rank*")):
            with open(report) as f:
                reports.append(f.read())
        pytest.fail(f"{e}\n" + "\n".join(reports), pytrace=False)
    finally:
        for leftover in glob.glob(f"{path}*"):
            os.unlink(leftover)


def _shards(rank):
    """Each rank its own training and validation rows (different sizes: the validation counts differ)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1_400, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 1, generator=g)) + 0.05 * torch.randn(1_400, 1, generator=g)
    lo = rank * 512
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(lo, lo + 512, 32)]
    vlo, vn = 1_024 + rank * 200, 200 if rank == 0 else 150
    val = [(x[i : i + 25], y[i : i + 25]) for i in range(vlo, vlo + vn, 25)]
    return train, val


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def _gathered(values):
    out = [None, None]
    dist.all_gather_object(out, values)
    return out


def _ddp_worker(rank):
    from adaptlr.auto import Auto

    train, val = _shards(rank)
    model = nn.parallel.DistributedDataParallel(_net())
    result = Auto().fit(model, F.mse_loss, train, val, steps=STEPS)  # timed: rank 0's measurements plan
    a, b = _gathered((result.lr, result.committed, result.plan.as_dict(), [r.scores for r in result.racers]))
    assert repr(a) == repr(b), f"the ranks decided differently: {a} / {b}"  # (repr: a late racer's nan)
    params = _gathered([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*params, strict=True):
        assert torch.equal(p, q)


def _fsdp_worker(rank):
    from torch.distributed.fsdp import fully_shard

    from adaptlr.auto import Auto

    train, val = _shards(rank)
    model = _net()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    result = Auto(keep=2).fit(model, F.mse_loss, train, val, steps=STEPS, max_grad_norm=1.0)
    a, b = _gathered((result.lr, result.committed, result.plan.as_dict(), [r.scores for r in result.racers]))
    assert repr(a) == repr(b), f"the ranks decided differently: {a} / {b}"  # (repr: a late racer's nan)
    full = {k: v.full_tensor() for k, v in model.state_dict().items()}
    other = _gathered(full)
    for k in full:
        assert torch.equal(other[0][k], other[1][k]), k


def test_ddp_every_rank_decides_the_same_and_replicas_stay_identical():
    _spawn(_ddp_worker)


def test_fsdp2_every_rank_decides_the_same():
    _spawn(_fsdp_worker)
