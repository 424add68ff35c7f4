"""The `Schedule` base class, argument validation shared by the factories, and `from_spec`."""

from __future__ import annotations

import ast
import importlib
import json
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

__all__ = ["Schedule", "ScheduleLike", "from_spec", "register", "schedule_classes"]

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
    """

    name: ClassVar[str] = "schedule"

    def __init__(self, **params: Any) -> None:
        self._names = tuple(params)
        self.__dict__.update(params)

    def _at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step: Any) -> float:
        return float(self._at(int(step)))

    @property
    def params(self) -> dict[str, Any]:
        """The factory's arguments (resolved: durations in steps)."""
        return {k: getattr(self, k) for k in self._names}

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description: ``{"name": factory, **arguments}``; nested schedules are nested specs."""
        return {"name": self.name, **{k: _to_spec(v) for k, v in self.params.items()}}

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        try:
            return isinstance(other, Schedule) and self.spec == other.spec
        except ValueError:  # holds a function without a spec (a lambda): only identity
            return False

    def __hash__(self) -> int:
        try:
            return hash(json.dumps(self.spec, sort_keys=True))
        except ValueError:
            return id(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_repr_value(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __mul__(self, other: Any) -> Schedule:
        from ._compose import product, scale

        if isinstance(other, Schedule):
            return product([self, other])
        if isinstance(other, numbers.Real):
            return scale(self, float(other))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real):
            from ._compose import scale

            return scale(self, 1.0 / check_positive("divisor", other))
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
        return repr(callable_ref(value))
    return repr(value)


def callable_ref(fn: Callable[..., Any]) -> str:
    """``"module:qualname"`` of an importable module-level function (the spec of a user function)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qualname:
        raise ValueError(f"{fn!r} has no spec: only module-level functions (not lambdas or closures) can be "
                         "described by name; use a module-level function or an adaptlr schedule")
    return f"{module}:{qualname}"


def _resolve_callable(ref: str) -> Callable[..., Any]:
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def from_spec(spec: Any) -> Schedule:
    """Rebuild a schedule from its :attr:`Schedule.spec`.

    Accepts a spec dict, a JSON string of one, a call-style string (``"cosine(init=0.1, steps=1000)"``,
    nested calls allowed, literals only: nothing is evaluated), a number (a constant) or a schedule
    (returned).

    >>> from adaptlr import schedules
    >>> s = schedules.warmup(schedules.cosine(0.1, steps=900), steps=100)
    >>> schedules.from_spec(s.spec) == s == schedules.from_spec(repr(s))
    True
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return _FACTORIES["constant"](float(spec))
    if isinstance(spec, str):
        text = spec.strip()
        spec = json.loads(text) if text.startswith("{") else _parse_call(text)
        if isinstance(spec, (int, float)):
            return from_spec(spec)
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"spec must be a dict with a 'name' key, got {spec!r}")
    args = dict(spec)
    name = args.pop("name")
    if name not in _FACTORIES:
        raise ValueError(f"unknown schedule {name!r} in spec; known: {sorted(_FACTORIES)}")
    return _FACTORIES[name](**{k: _from_spec_value(k, v) for k, v in args.items()})


def _from_spec_value(key: str, value: Any) -> Any:
    if isinstance(value, dict) and "name" in value:
        return from_spec(value)
    if isinstance(value, list):
        return [_from_spec_value(key, v) for v in value]
    if key == "fn" and isinstance(value, str):
        return _resolve_callable(value)
    return value


def _parse_call(text: str) -> Any:
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


# ---------------------------------------------------------------- validation shared by the factories


def check_real(name: str, value: Any) -> float:
    """A finite real number, else ``ValueError`` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r} (expected a finite number)")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    v = check_real(name, value)
    if v <= 0:
        raise ValueError(f"Invalid {name}: {value!r} (expected > 0)")
    return v


def check_nonneg(name: str, value: Any) -> float:
    v = check_real(name, value)
    if v < 0:
        raise ValueError(f"Invalid {name}: {value!r} (expected >= 0)")
    return v


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (expected an integer >= {minimum})")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"Invalid {name}: {value!r} (expected one of {list(choices)})")
    return value


def duration(name: str, value: Any, total_steps: int | None, minimum: int = 1) -> int:
    """A number of steps: an int, or a float in (0, 1] read as a fraction of ``total_steps`` (rounded)."""
    if isinstance(value, float) and not isinstance(value, bool):
        if value.is_integer() and value > 1:
            value = int(value)
        elif 0 < value <= 1:
            if total_steps is None:
                raise ValueError(f"Invalid {name}: {value!r} is a fraction of the run, "
                                 "so total_steps is needed")
            value = round(value * check_int("total_steps", total_steps, 1))
            if value < minimum:
                raise ValueError(f"Invalid {name}: the fraction gives {value} steps (expected >= {minimum})")
            return value
        else:
            raise ValueError(f"Invalid {name}: {value!r} "
                             "(expected an int number of steps or a fraction in (0, 1])")
    return check_int(name, value, minimum)
