"""The `Schedule` base class, argument validation shared by the factories, and `from_spec`."""

from __future__ import annotations

import ast
import difflib
import json
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, overload

from .._validation import check_real, duration

__all__ = [
    "NoSpecError",
    "Schedule",
    "ScheduleLike",
    "as_schedule",
    "callable_ref",
    "describe_callable",
    "from_spec",
    "register",
    "register_callable",
    "registered_callables",
    "schedule_classes",
    "steps_list",
]

#: Anything `step -> value`; every adaptlr schedule is one, and so is any user function.
ScheduleLike = Callable[[int], float]

_FACTORIES: dict[str, Callable[..., Schedule]] = {}


def register(factory: Callable[..., Schedule]) -> Callable[..., Schedule]:
    """Register a factory under its ``__name__`` so that :func:`from_spec` can rebuild its schedules."""
    _FACTORIES[factory.__name__] = factory
    return factory


class Schedule:
    """A pure, picklable function object ``step -> value``.

    ``step`` is the number of steps already taken (``schedule(0)`` is the value of the first update), as in
    optax and as ``last_epoch`` in ``torch.optim.lr_scheduler``. A schedule holds only its arguments; its
    :attr:`spec` is a JSON-able dict from which :func:`from_spec` rebuilds an equal schedule. Schedules
    multiply with numbers (scaling) and with each other (products).

    **Range check.** A schedule is a learning rate in waiting, so construction refuses one whose values
    (over all steps >= 0, as far as its arguments tell; see :meth:`bounds`) grow without bound (they would
    overflow to ``inf``) or go below 0 (a negative learning rate climbs the loss: ``linear(0.1, -0.1, 100)``).
    A negative schedule meant on purpose is built with ``allow_negative=True`` (a keyword of every factory
    whose own arguments can make it negative); that flag is part of its spec, and a composite (``join``,
    ``product``, ``warmup``, ...) of a schedule that allows negative values allows them too. A user function
    (``from_epochs(fn)``) cannot be checked before it runs: the optimizers check the lr used at each step.

    **User functions need no registration** in Python: a schedule built from a lambda or a closure steps,
    composes, plots and checkpoints like any other (its ``repr`` shows the function). Only its :attr:`spec`
    cannot be written (:class:`NoSpecError`), which matters only where a schedule must be a string (a lab
    spec, the CLI): there a function is named by :func:`register_callable`.
    """

    name: ClassVar[str] = "schedule"
    allow_negative: bool = False

    def __init__(self, **params: Any) -> None:
        if params.get("allow_negative") is False:  # the default is not written into the spec
            del params["allow_negative"]
        self._names = tuple(params)
        self.__dict__.update(params)
        self._check_range()

    def _at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)``: bounds of the values over every step >= 0, derived from the arguments (the
        convex hull of the values it passes through, so a bound may be loose but is never wrong); ``None``
        when they cannot be known before it runs (a user function)."""
        return None

    def children(self) -> Iterator[Schedule]:
        """The schedules this one is built from (directly)."""
        for v in self.params.values():
            for x in v if isinstance(v, (list, tuple)) else (v,):
                if isinstance(x, Schedule):
                    yield x

    def allows_negative(self) -> bool:
        """Whether this schedule, or one it is built from, was built with ``allow_negative=True``."""
        return self.allow_negative or any(c.allows_negative() for c in self.children())

    def _check_range(self) -> None:
        b = self.bounds()
        if b is None:
            return
        low, high = b
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(
                f"Invalid {self.name} schedule {self!r}: its values grow without bound (they "
                "would overflow to inf); cap it (final=...) or let it decay"
            )
        if low < 0 and not self.allows_negative():
            raise ValueError(
                f"Invalid {self.name} schedule {self!r}: its values go down to {low:g}, and a "
                "negative learning rate climbs the loss; pass allow_negative=True if you mean it"
            )

    def __call__(self, step: Any) -> float:
        return float(self._at(int(step)))

    @property
    def params(self) -> dict[str, Any]:
        """The factory's arguments (resolved: durations in steps)."""
        return {k: getattr(self, k) for k in self._names}

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description: ``{"name": factory, **arguments}``; nested schedules are nested specs, a function
        its registered name. :class:`NoSpecError` when the schedule holds an unregistered function (then
        ``getattr(schedule, "spec", None)`` is ``None``)."""
        return {"name": self.name, **{k: _to_spec(v) for k, v in self.params.items()}}

    def __eq__(self, other: object) -> bool:
        """Equal when built by the same factory from equal arguments (what equal specs say); a function in
        them is compared by identity, so two schedules of one unregistered function are equal too."""
        return self is other or (isinstance(other, Schedule) and _key(self) == _key(other))

    def __hash__(self) -> int:
        return hash(_key(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_repr_value(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"

    # The operators build the registered ``product`` and ``scale`` factories by name (as ``from_spec`` does), so
    # this module imports none of the modules that define schedules: they all import it.
    def __mul__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _FACTORIES["scale"](self, float(other))
        if callable(other):  # another schedule, or a user function step -> value
            return _FACTORIES["product"]([self, other])
        return NotImplemented

    def __rmul__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return _FACTORIES["scale"](self, float(other))
        if callable(other):
            return _FACTORIES["product"]([other, self])
        return NotImplemented

    def __truediv__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real):
            return _FACTORIES["scale"](self, 1.0 / check_real("divisor", other, 0.0, low_open=True))
        return NotImplemented


def schedule_classes() -> list[type[Schedule]]:
    """Every :class:`Schedule` class defined so far (for ``torch.serialization.add_safe_globals``)."""
    out, todo = [], [Schedule]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _to_spec(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.spec
    if isinstance(value, (list, tuple)):
        return [_to_spec(v) for v in value]
    if callable(value):
        return callable_ref(value)
    return value


def _repr_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_repr_value(v) for v in value) + "]"
    if isinstance(value, Schedule):
        return repr(value)
    if callable(value):
        return describe_callable(value)
    return repr(value)


def _key(value: Any) -> Any:
    """What equality compares: the factory and its arguments, nested; functions by identity."""
    if isinstance(value, Schedule):
        return (value.name, tuple((k, _key(v)) for k, v in value.params.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if callable(value):
        return ("function", id(value))
    return value


def describe_callable(fn: Callable[..., Any]) -> str:
    """How a function appears in a ``repr``: its registered name as a string literal (so that the ``repr``
    parses back with :func:`from_spec`), else ``<function name>``. Never raises.

    >>> describe_callable(lambda e: 0.1)
    '<function <lambda>>'
    """
    for name, f in _CALLABLES.items():
        if f is fn:
            return repr(name)
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        return f"<function {name}>"
    return f"<{type(fn).__name__} object>"


def as_schedule(name: str, value: Any) -> Schedule:
    """``value`` as a :class:`Schedule`, for the composites: a schedule as it is; a spec, a call-style string
    or a number through :func:`from_spec`; any other callable ``step -> value`` (a user function, registered
    or not) as ``from_epochs(fn, steps_per_epoch=1)``, which is that function of the step."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (numbers.Real, dict, str)) and not isinstance(value, bool):
        return from_spec(value)
    if callable(value):
        return _FACTORIES["from_epochs"](value, steps_per_epoch=1)
    raise ValueError(
        f"Invalid {name}: {value!r} (expected an adaptlr schedule, a function step -> value, a spec or a number)"
    )


