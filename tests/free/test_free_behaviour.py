"""Behaviour of the learning-rate-free methods and the other adaptive rules beyond parity: Schedule-Free modes and
checkpoints, per-group estimates, effective_lr, warm-up from a zero lr, the iterate averager, the batch-norm helper
(the rows of tests/_optim_table.py with these capabilities).

(Checkpoint round trips, checkpoints of the packages, validation, the non-finite policy and engine agreement run in
the shared sweeps: tests/test_optim_contract.py, test_optim_validation.py, test_optim_parity.py.)
"""

import copy
import io
import math

import pytest
import torch
from _free_common import make_problem, run_torch
from _optim_table import make, rows

import adaptlr


def _train(row, steps=30, seed=0, **kw):
    init, loss_fn = make_problem(seed)
    return (*run_torch(lambda p: make(row, p, **{**row.example, **kw}), init, loss_fn, steps), loss_fn)


# ------------------------------------------------------------------------------------------- Schedule-Free
SF = rows(lambda r: r.schedule_free)


@pytest.mark.parametrize("row", SF)
def test_eval_then_train_is_bit_identical(row):
    params, opt, _ = _train(row)
    before = [p.detach().clone() for p in params]
    opt.eval()
    assert any(not torch.equal(p, b) for p, b in zip(params, before))  # eval really moved to x
    opt.eval()  # idempotent
    opt.train()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all("y" not in opt.state[p] for p in params)  # the copy is freed


@pytest.mark.parametrize("row", SF)
def test_eval_point_is_the_package_average(row):
    """In eval mode the parameters hold x = (y - (1 - beta) z) / beta, as the package's eval() computes."""
    params, opt, _ = _train(row)
    beta = opt.param_groups[0].get("momentum") or opt.param_groups[0]["betas"][0]
    expected = [(p.detach() - (1 - beta) * opt.state[p]["z"]) / beta for p in params]
    with opt.evaluating():
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-12)
    assert all(opt.param_groups[i]["train_mode"] for i in range(len(opt.param_groups)))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("row", SF)
def test_state_dict_in_either_mode_resumes_identically(row, mode):
    init, loss_fn = make_problem(1)
    warmup = dict(warmup_steps=5) if "warmup_steps" in row.counts else {}
    params, opt = run_torch(lambda p: make(row, p, **{**row.example, **warmup}), init, loss_fn, 20)
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
    opt2 = make(row, params2, **row.example)  # (the warm-up comes from the checkpoint)
    opt2.load_state_dict(ckpt["opt"])
    assert all(torch.equal(a, b) for a, b in zip(cont(params2, opt2), expected))


@pytest.mark.parametrize("row", SF)
def test_step_in_eval_mode_raises(row):
    params, opt, loss_fn = _train(row)
    opt.eval()
    loss_fn(params).backward()
    with pytest.raises(RuntimeError, match="train mode"):
        opt.step()


def test_recalibrate_batchnorm_uses_the_averaged_point():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    ).double()
    opt = adaptlr.ScheduleFreeAdamW(model.parameters(), lr=0.05)
    data = [torch.randn(16, 4, dtype=torch.float64) for _ in range(5)]
    for x in data * 4:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    y_params = [p.detach().clone() for p in model.parameters()]
    adaptlr.recalibrate_batchnorm(model, opt, data)
    # the statistics are the exact average over the batches of the first layer's output at x
    with opt.evaluating():
        h = torch.cat([model[0](x) for x in data]).detach()
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, torch.stack([model_x.mean(0) for model_x in h.split(16)]).mean(0))
    assert bn.momentum == 0.1 and model.training
    assert all(torch.equal(p, y) for p, y in zip(model.parameters(), y_params))  # back at y, in train mode


# --------------------------------------------------------------------------------------- per-group d
PER_GROUP = rows(lambda r: r.per_group_d is not None)


