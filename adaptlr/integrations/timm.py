"""adaptlr's optimizers in timm: :func:`register_timm` adds them to ``timm.optim``'s registry.

After ``register_timm()``, ``timm.optim.create_optimizer_v2(model, "adaptlr.adamw", lr=1e-3, weight_decay=0.05)``
builds :class:`adaptlr.AdamW` with timm's parameter groups (no weight decay on biases and norms, layer-wise lr
decay with ``layer_decay=``), ``"lookahead_adaptlr.adamw"`` wraps it in timm's Lookahead, and timm's
schedulers drive it like any torch optimizer.

Names are ``"adaptlr."`` + the class name in lower case (``adaptlr.sgd``, ``adaptlr.prodigy``,
``adaptlr.schedulefreeadamw``, ...), optionally preceded by ``"lookahead_"``. timm splits an optimizer name at
``_`` and builds only the last piece (``"lookahead_adamw"`` is Lookahead around ``adamw``; any other prefix is
dropped), so ``"adaptlr_adamw"`` would silently build torch's AdamW; a dot is not split. After
``register_timm()`` the registry refuses such names (``ValueError`` stating this rule): a name that mentions
``adaptlr`` anywhere but in its last piece, a prefix other than ``lookahead`` before an adaptlr name, and an
``adaptlr.`` name that is not registered.

Layer decay means what it means in timm: ``param_groups_layer_decay`` writes ``group["lr_scale"]`` and timm's
schedulers set ``group["lr"] = value * group["lr_scale"]``. So does an adaptlr schedule given as ``lr``:
``create_optimizer_v2(model, "adaptlr.adamw", lr=schedules.cosine(1e-3, 100), layer_decay=0.75)`` gives each
group whose ``lr_scale`` is not 1 the schedule ``schedules.scale(schedule, lr_scale)``, so its
``group["lr"]`` (the lr the next step applies, and what loggers read) is ``schedule(t) * lr_scale``, as under a
timm scheduler. adaptlr's own factor key (controllers' cuts) is ``group["adaptlr_lr_scale"]``, so nothing is
applied twice. A float ``lr`` is left as timm leaves it (``lr_scale`` then acts only through a timm scheduler,
as for torch's optimizers). Use either a timm scheduler with a float ``lr`` or an adaptlr schedule as ``lr``,
not both (the optimizer refuses the mix at its first step). The scale is applied by ``create_optimizer_v2``
(and ``create_optimizer``); an optimizer class taken from ``get_optimizer_class`` and built by hand gets
``lr_scale`` from nobody, as torch's do.
"""

from __future__ import annotations

import functools
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

    The registry's ``create_optimizer`` (which ``timm.optim.create_optimizer_v2`` calls) is wrapped, once: it
    refuses names that timm would resolve to something other than the adaptlr optimizer they name, and applies
    timm's ``lr_scale`` to an adaptlr schedule given as ``lr`` (see the module's docstring).

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
    _guard(registry)
    return names


_PREFIX = "adaptlr."
_RULE = (
    "adaptlr's optimizers are named 'adaptlr.' + the class name in lower case ('adaptlr.adamw', "
    "'adaptlr.prodigy', ...; register_timm() returns the list), optionally preceded by 'lookahead_' for timm's "
    "Lookahead. timm splits a name at '_' and builds only the last piece (any prefix but 'lookahead' is dropped)"
)


def _check_name(registry: Any, opt: Any) -> bool:
    """Refuse a name that mentions adaptlr but that timm would not build as the adaptlr optimizer it names;
    return whether ``opt`` names an adaptlr optimizer (False for every other name, which timm handles)."""
    if not isinstance(opt, str):
        return False
    *prefix, last = opt.lower().split("_")
    in_prefix = any("adaptlr" in piece for piece in prefix)
    if not in_prefix and not last.startswith(_PREFIX):
        return False
    if not in_prefix and prefix in ([], ["lookahead"]):
        try:
            registry.get_optimizer_info(last)
        except ValueError:
            raise ValueError(f"Invalid timm optimizer name: {opt!r} is not registered. {_RULE}.") from None
        return True
    try:
        built = registry.get_optimizer_info(last).opt_class
        would = f"build {getattr(built, '__qualname__', built)} from {getattr(built, '__module__', '?')}"
    except ValueError:
        would = f"look up {last!r}, which is not registered"
    dropped = prefix[1:] if prefix[:1] == ["lookahead"] else prefix  # (timm keeps a leading "lookahead")
    raise ValueError(
        f"Invalid timm optimizer name: {opt!r}. {_RULE}: {opt!r} would drop {'_'.join(dropped)!r} and {would}. "
        f"Write {'lookahead_' if prefix[:1] == ['lookahead'] else ''}{_PREFIX}<name>, e.g. 'adaptlr.adamw'."
    )


def _apply_lr_scale(optimizer: torch.optim.Optimizer) -> None:
    """Give each group with an adaptlr schedule and timm's ``lr_scale`` the schedule ``scale(schedule,
    lr_scale)``: ``group["lr"] = schedule(t) * lr_scale``, as timm's schedulers set it."""
    from .. import schedules
    from ..optim import Optimizer

    base = getattr(optimizer, "_base_optimizer", optimizer)  # (timm's Lookahead shares its param groups)
    if not isinstance(base, Optimizer):
        return
    for i, group in enumerate(base.param_groups):
        schedule, lr_scale = group.get("adaptlr_schedule"), group.get("lr_scale")
        if schedule is not None and lr_scale is not None and float(lr_scale) != 1.0:
            base.set_lr(schedules.scale(schedule, float(lr_scale)), i)


def _guard(registry: Any) -> None:
    """Wrap ``registry.create_optimizer`` (once): names checked, ``lr_scale`` applied to adaptlr schedules."""
    create = registry.create_optimizer
    if getattr(create, "_adaptlr", False):
        return

    @functools.wraps(create)
    def create_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        opt = kwargs["opt"] if "opt" in kwargs else args[1] if len(args) > 1 else None
        ours = _check_name(registry, opt)
        optimizer = create(*args, **kwargs)
        if ours:
            _apply_lr_scale(optimizer)
        return optimizer

    create_optimizer._adaptlr = True  # type: ignore[attr-defined]
    registry.create_optimizer = create_optimizer
