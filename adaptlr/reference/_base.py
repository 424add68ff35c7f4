"""The tiny base shared by the NumPy reference optimizers.

A reference optimizer owns a list of float64 NumPy arrays (the parameters) and updates them in place on
``step(grads)``. Its per-parameter state lives in ``state``, a list of dicts parallel to the parameters,
with torch.optim's state names (``exp_avg``, ``square_avg``, ...) as float64 arrays and ``step`` as an int.
As in torch.optim, the state of a parameter is created lazily on its first gradient, and a parameter whose
gradient is ``None`` is skipped (its state is untouched).

Per-step scalars (bias corrections, step sizes) are computed with Python floats in the same order as
``torch.optim``'s single-tensor path, so the two agree to rounding in the elementwise arithmetic only.

``step`` is an exact Python int. torch.optim keeps it (and NAdam's ``mu_product``) in a 0-dim tensor of the
*default* dtype: float32 unless ``torch.set_default_dtype(torch.float64)``, so torch's ``step`` stops
counting at 2**24 = 16,777,216 (``16777216.0 + 1 == 16777216.0`` in float32) and NAdam's ``mu_product``
carries float32 rounding; compare with torch under a float64 default dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["ReferenceOptimizer"]


def copied_arrays(params: Iterable[Any]) -> list[np.ndarray]:
    """Float64 copies of ``params`` (the references that keep their own parameters, ``x``, start from these)."""
    return [np.array(p, dtype=np.float64, copy=True) for p in params]


def dot(a: Any, b: Any) -> float:
    """The sum of the elementwise product of ``a`` and ``b``, as a Python float."""
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def check_range(name: str, value: float, low: float = 0.0, high: float | None = None, *, open_high=False):
    """Raise ``ValueError`` naming the hyperparameter, its value and the allowed range."""
    too_high = high is not None and (value >= high if open_high else value > high)
    if not value >= low or too_high:  # `not >=` also rejects NaN
        bracket = ")" if open_high else "]"
        allowed = f"[{low}, {high}{bracket}" if high is not None else f">= {low}"
        raise ValueError(f"Invalid {name}: {value!r} (allowed: {allowed})")


class ReferenceOptimizer:
    """Base class: parameter bookkeeping, lazy state, ``step`` over ``(param, grad, state)`` triples.

    Subclasses implement ``_init_state(param) -> dict`` and ``_update(param, grad, state)``; the
    latter receives ``grad`` as a fresh float64 array (safe to modify) and updates ``param`` and
    ``state`` in place.
    """

    def __init__(self, params: Iterable[np.ndarray]) -> None:
        self.params: list[np.ndarray] = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray) or p.dtype != np.float64:
                got = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"params[{i}] must be a float64 numpy.ndarray, got {got}")
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] is read-only; the reference updates parameters in place")
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Apply one update, given one gradient per parameter (``None`` skips that parameter)."""
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if g is None:
                continue
            g = np.array(g, dtype=np.float64)  # a copy: updates below may modify it
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] has shape {p.shape}")
            if not self.state[i]:
                self.state[i] = self._init_state(p)
            self._update(p, g, self.state[i])

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("params", "state"))
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"