@pytest.mark.parametrize("row", PER_GROUP)
def test_per_group_d_is_the_method_run_on_each_group(row):
    """With per_group_d=True, each group takes exactly the steps of a separate optimizer on that group."""
    init, loss_fn = make_problem(3)
    idx = [[0, 2], [1, 3]]
    groups = [(i, {}) for i in idx]
    params, opt = run_torch(lambda p: make(row, p, per_group_d=True), init, loss_fn, 40, groups=groups)
    ps = [p.detach().clone().requires_grad_(True) for p in init]
    opts = [make(row, [ps[i] for i in ix]) for ix in idx]
    for _ in range(40):
        for o in opts:
            o.zero_grad()
        loss_fn(ps).backward()
        for o in opts:
            o.step()
    for a, b in zip(params, ps):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-12)
    estimates = [opt.effective_lr(i) for i in range(2)]
    assert estimates[0] != estimates[1]  # (the groups' d -- DoG's step sizes -- differ)
    assert estimates == pytest.approx([o.effective_lr() for o in opts])


@pytest.mark.parametrize("row", rows(lambda r: r.per_group_d is True))
def test_one_estimate_for_all_groups(row):
    """per_group_d=False (where one estimate per group is the default, DoG): two groups take the steps of one."""
    init, loss_fn = make_problem(3)
    groups = [([0, 2], {}), ([1, 3], {})]
    a, opt = run_torch(lambda p: make(row, p, per_group_d=False), init, loss_fn, 30, groups=groups)
    b, _ = run_torch(lambda p: make(row, p), init, loss_fn, 30)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-12, atol=1e-12)
    if not isinstance(opt.param_groups[0]["eta"], list):  # (LDoG: one step size per tensor, in every case)
        assert opt.param_groups[0]["eta"] == opt.param_groups[1]["eta"]


@pytest.mark.parametrize("row", PER_GROUP)
def test_deepcopy_keeps_per_group_d(row):
    opt = make(row, [torch.zeros(2, requires_grad=True)], per_group_d=True)
    assert copy.deepcopy(opt).per_group_d is True


# ----------------------------------------------------------------------------------- effective_lr, warm-up
@pytest.mark.parametrize("row", rows(lambda r: r.effective_lr is not None))
def test_effective_lr_and_lr_scale(row):
    """Controllers scale the lr (group['lr'] holds the cut); effective_lr reports the scaled value."""
    init, loss_fn = make_problem(0)
    params, opt = run_torch(lambda p: make(row, p), init, loss_fn, 5)
    base = opt.effective_lr()
    assert base > 0 and math.isfinite(base)
    if row.effective_lr == "last step":
        return  # DoG reports the step size of the last step
    opt.param_groups[0]["lr"] *= 0.5
    assert opt.effective_lr() == pytest.approx(0.5 * base)


@pytest.mark.parametrize("row", rows(lambda r: r.lr_free is not None))
def test_warmup_from_zero_lr_does_not_stall(row):
    """lr(0) = 0 makes every sum 0 (the packages then skip the step); the schedule clock still advances."""
    init, loss_fn = make_problem(0)
    params, opt = run_torch(lambda p: make(row, p, lr=lambda step: min(1.0, step / 5)), init, loss_fn, 30)
    assert opt.param_groups[0]["adaptlr_steps"] == 30
    assert opt.effective_lr() > 0
    assert any(not torch.equal(p.detach(), i) for p, i in zip(params, init))


# ----------------------------------------------------------------------------------------------------- misc
def test_dadapt_sgd_measures_g0_on_the_first_step_taken():
    """A first step skipped for an inf gradient does not measure ||g_0|| (it would be inf: the lr 0 for ever)."""
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = adaptlr.DAdaptSGD([p], nonfinite="skip")
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
        adaptlr.PolynomialDecayAverager(model, gamma=8.0),
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
    other = adaptlr.PolynomialDecayAverager(copy.deepcopy(model))
    other.load_state_dict(state)
    assert other.t == ours.t == 11
