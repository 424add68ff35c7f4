"""The catalog of names a method spec may use: optimizers, schedule terms and controller terms.

Optimizer names map to classes of ``adaptlr`` through a fixed table of class names, plus
:func:`register_optimizer` for classes of your own; schedule terms are the table of
:mod:`adaptlr.lab.schedule_terms`, and controller terms map onto ``adaptlr.controllers`` classes. A spec's names
are looked up only in these tables: nothing in a spec is imported or evaluated. This module also says what is
offered (:func:`available_methods`) and suggests the closest name for a typo (:func:`did_you_mean`).

The grammar that reads specs is :mod:`adaptlr.lab.grammar`; :mod:`adaptlr.lab.build` builds what it read.

>>> optimizer_class("adam").__name__, optimizer_defaults("adam"), is_lr_free("prodigy")
('Adam', {'lr': 0.001}, True)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .schedule_terms import SCHEDULE_TERMS

__all__ = [
    "all_names",
    "available_methods",
    "builtin_optimizers",
    "controller_class",
    "controller_defaults",
    "did_you_mean",
    "is_controller",
    "is_lr_free",
    "is_optimizer",
    "is_schedule",
    "optimizer_class",
    "optimizer_defaults",
    "register_optimizer",
    "schedule_defaults",
]


@dataclass(frozen=True)
class _OptimizerEntry:
    cls: str  # the class's name in adaptlr
    defaults: tuple[tuple[str, Any], ...] = ()
    lr_free: bool = False


_OPTIMIZERS: dict[str, _OptimizerEntry] = {
    "sgd": _OptimizerEntry("SGD", (("lr", 0.1),)),
    "momentum": _OptimizerEntry("SGD", (("lr", 0.01), ("momentum", 0.9))),
    "nesterov": _OptimizerEntry("SGD", (("lr", 0.01), ("momentum", 0.9), ("nesterov", True))),
    "adagrad": _OptimizerEntry("Adagrad", (("lr", 0.01),)),
    "rmsprop": _OptimizerEntry("RMSprop", (("lr", 1e-3),)),
    "adadelta": _OptimizerEntry("Adadelta", (("lr", 1.0),)),
    "adam": _OptimizerEntry("Adam", (("lr", 1e-3),)),
    "adamw": _OptimizerEntry("AdamW", (("lr", 1e-3),)),
    "adamax": _OptimizerEntry("Adamax", (("lr", 2e-3),)),
    "nadam": _OptimizerEntry("NAdam", (("lr", 2e-3),)),
    "radam": _OptimizerEntry("RAdam", (("lr", 1e-3),)),
    # learning-rate-free
    "prodigy": _OptimizerEntry("Prodigy", lr_free=True),
    "dadapt_adam": _OptimizerEntry("DAdaptAdam", lr_free=True),
    "dadapt_sgd": _OptimizerEntry("DAdaptSGD", lr_free=True),
    "dadapt_adagrad": _OptimizerEntry("DAdaptAdaGrad", lr_free=True),
    "dog": _OptimizerEntry("DoG", lr_free=True),
    "ldog": _OptimizerEntry("LDoG", lr_free=True),
    "schedulefree_adamw": _OptimizerEntry("ScheduleFreeAdamW", lr_free=True),
    "schedulefree_sgd": _OptimizerEntry("ScheduleFreeSGD", lr_free=True),
    "schedulefree_radam": _OptimizerEntry("ScheduleFreeRAdam", lr_free=True),
    # adaptlr.Auto (training without tuning): the runner trains it with adaptlr.auto.Auto.fit, which races
    # learning rates on the task's validation split, so it is a loop-level method rather than an optimizer to build
    "auto": _OptimizerEntry("Auto", lr_free=True),
}

_USER_OPTIMIZERS: dict[str, tuple[type, tuple[tuple[str, Any], ...]]] = {}

# controller terms: name -> (class in adaptlr.controllers, {argument: default})
_CONTROLLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "plateau": ("ReduceOnPlateau", {"patience": 3, "factor": 0.5}),
}


def register_optimizer(name: str, cls: type, **defaults: Any) -> None:
    """Offer ``name`` in specs for an optimizer class of your own (any ``torch.optim.Optimizer``);
    ``defaults`` are the lab's defaults for it (written into the canonical form, like ``sgd``'s lr)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Invalid name: {name!r} (expected an identifier, as it is written in specs)")
    if not isinstance(cls, type):
        raise ValueError(f"Invalid cls: {cls!r} (expected an optimizer class)")
    _USER_OPTIMIZERS[name.lower()] = (cls, tuple(sorted(defaults.items())))


