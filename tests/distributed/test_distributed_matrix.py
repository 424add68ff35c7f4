"""Every optimizer of tests/_optim_table.py (every one in ``adaptlr.__all__``) x {FSDP2, DDP, ZeRO}, with 2 real
gloo processes on CPU, and Distributed Checkpoint resumes under FSDP2.

One spawn runs the whole matrix in one process group (``_worker``) and writes each case's outcome to a JSON
file; the tests below read it. A case:

- ``fsdp64`` / ``fsdp32``: ``fully_shard`` on each ``nn.Linear``, then on the model (uneven shards, one of them
  empty), the default engine; the parameters and the optimizer's scalar group state (``d``, ``k``, LDoG's
  lists, ...) equal those of one process holding the whole model and the whole batch: float64 to 1e-10 (relative
  to the largest entry), float32 in norm to 1e-5;
- ``mixed64``: the methods with sums (:data:`MIXED`) with the last layer left out of ``fully_shard``: a plain,
  replicated tensor beside the DTensors, whose sums must count once;
- ``ddp64``: ``DistributedDataParallel``, each rank half the batch: equal to one process, to 1e-10, and the
  replicas bit-identical;
- ``zero64``: DDP + ``ZeroRedundancyOptimizer(..., optimizer_class=X)`` (``sharded=True`` where the class has
  global sums): equal to one process, to 1e-10;
- ``dcp``: under FSDP2, 3 steps, ``get_optimizer_state_dict`` (sharded: saved and loaded with
  ``torch.distributed.checkpoint``; full: ``torch.save`` and ``torch.load(weights_only=True)``), a fresh model
  and optimizer, ``set_optimizer_state_dict``, 3 more steps: bit-identical to 6 steps without the interruption
  (also with a schedule as ``lr`` and a controller).

``test_sums_are_reduced`` checks that the matrix can tell: with the all-reduce of the sums switched off, the
methods with sums (:data:`MIXED`) under FSDP2 differ from one process by far more than 1e-10.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from _optim_table import ROWS, trainable

import adaptlr
from adaptlr import controllers, schedules

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")]

STEPS = 5
SPLIT = 2  # the resumed runs stop after this many steps
#: every row of tests/_optim_table.py; each runs with its ``example`` (non-default hyperparameters that exercise more
#: of the rule, a larger lr where the default barely moves) and, for a row that takes matrices only (Muon), trains
#: the model's matrices (the rest keep their gradients, untouched)
NAMES = list(ROWS)
#: the methods with global or per-tensor sums, also run with the last layer left out of fully_shard (a plain
#: tensor, replicated, its gradient averaged by hand): its sums must count once, not once per rank
MIXED = [row.name for row in ROWS.values() if row.sums]
MODES = ("fsdp64", "fsdp32", "mixed64", "ddp64", "zero64", "dcp")
#: extra resume cases: (name, class, kwargs) with a schedule as lr, and a controller driven by the loss
EXTRA = {
    "Adam+warmup-cosine+plateau": ("Adam", dict(lr=schedules.warmup(schedules.cosine(1e-2, 20), 2))),
    "Prodigy+cosine+plateau": ("Prodigy", dict(lr=schedules.cosine(1.0, 20), d0=1e-3)),
}


def _skip(mode: str, name: str) -> str | None:
    """Why the matrix cannot run ``name`` under ``mode`` (None: it runs)."""
    row = ROWS[name]
    if row.sparse_grads:
        return f"{name} takes only sparse gradients (nn.Embedding(sparse=True)), which FSDP2 and DDP do not produce"
    if mode == "zero64" and row.needs_closure:
        return (
            "under ZeroRedundancyOptimizer each rank's L-BFGS calls the closure (a DDP forward and backward, with "
            "collectives) as often as its own partition needs, so the ranks' collectives do not pair up "
            "(torch.optim.LBFGS alike)"
        )
    return None


def _known_failure(mode: str, name: str) -> str | None:
    """A known bug outside the sharding code, as a strict xfail (a fix turns it into a failure that asks for the
    entry to be removed)."""
    if mode == "dcp" and name in ROWS and ROWS[name].needs_closure:
        return (
            "DCP's _init_optim_state creates the state of a fresh optimizer with step(closure=None); "
            "adaptlr/optim/_lbfgs.py requires a closure (torch.optim.LBFGS alike)"
        )
    return ROWS[name].known.get(mode) if name in ROWS else None


# ------------------------------------------------------------------------------------------------ one case
def _model(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)  # 7 and 3 rows: uneven shards; 1 row: rank 1's shards are empty
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)
    ).to(dtype)


def _batches(dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 5, generator=g, dtype=dtype), torch.randn(8, 1, generator=g, dtype=dtype)) for _ in range(STEPS)
    ]


def _fsdp(model: torch.nn.Module, mixed: bool = False) -> torch.nn.Module:
    """``fully_shard`` each Linear, then the model; ``mixed``: all but the last Linear, and not the model."""
    from torch.distributed.fsdp import fully_shard

    layers = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
    for layer in layers[:-1] if mixed else layers:
        fully_shard(layer)
    if not mixed:
        fully_shard(model)
    return model


def _average_plain_grads(model: torch.nn.Module) -> None:
    """What DDP would do for the parameters FSDP2 does not hold (``mixed``)."""
    for p in model.parameters():
        if p.grad is not None and not hasattr(p, "device_mesh"):
            dist.all_reduce(p.grad)
            p.grad /= 2


def _make(name: str, params, sharded: bool = False, **extra):
    row = ROWS[name]
    kw = {**row.example, **extra}
    if sharded and row.process_group:
        kw["sharded"] = True
    return row.cls, trainable(row, params), kw


def _optimizer(name: str, params, **extra):
    cls, params, kw = _make(name, params, **extra)
    return cls(params, **kw)


def _train(model, opt, batches, rank=None, plateau=None, mixed=False):
    """Steps on ``batches``; ``rank``: this rank's half of each batch (the gradients are averaged over ranks)."""
    for x, y in batches:
        if rank is not None:
            x, y = x[4 * rank : 4 * rank + 4], y[4 * rank : 4 * rank + 4]

        def closure():
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            if mixed:
                _average_plain_grads(model)
            return loss

        loss = opt.step(closure).detach()
        if plateau is not None:  # the loss of the whole batch: every rank's controller decides alike
            if rank is not None:
                dist.all_reduce(loss)
                loss /= 2
            plateau.observe(loss.item())


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach()