def steps_list(name: str, values: Any, total_steps: int | None) -> list[int]:
    """A strictly increasing list of steps (milestones, boundaries); each may be a fraction of ``total_steps``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"Invalid {name}: {values!r} (expected a list of steps)")
    out = [duration(f"{name}[{i}]", v, total_steps, minimum=0) for i, v in enumerate(values)]
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"Invalid {name}: {list(values)!r} (expected strictly increasing steps)")
    return out


# ---------------------------------------------------------------- user callables: a registry, never an import

_CALLABLES: dict[str, Callable[..., Any]] = {}

F = Any  # a callable being registered (returned as it is)


@overload
def register_callable(name: Callable[..., Any], fn: None = None, *, replace: bool = False) -> Callable[..., Any]: ...
@overload
def register_callable(name: str, fn: Callable[..., Any], *, replace: bool = False) -> Callable[..., Any]: ...
@overload
def register_callable(
    name: str | None = None, fn: None = None, *, replace: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...


def register_callable(name: Any = None, fn: Any = None, *, replace: bool = False) -> Any:
    """Let specs name a function of yours: ``from_epochs(fn="my_decay", steps_per_epoch=100)``.

    A spec is data: the names in it resolve only through this registry, which only Python code fills, so a
    spec string (from a CLI argument, a store, a config file) can never import a module or call a function
    that was not registered on purpose. The CLI's ``--import MODULE`` is the explicit way to load the module
    that registers yours. Three forms::

        register_callable("my_decay", my_decay)    # returns my_decay

        @register_callable("my_decay")             # decorator with a name
        def my_decay(epoch): ...

        @register_callable                         # decorator: registered under my_decay.__name__
        def my_decay(epoch): ...

    A name already taken by another function raises ``ValueError`` unless ``replace=True``; registering the
    same function under the same name again does nothing. The spec of ``from_epochs(my_decay, ...)`` holds
    the registered name.
    """
    if callable(name) and fn is None:
        return register_callable(getattr(name, "__name__", ""), name, replace=replace)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"Invalid name: {name!r} (expected a non-empty string)")
    if fn is None:

        def decorator(f: F) -> F:
            return register_callable(name if name is not None else getattr(f, "__name__", ""), f, replace=replace)

        return decorator
    if not callable(fn):
        raise ValueError(f"Invalid fn: {fn!r} (expected a callable)")
    old = _CALLABLES.get(name)
    if old is not None and old is not fn and not replace:
        raise ValueError(f"a callable is already registered as {name!r} ({old!r}); pass replace=True to replace it")
    _CALLABLES[name] = fn
    return fn


def registered_callables() -> dict[str, Callable[..., Any]]:
    """The functions that specs may name, by name (a copy)."""
    return dict(_CALLABLES)


class NoSpecError(ValueError, AttributeError):
    """A schedule built from a function that was not registered has no spec.

    A ``ValueError`` (asking for the spec is asking for a value that cannot be written) that is also an
    ``AttributeError``, so that such a schedule looks like a plain function to code that keeps a spec only
    where there is one: ``getattr(s, "spec", None)`` is ``None`` and ``hasattr(s, "spec")`` is False. That is
    how an optimizer's ``state_dict()`` keeps ``lr=lambda step: ...`` (no spec: the new optimizer's own
    schedule continues from the saved clock), and so it keeps these schedules too.
    """


def callable_ref(fn: Callable[..., Any]) -> str:
    """The name under which ``fn`` was registered with :func:`register_callable` (its spec)."""
    for name, f in _CALLABLES.items():
        if f is fn:
            return name
    raise NoSpecError(
        f"{describe_callable(fn)} has no spec: a function is described in a spec by the name it was "
        "registered under (adaptlr.schedules.register_callable(name, fn)); lambdas and closures can be "
        "registered too. A spec is needed only where a schedule is written as a string (a lab spec, the CLI): "
        "in Python the function works everywhere, and a checkpoint resumes when it is given again"
    )


def resolve_callable(ref: Any) -> Callable[..., Any]:
    """The function registered as ``ref``; a ``ValueError`` with the known names (and a did-you-mean) if none.
    Nothing is imported: ``"os:_exit"`` is just an unknown name."""
    if not isinstance(ref, str) or ref not in _CALLABLES:
        close = difflib.get_close_matches(str(ref), list(_CALLABLES), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(_CALLABLES)) or "none yet"
        raise ValueError(
            f"unknown callable {ref!r} in spec{hint} (specs name only functions registered with "
            f"adaptlr.schedules.register_callable; registered: {known}; load the module that "
            "registers yours with --import MODULE on the command line)"
        )
    return _CALLABLES[ref]


def from_spec(spec: Any, *, total_steps: int | None = None) -> Schedule:
    """Rebuild a schedule from its :attr:`Schedule.spec`.

    Accepts a spec dict, a JSON string of one, a call-style string (``"cosine(init=0.1, steps=1000)"``,
    nested calls allowed, literals only: nothing is evaluated), a number (a constant) or a schedule
    (returned). ``total_steps`` is given to every factory in the spec that takes one and is not given one by
    the spec itself, so durations anywhere in it may be fractions of the run
    (``from_spec("warmup(cosine(1.0, steps=0.9), steps=0.1)", total_steps=1000)``).

    >>> from adaptlr import schedules
    >>> s = schedules.warmup(schedules.cosine(0.1, steps=900), steps=100)
    >>> schedules.from_spec(s.spec) == s == schedules.from_spec(repr(s))
    True
    >>> schedules.from_spec("warmup(cosine(0.1, steps=0.9), steps=0.1)", total_steps=1000) == s
    True
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return _FACTORIES["constant"](float(spec))
    if isinstance(spec, str):
        text = spec.strip()
        try:
            spec = json.loads(text) if text.startswith("{") else parse_spec(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"cannot parse schedule spec {text[:80]!r}: {e}") from None
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return from_spec(spec)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"spec must be a dict with a 'name' key, got {spec!r}")
    args = dict(spec)
    name = args.pop("name")
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown schedule {name!r} in spec; known: {sorted(_FACTORIES)}")
    factory = _FACTORIES[name]
    kwargs = {k: _from_spec_value(k, v, total_steps) for k, v in args.items()}
    if total_steps is not None and "total_steps" not in kwargs and "total_steps" in _parameters(factory):
        kwargs["total_steps"] = total_steps
    return factory(**kwargs)


