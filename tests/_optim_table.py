"""One table of every optimizer adaptlr exports, for the registry sweeps: a new optimizer is tested by adding a row.

A row says what the sweeps need to know about one optimizer: where its class is (``getattr(adaptlr, name)``,
always through the top-level namespace), what it is checked against (``torch.optim``, the paper's package, the
float64 NumPy reference in ``adaptlr.reference``), how to draw random hyperparameters, the allowed range of
every hyperparameter, the tolerances, and what it can and cannot do (engines, complex parameters, a closure,
sparse gradients only, matrices only, ...). Each sweep selects the rows it can run with :func:`rows`; a row that
a sweep leaves out is left out by one of these attributes, never by name. ``test_optim_contract.py`` checks
that every ``torch.optim.Optimizer`` in ``adaptlr.__all__`` has a row and every torch.optim class a counterpart.

Adding an optimizer (``adaptlr.Foo``, matching ``torch.optim.Foo``, with a NumPy reference ``reference.Foo``)::

    def draw_foo(rng):  # random hyperparameters, beside the rows (below)
        return dict(lr=_lr(rng, 1e-4, 1e-1), betas=(_beta(rng, 0.0, 0.99), _beta(rng, 0.9, 0.9999)),
                    weight_decay=_wd(rng), maximize=bool(rng.random() < 0.3))

    Row("Foo", draw_foo, torch_optim("Foo"), "Foo",  # tests/_optim_table.py, in ROWS
        example=dict(lr=1e-2),  # a setting for the distributed matrix and the safety probes
        ranges={"lr": "[0, inf)", "betas[0]": "[0, 1)", "betas[1]": "[0, 1)", "weight_decay": "[0, inf)"},
        complex_ok=True, converge=dict(lr=0.05)),

Then parity with torch (every engine, float64 and float32), the NumPy reference, the contract (checkpoints to
and from torch, groups, frozen parameters, the non-finite policy), validation, engine agreement, complex
parameters, convergence, the safety probes, Triton's interpreter and the distributed matrix all run it. A method
checked against its paper's package instead: ``Counterpart("foo_pkg:Foo", seed_offset=3)``, and what it does
(``lr_free="d0"``, ``sums="global"``, ``process_group=True``, ``effective_lr="lr"``, ...). A sweep that fails
for a known reason: ``known={"<sweep key>": "why"}`` (a strict xfail).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import adaptlr

#: the engine flags a sweep passes; "default" passes none (the engine chosen per tensor, docs/CONTRACTS.md)
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False), "default": {}}


@dataclass(frozen=True)
class Counterpart:
    """The implementation a row is checked against: ``torch.optim`` (same name, arguments, state and checkpoints),
    or the paper's package (its class; the facts of its parity harness are those of tests/test_free_parity.py).

    ``target``: ``"module:Class"``, imported when a test needs it (a package that is not installed skips the test).
    ``seed_offset``: the package harness draws hyperparameters with ``rng(1000 * seed + seed_offset)`` (the
    float32 seeds below were picked for these draws). ``float32_seed``: a draw where the package's own float32 run
    stays within 1e-5 of its float64 run over 200 steps (on most draws the estimate of ``d`` amplifies rounding);
    ``sensitive_seed``: one where it does not (then ours must be no farther from the float64 truth than the
    package). ``options``: option paths checked against the package one by one. ``group0_weight_decay``: the
    package applies group 0's weight decay to every group. ``checkpoints``: the directions a checkpoint moves
    ("to": adaptlr -> counterpart, "from": counterpart -> adaptlr). ``own_resume_inexact``: why the counterpart's
    own resume differs from its uninterrupted run (so a checkpoint moved into it is compared with that resume).
    ``validates_all``: its constructor refuses every out-of-range value of :attr:`Row.ranges` (else adaptlr and the
    reference must refuse at least what it refuses: torch leaves Rprop's step sizes, ASGD's lambd, alpha and t0,
    Muon's eps and L-BFGS's tolerances unchecked). ``contiguous_only``: it takes contiguous parameters only
    (torch.optim.LBFGS views its gradients flat).
    """

    target: str
    seed_offset: int = 0
    float32_seed: int = 1
    sensitive_seed: int | None = None
    options: tuple[Mapping[str, Any], ...] = ()
    group0_weight_decay: bool = False
    checkpoints: tuple[str, ...] = ("to", "from")
    own_resume_inexact: str | None = None
    validates_all: bool = True
    contiguous_only: bool = False
    #: the package keeps per-parameter state elsewhere (dog: x0 in group["init_buffer"]): a loaded checkpoint is
    #: converted, so the state keys of the two sides differ
    own_state_layout: bool = False

    @property
    def is_torch(self) -> bool:
        return self.target.startswith("torch.optim:")


def torch_optim(name: str, **facts: Any) -> Counterpart:
    return Counterpart(f"torch.optim:{name}", **facts)


@dataclass(frozen=True)
class Row:
    """One optimizer and what the sweeps need to know about it (the defaults fit a classic elementwise rule).

    Identity and oracles:
      ``name``: ``getattr(adaptlr, name)``. ``draw(rng) -> kwargs``: random hyperparameters (``draw_*`` below).
      ``counterpart``: :class:`Counterpart` or None. ``reference``: the NumPy float64 reference,
      ``adaptlr.reference.<reference>`` (``"free.X"``: ``adaptlr.reference.free.X``), or None. A reference takes
      torch.optim's form (it updates the arrays it is given) or, as its package, keeps its own copy of the
      parameters (``x``: reference.free, Lion, AdaBelief, LAMB; :func:`package_style_reference`).
      ``exact``: arguments that make adaptlr's float64 run exact (compared with the float64 reference; a
      counterpart without them cannot be compared with the reference in float64: Muon's Newton-Schulz in bfloat16).
      ``example``: one fixed setting that exercises more of the rule than the defaults (the distributed matrix,
      the safety probes).
    Validation:
      ``ranges``: every real-valued hyperparameter (a tuple's elements as ``"betas[0]"``) and its allowed interval,
      written as the error message writes it (``"[0, inf)"``, ``"(0, 1)"``, ``"[1, inf]"``).
      ``counts``: every integer hyperparameter and its allowed ``[low, high)`` (``high`` None: unbounded).
    Capabilities and constraints:
      ``engines``: the engine flags the sweeps run it on (keys of :data:`ENGINES`; empty: it has no engine flags).
      ``triton``: its rules run on the Triton engine. ``complex_ok``: complex parameters are updated as
      ``view_as_real`` (else refused, saying so). ``needs_closure``: ``step()`` needs a closure (L-BFGS).
      ``sparse_grads``: sparse gradients only. ``shapes``: the parameter shapes it takes (Muon: matrices; None:
      any). ``param_groups``: takes several groups. ``eager_state``: creates state for parameters without a
      gradient (torch's Adagrad). ``state_on_first_param``: keeps its state under ``params[0]`` (torch's L-BFGS).
      ``effective_lr``: None, ``"lr"`` (``effective_lr()`` scales with ``group["lr"]``) or ``"last step"`` (it
      reports the size of the last step). ``lr_free``: the keyword of its initial estimate (the method estimates
      its own step size), or None. ``per_group_d``: its default (None: no such argument). ``process_group``:
      takes ``process_group`` / ``sharded``. ``sums``: ``"global"`` (sums over every tensor of a group, which a
      sharded run all-reduces) or ``"per tensor"`` (reduced only when a tensor itself is sharded) or None. ``schedule_free``: has ``train()`` / ``eval()`` modes (gradients at ``y``).
    Budgets and tolerances of the sweeps:
      ``draws``, ``steps``: of the parity sweep with torch (tests/test_optim_parity.py). ``float32_truth``: why
      float32 parity with torch may instead be judged against the float64 run (torch's own float32 roundings
      exceed 1e-5 there), or None. ``engine_rtol``: engines agree to this in float64.
      ``converge``: arguments for the tiny least-squares problem (lowers the loss 10x in 300 steps).
      ``known``: sweep key -> reason: known failures, run as strict xfails (a fix turns them into failures that
      ask for the entry to be removed). Keys: ``interchange-to`` / ``interchange-from``, ``converge-f32`` /
      ``converge-bf16`` (test_optim_contract.py), ``reference-validation <argument>`` (test_reference.py),
      ``safety-replaced``, ``safety-state-shape``, ``safety-larger-state``, ``safety-grad-dtype``,
      ``safety-mutated`` (test_safety_engines.py), a mode of test_distributed_matrix.py (``fsdp64``, ``dcp``, ...).
    """

    name: str
    draw: Callable[[np.random.Generator], dict]
    counterpart: Counterpart | None = None
    reference: str | None = None
    exact: Mapping[str, Any] = field(default_factory=dict)
    example: Mapping[str, Any] = field(default_factory=dict)
    ranges: Mapping[str, str] = field(default_factory=dict)
    counts: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    engines: tuple[str, ...] = ("fused", "foreach", "loop")
    triton: bool = True
    complex_ok: bool = False
    needs_closure: bool = False
    sparse_grads: bool = False
    shapes: tuple[tuple[int, ...], ...] | None = None
    param_groups: bool = True
    eager_state: bool = False
    state_on_first_param: bool = False
    effective_lr: str | None = None
    lr_free: str | None = None
    per_group_d: bool | None = None
    process_group: bool = False
    sums: str | None = None
    schedule_free: bool = False
    draws: int = 20
    steps: int = 100
    float32_truth: str | None = None
    engine_rtol: float = 1e-12
    converge: Mapping[str, Any] = field(default_factory=dict)
    known: Mapping[str, str] = field(default_factory=dict)

    @property
    def cls(self) -> type[torch.optim.Optimizer]:
        return getattr(adaptlr, self.name)

    @property
    def matrices_only(self) -> bool:
        return self.shapes is not None and all(len(s) == 2 for s in self.shapes)

    def __repr__(self) -> str:  # (the test ids)
        return self.name


# ----------------------------------------------------------- random hyperparameters (each row names its draw)
def _lr(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _beta(rng, low, high):
    """1 - log-uniform in [1 - high, 1 - low]: covers 0.9, 0.99, 0.999 evenly."""
    return 1.0 - _lr(rng, 1.0 - high, 1.0 - low)


def _wd(rng):
    return 0.0 if rng.random() < 0.3 else _lr(rng, 1e-4, 1e-1)


def _eps(rng):
    return _lr(rng, 1e-10, 1e-3)


def draw_sgd(rng):
    momentum = 0.0 if rng.random() < 0.25 else _beta(rng, 0.5, 0.99)
    nesterov = momentum > 0 and rng.random() < 0.5
    dampening = 0.0 if nesterov or rng.random() < 0.5 else float(rng.uniform(0, 0.9))
    return dict(
        lr=_lr(rng, 1e-4, 1e-1),
        momentum=momentum,
        dampening=dampening,
        weight_decay=_wd(rng),
        nesterov=nesterov,
        maximize=bool(rng.random() < 0.3),
    )


def draw_adagrad(rng):
    return dict(
        lr=_lr(rng, 1e-3, 1.0),
        lr_decay=0.0 if rng.random() < 0.4 else _lr(rng, 1e-4, 1e-1),
        weight_decay=_wd(rng),
        initial_accumulator_value=0.0 if rng.random() < 0.5 else _lr(rng, 1e-3, 1.0),
        eps=_eps(rng),
        maximize=bool(rng.random() < 0.3),
    )


def draw_rmsprop(rng):
    return dict(
        lr=_lr(rng, 1e-4, 3e-2),
        alpha=_beta(rng, 0.8, 0.999),
        eps=_eps(rng),
        weight_decay=_wd(rng),
        momentum=0.0 if rng.random() < 0.4 else _beta(rng, 0.5, 0.95),
        centered=bool(rng.random() < 0.5),
        maximize=bool(rng.random() < 0.3),
    )


def draw_adadelta(rng):
    return dict(
        lr=_lr(rng, 1e-2, 3.0),
        rho=_beta(rng, 0.5, 0.99),
        eps=_lr(rng, 1e-8, 1e-3),
        weight_decay=_wd(rng),
        maximize=bool(rng.random() < 0.3),
    )


def _adam_like(rng, lr_high=1e-1):
    return dict(
        lr=_lr(rng, 1e-4, lr_high),
        betas=(_beta(rng, 0.0, 0.99), _beta(rng, 0.9, 0.9999)),
        eps=_eps(rng),
        weight_decay=_wd(rng),
        maximize=bool(rng.random() < 0.3),
    )


def draw_adam(rng):
    return dict(_adam_like(rng), amsgrad=bool(rng.random() < 0.5), decoupled_weight_decay=bool(rng.random() < 0.5))


def draw_adamw(rng):
    kwargs = dict(_adam_like(rng), amsgrad=bool(rng.random() < 0.5))
    if rng.random() < 0.3:
        del kwargs["weight_decay"]  # exercise AdamW's default weight_decay=1e-2
    return kwargs


def draw_adamax(rng):
    return _adam_like(rng)


def draw_nadam(rng):
    return dict(_adam_like(rng), momentum_decay=_lr(rng, 1e-4, 1e-1), decoupled_weight_decay=bool(rng.random() < 0.5))


def draw_radam(rng):
    return dict(_adam_like(rng), decoupled_weight_decay=bool(rng.random() < 0.5))


def draw_rprop(rng):
    low = 0.0 if rng.random() < 0.3 else _lr(rng, 1e-6, 1e-3)
    return dict(
        lr=_lr(rng, 1e-3, 1e-1),
        etas=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(1.05, 1.5))),
        step_sizes=(low, _lr(rng, 0.05, 50.0)),
        maximize=bool(rng.random() < 0.3),
    )


def draw_asgd(rng):
    return dict(
        lr=_lr(rng, 1e-3, 1e-1),
        lambd=_lr(rng, 1e-5, 1e-1),
        alpha=float(rng.uniform(0.5, 1.0)),
        t0=float(rng.integers(0, 60)) if rng.random() < 0.7 else 1e6,
        weight_decay=_wd(rng),
        maximize=bool(rng.random() < 0.3),
    )


def draw_adafactor(rng):
    return dict(
        lr=_lr(rng, 1e-3, 1e-1),
        beta2_decay=float(rng.uniform(-1.0, -0.5)),
        eps=(None if rng.random() < 0.5 else _lr(rng, 1e-30, 1e-6), _lr(rng, 1e-4, 1e-2)),
        d=float(rng.uniform(1.0, 2.0)),
        weight_decay=0.0 if rng.random() < 0.4 else _lr(rng, 1e-4, 0.1),
        maximize=bool(rng.random() < 0.3),
    )


def draw_muon(rng):
    return dict(
        lr=_lr(rng, 1e-3, 3e-2),
        weight_decay=0.0 if rng.random() < 0.3 else _lr(rng, 1e-3, 0.1),
        momentum=float(rng.choice([0.0, rng.uniform(0.2, 0.5), rng.uniform(0.5, 0.99)])),
        nesterov=bool(rng.random() < 0.6),
        ns_steps=int(rng.integers(1, 7)),
        adjust_lr_fn=[None, "original", "match_rms_adamw"][int(rng.integers(3))],
    )


def draw_sparse_adam(rng):
    return dict(
        lr=_lr(rng, 1e-3, 1e-1),
        betas=(1 - _lr(rng, 0.01, 1.0), 1 - _lr(rng, 1e-4, 0.2)),
        eps=_lr(rng, 1e-10, 1e-3),
        maximize=bool(rng.random() < 0.3),
    )


def draw_lbfgs(rng):
    """With the strong-Wolfe line search at lr near 1, or fixed steps at a small lr (as torch's tests)."""
    wolfe = bool(rng.random() < 0.5)
    return dict(
        lr=float(rng.uniform(0.5, 1.0)) if wolfe else _lr(rng, 0.01, 0.1),
        max_iter=int(rng.integers(2, 8)),
        history_size=int(rng.integers(2, 8)),
        line_search_fn="strong_wolfe" if wolfe else None,
    )


# ------------------------------------------------------------------- the learning-rate-free methods and the rest
def _dual_averaging(momenta):
    """D-Adaptation SGD and AdaGrad: the same hyperparameters, each with its momentum choices."""

    def draw(rng):
        return dict(
            lr=float(rng.uniform(0.5, 1.0)),
            momentum=float(rng.choice(momenta)),
            weight_decay=float(rng.uniform(0, 0.01)),
            d0=float(10 ** rng.uniform(-7, -3)),
            growth_rate=[math.inf, 1.05][rng.integers(2)],
        )

    return draw


def draw_prodigy(rng):
    return dict(
        lr=float(rng.uniform(0.5, 1.0)),
        betas=(float(rng.uniform(0.5, 0.95)), 0.99),
        beta3=[None, 0.98][rng.integers(2)],
        weight_decay=float(rng.uniform(0, 0.01)),
        decouple=bool(rng.integers(2)),
        use_bias_correction=bool(rng.integers(2)),
        safeguard_warmup=bool(rng.integers(2)),
        d0=float(10 ** rng.uniform(-7, -3)),
        d_coef=float(rng.uniform(0.5, 2)),
        growth_rate=[math.inf, 1.05][rng.integers(2)],
        slice_p=int(rng.choice([1, 3])),
    )


draw_dadapt_sgd = _dual_averaging([0.0, 0.9])
draw_dadapt_adagrad = _dual_averaging([0.0, 0.5])


def draw_dadapt_adam(rng):
    return dict(
        lr=float(rng.uniform(0.5, 1.0)),
        betas=(float(rng.uniform(0.5, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.01)),
        decouple=bool(rng.integers(2)),
        use_bias_correction=bool(rng.integers(2)),
        d0=float(10 ** rng.uniform(-7, -3)),
        growth_rate=[math.inf, 1.05][rng.integers(2)],
    )


def draw_dog(rng):
    return dict(
        reps_rel=float(10 ** rng.uniform(-7, -3)),
        lr=float(rng.uniform(0.5, 1.0)),
        weight_decay=float(rng.uniform(0, 0.01)),
        init_eta=[None, 1e-4][rng.integers(2)],
    )


def draw_ldog(rng):
    return dict(reps_rel=float(10 ** rng.uniform(-7, -3)), weight_decay=float(rng.uniform(0, 0.01)))


def draw_sf_sgd(rng):
    return dict(
        lr=float(rng.uniform(0.1, 1.0)),
        momentum=float(rng.uniform(0.5, 0.95)),
        weight_decay=float(rng.uniform(0, 0.01)),
        warmup_steps=int(rng.integers(0, 20)),
        r=float(rng.choice([0.0, 1.0])),
        weight_lr_power=float(rng.choice([0.0, 2.0])),
    )


def draw_sf_adamw(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -1)),
        betas=(float(rng.uniform(0.5, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.01)),
        warmup_steps=int(rng.integers(0, 20)),
        r=float(rng.choice([0.0, 1.0])),
        weight_lr_power=float(rng.choice([0.0, 2.0])),
    )


def draw_sf_radam(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -1)),
        betas=(float(rng.uniform(0.5, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.01)),
        r=float(rng.choice([0.0, 1.0])),
        silent_sgd_phase=bool(rng.integers(2)),
    )


def draw_lion(rng):
    return dict(
        lr=float(10 ** rng.uniform(-4, -2)),
        betas=(float(rng.uniform(0.8, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.1)),
    )


def draw_adabelief(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -1)),
        betas=(float(rng.uniform(0.8, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.1)),
        weight_decouple=bool(rng.integers(2)),
    )


def draw_lamb(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -2)),
        betas=(float(rng.uniform(0.8, 0.95)), 0.99),
        weight_decay=float(rng.uniform(0, 0.1)),
        weight_decouple=bool(rng.integers(2)),
    )


