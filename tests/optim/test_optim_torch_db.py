"""torch's own optimizer test database, run against adaptlr's classes of the same names (issue 18).

``torch.testing._internal.common_optimizers.optim_db`` lists, for every ``torch.optim`` class, the constructor
configurations torch tests (``optim_inputs_func``, with the ``fused`` flag where torch supports it on CPU, as
torch's ``_get_optim_inputs_including_global_cliquey_kwargs`` adds it) and the inputs it must refuse
(``optim_error_inputs_func``). For each class adaptlr exports under the same name, on CPU in float64:

- every configuration takes torch's steps (a few steps on a small model; the parameters compared);
- every error input is refused as torch refuses it: the same exception (or warning) type, found by running
  torch's class on the same input (at construction, or at the first step where torch refuses there: adaptlr
  may refuse earlier, never later), and torch's message pattern where the message says the same thing.

Where adaptlr deliberately accepts what torch refuses (a limit of torch's own kernels that adaptlr's engines do
not have), the input is listed in ``EXTENSIONS`` with the reason, and the step it takes is checked against torch
run without the limiting flag.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
import types
import unittest
import warnings

import pytest
import torch

import adaptlr

if importlib.util.find_spec("expecttest") is None:  # torch.testing._internal imports it for its TestCase only
    _stub = types.ModuleType("expecttest")
    _stub.TestCase = unittest.TestCase
    sys.modules["expecttest"] = _stub

from torch.testing._internal.common_optimizers import (  # noqa: E402
    OptimizerErrorEnum,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

# torch's test utilities freeze torch.backends' flags at import (torch.backends.disable_global_flags(), for torch's
# own suite); this process goes on to run other tests (Lightning sets cudnn flags): thaw them again
torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True

DEVICE, DTYPE = "cpu", torch.float64
INFOS = {info.optim_cls.__name__: info for info in optim_db if hasattr(adaptlr, info.optim_cls.__name__)}

_FOREACH_SCALARS = (
    "torch's foreach kernels take Python floats; adaptlr reads a 0-dim tensor as a number on every engine"
)
#: (class name, error input desc) -> why adaptlr takes what torch refuses: a limit of torch's kernels, not of the
#: algorithm. The step adaptlr takes is checked against torch's for-loop implementation on the same values.
EXTENSIONS = {
    (cls, desc): _FOREACH_SCALARS
    for cls in ("Adam", "AdamW")
    for desc in (
        "lr as Tensor doesn't work with foreach & not capturable",
        "betas must be either both floats or both Tensors",
        r"betas\[0\] as a Tensor is not supported for capturable=False and foreach=True",
    )
}

#: error input desc -> why adaptlr refuses (a ValueError) where torch only warns
STRICTER = {
    "a param group cannot have duplicate parameters": (
        "torch warns, then steps the parameter once or twice depending on its implementation; adaptlr refuses"
    ),
}

#: error input desc (or (class name, desc)) -> the pattern of adaptlr's message where it says the same thing as
#: torch's in the library's words: the argument, its value and the allowed range (adaptlr._validation)
OUR_WORDS = {
    "Tensor lr must be 1-element": r"^Invalid lr: a tensor learning rate must have one element, got shape \(2,\)$",
    "rho should be between 0 and 1": r"^Invalid rho: 1\.1 is outside \[0, 1\]$",
    "epsilon1 should be >= 0": r"^Invalid eps\[0\] \(epsilon1\): -1e-30 is outside \[0, inf\)$",
    "invalid d": r"^Invalid d \(clipping threshold\): 0\.0 is outside \[1, inf\)$",
    "invalid beta2_decay": r"^Invalid beta2_decay: 0\.8 is outside \(-inf, 0\]$",
    "lr_decay must be bigger than 0": r"^Invalid lr_decay: -0\.5 is outside \[0, inf\)$",
    "beta1 should be between 0 and 1": r"^Invalid beta parameter at index 0 \(betas\[0\]\): 1\.0 is outside \[0, 1\)$",
    "beta2 should be between 0 and 1": r"^Invalid beta parameter at index 1 \(betas\[1\]\): 1\.0 is outside \[0, 1\)$",
    "weight_decay should > 0": r"^Invalid weight_decay: -(1|0\.5) is outside \[0, inf\)$",
    "momentum_decay should > 0": r"^Invalid momentum_decay: -0\.2 is outside \[0, inf\)$",
    "momentum should be between 0 and 1": r"^Invalid momentum: -(1\.0|0\.5) is outside \[0, inf\)$",
    "0 < eta1 < 1 < eta2": r"^Invalid etas\[0\] \(etaminus\): 1\.0 is outside \(0, 1\)$",
    # LBFGS takes one param group: two groups are refused for that reason first
    ("LBFGS", "duplicate parameters should not occur across param groups either"): r"^LBFGS doesn't support per-param",
    ("LBFGS", "all optimizer param groups should be with/without names."): r"^LBFGS doesn't support per-parameter",
}

#: configuration descs whose 0-dim float32 tensor lr torch computes with in float32 (Muon's adjusted lr, SparseAdam's
#: step size are float32 tensors); adaptlr reads the lr as a number: it agrees with torch given that number to
#: 1e-10, and with torch given the tensor to float32 rounding
FLOAT32_LR = {("Muon", "Tensor lr"), ("SparseAdam", "Tensor lr")}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "SparseAdam":
        return torch.nn.Embedding(6, 3, sparse=True).to(DTYPE)
    bias = name != "Muon"  # Muon takes matrices only
    return torch.nn.Sequential(torch.nn.Linear(3, 4, bias=bias), torch.nn.Tanh(), torch.nn.Linear(4, 2, bias=bias)).to(
        DTYPE
    )


def _loss(model: torch.nn.Module, name: str, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    if name == "SparseAdam":
        return model(torch.randint(0, 6, (5,), generator=g)).pow(2).sum()
    x = torch.randn(5, 3, generator=g, dtype=DTYPE)
    return (model(x) - x[:, :2].sin()).pow(2).mean()


def _run(cls: type, name: str, kwargs: dict, steps: int = 4) -> list[torch.Tensor]:
    model = _model(name)
    opt = cls(model.parameters(), **copy.deepcopy(kwargs))
    for i in range(steps):

        def closure(i=i):
            opt.zero_grad()
            loss = _loss(model, name, i)
            loss.backward()
            return loss

        if INFOS[name].step_requires_closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _configs() -> list[tuple[str, object]]:
    out = []
    for name, info in INFOS.items():
        for c in _get_optim_inputs_including_global_cliquey_kwargs(DEVICE, DTYPE, info, skip=("differentiable",)):
            out.append((name, c))
    return out


def _errors() -> list[tuple[str, object]]:
    return [(name, e) for name, info in INFOS.items() for e in info.optim_error_inputs_func(device=DEVICE, dtype=DTYPE)]


CONFIGS, ERRORS = _configs(), _errors()


def _as_numbers(kwargs: dict) -> dict:
    """The kwargs with every 0-dim tensor (lr, betas) read as a Python number, and torch's foreach flag dropped."""

    def number(v):
        if isinstance(v, torch.Tensor) and v.dim() == 0:
            return float(v)
        if isinstance(v, tuple):
            return tuple(number(x) for x in v)
        return v

    return {k: number(v) for k, v in kwargs.items() if k != "foreach"}


