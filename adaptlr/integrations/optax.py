r"""adaptlr schedules in optax: :func:`as_optax` turns one into a jit-safe ``optax.Schedule``.

An adaptlr schedule is a Python function of a Python int; inside ``jax.jit`` the step count is a tracer, so
calling the schedule there raises ``ConcretizationTypeError``. :func:`as_optax` precomputes the schedule's values
over the run (see :mod:`adaptlr.integrations._table`) and returns a function that indexes them with the clipped
step count, which jit, vmap and grad all accept.

>>> import optax
>>> from adaptlr import schedules as S
>>> from adaptlr.integrations.optax import as_optax
>>> sched = as_optax(S.warmup(S.cosine(1e-3, steps=900), steps=100), steps=1_000)
>>> tx = optax.adamw(learning_rate=sched)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from ..schedules import ScheduleLike
from ._table import schedule_table

__all__ = ["as_optax"]


def as_optax(schedule: ScheduleLike, steps: int, *, dtype: Any = None) -> optax.Schedule:
    r"""A jit-safe optax schedule with the values of ``schedule``: :math:`\eta(t) = s(\min(\max(t, 0), steps))`.

    Args:
        schedule: an adaptlr schedule, or any function ``step -> value``.
        steps: the number of steps the run takes; the values :math:`s(0), \dots, s(steps)` are computed once,
            here, in float64 (one Python call each) and stored in ``dtype``. Past ``steps`` the value of step
            ``steps`` holds (for a decay that ends at ``steps`` that is its final value; a cyclic schedule stops
            cycling there: pass the real length of the run).
        dtype: the dtype of the values; default JAX's default float (float32, or float64 under
            ``jax_enable_x64``).

    Returns:
        ``count -> value`` accepting Python ints and integer JAX arrays of any shape (jit, vmap); the values
        equal ``schedule(count)`` rounded to ``dtype``.

    >>> import jax
    >>> from adaptlr import schedules as S
    >>> s = S.linear(0.0, 1.0, steps=4)
    >>> [float(v) for v in jax.vmap(as_optax(s, steps=4))(jnp.arange(6))]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    values = schedule_table(schedule, steps)
    table = jnp.asarray(values, dtype=dtype if dtype is not None else jnp.result_type(float))
    last = len(values) - 1

    def adaptlr_schedule(count: Any) -> Any:
        return table[jnp.clip(jnp.asarray(count).astype(jnp.int32), 0, last)]

    adaptlr_schedule.__doc__ = f"the adaptlr schedule {schedule!r} over {steps} steps, held afterwards"
    return adaptlr_schedule
