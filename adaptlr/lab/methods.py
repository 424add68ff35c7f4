"""Method specs (``"adam(lr=3e-3) + cosine(warmup=0.05)"``): the names, re-exported from where they live.

- :mod:`adaptlr.lab.grammar`: the spec grammar (:class:`Term`, :class:`Method`, :class:`SpecError`,
  :func:`parse_method`, canonical forms, the dict form, :func:`schedule_spec`);
- :mod:`adaptlr.lab.catalog`: the names a spec may use (:func:`register_optimizer`, :func:`available_methods`,
  :func:`is_lr_free`);
- :mod:`adaptlr.lab.build`: how a method becomes an optimizer, a schedule and controllers (:class:`MethodBuild`).

>>> parse_method("sgd").canonical
'sgd(lr=0.1)'
"""

from __future__ import annotations

from .build import MethodBuild
from .catalog import available_methods, is_lr_free, register_optimizer
from .grammar import TUNE, Method, SpecError, Term, method_to_dict, parse_method, schedule_spec, split_methods

__all__ = [
    "TUNE",
    "Method",
    "MethodBuild",
    "SpecError",
    "Term",
    "available_methods",
    "is_lr_free",
    "method_to_dict",
    "parse_method",
    "register_optimizer",
    "schedule_spec",
    "split_methods",
]
