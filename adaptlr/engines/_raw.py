"""What the engines that read tensors through raw pointers (fused Numba, Triton) share: check, then run."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch


class RawPointerEngine:
    """An engine whose kernels address memory by pointer. :meth:`apply` (the public entry point) checks every tensor
    with :meth:`check` before :meth:`apply_checked` runs; :func:`adaptlr.engines.run` calls
    :meth:`apply_checked` directly for rows its partition has already checked."""

    @staticmethod
    def check(lists: Sequence[Sequence[torch.Tensor]]) -> Any:
        raise NotImplementedError

    def apply(
        self,
        fn: Callable,
        columns: Sequence[Any],
        writes: Sequence[int],
        scalars: Sequence[Any] = (),
        flags: Sequence[bool] = (),
        n_sums: int = 0,
    ) -> tuple[float, ...]:
        """Run ``fn`` (see ``docs/CONTRACTS.md``) in one kernel launch; every tensor is checked first."""
        lists = [c for c in columns if isinstance(c, list)]
        if not lists or not lists[0]:
            return (0.0,) * n_sums
        self.check(lists)
        return self.apply_checked(fn, columns, writes, scalars, flags, n_sums)

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
        raise NotImplementedError


def _cache_dir() -> Path:
    """``$ADAPTLR_CACHE_DIR/kernels``, else ``~/.cache/adaptlr/kernels``; a temporary folder if neither is writable."""
    root = os.environ.get("ADAPTLR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "adaptlr")
    for path in (Path(root) / "kernels", Path(tempfile.gettempdir()) / f"adaptlr-kernels-{os.getuid()}"):
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise RuntimeError("adaptlr: no writable folder for the fused engine's kernels; set ADAPTLR_CACHE_DIR")


def load_generated(prefix: str, version: str, source: str) -> ModuleType:
    """Import generated kernel ``source`` from a file in the cache folder named by its hash (with the compiler's
    ``version``): written once, atomically, so several processes share it; Numba's and Triton's own disk caches
    key on that file (both resolve the kernel's globals through ``sys.modules``)."""
    digest = hashlib.sha256((version + source).encode()).hexdigest()[:24]
    name = f"{prefix}_{digest}"
    path = _cache_dir() / f"{name}.py"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