# -------------------------------------------------------------------------------------------------- the rows
_ADAM = {"lr": "[0, inf)", "betas[0]": "[0, 1)", "betas[1]": "[0, 1)", "eps": "[0, inf)", "weight_decay": "[0, inf)"}
_RMSPROP_F32 = (
    "torch's float32 roundings over 100 steps exceed 1e-5 on some draws (the momentum buffer sums g / sqrt(v) with "
    "weight 1 / (1 - momentum)); ours must be no farther than torch's from the same run in float64"
)
_EXTRA = dict(engines=("fused", "foreach", "loop", "default"), draws=4, steps=40)
_DADAPT = dict(d0="(0, inf)", growth_rate="[1, inf]", weight_decay="[0, inf)", lr="[0, inf)")
_FREE = dict(effective_lr="lr", engine_rtol=1e-9, sums="global", process_group=True, per_group_d=False, lr_free="d0")
_SF = dict(effective_lr="lr", schedule_free=True)
_SF_RANGES = {"lr": "[0, inf)", "weight_decay": "[0, inf)", "r": "[0, inf)", "weight_lr_power": "[0, inf)"}
_SF_ADAM_RANGES = {**_SF_RANGES, "betas[0]": "(0, 1)", "betas[1]": "[0, 1)", "eps": "[0, inf)"}


