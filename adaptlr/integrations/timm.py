"""adaptlr's optimizers in timm: :func:`register_timm` adds them to ``timm.optim``'s registry.

After ``register_timm()``, ``timm.optim.create_optimizer_v2(model, "adaptlr.adamw", lr=1e-3, weight_decay=0.05)``
builds :class:`adaptlr.AdamW` with timm's parameter groups (no weight decay on biases and norms, layer-wise lr
decay with ``layer_decay=``), ``"lookahead_adaptlr.adamw"`` wraps it in timm's Lookahead, and timm's
schedulers drive it like any torch optimizer.

Names are ``"adaptlr."`` + the class name in lower case (``adaptlr.sgd``, ``adaptlr.prodigy``,
``adaptlr.schedulefreeadamw``, ...): timm splits an optimizer name at ``_`` and looks up only the last piece
(``"lookahead_adamw"`` is Lookahead around ``adamw``), so ``"adaptlr_adamw"`` would silently build torch's
AdamW; a dot is not split.

Layer decay means what it means in timm: ``param_groups_layer_decay`` writes ``group["lr_scale"]`` and timm's
schedulers set ``group["lr"] = value * group["lr_scale"]``; adaptlr's optimizers apply ``group["lr"]`` as it is
(their own controller factor lives under ``group["adaptlr_lr_scale"]``), so the scale is applied once. As
with torch's optimizers, ``lr_scale`` does nothing without a timm scheduler. Use either a timm scheduler with a
float ``lr`` or an adaptlr schedule as ``lr`` (``create_optimizer_v2(model, "adaptlr.adamw", lr=schedule)``),
not both.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from timm.optim import _optim_factory

__all__ = ["register_timm", "timm_name"]


def timm_name(cls: type[torch.optim.Optimizer]) -> str:
    """The timm name of an adaptlr optimizer class: ``"adaptlr." + cls.__name__.lower()``."""
    return f"adaptlr.{cls.__name__.lower()}"


def _optimizer_classes() -> list[type[torch.optim.Optimizer]]:
    import adaptlr
    from adaptlr import free, optim

    found: dict[str, type[torch.optim.Optimizer]] = {}
    for module in (adaptlr, optim, free):
        for name in getattr(module, "__all__", ()):
            cls = getattr(module, name, None)
            if (
                isinstance(cls, type)
                and issubclass(cls, torch.optim.Optimizer)
                and cls is not optim.Optimizer
                and not inspect.isabstract(cls)
            ):
                found.setdefault(cls.__name__, cls)
    return [found[k] for k in sorted(found)]


def _accepts(cls: type, name: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def register_timm(registry: Any = None) -> list[str]:
    """Register every adaptlr optimizer with timm (its default registry, or ``registry``); return the names.

    timm passes ``weight_decay`` to every optimizer it builds, so the classes that take none (L-BFGS) are left
    out; ``eps``, ``betas`` and ``momentum`` are passed where the class takes them (timm sets ``momentum=0.9``
    by default for those that do, as for its own SGD). Calling it again re-registers the same classes.

    >>> from adaptlr.integrations.timm import register_timm
    >>> "adaptlr.adamw" in register_timm()
    True
    """
    registry = _optim_factory.default_registry if registry is None else registry
    names = []
    for cls in _optimizer_classes():
        if not _accepts(cls, "weight_decay"):
            continue
        name = timm_name(cls)
        doc = (inspect.getdoc(cls) or cls.__name__).splitlines()[0]
        registry.register(
            _optim_factory.OptimInfo(
                name=name,
                opt_class=cls,
                description=f"adaptlr: {doc}",
                has_eps=_accepts(cls, "eps"),
                has_momentum=_accepts(cls, "momentum"),
                has_betas=_accepts(cls, "betas"),
            )
        )
        names.append(name)
    return names
