"""Never crash, never corrupt: the probes of issue 9 on the engines and the optimizers' checkpoints.

Every engine checks every column against the first before a kernel touches memory; a mismatch raises the
``RuntimeError`` torch.optim raises for such tensors, and leaves parameters and state exactly as they were.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _optim_table import counterpart_class, make, rows, shaped

import adaptlr
from adaptlr.engines import get_engine, partition, run
from adaptlr.rules import classic

ENGINES = {"default": {}, "fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
#: every row of tests/_optim_table.py whose rules run on the engines (all but L-BFGS)
ON_ENGINES = rows(lambda r: r.engines)


#: (row, engine): the default engine and each of the row's
def with_engines(known=None):
    """(row, engine): the default engine and each of the row's, with the row's known failure of the probe ``known``."""
    return [
        pytest.param(row, engine, id=f"{row.name}-{engine}", marks=marks)
        for (row,), marks in ((p.values, p.marks) for p in rows(lambda r: r.engines, known))
        for engine in dict.fromkeys(("default", *row.engines))
    ]


WITH_ENGINES = with_engines()


def _make(row, params, **engine):
    return make(row, params, **row.example, **engine)


def _param(row, *shape, dtype=torch.float32):
    return torch.nn.Parameter(torch.randn(*shaped(row, shape), dtype=dtype))


def _grad(row, like):
    """A random gradient for ``like`` (sparse for a row that takes sparse gradients only)."""
    g = torch.randn_like(like)
    return g.to_sparse() if row.sparse_grads else g


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict())


def _assert_unchanged(opt, params, snap):
    values, state = snap
    for p, v in zip(params, values):
        assert torch.equal(p.detach(), v)
    now = opt.state_dict()
    assert now["param_groups"] == state["param_groups"]
    for k, s in state["state"].items():
        for key, v in s.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(now["state"][k][key], v), key
            else:
                assert now["state"][k][key] == v, key


@pytest.mark.parametrize(("row", "engine"), with_engines("safety-replaced"))
def test_a_replaced_parameter_is_refused_not_read_out_of_bounds(row, engine):
    """issue 9's reproduction: p.data replaced by a larger tensor after the first step (torch raises)."""
    p = _param(row, 5)
    opt = _make(row, [p], **ENGINES[engine])
    p.grad = _grad(row, p)
    opt.step()
    p.data = torch.zeros(shaped(row, (200_000,)))
    p.grad = _grad(row, p.data)
    with pytest.raises(RuntimeError, match="does not match|has shape"):
        opt.step()


@pytest.mark.parametrize(("row", "engine"), with_engines("safety-state-shape"))
def test_state_of_another_shape_with_the_same_numel_is_refused_and_nothing_changes(row, engine):
    a, b = _param(row, 2, 3), _param(row, 3, 2)
    opt = _make(row, [a, b], **ENGINES[engine])
    a.grad, b.grad = _grad(row, a), _grad(row, b)
    opt.step()
    # a checkpoint for a model whose parameters come in another order
    sd = opt.state_dict()
    sd["state"] = {0: sd["state"][1], 1: sd["state"][0]}
    opt.load_state_dict(sd)
    snap = _snapshot(opt, [a, b])
    with pytest.raises(RuntimeError, match="does not match|has shape"):
        opt.step()
    _assert_unchanged(opt, [a, b], snap)


@pytest.mark.parametrize("row", rows(lambda r: r.engines, "safety-larger-state"))
def test_a_state_for_a_larger_model_is_refused(row):
    small, big = _param(row, 4), _param(row, 4000)
    src = _make(row, [big])
    big.grad = _grad(row, big)
    src.step()
    opt = _make(row, [small])
    opt.load_state_dict(src.state_dict())
    small.grad = _grad(row, small)
    with pytest.raises(RuntimeError):
        opt.step()


def _conv_problem(memory_format):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 3, 3, 3).to(memory_format=memory_format))
    grads = [torch.randn(8, 3, 3, 3).to(memory_format=memory_format) for _ in range(6)]
    return w, grads