_DADAPT_SGD_TO = (
    "dadaptation.DAdaptSGD keeps a third state, z (= x0 - s), which adaptlr does not (its update computes x0 - s): "
    "a checkpoint of adaptlr's loads into the package, which then starts s and x0 afresh (its parameters differ by "
    "up to 7e-2 after 30 steps)"
)


def _to_package(keys: str) -> dict[str, str]:
    return {
        "interchange-to": f"the package's step reads group keys that adaptlr's checkpoints do not carry ({keys}): "
        "a checkpoint of adaptlr's loads into it and its next step raises KeyError"
    }


_PACKAGE_OPTIONS = {  # every option path of each method, against its package (100 steps, foreach, float64)
    "Prodigy": (
        dict(slice_p=3),
        dict(betas=(0.0, 0.99)),
        dict(use_bias_correction=True, safeguard_warmup=True),
        dict(decouple=False, weight_decay=0.01),
        dict(decouple=True, weight_decay=0.01, growth_rate=1.02, d_coef=0.5, beta3=0.9),
    ),
    # where d overshoots (growth_rate=inf with beta2=0.999) D-Adapt Adam turns chaotic and rounding grows to 1e-1
    # in 100 steps: hence growth_rate=1.02 with betas=(0.5, 0.99)
    "DAdaptAdam": (
        dict(use_bias_correction=True),
        dict(decouple=False, weight_decay=0.01),
        dict(decouple=True, weight_decay=0.01, betas=(0.5, 0.99), growth_rate=1.02),
    ),
    "DAdaptSGD": (dict(momentum=0.0), dict(momentum=0.5, weight_decay=0.01)),
    "DAdaptAdaGrad": (dict(momentum=0.5), dict(weight_decay=0.01, growth_rate=1.05)),
    "DoG": (dict(), dict(init_eta=1e-3), dict(weight_decay=0.01, reps_rel=1e-4)),
    "LDoG": (dict(), dict(weight_decay=0.01, init_eta=1e-3)),
    "ScheduleFreeSGD": (dict(warmup_steps=10, r=1.0),),
    "ScheduleFreeAdamW": (dict(lr=0.01, warmup_steps=10, weight_decay=0.01),),
    "ScheduleFreeRAdam": (dict(lr=0.01, silent_sgd_phase=False, r=1.0),),
}

