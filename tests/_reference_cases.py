"""A noisy quadratic (and sparse gradients' support), shared by the tests that compare optimizers with
adaptlr.reference (tests/test_reference.py: against torch.optim; tests/test_optim_vs_reference.py: adaptlr's
optimizers). The random hyperparameter draws live beside their rows, in tests/_optim_table.py.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

N_STEPS = 100
SHAPES = [(), (3,), (2, 3), (4, 1, 2)]


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
