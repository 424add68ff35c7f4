r"""The method spec grammar: one for the CLI and for Python.

A method is an optimizer term, optionally followed by a schedule term and controller terms joined with ``+``::

    "adam(lr=3e-3) + cosine(warmup=0.05)"
    "sgd(lr=0.1, momentum=0.9) + plateau(patience=3)"
    "prodigy"
    "schedulefree_adamw"

Arguments are Python literals (numbers, strings, booleans, tuples); ``?`` marks a value left for
``adaptlr tune``. Durations in schedule terms (``warmup``, ``decay``, ``every``) follow the library's one
duration rule (:func:`adaptlr._validation.duration`): an int is a number of steps, a float in (0, 1] a
fraction of the run's step budget, anything else (``2.5``, a negative number) is refused; a warmup of ``w``
steps ramps linearly from ``lr / w`` to ``lr`` (a first step at lr 0 would be wasted, and it stalls
learning-rate-free methods that count only applied steps). A spec is data: its names are looked up only in the
tables of :mod:`adaptlr.lab.catalog`, nothing in it is imported or evaluated; :mod:`adaptlr.lab.build` turns a
parsed :class:`Method` into an optimizer, its schedule and its controllers. A spec's pieces (:class:`Term`,
:data:`TUNE`, :class:`SpecError`) are :mod:`adaptlr.lab.terms`'s.

**One method, one canonical form.** :attr:`Method.canonical` (the store's key) lower-cases names, sorts
arguments, writes the optimizer's lab default lr when the spec leaves it out, and leaves out every other
argument equal to its default (the class's, or the lab's for schedule and controller terms), so ``sgd``,
``sgd(lr=0.1)`` and ``SGD(0.1, momentum=0.0)`` are one method: ``sgd(lr=0.1)``.

Names: optimizers ``sgd momentum nesterov adagrad rmsprop adadelta adam adamw adamax nadam radam`` (any
argument of the class; ``momentum`` and ``nesterov`` are SGD with ``momentum=0.9``), learning-rate-free
``prodigy dadapt_adam dadapt_sgd dadapt_adagrad dog ldog schedulefree_adamw schedulefree_sgd
schedulefree_radam``; schedules (the optimizer's lr is the peak) ``constant``, ``warmup(steps)``,
``cosine(warmup, final)`` and ``linear(warmup, final)`` (``final`` a fraction of the peak), ``step(every,
gamma)``, ``one_cycle(pct_start, div_factor, final_div_factor, anneal)``, ``wsd(warmup, decay, cooldown)``,
each a shorthand for an :mod:`adaptlr.schedules` spec (:mod:`adaptlr.lab.schedule_terms`), and ``schedule(spec="...")``:
any schedules spec, multiplying the lr, its durations fractions of the run where below 1
(``schedule(spec="warmup(cosine(1.0, steps=0.9), steps=0.1)")``); controllers ``plateau(patience, factor,
...)`` (``adaptlr.controllers.ReduceOnPlateau``, fed the validation metric at every evaluation).
:func:`~adaptlr.lab.catalog.register_optimizer` adds your own.

>>> m = parse_method("adam(lr=3e-3) + cosine(warmup=0.05)")
>>> m.canonical
'adam(lr=0.003) + cosine(warmup=0.05)'
>>> parse_method("sgd").canonical == parse_method("sgd(lr=0.1, momentum=0)").canonical == "sgd(lr=0.1)"
True
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import catalog
from .build import MethodBuild, build_method, validate_method
from .schedule_terms import schedule_spec
from .terms import TUNE, SpecError, Term, format_value

__all__ = [
    "TUNE",
    "Method",
    "SpecError",
    "Term",
    "method_to_dict",
    "parse_method",
    "schedule_spec",
    "split_methods",
]


@dataclass(frozen=True)
class Method:
    """A parsed spec: an optimizer term, an optional schedule term, controller terms."""

    optimizer: Term
    schedule: Term | None = None
    controllers: tuple[Term, ...] = ()

    @property
    def canonical(self) -> str:
        """The normal form used as a key in the store: lowercase names, sorted arguments, Python reprs."""
        return " + ".join(str(t) for t in self.terms)

    def __str__(self) -> str:
        return self.canonical

    @property
    def terms(self) -> tuple[Term, ...]:
        return (self.optimizer, *((self.schedule,) if self.schedule else ()), *self.controllers)

    @property
    def tuned(self) -> list[tuple[int, str]]:
        """(term index, argument) of each ``?`` placeholder."""
        return [(i, k) for i, t in enumerate(self.terms) for k, v in t.args if v is TUNE]

    def fill(self, values: Mapping[str, Any]) -> Method:
        """Replace ``?`` placeholders: keys are argument names, or ``"term.argument"`` to disambiguate."""
        terms = []
        for t in self.terms:
            changes = {}
            for k, v in t.args:
                if v is TUNE:
                    for key in (f"{t.name}.{k}", k):
                        if key in values:
                            changes[k] = values[key]
                            break
                    else:
                        raise SpecError(f"no value given for '{t.name}({k}=?)'")
            terms.append(t.with_args(**changes))
        return _assemble(terms, self.canonical)

    def without(self, arg: str = "lr") -> str:
        """The canonical spec with ``arg`` removed from the optimizer term (groups an lr sweep)."""
        opt = Term(self.optimizer.name, tuple((k, v) for k, v in self.optimizer.args if k != arg))
        return " + ".join(str(t) for t in (opt, *self.terms[1:]))

    def optimizer_kwargs(self) -> dict[str, Any]:
        """The optimizer's keyword arguments: the lab's defaults, then the spec's (lists as tuples)."""
        kwargs = {**catalog.optimizer_defaults(self.optimizer.name), **self.optimizer.kwargs}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}

    def validate(self, total_steps: int | None = None) -> Method:
        """Check the method before any training; raise :class:`SpecError` (one line, naming the term, the
        argument and the value) if it cannot run.

        Every term must be offered now and every argument must exist; then the method is built once on a
        throwaway parameter (a run of ``total_steps``, or of 1,000 steps when not given), so that values the
        classes refuse (``sgd(lr=-1)``, ``plateau(factor=2)``, a schedule that would go negative) are refused
        here, not in the middle of a comparison. Returns ``self``."""
        validate_method(self, total_steps)
        return self

    def build(self, params: Iterable[Any], total_steps: int, higher_is_better: bool = False) -> MethodBuild:
        """Construct the optimizer (with its schedule) and controllers for a run of ``total_steps``; a value
        that a class refuses is a :class:`SpecError` naming the term."""
        return build_method(self, params, total_steps, higher_is_better)