def _flat(model) -> torch.Tensor:
    return torch.cat([_full(p).reshape(-1).double() for p in model.parameters()])


def _scalars(opt) -> list[float]:
    """The numeric group state (``d``, ``k``, ``rbar``, ...; not lr, which is the same by construction)."""
    inner = getattr(opt, "optim", opt)  # (ZeRO's local optimizer)
    out = []
    for group in inner.param_groups:
        for k, v in sorted(group.items()):
            if k in ("params", "lr", "initial_lr") or isinstance(v, bool):
                continue
            values = v if isinstance(v, (list, tuple)) else [v]
            out += [float(x) for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return out


def _differ(got: torch.Tensor, want: torch.Tensor, norm: bool) -> float:
    """Relative difference: in norm (float32), or entrywise against the largest entry (float64)."""
    if norm:
        return float((got - want).norm() / want.norm().clamp_min(1e-300))
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))


def _scalar_differ(got: list[float], want: list[float]) -> float:
    if len(got) != len(want):
        return math.inf
    return max([abs(a - b) / max(abs(b), 1e-300) for a, b in zip(got, want) if a != b] or [0.0])


_REFERENCES: dict = {}
_UNINTERRUPTED: dict = {}


def _reference(name, dtype, batches):
    """One process, the whole model and batch (computed once per optimizer and dtype)."""
    if (name, dtype) not in _REFERENCES:
        model = _model(dtype)
        opt = _optimizer(name, model.parameters())
        _train(model, opt, batches)
        _REFERENCES[name, dtype] = _flat(model), _scalars(opt)
    return _REFERENCES[name, dtype]


def _case(mode: str, name: str, rank: int, tmp: str) -> dict:
    if mode == "dcp":
        return _resume(name, rank, tmp)
    dtype = torch.float32 if mode == "fsdp32" else torch.float64
    batches = _batches(dtype)
    want, want_scalars = _reference(name, dtype, batches)
    start = _flat(_model(dtype))
    model = _model(dtype)
    if mode.startswith(("fsdp", "mixed")):
        model = _fsdp(model, mixed=mode == "mixed64")
        opt = _optimizer(name, model.parameters())
        _train(model, opt, batches, rank, mixed=mode == "mixed64")
        if mode == "fsdp64":  # (the uninterrupted run of the resume case)
            _UNINTERRUPTED[name] = [p.to_local().clone() for p in model.parameters()]
    else:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        if mode == "zero64":
            from torch.distributed.optim import ZeroRedundancyOptimizer

            cls, params, kw = _make(name, ddp.parameters(), sharded=True)
            opt = ZeroRedundancyOptimizer(params, optimizer_class=cls, **kw)
        else:
            opt = _optimizer(name, ddp.parameters())
        _train(ddp, opt, batches, rank)
    got = _flat(model)
    out = {"params": _differ(got, want, norm=mode == "fsdp32"), "moved": _differ(want, start, norm=True)}
    if mode in ("ddp64", "zero64"):  # replicas: bit-identical across ranks
        gathered = [torch.empty_like(got) for _ in range(2)]
        dist.all_gather(gathered, got)
        out["replicas"] = bool(torch.equal(gathered[0], gathered[1]))
    if mode != "zero64":  # (ZeRO's local optimizer holds only this rank's groups' state)
        out["scalars"] = _scalar_differ(_scalars(opt), want_scalars)
    return out


