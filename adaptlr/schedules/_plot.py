"""A figure of a schedule (matplotlib imported here, lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._validation import check_count
from ._base import Schedule, ScheduleLike, describe_callable

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot"]


def plot(
    schedule: ScheduleLike | dict[str, ScheduleLike],
    steps: int,
    path: str | Path | None = None,
    *,
    ax: Any = None,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """Plot ``schedule(t)`` for ``t`` in ``[0, steps)``; a dict plots several, labelled by its keys. Any
    function ``step -> value`` plots (a user function needs no registration).

    Saves to ``path`` when given and returns the matplotlib ``Figure`` (no pyplot, so no window opens).

    >>> from adaptlr import schedules
    >>> fig = schedules.plot(schedules.cosine(0.1, steps=100), steps=100)
    """
    from matplotlib.figure import Figure

    n = check_count("steps", steps, 1)
    if isinstance(schedule, dict):
        curves = schedule
    else:
        label = repr(schedule) if isinstance(schedule, Schedule) else describe_callable(schedule)
        curves = {label if len(label) < 60 else "": schedule}
    if ax is None:
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    xs = range(n)
    for label, s in curves.items():
        ax.plot(xs, [s(t) for t in xs], label=label or None)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if any(curves):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