def _parameters(factory: Callable[..., Any]) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(factory).parameters)


def _from_spec_value(key: str, value: Any, total_steps: int | None = None) -> Any:
    if isinstance(value, dict) and "name" in value:
        return from_spec(value, total_steps=total_steps)
    if isinstance(value, list):
        return [_from_spec_value(key, v, total_steps) for v in value]
    if key == "fn" and isinstance(value, str):
        return resolve_callable(value)
    return value


def parse_spec(text: str) -> Any:
    """The spec (plain data: ``{"name": ..., **arguments}``) that a spec string such as ``"cosine(1e-3, steps=100)"``
    writes, without building the schedule; nothing in the string is imported or called. ``ValueError`` when it
    does not parse or names no registered factory."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"cannot parse schedule spec {text!r}: {e.msg}") from None
    return _literal(node, text)


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.args:
            factory = _FACTORIES.get(node.func.id)
            if factory is None:
                raise ValueError(f"unknown schedule {node.func.id!r} in {text!r}")
            import inspect

            names = list(inspect.signature(factory).parameters)
            args = dict(zip(names, (_literal(a, text) for a in node.args), strict=False))
        else:
            args = {}
        args.update({kw.arg: _literal(kw.value, text) for kw in node.keywords if kw.arg})
        return {"name": node.func.id, **args}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, text) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"only literals and schedule calls are allowed in a spec: {text!r}") from None


def hull(*values: float) -> tuple[float, float]:
    """``(min, max)`` of the values: the bounds of a schedule that moves between them."""
    return (min(values), max(values))