def _resume(name: str, rank: int, tmp: str) -> dict:
    """Bit-identity with an uninterrupted run of runs resumed from the checkpoints of an interrupted one: a
    sharded one (``torch.distributed.checkpoint`` save / load) and a full one (``torch.save``, then
    ``torch.load(weights_only=True)``); ``name`` may be an :data:`EXTRA` case (a schedule as lr, a
    ReduceOnPlateau on the loss)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    cls_name, extra = EXTRA.get(name, (name, {}))
    with_plateau = name in EXTRA
    batches = _batches(torch.float64)

    def fresh():
        model = _fsdp(_model(torch.float64))
        opt = _optimizer(cls_name, model.parameters(), **extra)
        plateau = controllers.ReduceOnPlateau(opt, patience=0, factor=0.5) if with_plateau else None
        return model, opt, plateau

    want = _UNINTERRUPTED.get(name)
    if want is None:
        model, opt, plateau = fresh()
        _train(model, opt, batches, rank, plateau)
        want = [p.to_local().clone() for p in model.parameters()]

    model, opt, plateau = fresh()
    _train(model, opt, batches[:SPLIT], rank, plateau)
    controller = plateau.state_dict() if plateau is not None else None
    full = StateDictOptions(full_state_dict=True)
    path = os.path.join(tmp, name)
    dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}, checkpoint_id=path)
    saved = {
        "model": get_model_state_dict(model, options=full),
        "optim": get_optimizer_state_dict(model, opt, options=full),
        "controller": controller,
    }
    if rank == 0:
        torch.save(saved, path + ".pt")
    dist.barrier()
    del model, opt, plateau, saved

    out = {}
    for kind in ("sharded", "full"):
        model, opt, plateau = fresh()
        if kind == "full":
            loaded = torch.load(path + ".pt", weights_only=True)
            set_model_state_dict(model, loaded["model"], options=full)
            set_optimizer_state_dict(model, opt, loaded["optim"], options=full)
        else:
            loaded = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
            dcp.load(loaded, checkpoint_id=path)
            set_model_state_dict(model, loaded["model"])
            set_optimizer_state_dict(model, opt, loaded["optim"])
        if plateau is not None:
            plateau.load_state_dict(controller)
        _train(model, opt, batches[SPLIT:], rank, plateau)
        got = [p.to_local() for p in model.parameters()]
        out[kind] = all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        out[f"{kind}_differ"] = _differ(_cat(got), _cat(want), norm=False)
    return out


def _cat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _cases() -> list[tuple[str, str]]:
    cases = [
        (mode, name)
        for mode in MODES
        for name in NAMES
        if _skip(mode, name) is None and (mode != "mixed64" or name in MIXED)
    ]
    return cases + [("dcp", name) for name in EXTRA]


# ------------------------------------------------------------------------------------- the check of the check
def _unreduced(rank: int) -> dict:
    """FSDP2 runs with the all-reduce of the sums switched off: they must differ from one process."""
    from adaptlr.optim import _sharding

    out = {}
    original = _sharding.Layout.allreduce
    _sharding.Layout.allreduce = lambda self, values, per_tensor=False: values
    try:
        for name in MIXED:
            batches = _batches(torch.float64)
            want, want_scalars = _reference(name, torch.float64, batches)
            model = _fsdp(_model(torch.float64))
            opt = _optimizer(name, model.parameters())
            _train(model, opt, batches, rank)
            out[name] = max(_differ(_flat(model), want, False), _scalar_differ(_scalars(opt), want_scalars))
    finally:
        _sharding.Layout.allreduce = original
    return out


def _guards(rank: int) -> dict:
    """What FSDP2 parameters refuse, and a non-finite gradient on one rank's shard skipping the step on both."""
    out = {}
    for key, make in (
        ("slice_p", lambda ps: adaptlr.Prodigy(ps, slice_p=2)),
        ("process_group", lambda ps: adaptlr.Prodigy(ps, process_group=True)),
    ):
        model = _fsdp(_model(torch.float64))
        try:
            _train(model, make(model.parameters()), _batches(torch.float64)[:1], rank)
            out[key] = "accepted"
        except ValueError as e:
            out[key] = str(e)
    model = _fsdp(_model(torch.float64))
    opt = adaptlr.Prodigy(model.parameters(), nonfinite="skip")
    x, y = _batches(torch.float64)[0]
    F.mse_loss(model(x[4 * rank : 4 * rank + 4]), y[4 * rank : 4 * rank + 4]).backward()
    before = _flat(model)
    if rank == 1:
        next(model.parameters()).grad.to_local().view(-1)[0] = math.nan
    opt.step()
    out["skipped"] = opt.last_step_skipped and torch.equal(_flat(model), before)
    return out