def _literal(node: ast.AST, spec: str) -> Any:
    if isinstance(node, ast.Name) and node.id == "__tune__":
        return TUNE
    if isinstance(node, ast.Name) and node.id in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, spec) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SpecError(f"in {spec!r}: {ast.unparse(node)!r} is not a literal value") from None


def _term(node: ast.AST, spec: str) -> Term:
    if isinstance(node, ast.Name):
        return Term(node.id.lower())
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id.lower()
        if node.args:
            if catalog.is_optimizer(name) and len(node.args) == 1:
                args = {"lr": _literal(node.args[0], spec)}
            else:
                raise SpecError(f"in {spec!r}: {name}() takes keyword arguments only (name=value)")
        else:
            args = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise SpecError(f"in {spec!r}: '**' is not allowed")
            if kw.arg in args:
                raise SpecError(f"in {spec!r}: {name}() got {kw.arg!r} twice")
            args[kw.arg] = _literal(kw.value, spec)
        return Term(name, tuple(sorted(args.items())))
    raise SpecError(f"in {spec!r}: expected name or name(key=value, ...), got {ast.unparse(node)!r}")


def _flatten(node: ast.AST, spec: str) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, ast.Add):
            raise SpecError(f"in {spec!r}: terms are joined with '+'")
        return _flatten(node.left, spec) + _flatten(node.right, spec)
    return [node]


