"""A phase: one elementwise pass of an optimizer's step, declared by name.

An optimizer's step is a sequence of phases (:attr:`adaptlr.optim.Optimizer.phases`). A phase names

- its **columns**: the rule's leading arguments, each bound to a source -- ``param``, ``grad`` or a state tensor of
  that name (``"buf=momentum_buffer"`` binds the rule's argument ``buf`` to the state ``momentum_buffer``; a bare
  name is its own source, and ``p`` / ``g`` mean ``param`` / ``grad``);
- its **writes**: the columns the rule returns new values of, in the order it returns them;
- its **sums**: named terms the rule returns after the writes, summed over every element (a sum per tensor when
  ``per_tensor=True``);
- its **flags**: the rule's trailing arguments, Python bools that select its branches.

The rule's remaining arguments, between the columns and the flags, are its **scalars**. Scalars and flags are
passed by name, as one mapping (:meth:`Phase.bind`); the names are matched to the rule's signature once, when the
phase is declared, so a reordered signature can never silently bind a value to the wrong argument, and a missing
or misspelt name is an error that names it.

The engines see none of this: they run ``rule(*columns, *scalars, *flags)`` over lists of tensors, positionally
(their compiled kernels' argument order), with the write positions derived from the declared writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..engines import run

__all__ = ["Phase"]

_ALIASES = {"p": "param", "g": "grad"}


def _names(spec: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(spec.split()) if isinstance(spec, str) else tuple(spec)


class Phase:
    """One elementwise pass: a rule and, by name, what it reads, writes and sums (see the module docstring).

    >>> Phase(rules.adam, columns="p g exp_avg exp_avg_sq max_exp_avg_sq",       # doctest: +SKIP
    ...       writes="p exp_avg exp_avg_sq max_exp_avg_sq",
    ...       flags="maximize coupled_decay decoupled_decay amsgrad")
    """

    __slots__ = (
        "rule",
        "name",
        "arguments",
        "sources",
        "writes",
        "write_index",
        "scalars",
        "flags",
        "sums",
        "per_tensor",
    )

    def __init__(
        self,
        rule: Callable,
        columns: str | Sequence[str],
        writes: str | Sequence[str],
        *,
        flags: str | Sequence[str] = (),
        sums: str | Sequence[str] = (),
        per_tensor: bool = False,
        name: str | None = None,
    ) -> None:
        self.rule = rule
        self.name = name or rule.__name__
        bound = [c.split("=", 1) if "=" in c else (c, _ALIASES.get(c, c)) for c in _names(columns)]
        self.arguments = tuple(a for a, _ in bound)
        self.sources = tuple(s for _, s in bound)
        self.writes = _names(writes)
        self.flags = _names(flags)
        self.sums = _names(sums)
        self.per_tensor = bool(per_tensor)
        params = list(inspect.signature(rule).parameters)
        n, f = len(self.arguments), len(self.flags)
        if tuple(params[:n]) != self.arguments:
            raise TypeError(
                f"phase {self.name}: the columns {self.arguments} are not the first arguments of "
                f"{rule.__name__}{tuple(params)}"
            )
        if f and tuple(params[len(params) - f :]) != self.flags:
            raise TypeError(
                f"phase {self.name}: the flags {self.flags} are not the last arguments of "
                f"{rule.__name__}{tuple(params)}"
            )
        self.scalars = tuple(params[n : len(params) - f])
        unknown = [w for w in self.writes if w not in self.arguments]
        if unknown:
            raise TypeError(f"phase {self.name}: writes {unknown} are not columns of {rule.__name__}")
        self.write_index = tuple(self.arguments.index(w) for w in self.writes)

    def __repr__(self) -> str:
        return f"Phase({self.name}: {' '.join(self.arguments)} -> {' '.join(self.writes)}; sums {self.sums})"

    def bind(self, values: Mapping[str, Any]) -> tuple[tuple[Any, ...], tuple[bool, ...]]:
        """The rule's scalars and flags, in its signature's order, from ``values`` (a name -> value mapping; other
        names in it are ignored, so one mapping may serve several phases)."""
        try:
            return tuple([values[k] for k in self.scalars]), tuple([bool(values[k]) for k in self.flags])
        except KeyError as e:
            raise KeyError(
                f"phase {self.name}: no value for {e.args[0]!r} (it needs scalars {self.scalars} and "
                f"flags {self.flags})"
            ) from None

    def apply(
        self, columns: Mapping[str, Any], values: Mapping[str, Any], *, prefer: str | None = None
    ) -> dict[str, float]:
        """Run the phase over explicitly given columns (``columns[argument]``: a list of tensors, or a number for an
        absent optional state) on the engines fit for them; returns the named sums (local ones, for DTensors).

        The optimizers whose step is not a sequence of declared phases (Adafactor, Muon, SparseAdam: their
        statistics are not elementwise) run their elementwise parts through this, by name."""
        try:
            cols = [columns[a] for a in self.arguments]
        except KeyError as e:
            raise KeyError(f"phase {self.name}: no column {e.args[0]!r} (it reads {self.arguments})") from None
        scalars, flags = self.bind(values)
        out = run(
            self.rule,
            cols,
            self.write_index,
            scalars,
            flags,
            len(self.sums),
            prefer=prefer,
            names=self.arguments,
        )
        return dict(zip(self.sums, out))