def is_optimizer(name: str) -> bool:
    """Whether ``name`` is an optimizer term (adaptlr's, or registered with :func:`register_optimizer`)."""
    return name in _OPTIMIZERS or name in _USER_OPTIMIZERS


def builtin_optimizers() -> list[str]:
    """The optimizer names adaptlr offers by itself, in the table's order."""
    return list(_OPTIMIZERS)


def optimizer_class(name: str) -> type | None:
    """The class of the optimizer called ``name`` in specs (None for a name that is none): looked up in the
    user's registrations, then in the fixed table of class names of ``adaptlr``; a name from a spec never
    reaches ``getattr`` itself."""
    if name in _USER_OPTIMIZERS:
        return _USER_OPTIMIZERS[name][0]
    entry = _OPTIMIZERS.get(name)
    if entry is None:
        return None
    import adaptlr

    return getattr(adaptlr, entry.cls)


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The lab's defaults of the optimizer called ``name`` (written into its canonical form, like ``sgd``'s
    lr); a name that is no optimizer raises ``KeyError``."""
    if name in _USER_OPTIMIZERS:
        return dict(_USER_OPTIMIZERS[name][1])
    return dict(_OPTIMIZERS[name].defaults)


def is_lr_free(name: str) -> bool:
    """Whether the optimizer called ``name`` in specs is a learning-rate-free method."""
    entry = _OPTIMIZERS.get(name)
    return bool(entry and entry.lr_free)


def is_schedule(name: str) -> bool:
    """Whether ``name`` is a schedule term."""
    return name in SCHEDULE_TERMS


def schedule_defaults(name: str) -> dict[str, Any]:
    """The arguments of the schedule term ``name`` with the lab's defaults."""
    return dict(SCHEDULE_TERMS[name].defaults)


def is_controller(name: str) -> bool:
    """Whether ``name`` is a controller term."""
    return name in _CONTROLLERS


def controller_class(name: str) -> type:
    """The ``adaptlr.controllers`` class of the controller term ``name``."""
    from adaptlr import controllers

    return getattr(controllers, _CONTROLLERS[name][0])


def controller_defaults(name: str) -> dict[str, Any]:
    """The lab's defaults of the controller term ``name`` (left out of canonical forms)."""
    return dict(_CONTROLLERS[name][1])


def available_methods() -> dict[str, list[str]]:
    """The names offered: ``{"optimizers": [...], "lr_free": [...], "schedules": [...], "controllers": [...]}``."""
    return {
        "optimizers": [n for n, e in _OPTIMIZERS.items() if not e.lr_free] + sorted(_USER_OPTIMIZERS),
        "lr_free": [n for n, e in _OPTIMIZERS.items() if e.lr_free],
        "schedules": list(SCHEDULE_TERMS),
        "controllers": list(_CONTROLLERS),
    }


def all_names() -> list[str]:
    """Every name a spec may use (for a did-you-mean)."""
    return [*_OPTIMIZERS, *_USER_OPTIMIZERS, *SCHEDULE_TERMS, *_CONTROLLERS]


def _distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (optimal string alignment)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice (edit distance, then difflib's ratio), or ``""``."""
    choices = list(choices)
    if not choices:
        return ""
    best = min(
        choices,
        key=lambda c: (_distance(word.lower(), c.lower()), -difflib.SequenceMatcher(None, word, c).ratio()),
    )
    if _distance(word.lower(), best.lower()) <= max(2, len(word) // 3):
        return f"; did you mean {best!r}?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
