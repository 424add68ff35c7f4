"""The ``loop`` engine: the rule called directly on each parameter's tensors (the simplest path)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class LoopEngine:
    """Calls the rule on single tensors, one parameter at a time; any device and dtype."""

    name = "loop"

    def apply_checked(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
        pointers: Sequence[list[int] | None] | None = None,
    ) -> tuple[float, ...]:
        """:meth:`apply` (this engine indexes tensors logically: it needs no layout check, nor ``pointers``)."""
        return self.apply(fn, columns, writes, scalars, flags, n_sums)

    def apply(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> tuple[float, ...]:
        n = next((len(c) for c in columns if isinstance(c, list)), 0)
        sums = [0.0] * n_sums
        for i in range(n):
            inputs = [c[i] if isinstance(c, list) else c for c in columns]
            out = fn(*inputs, *scalars, *flags)
            new, terms = out[: len(writes)], out[len(writes) :]
            for k, t in enumerate(terms):
                sums[k] += (
                    float(t.sum(dtype=torch.float64)) if isinstance(t, torch.Tensor) else float(t) * inputs[0].numel()
                )
            # a new value may be an input tensor that another write is about to overwrite: copy it first
            written = {id(inputs[c]) for c in writes}
            new = [
                v.clone() if isinstance(v, torch.Tensor) and id(v) in written and v is not inputs[c] else v
                for c, v in zip(writes, new)
            ]
            for c, v in zip(writes, new):
                dst = inputs[c]
                if not isinstance(dst, torch.Tensor) or v is dst:
                    continue
                if isinstance(v, torch.Tensor):
                    dst.copy_(v)
                else:
                    dst.fill_(v)
        return tuple(sums)
