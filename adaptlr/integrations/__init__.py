"""Adapters for the frameworks adaptlr is used from; each submodule imports its framework only when imported.

- :mod:`adaptlr.integrations.lightning`: controllers in ``configure_optimizers``' ``lr_scheduler`` dict, a
  Schedule-Free callback, an LR-finder callback, ``AutoLR`` (:class:`adaptlr.Auto`'s race before training), the
  effective lr of LR-free methods in ``LearningRateMonitor``;
- :mod:`adaptlr.integrations.transformers`: a ``TrainerCallback`` feeding controllers ``eval_loss`` (saved in
  the Trainer's checkpoints), the scheduler slot filled so that the optimizer's own schedule runs alone, and
  ``AutoLRCallback`` (:class:`adaptlr.Auto`'s race on the Trainer's own loss and evaluation data before training,
  resumable from the Trainer's checkpoints);
- :mod:`adaptlr.integrations.timm`: :func:`~adaptlr.integrations.timm.register_timm` (``"adaptlr.adamw"`` and
  friends in ``timm.optim.create_optimizer_v2``);
- :mod:`adaptlr.integrations.keras`: :func:`~adaptlr.integrations.keras.as_keras`, a schedule as a Keras 3
  ``LearningRateSchedule``;
- :mod:`adaptlr.integrations.optax`: :func:`~adaptlr.integrations.optax.as_optax`, a schedule as a jit-safe optax
  schedule.

``import adaptlr`` imports none of these; ``import adaptlr.integrations`` imports none of the frameworks either:
the submodules load on first attribute access (``adaptlr.integrations.keras``) or explicit import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_SUBMODULES = ("keras", "lightning", "optax", "timm", "transformers")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
