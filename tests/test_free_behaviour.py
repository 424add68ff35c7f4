"""Behaviour of adaptlr.free beyond parity: Schedule-Free modes and checkpoints, per-group estimates,
state_dict round trips, validation, the iterate averager, the batch-norm helper."""

import copy
import io
import math

import pytest
import torch
from test_free_common import make_problem, run_torch

from adaptlr import free

SF = [free.ScheduleFreeSGD, free.ScheduleFreeAdamW, free.ScheduleFreeRAdam]
ALL = [
    free.Prodigy,
    free.DAdaptSGD,
    free.DAdaptAdam,
    free.DAdaptAdaGrad,
    free.DoG,
    free.LDoG,
    *SF,
    free.Lion,
    free.AdaBelief,
    free.LAMB,
]


def _train(opt_cls, steps=30, seed=0, **kw):
    init, loss_fn = make_problem(seed)
    kw.setdefault("lr", 0.01) if opt_cls in SF[1:] else None
    return (*run_torch(lambda p: opt_cls(p, **kw), init, loss_fn, steps), loss_fn)


# ------------------------------------------------------------------------------------------- Schedule-Free
@pytest.mark.parametrize("cls", SF)
def test_eval_then_train_is_bit_identical(cls):
    params, opt, _ = _train(cls)
    before = [p.detach().clone() for p in params]
    opt.eval()
    assert any(not torch.equal(p, b) for p, b in zip(params, before))  # eval really moved to x
    opt.eval()  # idempotent
    opt.train()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all("y" not in opt.state[p] for p in params)  # the copy is freed


@pytest.mark.parametrize("cls", SF)
def test_eval_point_is_the_package_average(cls):
    """In eval mode the parameters hold x = (y - (1 - beta) z) / beta, as the package's eval() computes."""
    params, opt, _ = _train(cls)
    beta = opt.param_groups[0].get("momentum") or opt.param_groups[0]["betas"][0]
    expected = [(p.detach() - (1 - beta) * opt.state[p]["z"]) / beta for p in params]
    with opt.evaluating():
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-12)
    assert all(opt.param_groups[i]["train_mode"] for i in range(len(opt.param_groups)))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("cls", SF)
def test_state_dict_in_either_mode_resumes_identically(cls, mode):
    init, loss_fn = make_problem(1)
    kw = {} if cls is free.ScheduleFreeSGD else dict(lr=0.01)
    params, opt = run_torch(
        lambda p: cls(p, warmup_steps=5, **kw) if cls is not free.ScheduleFreeRAdam else cls(p, **kw),
        init,
        loss_fn,
        20,
    )
    if mode == "eval":
        opt.eval()
    buf = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()}, buf)

    def cont(ps, o, steps=15):
        o.train()
        for _ in range(steps):
            o.zero_grad()
            loss_fn(ps).backward()
            o.step()
        return [p.detach().clone() for p in ps]

    expected = cont(params, opt)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    params2 = [p.clone().requires_grad_(True) for p in ckpt["params"]]
    opt2 = cls(params2, **kw)
    opt2.load_state_dict(ckpt["opt"])
    assert all(torch.equal(a, b) for a, b in zip(cont(params2, opt2), expected))


def test_step_in_eval_mode_raises():
    params, opt, loss_fn = _train(free.ScheduleFreeAdamW)
    opt.eval()
    loss_fn(params).backward()
    with pytest.raises(RuntimeError, match="train mode"):
        opt.step()


def test_recalibrate_batchnorm_uses_the_averaged_point():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    ).double()
    opt = free.ScheduleFreeAdamW(model.parameters(), lr=0.05)
    data = [torch.randn(16, 4, dtype=torch.float64) for _ in range(5)]
    for x in data * 4:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    y_params = [p.detach().clone() for p in model.parameters()]
    free.recalibrate_batchnorm(model, opt, data)
    # the statistics are the exact average over the batches of the first layer's output at x
    with opt.evaluating():
        h = torch.cat([model[0](x) for x in data]).detach()
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, torch.stack([model_x.mean(0) for model_x in h.split(16)]).mean(0))
    assert bn.momentum == 0.1 and model.training
    assert all(torch.equal(p, y) for p, y in zip(model.parameters(), y_params))  # back at y, in train mode


# --------------------------------------------------------------------------------------- per-group d
@pytest.mark.parametrize("cls", [free.Prodigy, free.DAdaptAdam, free.DAdaptSGD, free.DAdaptAdaGrad])
def test_per_group_d_is_the_method_run_on_each_group(cls):
    """With per_group_d=True, each group takes exactly the steps of a separate optimizer on that group."""
    init, loss_fn = make_problem(3)
    idx = [[0, 2], [1, 3]]
    groups = [(i, {}) for i in idx]
    params, opt = run_torch(lambda p: cls(p, per_group_d=True), init, loss_fn, 40, groups=groups)
    ps = [p.detach().clone().requires_grad_(True) for p in init]
    opts = [cls([ps[i] for i in ix]) for ix in idx]
    for _ in range(40):
        for o in opts:
            o.zero_grad()
        loss_fn(ps).backward()
        for o in opts:
            o.step()
    for a, b in zip(params, ps):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-12)
    ds = [g["d"] for g in opt.param_groups]
    assert ds[0] != ds[1]
    assert [opt.effective_lr(i) for i in range(2)] == pytest.approx([o.effective_lr() for o in opts])