# ------------------------------------------------------------------------------------------- the processes
def _worker(rank: int, path: str, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{path}", rank=rank, world_size=2, timeout=datetime.timedelta(minutes=4)
    )
    results = {}
    tmp = os.path.dirname(out)
    for mode, name in _cases():
        key = f"{mode}:{name}"
        start = time.perf_counter()
        try:
            results[key] = _case(mode, name, rank, tmp)
        except Exception:
            results[key] = {"error": traceback.format_exc()}
        results[key]["seconds"] = time.perf_counter() - start
        dist.barrier()  # a failed case leaves no collective half-done on the other rank
    for key, check in (("unreduced", _unreduced), ("guards", _guards)):
        try:
            results[key] = check(rank)
        except Exception:
            results[key] = {"error": traceback.format_exc()}
        dist.barrier()
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(results, f)
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no gloo teardown (it can abort after all the work; see test_free_distributed)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    path, out = str(tmp / "rendezvous"), str(tmp / "results")
    context = mp.spawn(_worker, args=(path, out), nprocs=2, join=False)
    deadline = time.monotonic() + 900  # a collective that never pairs up would otherwise wait for gloo's timeout
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the distributed matrix did not finish in 15 minutes (a hung collective?)")
    merged = {}
    for rank in range(2):
        with open(f"{out}.rank{rank}") as f:
            merged[rank] = json.load(f)
    return merged


def _known(request, mode, name):
    reason = _known_failure(mode, name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def _outcome(results, key):
    for rank in range(2):
        r = results[rank][key]
        if "error" in r:
            pytest.fail(f"rank {rank}: {r['error']}", pytrace=False)
    return results[0][key], results[1][key]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ("fsdp64", "fsdp32", "ddp64", "zero64"))
def test_sharded_run_equals_one_process(request, results, mode, name):
    if _skip(mode, name):
        pytest.skip(_skip(mode, name))
    _known(request, mode, name)
    tol = 1e-5 if mode == "fsdp32" else 1e-10
    for rank, r in enumerate(_outcome(results, f"{mode}:{name}")):
        assert r["moved"] > 1e-4, f"{name} barely moves: the comparison would be vacuous"
        assert r["params"] <= tol, f"rank {rank}: {name} under {mode} differs from one process by {r['params']:.3g}"
        if "scalars" in r:
            assert r["scalars"] <= tol, f"rank {rank}: {name}'s group state differs by {r['scalars']:.3g}"
        assert r.get("replicas", True), f"{name} under {mode}: the replicas differ"


@pytest.mark.parametrize("name", NAMES + list(EXTRA))
@pytest.mark.parametrize("kind", ("sharded", "full"))
def test_resume_equals_no_resume(request, results, kind, name):
    if name in ROWS and _skip("dcp", name):
        pytest.skip(_skip("dcp", name))
    _known(request, "dcp", name)
    for rank, r in enumerate(_outcome(results, f"dcp:{name}")):
        assert r[kind], f"rank {rank}: {name} resumed from a {kind} checkpoint differs by {r[f'{kind}_differ']:.3g}"


@pytest.mark.parametrize("name", MIXED)
def test_replicated_tensor_next_to_shards_counts_once(results, name):
    for rank, r in enumerate(_outcome(results, f"mixed64:{name}")):
        assert r["moved"] > 1e-4
        assert r["params"] <= 1e-10, (
            f"rank {rank}: {name} with a plain tensor beside DTensors differs by {r['params']:.3g}"
        )
        assert r["scalars"] <= 1e-10, f"rank {rank}: {name}'s group state differs by {r['scalars']:.3g}"


def test_sums_are_reduced(results):
    for rank in range(2):
        r = results[rank]["unreduced"]
        assert "error" not in r, r.get("error")
        for name, differ in r.items():
            assert differ > 1e-8, f"{name}: local sums give the same result, the matrix could not tell"


def test_fsdp2_guards(results):
    """slice_p > 1 and process_group are refused for DTensor parameters, saying why; a nan in one rank's shard
    of a gradient makes every rank skip the step (nonfinite="skip")."""
    for rank in range(2):
        r = results[rank]["guards"]
        assert "error" not in r, r.get("error")
        assert "slice_p=2 is not supported for DTensor" in r["slice_p"]
        assert "DTensor parameters (FSDP2) carry their device mesh" in r["process_group"]
        assert r["skipped"], f"rank {rank} did not skip the step"
