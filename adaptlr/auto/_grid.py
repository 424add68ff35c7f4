"""The candidates: each inner optimizer's default grid of learning rates, how the grid extends past an edge that
wins, and how the inner optimizer is built for one candidate.

================================================  ====================  ===========================
inner optimizer                                    default grid          decoupled weight decay
================================================  ====================  ===========================
Adam, AdamW, NAdam, RAdam, Adamax, AdaBelief,      1e-4 ... 1e-1         AdamW, LAMB, AdaBelief
LAMB, SparseAdam, Rprop, Muon                                            Muon (+ ``decoupled_weight_decay``)
Adafactor                                          3e-4 ... 3e-1         Adafactor
RMSprop                                            3e-5 ... 3e-2
Lion                                               1e-5 ... 1e-2         Lion
SGD (momentum, Nesterov), ASGD, Adagrad            1e-3 ... 1
Adadelta                                           1e-2 ... 10
any other adaptlr optimizer                        its default lr x 10^(-1.5 ... 1.5)
================================================  ====================  ===========================

Every grid has seven half-decade points. A learning-rate-free optimizer (``adaptlr.free``: Prodigy,
D-Adaptation, DoG, Schedule-Free) estimates its own step size and is refused; so is LBFGS (its line search sets
the step).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "DEFAULT_LRS",
    "GRIDS",
    "LR_SCALE",
    "check_optimizer",
    "default_lrs",
    "extension",
    "make_optimizer",
    "spread_in_time",
]

HALF_DECADE = math.sqrt(10.0)
#: the key of a raced optimizer's param group holding its ``lr_scale`` (the raced lr times it is the group's lr)
LR_SCALE = "adaptlr_auto_lr_scale"


def _grid(low: float) -> tuple[float, ...]:
    """Seven half-decade points from ``low`` (1, 3, 10, ... times ``low``, rounded to 3, 1 significant)."""
    return tuple(float(f"{low * HALF_DECADE**i:.0e}") for i in range(7))


#: the half-decade grid of Adam-family optimizers (the grid the benchmark's tuned baseline searches)
DEFAULT_LRS: tuple[float, ...] = _grid(1e-4)

#: class name -> default grid
GRIDS: dict[str, tuple[float, ...]] = {
    **dict.fromkeys(
        ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "AdaBelief", "LAMB", "SparseAdam", "Rprop", "Muon"), DEFAULT_LRS
    ),
    "Adafactor": _grid(3e-4),
    "RMSprop": _grid(3e-5),
    "Lion": _grid(1e-5),
    **dict.fromkeys(("SGD", "ASGD", "Adagrad"), _grid(1e-3)),
    "Adadelta": _grid(1e-2),
}
_DECOUPLED = {"AdamW", "LAMB", "AdaBelief", "Muon", "Adafactor", "Lion"}


def check_optimizer(cls: Any) -> type[torch.optim.Optimizer]:
    """``cls`` if Auto can race its learning rate, else a ``TypeError`` that says why not."""
    from .. import free
    from ..optim import Optimizer

    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"Invalid optimizer: {cls!r} (expected an adaptlr optimizer class, such as adaptlr.AdamW)")
    lr_free = tuple(getattr(free, n) for n in free.__all__ if isinstance(getattr(free, n), type))
    if issubclass(cls, lr_free):
        raise TypeError(
            f"Auto cannot race {cls.__name__}: it is learning-rate-free (it estimates its own step size, so a grid "
            f"of learning rates would only scale that estimate); train it directly, or race an optimizer that "
            "takes a learning rate (adaptlr.AdamW, adaptlr.SGD, ...)"
        )
    if cls.__name__ == "LBFGS":
        raise TypeError("Auto cannot race LBFGS: its line search sets the step (and its step needs a closure)")
    if not issubclass(cls, Optimizer):
        raise TypeError(
            f"Invalid optimizer: {cls.__name__} is not an adaptlr optimizer (Auto sets its schedule with "
            "set_lr); use the adaptlr class of the same name"
        )
    return cls


def default_lrs(cls: type[torch.optim.Optimizer]) -> tuple[float, ...]:
    """The default grid for ``cls`` (the table above; by class name along its MRO)."""
    for klass in cls.__mro__:
        if klass.__name__ in GRIDS and klass.__module__.startswith("adaptlr"):
            return GRIDS[klass.__name__]
    lr = inspect.signature(cls.__init__).parameters.get("lr")
    center = float(lr.default) if lr is not None and isinstance(lr.default, (int, float)) else 1e-3
    return tuple(float(f"{center * HALF_DECADE**i:.1e}") for i in range(-3, 4))


def extension(tried: Sequence[float], upward: bool, limits: tuple[float, float]) -> float | None:
    """The next learning rate past the grid's edge (a half-decade above the largest tried, or below the
    smallest), or None past ``limits``."""
    edge = max(tried) if upward else min(tried)
    lr = float(f"{edge * (HALF_DECADE if upward else 1 / HALF_DECADE):.2g}")
    return lr if limits[0] / 1.05 <= lr <= limits[1] * 1.05 else None


def decoupled(cls: type[torch.optim.Optimizer], options: dict[str, Any]) -> bool:
    """Whether ``cls`` decays weights by ``lr * weight_decay`` per step (decoupled), as configured."""
    return any(k.__name__ in _DECOUPLED for k in cls.__mro__) or bool(options.get("decoupled_weight_decay"))


def make_optimizer(
    cls: type[torch.optim.Optimizer],
    groups: list[dict[str, Any]],
    lr: float,
    options: dict[str, Any],
    decay_lr: float,
) -> torch.optim.Optimizer:
    r"""``cls(groups, lr=lr, **options)`` for one candidate. With decoupled weight decay the decay per step is
    :math:`\eta\lambda`, which grows with the candidate's lr: above ``decay_lr`` (the top of the default grid) the
    groups' :math:`\lambda` is scaled by ``decay_lr / lr`` so that no candidate decays faster than the grid's
    largest lr does (a large lr then wins or loses on its steps, not on its decay)."""
    shrink = min(1.0, decay_lr / lr) if decoupled(cls, options) else 1.0
    base = float(options.get("weight_decay", _default(cls, "weight_decay", 0.0)))
    built = []
    for g in groups:
        g = dict(g)
        g[LR_SCALE] = float(g.pop("lr_scale", 1.0))
        if shrink != 1.0:
            g["weight_decay"] = float(g.get("weight_decay", base)) * shrink
        built.append(g)
    return cls(built, lr=lr, **options)


@functools.lru_cache(maxsize=64)  # (a signature read: ~20 us of the 33 us an optimizer took to build on linreg)
def _default(cls: type, name: str, fallback: Any) -> Any:
    p = inspect.signature(cls.__init__).parameters.get(name)
    return p.default if p is not None and p.default is not inspect.Parameter.empty else fallback


def spread_in_time(lrs: tuple[float, ...] | list[float]) -> list[float]:
    """``lrs`` in the order rung 1 races them: neighbours far apart in time (a golden-ratio permutation of the
    sorted grid: 1e-4, 3e-2, 1e-3, 1e-2, 3e-4, 1e-1, 3e-3 for the default one), so that a machine whose speed
    changes during the race (another process starting) does not look like a step cost that depends on the lr
    (:func:`~adaptlr.auto.run_cost`)."""
    ordered = sorted(lrs)
    return [ordered[i] for i in sorted(range(len(ordered)), key=lambda i: (i * 0.6180339887498949) % 1.0)]
