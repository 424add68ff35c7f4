"""The data of a method spec: :class:`Term` (one ``name(key=value, ...)``), the ``?`` placeholder :data:`TUNE`
and :class:`SpecError`; the modules that read, look up and build specs all speak in these.

>>> Term("adam", (("lr", 0.003),)).with_args(betas=(0.9, 0.99))
Term(name='adam', args=(('betas', (0.9, 0.99)), ('lr', 0.003)))
>>> str(Term("adam", (("lr", TUNE),)))
'adam(lr=?)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TUNE", "SpecError", "Term", "format_value"]


class SpecError(ValueError):
    """A method spec that cannot be parsed or built; the message says what and where."""


class _Tune:
    """The ``?`` placeholder: a value that ``adaptlr tune`` fills in."""

    def __repr__(self) -> str:
        return "?"

    def __reduce__(self) -> str:
        return "TUNE"


TUNE = _Tune()


def format_value(value: Any) -> str:
    """An argument value as a spec writes it (Python reprs; a tuple of one keeps its comma)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@dataclass(frozen=True)
class Term:
    """One ``name(key=value, ...)`` of a spec; ``args`` sorted by key."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    def __str__(self) -> str:
        return self.name + ("(" + ", ".join(f"{k}={format_value(v)}" for k, v in self.args) + ")" if self.args else "")

    def with_args(self, **changes: Any) -> Term:
        args = {**self.kwargs, **changes}
        return Term(self.name, tuple(sorted(args.items())))
