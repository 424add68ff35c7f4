"""Random hyperparameter draws and a noisy quadratic, shared by the tests that compare optimizers with
adaptlr.reference (tests/test_reference.py: against torch.optim; tests/test_optim_vs_reference.py: adaptlr.optim).
"""

from __future__ import annotations

import numpy as np

N_STEPS = 100
SHAPES = [(), (3,), (2, 3), (4, 1, 2)]


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


DRAWS = {
    "SGD": draw_sgd,
    "Adagrad": draw_adagrad,
    "RMSprop": draw_rmsprop,
    "Adadelta": draw_adadelta,
    "Adam": draw_adam,
    "AdamW": draw_adamw,
    "Adamax": draw_adamax,
    "NAdam": draw_nadam,
    "RAdam": draw_radam,
    "Rprop": draw_rprop,
    "ASGD": draw_asgd,
}


def make_problem(seed):
    """A noisy quadratic per shape: grad(p) = s * a * (p - c) + sigma * noise_t (s = -1 if maximizing)."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s) for s in SHAPES]
    curv = [rng.uniform(0.1, 2.0, size=s) for s in SHAPES]
    center = [rng.normal(size=s) for s in SHAPES]
    sigma = float(rng.uniform(0.0, 1.0))
    noise = [[sigma * rng.normal(size=s) for s in SHAPES] for _ in range(N_STEPS)]
    return init, curv, center, noise


def quadratic_gradient(seed, maximize=False):
    """grad(params, t) for make_problem(seed); ascent on -f when maximizing, so both converge."""
    _, curv, center, noise = make_problem(seed)
    sign = -1.0 if maximize else 1.0

    def grad(params, t):
        return [np.asarray(sign * a * (p - c) + n) for p, a, c, n in zip(params, curv, center, noise[t], strict=True)]

    return grad
