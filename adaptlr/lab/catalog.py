"""The catalog of names a method spec may use: optimizers, schedule terms and controller terms.

Optimizer names map to classes through a table of names (``_OPTIMIZERS``, plus :func:`register_optimizer`):
``adaptlr.<Class>`` when adaptlr has it, else ``torch.optim.<Class>``; learning-rate-free methods exist only in
adaptlr and are offered only when it has them. Schedule terms (``_SCHEDULES``) map onto ``adaptlr.schedules``
factories and controller terms (``_CONTROLLERS``) onto ``adaptlr.controllers`` classes. A spec's names are
looked up only in these tables, nothing in a spec is imported or evaluated. This module also says what is
offered right now (:func:`available_methods`) and suggests the closest name for a typo (``_did_you_mean``).

The grammar that reads specs is :mod:`adaptlr.lab.grammar`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["available_methods", "is_lr_free", "register_optimizer"]


@dataclass(frozen=True)
class _OptimizerEntry:
    cls: str  # class name in adaptlr (and in torch.optim when ``torch_fallback``)
    torch_fallback: bool
    defaults: tuple[tuple[str, Any], ...] = ()
    lr_free: bool = False


_OPTIMIZERS: dict[str, _OptimizerEntry] = {
    "sgd": _OptimizerEntry("SGD", True, (("lr", 0.1),)),
    "momentum": _OptimizerEntry("SGD", True, (("lr", 0.01), ("momentum", 0.9))),
    "nesterov": _OptimizerEntry("SGD", True, (("lr", 0.01), ("momentum", 0.9), ("nesterov", True))),
    "adagrad": _OptimizerEntry("Adagrad", True, (("lr", 0.01),)),
    "rmsprop": _OptimizerEntry("RMSprop", True, (("lr", 1e-3),)),
    "adadelta": _OptimizerEntry("Adadelta", True, (("lr", 1.0),)),
    "adam": _OptimizerEntry("Adam", True, (("lr", 1e-3),)),
    "adamw": _OptimizerEntry("AdamW", True, (("lr", 1e-3),)),
    "adamax": _OptimizerEntry("Adamax", True, (("lr", 2e-3),)),
    "nadam": _OptimizerEntry("NAdam", True, (("lr", 2e-3),)),
    "radam": _OptimizerEntry("RAdam", True, (("lr", 1e-3),)),
    # learning-rate-free: adaptlr only, offered when present
    "prodigy": _OptimizerEntry("Prodigy", False, lr_free=True),
    "dadapt_adam": _OptimizerEntry("DAdaptAdam", False, lr_free=True),
    "dadapt_sgd": _OptimizerEntry("DAdaptSGD", False, lr_free=True),
    "dadapt_adagrad": _OptimizerEntry("DAdaptAdaGrad", False, lr_free=True),
    "dog": _OptimizerEntry("DoG", False, lr_free=True),
    "ldog": _OptimizerEntry("LDoG", False, lr_free=True),
    "schedulefree_adamw": _OptimizerEntry("ScheduleFreeAdamW", False, lr_free=True),
    "schedulefree_sgd": _OptimizerEntry("ScheduleFreeSGD", False, lr_free=True),
    "schedulefree_radam": _OptimizerEntry("ScheduleFreeRAdam", False, lr_free=True),
}

# ``auto``: adaptlr.Auto (training without tuning); the runner trains it with adaptlr.auto.Auto.fit, which races
# learning rates on the task's validation split, so it is a loop-level method rather than an optimizer to build
_OPTIMIZERS["auto"] = _OptimizerEntry("Auto", False, lr_free=True)

_USER_OPTIMIZERS: dict[str, tuple[type, tuple[tuple[str, Any], ...]]] = {}

# schedule terms: name -> {argument: default}; each maps onto an ``adaptlr.schedules`` factory (see _schedule)
_SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "warmup": {"steps": 0.05},
    "cosine": {"warmup": 0.0, "final": 0.0},
    "linear": {"warmup": 0.0, "final": 0.0},
    "step": {"every": 0.3, "gamma": 0.1},
    "one_cycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"},
    "wsd": {"warmup": 0.0, "decay": 0.2, "cooldown": "linear"},
    "schedule": {"spec": None},  # any adaptlr.schedules spec, as a multiplier of the optimizer's lr
}
_SCHEDULE_FACTORIES = {
    "constant": ("constant",),
    "warmup": ("warmup", "constant"),
    "cosine": ("cosine", "warmup"),
    "linear": ("linear", "warmup"),
    "step": ("step",),
    "one_cycle": ("one_cycle",),
    "wsd": ("wsd",),
    "schedule": ("from_spec", "scale"),
}
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


def _resolve_class(name: str) -> type | None:
    """The class of the optimizer called ``name`` in specs: looked up in the user's registrations, then in
    the fixed table ``_OPTIMIZERS`` (whose class names are attributes of ``adaptlr``, ``adaptlr.free`` or
    ``torch.optim``); a name from a spec never reaches ``getattr`` itself."""
    if name in _USER_OPTIMIZERS:
        return _USER_OPTIMIZERS[name][0]
    entry = _OPTIMIZERS.get(name)
    if entry is None:
        return None
    import adaptlr

    cls = getattr(adaptlr, entry.cls, None)
    if cls is None and entry.lr_free:
        from adaptlr import free

        cls = getattr(free, entry.cls, None)
    if cls is None and entry.torch_fallback:
        import torch.optim

        cls = getattr(torch.optim, entry.cls, None)
    return cls


def _schedule_available(name: str) -> bool:
    from adaptlr import schedules

    return all(hasattr(schedules, f) for f in _SCHEDULE_FACTORIES[name])


def _controller_class(name: str) -> type | None:
    from adaptlr import controllers

    return getattr(controllers, _CONTROLLERS[name][0], None)


def is_lr_free(name: str) -> bool:
    """Whether the optimizer called ``name`` in specs is a learning-rate-free method."""
    entry = _OPTIMIZERS.get(name)
    return bool(entry and entry.lr_free)


def available_methods() -> dict[str, list[str]]:
    """The names offered right now: ``{"optimizers": [...], "lr_free": [...], "schedules": [...], ...}``."""
    opts = [n for n, e in _OPTIMIZERS.items() if not e.lr_free and _resolve_class(n) is not None]
    free = [n for n, e in _OPTIMIZERS.items() if e.lr_free and _resolve_class(n) is not None]
    return {
        "optimizers": opts + sorted(_USER_OPTIMIZERS),
        "lr_free": free,
        "schedules": [n for n in _SCHEDULES if _schedule_available(n)],
        "controllers": [n for n in _CONTROLLERS if _controller_class(n) is not None],
    }


def _distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (optimal string alignment)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
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


def _all_names() -> list[str]:
    return [*_OPTIMIZERS, *_USER_OPTIMIZERS, *_SCHEDULES, *_CONTROLLERS]