@pytest.mark.parametrize("engine", ["default", "fused", "foreach"])
@pytest.mark.parametrize(
    "saved, resumed",
    [
        (torch.channels_last, torch.contiguous_format),
        (torch.contiguous_format, torch.channels_last),
        (torch.channels_last, torch.channels_last),
    ],
)
def test_channels_last_checkpoints_resume_exactly(saved, resumed, engine):
    """A checkpoint from torch.optim.Adam with state in another memory layout resumes as torch resumes it."""
    w, grads = _conv_problem(saved)
    ref = torch.optim.Adam([w], lr=1e-2)
    for g in grads[:3]:
        w.grad = g.clone()
        ref.step()
    sd = copy.deepcopy(ref.state_dict())
    start = w.detach().clone()
    for g in grads[3:]:
        w.grad = g.clone()
        ref.step()
    expected = w.detach().clone()

    v = torch.nn.Parameter(start.clone().to(memory_format=resumed))
    opt = adaptlr.Adam([v], lr=1e-2, **ENGINES[engine])
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["foreach"] == ENGINES[engine].get("foreach")  # the constructor's engine is kept
    for g in grads[3:]:
        v.grad = g.clone().to(memory_format=resumed)
        opt.step()
    torch.testing.assert_close(v.detach(), expected, rtol=1e-6, atol=1e-7)


def test_equally_strided_channels_last_tensors_run_fused():
    x = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)
    cols = [[x], [torch.randn_like(x)], [torch.zeros_like(x)]]
    assert partition(None, cols) == [("numba", [0])]
    mixed = [[x], [torch.randn(4, 3, 5, 5)]]
    assert partition(None, mixed) == [("foreach", [0])]
    view = torch.randn(10, 10)[:, ::2]
    assert partition(None, [[view], [torch.randn(10, 10)[:, ::2]]]) == [("foreach", [0])]


def test_the_fused_engine_itself_refuses_tensors_it_cannot_address():
    engine = get_engine("fused")
    p, g, m = torch.randn(5), torch.randn(5), torch.zeros(3)
    with pytest.raises(RuntimeError):
        engine.apply(classic.sgd, [[p], [g], [m]], (0, 2), (0.1, 0.0, 0.9, 0.0), (False, False, True, False, False))
    with pytest.raises(RuntimeError):
        engine.apply(
            classic.sgd, [[p], [g.double()], 0.0], (0, 2), (0.1, 0.0, 0.0, 0.0), (False, False, False, False, False)
        )
    strided = torch.randn(10)[::2]
    with pytest.raises(RuntimeError):
        engine.apply(
            classic.sgd, [[strided], [g], 0.0], (0, 2), (0.1, 0.0, 0.0, 0.0), (False, False, False, False, False)
        )


@pytest.mark.parametrize("row", rows())
def test_duplicated_parameters_are_refused(row):
    p = _param(row, 3)
    with pytest.raises(ValueError, match="twice"):
        _make(row, [p, p])
    q = _param(row, 3)
    with pytest.raises(ValueError):  # torch's own error across groups (L-BFGS: it takes one group)
        _make(row, [{"params": [q]}, {"params": [q]}])


@pytest.mark.parametrize(("row", "engine"), with_engines("safety-grad-dtype"))
def test_a_gradient_of_another_dtype_is_refused_by_every_engine_as_torch(row, engine):
    p = _param(row, 3)
    p.grad_dtype = None  # torch 2.13 otherwise refuses the assignment itself
    p.grad = _grad(row, p.detach().double())
    opt = _make(row, [p], **ENGINES[engine])
    before = p.detach().clone()
    with pytest.raises(RuntimeError):
        opt.step()
    assert torch.equal(p.detach(), before)
    ref = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))])
    ref.param_groups[0]["params"][0].grad_dtype = None
    ref.param_groups[0]["params"][0].grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError):  # torch.optim: "expected dtype float for `end` but got dtype double"
        ref.step()