def _assemble(terms: list[Term], spec: str) -> Method:
    opt, sched, ctrls = None, None, []
    for t in terms:
        if catalog.is_optimizer(t.name):
            if opt is not None:
                raise SpecError(f"in {spec!r}: two optimizers ({opt.name}, {t.name}); a method has one")
            if t is not terms[0]:
                raise SpecError(f"in {spec!r}: the optimizer term comes first")
            opt = t
        elif catalog.is_schedule(t.name):
            if sched is not None:
                raise SpecError(f"in {spec!r}: two schedules ({sched.name}, {t.name}); a method has one")
            _check_args(t, catalog.schedule_defaults(t.name), spec)
            sched = t
        elif catalog.is_controller(t.name):
            ctrls.append(t)
        else:
            raise SpecError(f"in {spec!r}: unknown name {t.name!r}{catalog.did_you_mean(t.name, catalog.all_names())}")
    if opt is None:
        raise SpecError(f"in {spec!r}: no optimizer term (one of: {', '.join(catalog.builtin_optimizers())})")
    return Method(
        _normal_optimizer(opt),
        None if sched is None else _without_defaults(sched, catalog.schedule_defaults(sched.name)),
        tuple(_without_defaults(c, catalog.controller_defaults(c.name)) for c in ctrls),
    )


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """Whether two argument values are the same setting (``0 == 0.0``, but ``True`` is not ``1``)."""
    if a is TUNE or b is TUNE:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _as_default_type(value: Any, default: Any) -> Any:
    """An int where the optimizer's default is a float is that float (``lr=1`` is ``lr=1.0``)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, tuple) and len(default) == len(value):
        return tuple(_as_default_type(v, d) for v, d in zip(value, default, strict=True))
    return value


def _class_defaults(cls: type | None) -> dict[str, Any]:
    if cls is None:
        return {}
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - a class without a readable signature
        return {}
    return {k: p.default for k, p in params.items() if k != "params" and p.default is not p.empty}


def _normal_optimizer(term: Term) -> Term:
    """The lab's defaults written in (``sgd`` -> ``sgd(lr=0.1)``), class defaults left out."""
    lab = catalog.optimizer_defaults(term.name)
    cls = _class_defaults(catalog.optimizer_class(term.name))
    out = {}
    for k, v in {**lab, **term.kwargs}.items():
        default = lab.get(k, cls.get(k, _MISSING))
        v = _as_default_type(v, default)
        if k in lab or default is _MISSING or not _same(v, default):
            out[k] = v
    return Term(term.name, tuple(sorted(out.items())))


def _without_defaults(term: Term, defaults: Mapping[str, Any]) -> Term:
    """A schedule or controller term without the arguments equal to the lab's defaults (``cosine(warmup=0)``
    is ``cosine``); ints stay ints there (a duration of 1 is one step, 1.0 the whole run)."""
    return Term(term.name, tuple((k, v) for k, v in term.args if not (k in defaults and _same(v, defaults[k]))))


def _check_args(term: Term, allowed: Mapping[str, Any], spec: str) -> None:
    for k in term.kwargs:
        if k not in allowed:
            raise SpecError(
                f"in {spec!r}: {term.name}() has no argument {k!r}{catalog.did_you_mean(k, allowed)} "
                f"(arguments: {', '.join(allowed) or 'none'})"
            )


def parse_method(spec: str | Mapping[str, Any] | Method) -> Method:
    """Parse a spec string (or a dict ``{"optimizer": {...}, "schedule": {...}, "controllers": [...]}``).

    Raises :class:`SpecError` for syntax errors, unknown names (with a did-you-mean) and unknown arguments of
    schedule and controller terms. Optimizer arguments are checked against the class by
    :meth:`Method.validate` (the class is looked up then, so a spec parses even before its optimizer lands).
    """
    if isinstance(spec, Method):
        return spec
    if isinstance(spec, Mapping):
        return _from_dict(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"a method spec is a non-empty string, got {spec!r}")
    text = spec.strip().replace("?", "__tune__")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise SpecError(f"cannot parse method spec {spec!r}: {e.msg} at column {e.offset}") from None
    terms = [_term(n, spec) for n in _flatten(tree, spec)]
    method = _assemble(terms, spec)
    for c in method.controllers:
        allowed = catalog.controller_defaults(c.name)
        allowed.update(
            {k: None for k in inspect.signature(catalog.controller_class(c.name)).parameters if k != "optimizer"}
        )
        _check_args(c, allowed, spec)
    return method


def _from_dict(d: Mapping[str, Any]) -> Method:
    def term(x: Any) -> str:
        if isinstance(x, str):
            return x
        x = dict(x)
        name = x.pop("name")
        return name + "(" + ", ".join(f"{k}={format_value(v) if v is not TUNE else '?'}" for k, v in x.items()) + ")"

    parts = [term(d["optimizer"])]
    if d.get("schedule"):
        parts.append(term(d["schedule"]))
    parts += [term(c) for c in d.get("controllers", ())]
    return parse_method(" + ".join(parts))


def method_to_dict(method: Method) -> dict[str, Any]:
    """The dict form of a method (round-trips through :func:`parse_method`)."""

    def term(t: Term) -> dict[str, Any]:
        return {"name": t.name, **t.kwargs}

    return {
        "optimizer": term(method.optimizer),
        "schedule": term(method.schedule) if method.schedule else None,
        "controllers": [term(c) for c in method.controllers],
    }


def split_methods(text: str) -> list[str]:
    """Split a CLI ``--methods`` list on the commas that are outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [s for s in out if s]