def _initial(name: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in _model(name).parameters()]


@pytest.mark.parametrize("name,config", CONFIGS, ids=[f"{n}-{c.desc}" for n, c in CONFIGS])
def test_each_configuration_takes_torchs_steps(name, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch's own deprecations of a config's flags)
        want = _run(INFOS[name].optim_cls, name, config.kwargs)
        got = _run(getattr(adaptlr, name), name, config.kwargs)
        if (name, config.desc) in FLOAT32_LR:
            exact = _run(INFOS[name].optim_cls, name, _as_numbers(config.kwargs))
    assert not all(torch.equal(a, b) for a, b in zip(want, _initial(name)))  # the run moved the parameters
    for a, b in zip(got, want):
        rtol = 1e-6 if (name, config.desc) in FLOAT32_LR else 1e-10
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-12)
    if (name, config.desc) in FLOAT32_LR:
        for a, b in zip(got, exact):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _outcome(cls: type, name: str, error) -> tuple[str, BaseException | None]:
    """Where the input is refused ("construction", "step" or "accepted") and with what (an exception, or a warning
    turned into one)."""
    oi = error.optimizer_error_input
    with warnings.catch_warnings():
        warnings.simplefilter("error", error.error_type) if issubclass(error.error_type, Warning) else None
        try:
            opt = cls(copy.copy(oi.params), **copy.deepcopy(oi.kwargs))
        except Exception as e:  # noqa: BLE001 - the outcome under test
            return "construction", e
        try:
            for group in opt.param_groups:
                for p in group["params"]:
                    p.grad = torch.ones_like(p)
            opt.step((lambda: torch.zeros((), dtype=DTYPE)) if INFOS[name].step_requires_closure else None)
        except Exception as e:  # noqa: BLE001
            return "step", e
    return "accepted", None