class _Wrapped(torch.Tensor):
    """A tensor subclass the fused engine must never see as raw memory."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclasses_run_on_the_loop_engine_and_match_plain_tensors():
    base = torch.randn(6, dtype=torch.float64)
    grad = torch.randn(6, dtype=torch.float64)
    plain = base.clone()
    run(classic.sgd, [[plain], [grad], 0.0], (0, 2), (0.1, 0.0, 0.0, 0.0), (False, False, False, False, False))
    assert not torch.equal(plain, base)
    wrapped = base.clone().as_subclass(_Wrapped)
    assert partition(None, [[wrapped], [grad.as_subclass(_Wrapped)]]) == [("loop", [0])]
    run(
        classic.sgd,
        [[wrapped], [grad.as_subclass(_Wrapped)], 0.0],
        (0, 2),
        (0.1, 0.0, 0.0, 0.0),
        (False, False, False, False, False),
    )
    assert torch.equal(torch.Tensor(wrapped).as_subclass(torch.Tensor), plain)


# ------------------------------------------------------------------------------------ values refused up front
# (every real-valued hyperparameter of every row, nan and infinities included: tests/test_optim_validation.py)
def test_schedule_free_betas_none_is_refused():
    with pytest.raises((TypeError, ValueError), match="betas"):
        adaptlr.ScheduleFreeAdamW([torch.nn.Parameter(torch.randn(2))], betas=None)


def test_the_applied_lr_is_checked_at_the_step():
    p = torch.nn.Parameter(torch.randn(3))
    opt = adaptlr.SGD([p], lr=lambda step: 0.1 - 0.05 * step)
    for _ in range(3):
        p.grad = torch.ones(3)
        opt.step()
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"-0\.05.*step 3"):
        opt.step()
    assert torch.equal(p.detach(), before)
    opt.allow_negative_lr = True  # documented switch, for gradient ascent on purpose
    opt.step()
    assert (p.detach() > before).all()
    nan = adaptlr.Adam([p], lr=lambda step: float("nan"))
    with pytest.raises(ValueError, match="finite"):
        nan.step()


# --------------------------------------------------------------- mutated state dicts: an error or exact math
MUTATIONS = ["reorder", "resize", "restride", "dtype", "drop", "none"]


@pytest.mark.parametrize("row", rows(lambda r: r.engines, "safety-mutated"))
def test_mutated_state_dicts_give_an_error_or_exact_math(row):
    """Every mutation on every engine (a loaded, mutated checkpoint: an error, or exactly the unmutated math)."""
    for mutation in MUTATIONS:
        for engine in ENGINES:
            try:
                _mutated_state_dict(row, mutation, engine)
            except AssertionError as e:
                raise AssertionError(f"{mutation} [{engine}]: {e}") from None


def _mutated_state_dict(row, mutation, engine):
    torch.manual_seed(0)
    shapes = [(4, 3), (3, 4), (5,)]
    params = [_param(row, *s, dtype=torch.float64) for s in shapes]
    opt = _make(row, params, **ENGINES[engine])
    for _ in range(2):
        for p in params:
            p.grad = _grad(row, p)
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    if mutation == "reorder":
        sd["state"] = {0: sd["state"][1], 1: sd["state"][0], 2: sd["state"][2]}
    elif mutation == "resize":
        for v in sd["state"][2].values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                v.data = torch.zeros(v.numel() + 1, dtype=v.dtype)
    elif mutation == "restride":
        for k in sd["state"]:
            for key, v in list(sd["state"][k].items()):
                if isinstance(v, torch.Tensor) and v.dim() == 2:
                    sd["state"][k][key] = v.t().contiguous().t()
    elif mutation == "dtype":
        for key, v in list(sd["state"][0].items()):
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                sd["state"][0][key] = v.float()
    elif mutation == "drop":
        sd["state"].pop(1)
    # the oracle: the same optimizer loaded with the unmutated state, on the same engine (for "dtype": with the
    # state rounded through float32, which is what torch's load does to it -- cast to the parameter's dtype)
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ref = _make(row, ref_params, **ENGINES[engine])
    oracle = copy.deepcopy(opt.state_dict())
    if mutation == "dtype":
        for key, v in list(oracle["state"][0].items()):
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                oracle["state"][0][key] = v.float().double()
    ref.load_state_dict(oracle)
    new_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    new = _make(row, new_params, **ENGINES[engine])
    try:
        new.load_state_dict(sd)
    except (ValueError, RuntimeError, KeyError):
        return
    grads = [_grad(row, p) for p in params]
    for p, g in zip(new_params, grads):
        p.grad = g.clone()
    for p, g in zip(ref_params, grads):
        p.grad = g.clone()
    try:
        new.step()
    except RuntimeError:
        return
    ref.step()
    if mutation in ("none", "restride", "dtype"):  # value-preserving: exactly the unmutated run
        for a, b in zip(new_params, ref_params):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=0)
    else:  # "drop": parameter 1 starts afresh, the others are exact
        for i, (a, b) in enumerate(zip(new_params, ref_params)):
            if i != 1 or mutation != "drop":
                torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=0)
        assert mutation in ("drop",), f"{mutation} loaded and stepped without an error"


# ------------------------------------------------------------------ the cached plan is checked again when it must
@pytest.mark.parametrize("engine", ["default", "fused"])
def test_a_state_tensor_replaced_between_steps_is_checked_again(engine):
    import gc

    p = torch.nn.Parameter(torch.randn(5))
    opt = adaptlr.Adam([p], **ENGINES[engine])
    for _ in range(2):
        p.grad = torch.randn(5)
        opt.step()
    del opt.state[p]["exp_avg"]
    gc.collect()  # (the freed tensor's address may be reused by the next one: the plan must not be fooled)
    opt.state[p]["exp_avg"] = torch.zeros(3)
    p.grad = torch.randn(5)
    with pytest.raises(RuntimeError, match="exp_avg"):
        opt.step()


@pytest.mark.parametrize("engine", ["default", "fused", "foreach"])
@pytest.mark.parametrize("size", [10, 4000])
def test_a_state_tensors_data_swapped_in_place_between_steps_is_refused(engine, size):
    """``state.data = other`` keeps the tensor object (the plan's identity check passes) but moves its memory: the
    plan compares every stable tensor's data pointer, so the step is checked again -- and refused, before anything
    changes -- instead of running the kernel over the new, smaller (or larger) memory (it corrupted the heap)."""
    p = torch.nn.Parameter(torch.randn(1000))
    opt = adaptlr.Adam([p], **ENGINES[engine])
    for _ in range(2):
        p.grad = torch.randn(1000)
        opt.step()
    opt.state[p]["exp_avg"].data = torch.zeros(size)
    before = (p.detach().clone(), opt.state[p]["exp_avg_sq"].clone(), float(opt.state[p]["step"]))
    p.grad = torch.randn(1000)
    with pytest.raises(RuntimeError, match="exp_avg"):
        opt.step()
    after = (p.detach(), opt.state[p]["exp_avg_sq"], float(opt.state[p]["step"]))
    torch.testing.assert_close(before[:2], after[:2], rtol=0, atol=0)
    assert before[2] == after[2]


@pytest.mark.parametrize("engine", ["default", "fused", "foreach"])
def test_a_state_tensors_data_swapped_for_memory_of_the_same_shape_is_used(engine):
    p = torch.nn.Parameter(torch.randn(1000))
    opt = adaptlr.Adam([p], **ENGINES[engine])
    for _ in range(2):
        p.grad = torch.randn(1000)
        opt.step()
    fresh = torch.zeros(1000)
    opt.state[p]["exp_avg"].data = fresh  # (new values: the step must read and write this memory, not the old)
    p.grad = g = torch.randn(1000)
    opt.step()
    torch.testing.assert_close(fresh, 0.1 * g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "row", rows(lambda r: r.engines and not r.sparse_grads and r.counterpart is not None and r.counterpart.is_torch)
)
def test_gradients_with_other_strides_than_the_cached_plan_run_correctly(row):
    """Step 1 with contiguous gradients caches a fused plan; step 2's transposed gradients must not be read raw."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
    ref_w = torch.nn.Parameter(w.detach().clone())
    opt, ref = _make(row, [w]), counterpart_class(row)([ref_w], **row.example)
    grads = [
        torch.randn(4, 6, dtype=torch.float64),
        torch.randn(6, 4, dtype=torch.float64).t(),
        torch.randn(4, 6, dtype=torch.float64),
    ]
    for g in grads:
        w.grad, ref_w.grad = g.clone() if g.is_contiguous() else g.t().clone().t(), g.clone()
        assert w.grad.is_contiguous() == g.is_contiguous()
        opt.step()
        ref.step()
    torch.testing.assert_close(w.detach(), ref_w.detach(), rtol=1e-12, atol=1e-14)


def test_a_swapped_parameter_data_of_the_same_address_and_another_shape_is_refused():
    p = torch.nn.Parameter(torch.randn(6))
    opt = adaptlr.Adam([p])
    p.grad = torch.randn(6)
    opt.step()
    p.data = p.data.view(2, 3)  # same storage and address, another shape: the state no longer fits
    p.grad = torch.randn(2, 3)
    with pytest.raises(RuntimeError):
        opt.step()


def test_set_lr_and_a_schedule_assigned_by_hand_both_drive_group_lr():
    from adaptlr import schedules

    for how in ("set_lr", "by hand"):
        p = torch.nn.Parameter(torch.zeros(2))
        opt = adaptlr.SGD([p], lr=0.1)
        p.grad = torch.ones(2)
        opt.step()
        s = schedules.cosine(0.5, 10)
        if how == "set_lr":
            opt.set_lr(s)
        else:
            opt.param_groups[0]["lr"] = s  # the habit of adaptlr < 0.2: adopted as the group's schedule
        before = p.detach().clone()
        opt.step()  # the clock is 1: this step uses s(1)
        torch.testing.assert_close(before - p.detach(), torch.full((2,), s(1)))
        assert opt.param_groups[0]["lr"] == pytest.approx(s(2)) and opt.param_groups[0]["adaptlr_schedule"] is s
        opt.set_lr(0.01)
        assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["adaptlr_schedule"] is None
