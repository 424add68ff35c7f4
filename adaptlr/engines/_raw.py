"""What the engines that read tensors through raw pointers (fused Numba, Triton) share: check, then run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class RawPointerEngine:
    """An engine whose kernels address memory by pointer. :meth:`apply` (the public entry point) checks every tensor
    with :meth:`check` before :meth:`apply_checked` runs; :func:`adaptlr.engines._select.run` calls
    :meth:`apply_checked` directly for rows its partition has already checked."""

    @staticmethod
    def check(lists: Sequence[Sequence[torch.Tensor]]) -> Any:
        raise NotImplementedError

    def apply(self, fn: Callable, columns: Sequence[Any], writes: Sequence[int], scalars: Sequence[Any] = (),
              flags: Sequence[bool] = (), n_sums: int = 0) -> tuple[float, ...]:
        """Run ``fn`` (see ``docs/CONTRACTS.md``) in one kernel launch; every tensor is checked first."""
        lists = [c for c in columns if isinstance(c, list)]
        if not lists or not lists[0]:
            return (0.0,) * n_sums
        self.check(lists)
        return self.apply_checked(fn, columns, writes, scalars, flags, n_sums)

    def apply_checked(self, fn: Callable, columns: Sequence[Any], writes: Sequence[int],
                      scalars: Sequence[Any] = (), flags: Sequence[bool] = (), n_sums: int = 0) -> tuple[float, ...]:
        raise NotImplementedError