@pytest.mark.parametrize("name,error", ERRORS, ids=[f"{n}-{e.optimizer_error_input.desc}" for n, e in ERRORS])
def test_each_error_input_is_refused_as_torch_refuses_it(name, error):
    desc = error.optimizer_error_input.desc
    where, theirs = _outcome(INFOS[name].optim_cls, name, error)
    assert theirs is not None and isinstance(theirs, error.error_type), (where, theirs)  # the database holds
    assert where == ("step" if error.error_on == OptimizerErrorEnum.STEP_ERROR else "construction")
    if (name, desc) in EXTENSIONS:
        _check_extension(name, error)
        return
    ours_where, ours = _outcome(getattr(adaptlr, name), name, error)
    assert ours is not None, f"adaptlr.{name} accepted what torch refuses ({desc})"
    assert ours_where == where or (ours_where, where) == ("construction", "step")  # earlier is allowed, later not
    if desc in STRICTER:
        assert isinstance(theirs, Warning) and type(ours) is ValueError and "appears twice" in str(ours)
        return
    assert type(ours) is type(theirs), f"{type(ours).__name__}: {ours} (torch: {type(theirs).__name__}: {theirs})"
    pattern = OUR_WORDS.get((name, desc), OUR_WORDS.get(desc, error.error_regex))
    assert re.search(pattern, str(ours)), f"{ours} does not say {pattern!r}"


def _without_kernel_limits(kwargs: dict) -> dict:
    """The same values in a form torch's for-loop implementation takes: no ``foreach`` flag, and betas either both
    numbers or both tensors (a number joining a tensor becomes a float64 0-dim tensor: exactly its value)."""
    out = {k: v for k, v in kwargs.items() if k != "foreach"}
    betas = out.get("betas")
    if isinstance(betas, tuple) and any(isinstance(b, torch.Tensor) for b in betas):
        out["betas"] = tuple(b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=torch.float64) for b in betas)
    return out


def _check_extension(name: str, error) -> None:
    """adaptlr takes the input (on a small model: torch's database gives no parameters) and steps as torch's for-loop
    implementation does on the same values (tensors stay tensors: torch computes with a float32 beta in float32)."""
    kwargs = error.optimizer_error_input.kwargs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _run(INFOS[name].optim_cls, name, _without_kernel_limits(kwargs))
        got = _run(getattr(adaptlr, name), name, kwargs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_counts():
    """What this file checks, in numbers (for the record: issue 18 counted 117 configurations and 124 inputs)."""
    assert sorted(INFOS) == sorted(
        "ASGD Adadelta Adafactor Adagrad Adam AdamW Adamax LBFGS Muon NAdam RAdam RMSprop Rprop SGD SparseAdam".split()
    )
    extensions = [e for n, e in ERRORS if (n, e.optimizer_error_input.desc) in EXTENSIONS]
    stricter = [e for n, e in ERRORS if e.optimizer_error_input.desc in STRICTER]
    assert (len(CONFIGS), len(ERRORS), len(extensions), len(stricter)) == (117, 124, 8, 15)