def test_dog_one_estimate_for_all_groups():
    init, loss_fn = make_problem(3)
    groups = [([0, 2], {}), ([1, 3], {})]
    a, opt = run_torch(lambda p: free.DoG(p, per_group_d=False), init, loss_fn, 30, groups=groups)
    b, _ = run_torch(lambda p: free.DoG(p), init, loss_fn, 30)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-12, atol=1e-12)
    assert opt.param_groups[0]["eta"] == opt.param_groups[1]["eta"]


# ----------------------------------------------------------------------------------- checkpoints, misc
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_state_dict_round_trip_is_bit_identical(cls):
    init, loss_fn = make_problem(2)
    params, opt = run_torch(lambda p: cls(p), init, loss_fn, 10)
    params2 = [p.detach().clone().requires_grad_(True) for p in params]
    opt2 = cls(params2)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    for ps, o in ((params, opt), (params2, opt2)):
        for _ in range(10):
            o.zero_grad()
            loss_fn(ps).backward()
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(params, params2))
    assert opt.effective_lr() == opt2.effective_lr() and math.isfinite(opt.effective_lr())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_effective_lr_and_lr_scale(cls):
    """Controllers scale the lr (group['lr'] holds the cut); effective_lr reports the scaled value."""
    init, loss_fn = make_problem(0)
    params, opt = run_torch(lambda p: cls(p), init, loss_fn, 5)
    base = opt.effective_lr()
    assert base > 0
    if cls in (free.DoG, free.LDoG):
        return  # DoG reports the step size of the last step
    opt.param_groups[0]["lr"] *= 0.5
    assert opt.effective_lr() == pytest.approx(0.5 * base)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (free.Prodigy, dict(d0=0)),
        (free.Prodigy, dict(betas=(1.0, 0.9))),
        (free.Prodigy, dict(slice_p=0)),
        (free.DAdaptAdam, dict(eps=-1)),
        (free.DAdaptSGD, dict(momentum=1.0)),
        (free.DoG, dict(reps_rel=0)),
        (free.DoG, dict(init_eta=-1.0)),
        (free.ScheduleFreeAdamW, dict(warmup_steps=-1)),
        (free.ScheduleFreeSGD, dict(momentum=0.0)),
        (free.DAdaptAdaGrad, dict(growth_rate=0.5)),
    ],
)
def test_validation_names_the_parameter(cls, kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name.split("_")[0]):
        cls([torch.zeros(2, requires_grad=True)], **kw)


def test_nonfinite_skip_leaves_everything_untouched():
    params, opt, loss_fn = _train(free.Prodigy, steps=5, nonfinite="skip")
    before = copy.deepcopy(opt.state_dict())
    values = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, math.nan)
    opt.step()
    assert opt.last_step_skipped
    assert all(torch.equal(p, v) for p, v in zip(params, values))
    assert opt.state_dict()["param_groups"][0]["d"] == before["param_groups"][0]["d"]


def test_dadapt_sgd_measures_g0_on_the_first_step_taken():
    """A first step skipped for an inf gradient does not measure ||g_0|| (it would be inf: the lr 0 for ever)."""
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = free.DAdaptSGD([p], nonfinite="skip")
    p.grad = torch.full_like(p, math.inf)
    opt.step()
    assert opt.last_step_skipped and not opt.param_groups[0]["g0_norm"]  # (0: not measured yet)
    p.grad = torch.full_like(p, 2.0)
    opt.step()
    assert opt.param_groups[0]["g0_norm"] == pytest.approx(math.sqrt(12.0)) and opt.effective_lr() > 0


