r"""Schedules: pure, picklable function objects ``step -> value`` with a spec that round-trips.

``step`` counts the steps already taken (``s(0)`` is the value of the first update). Every factory validates
its arguments; durations are steps (int) or fractions of ``total_steps`` (float in (0, 1]), one rule shared
with the lab (``adaptlr._validation.duration``). A schedule whose values would go negative or grow without
bound is refused when it is built (``allow_negative=True`` keeps a negative one on purpose). A spec is data:
it names factories and functions registered with :func:`register_callable`, and nothing in it is imported.
Registration is needed only for that, where a schedule is written as a string (a lab spec, the CLI): in
Python a user function (``from_epochs(lambda e: ...)``, or any ``step -> value`` given to a composite) works
everywhere without it.

>>> from adaptlr import schedules as S
>>> s = S.warmup(S.cosine(3e-3, steps=9_000), steps=1_000)
>>> S.from_spec(s.spec) == s
True
"""

from typing import TYPE_CHECKING, Any

from ._base import (
    NoSpecError,
    Schedule,
    ScheduleLike,
    from_spec,
    parse_spec,
    register_callable,
    registered_callables,
    schedule_classes,
)
from ._basic import (
    constant,
    exponential,
    inverse_sqrt,
    linear,
    multistep,
    piecewise_constant,
    polynomial,
    step,
)
from ._compose import from_epochs, join, product, scale, warmup
from ._cyclic import cosine, cosine_restarts, cyclic, one_cycle, wsd
from ._plot import plot

if TYPE_CHECKING:  # pragma: no cover
    from ._torch import ScheduleLR, as_torch_scheduler


def allow_torch_load() -> None:
    """Let ``torch.load(..., weights_only=True)`` rebuild adaptlr schedules (say, in an optimizer's
    ``state_dict`` whose ``lr`` is a schedule): registers the schedule classes, which hold only numbers, lists
    and nested schedules, with ``torch.serialization.add_safe_globals``. A ``from_epochs`` schedule of a user
    function still needs that function to be allowed by the caller (adaptlr's own optimizers keep only a
    schedule's spec in ``state_dict()``: a registered function appears as its name, an unregistered one not
    at all, and the new optimizer's own schedule continues from the saved step)."""
    import torch

    torch.serialization.add_safe_globals(schedule_classes())


def __getattr__(name: str) -> Any:  # torch is imported only when a torch scheduler is asked for
    if name in ("ScheduleLR", "as_torch_scheduler"):
        from . import _torch

        return getattr(_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NoSpecError",
    "Schedule",
    "ScheduleLR",
    "ScheduleLike",
    "allow_torch_load",
    "as_torch_scheduler",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "from_epochs",
    "from_spec",
    "parse_spec",
    "inverse_sqrt",
    "join",
    "linear",
    "multistep",
    "one_cycle",
    "piecewise_constant",
    "plot",
    "polynomial",
    "product",
    "register_callable",
    "registered_callables",
    "scale",
    "schedule_classes",
    "step",
    "warmup",
    "wsd",
]
