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


def _main(rank, worker, path, world=2):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    timeout = datetime.timedelta(minutes=4)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world, timeout=timeout)
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


def _spawn(worker, world=2):
    fd, path = tempfile.mkstemp(prefix="adaptlr_auto_gloo_")
    os.close(fd)
    os.unlink(path)
    try:
        mp.spawn(_main, args=(worker, path, world), nprocs=world, join=True)
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
    out = [None] * dist.get_world_size()
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


def _planning_inputs_worker(rank):
    """Each rank's own loop cost (Auto's bookkeeping around a step, timed on that rank) differs; whether a candidate
    past an edge, or a longer look, is afforded is decided at rank 0's, so every rank races the same candidates."""
    from adaptlr.auto import Auto, Meter, Racer, TrainStep, _extend, build_race

    train, val = _shards(rank)
    race = build_race(
        Auto(), nn.parallel.DistributedDataParallel(_net()), train, val, STEPS, TrainStep(loss_fn=F.mse_loss)
    )
    Meter.loop_cost = property(lambda self: 1.0 + 40.0 * rank)  # (rank 1: an extension it alone cannot afford)
    race.spent = lambda: 10.0
    race.start_score = 1.0
    race.racers = [Racer(lr, scores=[(race.plan.rung1, v)]) for lr, v in ((1e-2, 0.5), (3e-2, 0.4), (1e-1, 0.3))]
    assert _extend._loop_cost(race) == 1.0
    decided = _gathered(_extend.next_edge(race, upward=True, added=0))
    assert decided[0] == decided[1] == 0.32, decided


def test_every_rank_affords_an_extension_at_rank_0s_loop_cost():
    _spawn(_planning_inputs_worker)


def _groups_worker(rank):
    """race_groups=2 on 2 ranks: each rank races its share of the candidates on rank 0's batches, and every
    candidate's record is the one a race on one process, with rank 0's data, gives."""
    from adaptlr.auto import Auto

    solo = dist.new_group([0])  # (a one-rank group: the reference race on rank 0 alone)
    train, val = _shards(rank)
    model = nn.parallel.DistributedDataParallel(_net())
    result = Auto().fit(model, F.mse_loss, train, val, steps=STEPS, val_cost=2.0, race_groups=2)
    a, b = _gathered((result.lr, result.committed, result.plan.as_dict(), [r.scores for r in result.racers]))
    assert repr(a) == repr(b), f"the ranks decided differently: {a} / {b}"
    params = _gathered([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*params, strict=True):
        assert torch.equal(p, q)
    assert set(result.phase_seconds) == {"rung1", "rung2", "run"}
    if rank == 0:
        train0, val0 = _shards(0)
        ref = Auto().fit(_net(), F.mse_loss, train0, val0, steps=STEPS, val_cost=2.0, process_group=solo)
        assert result.lr == ref.lr
        assert repr([(r.lr, r.scores) for r in result.racers]) == repr([(r.lr, r.scores) for r in ref.racers])
        assert result.train_steps < ref.train_steps - 2 * result.plan.rung1  # (each rank trained its share)


def _groups_refusals_worker(rank):
    from torch.distributed.fsdp import fully_shard

    from adaptlr.auto import Auto

    train, val = _shards(rank)
    model = nn.parallel.DistributedDataParallel(_net())
    with pytest.raises(ValueError, match="race_groups"):
        Auto().fit(model, F.mse_loss, train, val, steps=STEPS, race_groups=3)
    with pytest.raises(ValueError, match="validation batches"):
        Auto().fit(model, F.mse_loss, train, lambda m: 0.0, steps=STEPS, race_groups=2)
    with pytest.raises(ValueError, match="resume"):
        Auto().fit(model, F.mse_loss, train, val, steps=STEPS, race_groups=2, checkpoint_dir=tempfile.mkdtemp())
    sharded = _net()
    fully_shard(sharded)
    with pytest.raises(ValueError, match="sharded"):
        Auto().fit(sharded, F.mse_loss, train, val, steps=STEPS, race_groups=2)


def _one_rank_nan_worker(rank):
    """A non-finite loss on one rank alone (a corrupt batch in its shard, during the run): every rank still makes
    the same collective calls (the backward runs, the divergence is decided together before the step), so
    nothing hangs, and the run rolls back and goes on, the replicas identical."""
    from adaptlr.auto import Auto

    train, val = _shards(rank)
    if rank == 1:
        x, y = train[10]
        train[10] = (torch.full_like(x, float("inf")), y)  # (taken during the run: 60 steps over 16 batches)
    model = nn.parallel.DistributedDataParallel(_net())
    result = Auto(budget=2.0).fit(model, F.mse_loss, train, val, steps=STEPS, val_cost=2.0)
    assert any("rolled back" in w for w in result.warnings), result.warnings
    params = _gathered([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*params, strict=True):
        assert torch.isfinite(p).all() and torch.equal(p, q)


def test_a_nonfinite_loss_on_one_rank_does_not_hang_and_rolls_back():
    _spawn(_one_rank_nan_worker)


def _four_shards(shard):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * 700, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 1, generator=g)) + 0.05 * torch.randn(4 * 700, 1, generator=g)
    lo = shard * 700
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(lo, lo + 512, 32)]
    val = [(x[i : i + 25], y[i : i + 25]) for i in range(lo + 512, lo + 700 - 13, 25)]
    return train, val


def _four_ranks_worker(rank):
    """4 ranks in 2 groups of 2 (gradients averaged within each group, the batches of group 1's ranks those of
    group 0's at the same position): what group 1's ranks hold of their own does not change the race."""
    from adaptlr.auto import Auto

    records = []
    for shard in (rank % 2, rank):  # (ranks 2 and 3 with the data of 0 and 1, then with their own)
        train, val = _four_shards(shard)
        model = nn.parallel.DistributedDataParallel(_net())
        result = Auto(keep=2).fit(model, F.mse_loss, train, val, steps=STEPS, val_cost=2.0, race_groups=2)
        records.append(repr([(r.lr, r.scores) for r in result.racers]))
        params = _gathered([p.detach().clone() for p in model.parameters()])
        for other in params[1:]:
            assert all(torch.equal(p, q) for p, q in zip(params[0], other, strict=True))
    assert records[0] == records[1], records
    assert len(set(_gathered(records[0]))) == 1


def test_racing_in_groups_of_two_ranks_races_on_group_zeros_data():
    _spawn(_four_ranks_worker, world=4)


def test_racing_in_groups_spreads_candidates_and_matches_a_one_process_race():
    _spawn(_groups_worker)


def test_racing_in_groups_refuses_what_it_cannot_do():
    _spawn(_groups_refusals_worker)