def test_polynomial_averager_matches_package_and_copies_int_buffers():
    dog = pytest.importorskip("dog")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    ours, theirs = (
        free.PolynomialDecayAverager(model, gamma=8.0),
        dog.PolynomialDecayAverager(model, gamma=8.0),
    )
    for _ in range(10):
        model(torch.randn(5, 3, dtype=torch.float64))  # moves the batch-norm buffers and counter
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.step()
        theirs.step()
    for (k, a), b in zip(ours.averaged_model.state_dict().items(), theirs.averaged_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14, msg=k)
    state = ours.state_dict()
    other = free.PolynomialDecayAverager(copy.deepcopy(model))
    other.load_state_dict(state)
    assert other.t == ours.t == 11


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_engines_agree(cls):
    """fused, foreach and loop run the same rule: equal to 1e-12 in float64 (20 steps, two groups); 1e-9 for the
    methods with global sums, whose summation order differs between engines (and d amplifies it)."""
    init, loss_fn = make_problem(4)
    groups = [([0, 1], {}), ([2, 3], {})]
    kw = dict(lr=0.01) if cls in (free.ScheduleFreeAdamW, free.ScheduleFreeRAdam, free.AdaBelief, free.LAMB) else {}
    runs = [
        run_torch(lambda p: cls(p, **kw, **eng), init, loss_fn, 20, groups=groups)[0]
        for eng in (dict(fused=True), dict(foreach=True), dict(foreach=False))
    ]
    tol = 1e-12 if cls in (*SF, free.Lion, free.AdaBelief) else 1e-9
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adam", "sf_adamw", "sf_sgd"])
def test_checkpoint_from_the_package_continues_identically(name):
    """A state_dict of the reference package loads into ours (same state names and group keys) and continues
    as the package does."""
    from test_free_parity import OURS, _hparams, _package

    kw = _hparams(name, 1)
    init, loss_fn = make_problem(1)
    params, theirs = run_torch(_package(name, kw), init, loss_fn, 10)
    mine = [p.detach().clone().requires_grad_(True) for p in params]
    ours = OURS[name](mine, **kw)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for ps, o in ((params, theirs), (mine, ours)):
        for _ in range(20):
            o.zero_grad()
            loss_fn(ps).backward()
            o.step()
    for a, b in zip(mine, params):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------- validation (properties)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALID = {
    free.Prodigy: dict(
        d0=st.floats(1e-12, 1.0),
        d_coef=st.floats(0.1, 10),
        growth_rate=st.floats(1.0, 1e3),
        eps=st.floats(1e-12, 1e-3),
        weight_decay=st.floats(0, 1),
        slice_p=st.integers(1, 20),
    ),
    free.DAdaptAdam: dict(
        d0=st.floats(1e-12, 1.0),
        growth_rate=st.floats(1.0, 1e3),
        eps=st.floats(1e-12, 1e-3),
        weight_decay=st.floats(0, 1),
    ),
    free.DoG: dict(reps_rel=st.floats(1e-12, 1.0), weight_decay=st.floats(0, 1), eps=st.floats(0, 1e-3)),
    free.ScheduleFreeAdamW: dict(
        lr=st.floats(0, 1),
        warmup_steps=st.integers(0, 10_000),
        r=st.floats(0, 4),
        weight_lr_power=st.floats(0, 4),
        weight_decay=st.floats(0, 1),
    ),
}
_INVALID = {
    free.Prodigy: dict(
        d0=st.floats(max_value=0.0),
        d_coef=st.floats(max_value=0.0),
        growth_rate=st.floats(max_value=0.999),
        eps=st.floats(max_value=0.0),
        weight_decay=st.floats(max_value=-1e-12),
        slice_p=st.integers(max_value=0),
    ),
    free.DAdaptAdam: dict(
        d0=st.floats(max_value=0.0),
        growth_rate=st.floats(max_value=0.999),
        weight_decay=st.floats(max_value=-1e-12),
    ),
    free.DoG: dict(reps_rel=st.floats(max_value=0.0), weight_decay=st.floats(max_value=-1e-12)),
    free.ScheduleFreeAdamW: dict(
        warmup_steps=st.integers(max_value=-1),
        r=st.floats(max_value=-1e-12),
        weight_decay=st.floats(max_value=-1e-12),
    ),
}


@pytest.mark.parametrize("cls", list(_VALID), ids=lambda c: c.__name__)
def test_any_valid_hyperparameters_construct(cls):
    @settings(max_examples=30, deadline=None)
    @given(st.fixed_dictionaries(_VALID[cls]))
    def check(kw):
        cls([torch.zeros(3, requires_grad=True)], **kw)

    check()


@pytest.mark.parametrize("cls", list(_INVALID), ids=lambda c: c.__name__)
def test_any_invalid_hyperparameter_raises_naming_it(cls):
    @settings(max_examples=30, deadline=None)
    @given(st.sampled_from(sorted(_INVALID[cls])).flatmap(lambda k: st.tuples(st.just(k), _INVALID[cls][k])))
    def check(item):
        name, value = item
        with pytest.raises(ValueError, match=name):
            cls([torch.zeros(3, requires_grad=True)], **{name: value})

    check()


def test_deepcopy_keeps_per_group_d():
    opt = free.Prodigy([torch.zeros(2, requires_grad=True)], per_group_d=True)
    assert copy.deepcopy(opt).per_group_d is True


@pytest.mark.parametrize("cls", [free.Prodigy, free.DAdaptAdam, free.DAdaptSGD, free.DAdaptAdaGrad])
def test_warmup_from_zero_lr_does_not_stall(cls):
    """lr(0) = 0 makes every sum 0 (the packages then skip the step); the schedule clock still advances."""
    init, loss_fn = make_problem(0)
    params, opt = run_torch(lambda p: cls(p, lr=lambda step: min(1.0, step / 5)), init, loss_fn, 30)
    assert opt.param_groups[0]["adaptlr_steps"] == 30
    assert opt.effective_lr() > 0
    assert any(not torch.equal(p.detach(), i) for p, i in zip(params, init))