ROWS: dict[str, Row] = {
    row.name: row
    for row in [
        # ------------------------------------------------------------------------------- torch.optim's rules
        Row(
            "SGD",
            draw_sgd,
            torch_optim("SGD"),
            "SGD",
            example=dict(lr=0.05, momentum=0.9, weight_decay=1e-3),
            ranges={"lr": "[0, inf)", "momentum": "[0, inf)", "dampening": "(-inf, inf)", "weight_decay": "[0, inf)"},
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "Adagrad",
            draw_adagrad,
            torch_optim("Adagrad"),
            "Adagrad",
            example=dict(lr=0.05),
            ranges={k: "[0, inf)" for k in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")},
            complex_ok=True,
            eager_state=True,
            converge=dict(lr=0.5),
        ),
        Row(
            "RMSprop",
            draw_rmsprop,
            torch_optim("RMSprop"),
            "RMSprop",
            example=dict(lr=1e-2, momentum=0.5),
            ranges={k: "[0, inf)" for k in ("lr", "alpha", "eps", "weight_decay", "momentum")},
            complex_ok=True,
            float32_truth=_RMSPROP_F32,
            converge=dict(lr=0.01),
        ),
        Row(
            "Adadelta",
            draw_adadelta,
            torch_optim("Adadelta"),
            "Adadelta",
            ranges={"lr": "[0, inf)", "rho": "[0, 1]", "eps": "[0, inf)", "weight_decay": "[0, inf)"},
            complex_ok=True,
            converge=dict(lr=5.0),
        ),
        Row(
            "Adam",
            draw_adam,
            torch_optim("Adam"),
            "Adam",
            example=dict(lr=1e-2, weight_decay=1e-3),
            ranges=_ADAM,
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "AdamW",
            draw_adamw,
            torch_optim("AdamW"),
            "AdamW",
            example=dict(lr=1e-2),
            ranges=_ADAM,
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "Adamax",
            draw_adamax,
            torch_optim("Adamax"),
            "Adamax",
            ranges=_ADAM,
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "NAdam",
            draw_nadam,
            torch_optim("NAdam"),
            "NAdam",
            ranges={**_ADAM, "momentum_decay": "[0, inf)"},
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "RAdam",
            draw_radam,
            torch_optim("RAdam"),
            "RAdam",
            ranges=_ADAM,
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        Row(
            "Rprop",
            draw_rprop,
            torch_optim("Rprop", validates_all=False),
            "Rprop",
            example=dict(lr=1e-2),
            ranges={
                "lr": "[0, inf)",
                "etas[0]": "(0, 1)",
                "etas[1]": "(1, inf)",
                "step_sizes[0]": "[0, inf)",
                "step_sizes[1]": "[step_sizes[0], inf)",
            },
            complex_ok=True,
            converge=dict(lr=0.01),
        ),
        Row(
            "ASGD",
            draw_asgd,
            torch_optim(
                "ASGD",
                own_resume_inexact="torch.optim.ASGD's load casts eta to float64, so a resumed torch run differs "
                "from an uninterrupted one by float32 rounding",
                validates_all=False,
            ),
            "ASGD",
            example=dict(lr=0.05),
            ranges={k: "[0, inf)" for k in ("lr", "lambd", "alpha", "t0", "weight_decay")},
            complex_ok=True,
            converge=dict(lr=0.05),
        ),
        # --------------------------------------------------------------------------- the rest of torch.optim
        Row(
            "Adafactor",
            draw_adafactor,
            torch_optim("Adafactor"),
            "Adafactor",
            example=dict(lr=1e-2),
            ranges={
                "lr": "[0, inf)",
                "beta2_decay": "(-inf, 0]",
                "eps[0]": "[0, inf)",
                "eps[1]": "[0, inf)",
                "d": "[1, inf)",
                "weight_decay": "[0, inf)",
            },
            shapes=((), (5,), (3, 4), (2, 3, 2), (1, 7)),
            converge=dict(lr=0.05),
            **_EXTRA,
        ),
        Row(
            "Muon",
            draw_muon,
            torch_optim("Muon", validates_all=False),
            "Muon",
            exact=dict(ns_dtype="float64"),
            example=dict(lr=1e-2),
            ranges={
                "lr": "[0, inf)",
                "weight_decay": "[0, inf)",
                "momentum": "[0, inf)",
                "ns_coefficients[0]": "(-inf, inf)",
                "ns_coefficients[1]": "(-inf, inf)",
                "ns_coefficients[2]": "(-inf, inf)",
                "eps": "[0, inf)",
            },
            counts={"ns_steps": (0, 100)},
            shapes=((3, 4), (5, 2), (1, 6)),
            known={
                "safety-grad-dtype": "adaptlr.Muon takes a float64 gradient of a float32 parameter (as "
                "torch.optim.Muon, which casts it) where every other engine row refuses it, as torch.optim.Adam"
            },
            converge=dict(lr=0.02),
            **_EXTRA,
        ),
        Row(
            "SparseAdam",
            draw_sparse_adam,
            torch_optim("SparseAdam"),
            "SparseAdam",
            example=dict(lr=1e-2),
            ranges={"lr": "(0, inf)", "eps": "(0, inf)", "betas[0]": "[0, 1)", "betas[1]": "[0, 1)"},
            sparse_grads=True,
            shapes=((8,), (10, 3), (6, 4)),
            converge=dict(lr=0.05),
            **_EXTRA,
        ),
        Row(
            "LBFGS",
            draw_lbfgs,
            torch_optim("LBFGS", validates_all=False, contiguous_only=True),
            "LBFGS",
            example=dict(lr=0.5, max_iter=3),
            ranges={"lr": "[0, inf)", "tolerance_grad": "[0, inf)", "tolerance_change": "[0, inf)"},
            counts={"max_iter": (1, None), "max_eval": (1, None), "history_size": (1, None)},
            engines=(),
            triton=False,
            complex_ok=True,
            needs_closure=True,
            param_groups=False,
            state_on_first_param=True,
        ),
        # ------------------------------------------------------------------- learning-rate-free (the papers' packages)
        Row(
            "Prodigy",
            draw_prodigy,
            Counterpart("prodigyopt:Prodigy", seed_offset=7, sensitive_seed=0, options=_PACKAGE_OPTIONS["Prodigy"]),
            "free.Prodigy",
            example=dict(weight_decay=0.01, d0=1e-3, decouple=False, safeguard_warmup=True),
            ranges={
                **_DADAPT,
                "betas[0]": "[0, 1)",
                "betas[1]": "[0, 1)",
                "beta3": "[0, 1)",
                "eps": "(0, inf)",
                "d_coef": "(0, inf)",
            },
            counts={"slice_p": (1, None)},
            **_FREE,
        ),
        Row(
            "DAdaptSGD",
            draw_dadapt_sgd,
            Counterpart(
                "dadaptation:DAdaptSGD", seed_offset=10, options=_PACKAGE_OPTIONS["DAdaptSGD"], group0_weight_decay=True
            ),
            "free.DAdaptSGD",
            known={"interchange-to": _DADAPT_SGD_TO},
            example=dict(momentum=0.9, d0=1e-3),
            ranges={**_DADAPT, "momentum": "[0, 1)"},
            **_FREE,
        ),
        Row(
            "DAdaptAdam",
            draw_dadapt_adam,
            Counterpart(
                "dadaptation:DAdaptAdam",
                seed_offset=11,
                float32_seed=2,
                sensitive_seed=0,
                options=_PACKAGE_OPTIONS["DAdaptAdam"],
            ),
            "free.DAdaptAdam",
            example=dict(use_bias_correction=True, d0=1e-3),
            ranges={**_DADAPT, "betas[0]": "[0, 1)", "betas[1]": "[0, 1)", "eps": "(0, inf)"},
            **_FREE,
        ),
        Row(
            "DAdaptAdaGrad",
            draw_dadapt_adagrad,
            Counterpart(
                "dadaptation:DAdaptAdaGrad", seed_offset=14, float32_seed=2, options=_PACKAGE_OPTIONS["DAdaptAdaGrad"]
            ),
            "free.DAdaptAdaGrad",
            example=dict(momentum=0.5, d0=1e-2),
            ranges={**_DADAPT, "momentum": "[0, 1)", "eps": "[0, inf)"},
            counts={"log_every": (0, None)},
            **_FREE,
        ),
        Row(
            "DoG",
            draw_dog,
            Counterpart("dog:DoG", seed_offset=3, options=_PACKAGE_OPTIONS["DoG"], own_state_layout=True),
            "free.DoG",
            known={
                **_to_package("dog: _first_step"),
                "safety-mutated": "a checkpoint without parameter 1's state: its x0 restarts at its current point "
                "(as a parameter whose first gradient comes late), and DoG's rbar is one distance over the whole "
                "group, so the other parameters' steps change too (mutation 'drop'; inherent to the method)",
            },
            example=dict(weight_decay=1e-3, reps_rel=1e-2),
            ranges={
                "reps_rel": "(0, inf)",
                "lr": "[0, inf)",
                "weight_decay": "[0, inf)",
                "eps": "[0, inf)",
                "init_eta": "(0, inf)",
            },
            **{**_FREE, "effective_lr": "last step", "per_group_d": True, "lr_free": "reps_rel"},
        ),
        Row(
            "LDoG",
            draw_ldog,
            Counterpart("dog:LDoG", seed_offset=4, options=_PACKAGE_OPTIONS["LDoG"], own_state_layout=True),
            "free.LDoG",
            known=_to_package("dog: _first_step"),
            example=dict(reps_rel=1e-2),
            ranges={
                "reps_rel": "(0, inf)",
                "lr": "[0, inf)",
                "weight_decay": "[0, inf)",
                "eps": "[0, inf)",
                "init_eta": "(0, inf)",
            },
            **{**_FREE, "effective_lr": "last step", "per_group_d": True, "lr_free": "reps_rel", "sums": "per tensor"},
        ),
        Row(
            "ScheduleFreeSGD",
            draw_sf_sgd,
            Counterpart("schedulefree:SGDScheduleFree", seed_offset=6, options=_PACKAGE_OPTIONS["ScheduleFreeSGD"]),
            "free.ScheduleFreeSGD",
            ranges={**_SF_RANGES, "momentum": "(0, 1)"},
            counts={"warmup_steps": (0, None)},
            converge=dict(lr=0.05),
            **_SF,
        ),
        Row(
            "ScheduleFreeAdamW",
            draw_sf_adamw,
            Counterpart("schedulefree:AdamWScheduleFree", seed_offset=8, options=_PACKAGE_OPTIONS["ScheduleFreeAdamW"]),
            "free.ScheduleFreeAdamW",
            example=dict(lr=1e-2, warmup_steps=2),
            ranges=_SF_ADAM_RANGES,
            counts={"warmup_steps": (0, None)},
            converge=dict(lr=0.05),
            **_SF,
        ),
        Row(
            "ScheduleFreeRAdam",
            draw_sf_radam,
            Counterpart("schedulefree:RAdamScheduleFree", seed_offset=8, options=_PACKAGE_OPTIONS["ScheduleFreeRAdam"]),
            "free.ScheduleFreeRAdam",
            example=dict(lr=1e-2),
            ranges=_SF_ADAM_RANGES,
            converge=dict(lr=0.05),
            **_SF,
        ),
        # ------------------------------------------------------------ other adaptive rules (lion-pytorch, pytorch-optimizer)
        Row(
            "Lion",
            draw_lion,
            Counterpart("lion_pytorch:Lion", seed_offset=4),
            "Lion",
            example=dict(lr=1e-3, weight_decay=0.01),
            ranges={"lr": "[0, inf)", "betas[0]": "[0, 1)", "betas[1]": "[0, 1)", "weight_decay": "[0, inf)"},
            effective_lr="lr",
            converge=dict(lr=0.01),
        ),
        Row(
            "AdaBelief",
            draw_adabelief,
            Counterpart("pytorch_optimizer:AdaBelief", seed_offset=9),
            "AdaBelief",
            example=dict(lr=1e-2),
            ranges=_ADAM,
            effective_lr="lr",
            converge=dict(lr=0.05),
        ),
        Row(
            "LAMB",
            draw_lamb,
            Counterpart("pytorch_optimizer:Lamb", seed_offset=4, own_state_layout=True),
            "LAMB",
            example=dict(lr=1e-2, weight_decay=0.01),
            ranges=_ADAM,
            effective_lr="lr",
            sums="per tensor",  # the trust ratio's norms
            engine_rtol=1e-9,
            converge=dict(lr=0.05),
        ),
    ]
}


def rows(where: Callable[[Row], Any] = lambda row: True, known: str | None = None) -> list[Any]:
    """The rows a sweep runs (``where(row)`` true), as pytest params with the row's known failure for the sweep
    key ``known`` (a strict xfail)."""
    out = []
    for row in ROWS.values():
        if where(row):
            marks = [pytest.mark.xfail(strict=True, reason=row.known[known])] if known in row.known else []
            out.append(pytest.param(row, id=row.name, marks=marks))
    return out


def engines_of(row: Row) -> tuple[str, ...]:
    return row.engines or ("default",)


def with_engines(where: Callable[[Row], Any] = lambda row: True, known: str | None = None) -> list[Any]:
    """(row, engine) pairs for every engine of the selected rows."""
    out = []
    for param in rows(where, known):
        row = param.values[0]
        out += [pytest.param(row, e, id=f"{row.name}-{e}", marks=param.marks) for e in engines_of(row)]
    return out


# ----------------------------------------------------------------------------------------- resolving the oracles
def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    found = importlib.import_module(module) if module.startswith("torch") else pytest.importorskip(module)
    return getattr(found, attr)


def counterpart_class(row: Row) -> Any:
    """The counterpart's class (a package that is not installed skips the test)."""
    return _resolve(row.counterpart.target)


def counterpart_factory(row: Row, **kwargs: Any) -> Callable[[Any], Any]:
    """``params -> the counterpart's optimizer`` (quietly: some packages print; in train mode where it has one)."""
    cls = counterpart_class(row)

    def make(params):
        with contextlib.redirect_stdout(io.StringIO()):
            opt = cls(params, **kwargs)
        if hasattr(opt, "train"):
            opt.train()
        return opt

    return make


def reference_class(row: Row) -> Any:
    module, _, name = row.reference.rpartition(".")
    return getattr(importlib.import_module("adaptlr.reference" + (f".{module}" if module else "")), name)


#: the modules whose references keep their own copy of the parameters, ``x``, as their packages do
_PACKAGE_STYLE = ("adaptlr.reference.free", "adaptlr.reference._adaptive")


def package_style_reference(row: Row) -> bool:
    """Whether the row's reference keeps its own copy of the parameters (``x``, ``step(grads)``: the
    learning-rate-free methods', Lion's, AdaBelief's, LAMB's) rather than updating the arrays it is given in place
    with torch.optim's state."""
    return row.reference is not None and reference_class(row).__module__.startswith(_PACKAGE_STYLE)


# -------------------------------------------------------------------------------------------------- harnesses
def shaped(row: Row, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape``, or a matrix of as many elements for a row that takes matrices only."""
    if not row.matrices_only or len(shape) == 2:
        return shape
    n = math.prod(shape)
    return (n, 1) if n > 1 else (1, 1)


def trainable(row: Row, params: Any) -> list[torch.Tensor]:
    """The parameters of ``params`` the row's optimizer takes (Muon: the matrices)."""
    params = list(params)
    if row.matrices_only:
        params = [p for p in params if p.ndim == 2]
    return params


def make(row: Row, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """``adaptlr.<name>`` on the parameters it takes (``params`` may be groups)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "params": trainable(row, g["params"])} for g in params]
    else:
        params = trainable(row, params)
    return row.cls(params, **kwargs)


def sparsify(row: Row, params: Any) -> None:
    """A row that takes sparse gradients only gets each dense gradient as a sparse tensor (every entry)."""
    if row.sparse_grads:
        for p in params:
            if p.grad is not None and not p.grad.is_sparse:
                p.grad = p.grad.to_sparse()


def step(row: Row, opt: torch.optim.Optimizer, loss: Callable[[], torch.Tensor], hook: Callable | None = None):
    """One step on ``loss()``: through a closure for a row that needs one; ``hook()`` runs after the backward."""
    params = [p for g in opt.param_groups for p in g["params"]]

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        if hook is not None:
            hook()
        sparsify(row, params)
        return value

    if row.needs_closure:
        return opt.step(closure)
    value = closure()
    opt.step()
    return value


# ------------------------------------------------------------------------------------------------ validation
_BOUND = r"(-?inf|[-+0-9.e]+|\w+\[\d+\]|\w+)"
_INTERVAL = re.compile(rf"^([\[(])\s*{_BOUND}\s*,\s*{_BOUND}\s*([\])])$")


@dataclass(frozen=True)
class Interval:
    """An interval as the error messages write it: ``"[0, inf)"``; a bound may name another hyperparameter
    (``"[step_sizes[0], inf)"``), read from ``values`` (the defaults where it is absent)."""

    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str, values: Callable[[str], float] | None = None) -> Interval:
        m = _INTERVAL.match(text)
        assert m, f"not an interval: {text!r}"

        def bound(token):
            try:
                return float(token)
            except ValueError:
                assert values is not None, f"{text!r} needs the values of the other hyperparameters"
                return float(values(token))

        return cls(bound(m[2]), bound(m[3]), m[1] == "(", m[4] == ")")

    def __contains__(self, v: float) -> bool:
        if math.isnan(v):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below


def interval(row: Row, key: str, kwargs: Mapping[str, Any] | None = None) -> Interval:
    """The allowed interval of ``key``, its bounds read from ``kwargs`` or the defaults where they name another
    hyperparameter."""
    return Interval.parse(row.ranges[key], lambda other: value_of(row, other, kwargs or {}))


def value_of(row: Row, key: str, kwargs: Mapping[str, Any]) -> Any:
    """The value ``key`` has in ``kwargs`` (a tuple's element), else its default."""
    import inspect

    name, index = argument(key)
    value = kwargs[name] if name in kwargs else inspect.signature(row.cls).parameters[name].default
    return value if index is None else value[index]


def argument(key: str) -> tuple[str, int | None]:
    """``"betas[1]"`` -> ``("betas", 1)``; ``"lr"`` -> ``("lr", None)``."""
    m = re.fullmatch(r"(\w+)\[(\d+)\]", key)
    return (m[1], int(m[2])) if m else (key, None)


def kwargs_with(row: Row, key: str, value: Any) -> dict:
    """The keyword arguments that set the hyperparameter ``key`` (a tuple's element among its defaults)."""
    import inspect

    name, index = argument(key)
    if index is None:
        return {name: value}
    default = list(inspect.signature(row.cls).parameters[name].default)
    default[index] = value
    return {name: tuple(default)}
