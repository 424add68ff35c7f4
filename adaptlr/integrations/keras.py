r"""adaptlr schedules in Keras 3: :func:`as_keras` turns one into a ``keras.optimizers.schedules.LearningRateSchedule``.

Keras calls a ``LearningRateSchedule`` with the optimizer's ``iterations`` (the number of completed steps, as an
adaptlr schedule counts them), as a backend tensor, possibly inside a compiled train step (``jit_compile=True``:
XLA on JAX and TensorFlow, ``torch.compile`` on torch). An adaptlr schedule is a Python function of a Python int,
so the adapter precomputes the schedule's values over the run (see :mod:`adaptlr.integrations._table`) and
indexes them with the clipped step, which every backend compiles. Its config is the schedule's spec, so a model
saved with ``model.save("m.keras")`` loads back with the same schedule (the class is registered as
``"adaptlr>Schedule"``; import this module before ``keras.saving.load_model``).

>>> import keras
>>> from adaptlr import schedules as S
>>> from adaptlr.integrations.keras import as_keras
>>> lr = as_keras(S.warmup(S.cosine(1e-3, steps=900), steps=100), steps=1_000)
>>> model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr), loss="mse")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .._validation import check_count
from ..schedules import Schedule, ScheduleLike, from_spec
from ._table import schedule_table

__all__ = ["KerasSchedule", "as_keras"]


@keras.saving.register_keras_serializable(package="adaptlr", name="Schedule")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    r"""An adaptlr schedule as a Keras ``LearningRateSchedule``: :math:`\eta(t) = s(\min(\max(t, 0), steps))`.

    Args:
        schedule: an adaptlr schedule, its spec (a dict or a string, as :func:`adaptlr.schedules.from_spec`
            reads), or any function ``step -> value`` (such a model trains, but saving it needs a spec: the
            config then raises).
        steps: the number of steps of the run: the values :math:`s(0), \dots, s(steps)` are computed once and
            stored as a float32 tensor; past ``steps`` the value of step ``steps`` holds.
        name: an optional name (Keras' convention for its schedules).

    ``get_config()`` is ``{"schedule": schedule.spec, "steps": steps, "name": name}``; ``from_config`` rebuilds
    an equal schedule.
    """

    def __init__(self, schedule: ScheduleLike | dict[str, Any] | str, steps: int, name: str | None = None) -> None:
        super().__init__()
        self.schedule: ScheduleLike = schedule if callable(schedule) else from_spec(schedule)
        self.steps = check_count("steps", steps, 1)
        self.name = name
        self.values = schedule_table(self.schedule, self.steps)
        self._table = ops.convert_to_tensor(self.values, dtype="float32")

    def __call__(self, step: Any) -> Any:
        index = ops.clip(ops.cast(step, "int32"), 0, self.steps)
        return ops.take(self._table, index)

    def get_config(self) -> dict[str, Any]:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(
                f"{self.schedule!r} is not an adaptlr schedule, so it has no spec to save; build the "
                "schedule from adaptlr.schedules (a user function: adaptlr.schedules.from_epochs with "
                "a registered callable)"
            )
        return {"schedule": self.schedule.spec, "steps": self.steps, "name": self.name}

    def __repr__(self) -> str:
        return f"KerasSchedule({self.schedule!r}, steps={self.steps})"


def as_keras(schedule: ScheduleLike | dict[str, Any] | str, steps: int, name: str | None = None) -> KerasSchedule:
    r"""``schedule`` as a Keras 3 ``LearningRateSchedule`` over a run of ``steps`` steps (see :class:`KerasSchedule`).

    The value at Keras' ``iterations = t`` is ``schedule(t)`` rounded to float32 for :math:`0 \le t \le steps`,
    and ``schedule(steps)`` afterwards; it works in eager and compiled (``jit_compile=True``) train steps.

    >>> from adaptlr import schedules as S
    >>> lr = as_keras(S.linear(0.0, 1.0, steps=4), steps=4)
    >>> [round(float(lr(t)), 2) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return KerasSchedule(schedule, steps, name=name)
