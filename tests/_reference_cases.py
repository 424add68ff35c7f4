"""Random hyperparameter draws (``draw_<method>(rng) -> kwargs``: each row of tests/_optim_table.py names one) and
a noisy quadratic, shared by the tests that compare optimizers with adaptlr.reference (tests/test_reference.py:
against torch.optim; tests/test_optim_vs_reference.py: adaptlr's optimizers).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

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


def make_problem(seed, shapes=SHAPES):
    """A noisy quadratic per shape: grad(p) = s * a * (p - c) + sigma * noise_t (s = -1 if maximizing)."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s) for s in shapes]
    curv = [rng.uniform(0.1, 2.0, size=s) for s in shapes]
    center = [rng.normal(size=s) for s in shapes]
    sigma = float(rng.uniform(0.0, 1.0))
    noise = [[sigma * rng.normal(size=s) for s in shapes] for _ in range(N_STEPS)]
    return init, curv, center, noise


def quadratic_gradient(seed, maximize=False, shapes=SHAPES):
    """grad(params, t) for make_problem(seed, shapes); ascent on -f when maximizing, so both converge."""
    _, curv, center, noise = make_problem(seed, shapes)
    sign = -1.0 if maximize else 1.0

    def grad(params, t):
        return [np.asarray(sign * a * (p - c) + n) for p, a, c, n in zip(params, curv, center, noise[t], strict=True)]

    return grad


def sparse_support(seed, t, shape, contiguous=True):
    """Where a sparse gradient is nonzero at step t: whole rows of a contiguous matrix whose rows are not 4 long
    (a hybrid, "embedding" gradient: indices of shape (1, k)), else entries (indices (ndim, k)), some repeated
    (coalescing sums them)."""
    rng = np.random.default_rng(zlib.crc32(f"{seed}-{t}-{tuple(shape)}".encode()))
    if len(shape) == 2 and contiguous and shape[1] != 4:
        k = int(rng.integers(1, shape[0]))
        return rng.choice(shape[0], k, replace=False)[None]
    n = int(np.prod(shape))
    k = int(rng.integers(1, n))
    flat = rng.choice(n, k, replace=False)
    if rng.random() < 0.3:  # repeated indices: coalesce sums them
        flat = np.concatenate([flat, flat[: max(1, k // 3)]])
    return np.stack(np.unravel_index(flat, tuple(shape)))[: len(shape)]


class Problem:
    """The noisy quadratic on the row's shapes; the torch parameters, with the last matrix non-contiguous."""

    def __init__(self, row, seed, maximize):
        self.row, self.seed = row, seed
        self.shapes = list(row.shapes or SHAPES)
        self.init = make_problem(seed, self.shapes)[0]
        self.grad = quadratic_gradient(seed, maximize, self.shapes)
        self.transposed = max(i for i, s in enumerate(self.shapes) if len(s) == 2 and min(s) > 1)

    def arrays(self):
        return [x.copy() for x in self.init]

    def tensors(self):
        out = []
        for i, x in enumerate(self.init):
            t = torch.tensor(np.ascontiguousarray(x.T) if i == self.transposed else x, dtype=torch.float64)
            out.append((t.t() if i == self.transposed else t).requires_grad_())
        assert not out[self.transposed].is_contiguous()
        return out

    def reference_grads(self, arrays, t):
        """The gradients at ``arrays`` (NumPy), in the reference's form (coordinates for sparse ones)."""
        grads = self.grad(arrays, t)
        if not self.row.sparse_grads:
            return grads
        out = []
        for i, g in enumerate(grads):
            idx = sparse_support(self.seed, t, self.shapes[i], i != self.transposed)
            out.append((idx, g[tuple(idx)]))
        return out

    def set_grads(self, params, t):
        """The same gradients at the torch parameters (each optimizer's own), as ``p.grad``."""
        grads = self.reference_grads([p.detach().numpy() for p in params], t)
        for p, g in zip(params, grads, strict=True):
            if self.row.sparse_grads:
                idx, values = g
                p.grad = torch.sparse_coo_tensor(
                    torch.from_numpy(idx), torch.from_numpy(values), p.shape, check_invariants=True
                )
            else:
                p.grad = torch.from_numpy(np.ascontiguousarray(g)).reshape(p.shape)
