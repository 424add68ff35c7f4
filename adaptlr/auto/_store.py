"""Where racers' states live while they wait: the model's device, host memory, or disk (memory-mapped files).

A racer's state is its model's parameters and buffers, its optimizer's ``state_dict`` and its ``GradScaler``'s,
if any. Racing keeps several (the start, the candidates still in the running, the finalists' branches); on an
accelerator they go to host memory by default, so that racing a model costs no more device memory than training it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._validation import check_choice
from ._step import device_of

__all__ = ["StateStore", "WHERE"]

WHERE = ("auto", "device", "host", "disk")


def _to(obj: Any, device: torch.device | str | None) -> Any:
    """A copy of ``obj`` (nested dicts, lists, tuples of tensors and plain values) with its tensors on ``device``
    (None: each where it is)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(obj.device if device is None else device, copy=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


class StateStore:
    """Keep, give back and drop named snapshots of (model, optimizer, scaler).

    ``where``: ``"device"`` (copies beside the model), ``"host"`` (CPU memory), ``"disk"`` (files under
    ``directory`` or a temporary folder, read back memory-mapped), or ``"auto"``: host when the model is on an
    accelerator, device (which is then host memory) otherwise.
    """

    def __init__(self, where: str = "auto", directory: str | Path | None = None) -> None:
        self.where = check_choice("offload", where, WHERE)
        self._items: dict[str, Any] = {}
        self._dir: Path | None = None
        self._own_dir = False
        if self.where == "disk":
            if directory is None:
                self._dir, self._own_dir = Path(tempfile.mkdtemp(prefix="adaptlr-auto-")), True
            else:  # (files already there are snapshots of an interrupted fit, taken up again)
                self._dir = Path(directory)
                self._dir.mkdir(parents=True, exist_ok=True)
                self._items = {p.stem: p for p in self._dir.glob("*.pt")}

    def _target(self, model: nn.Module) -> torch.device | str:
        if self.where == "device":
            return device_of(model)
        return "cpu"

    def save(self, key: str, model: nn.Module, opt: torch.optim.Optimizer | None = None, scaler: Any = None) -> None:
        """Snapshot the model (and optimizer, scaler) under ``key`` (replacing an older one)."""
        state = {
            "model": model.state_dict(),
            "opt": opt.state_dict() if opt is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        self.put(key, state, model)

    def put(self, key: str, state: dict[str, Any], model: nn.Module) -> None:
        """Keep ``state`` (a snapshot as :meth:`get` gives it, or another process's) under ``key``; on disk it is
        written straight from the tensors given (no second copy in memory), atomically."""
        if self._dir is not None:
            path = self._dir / f"{key}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(path)
            self._items[key] = path
        else:
            self._items[key] = _to(state, self._target(model))

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> dict[str, Any]:
        item = self._items[key]
        if isinstance(item, Path):
            return torch.load(item, mmap=True, weights_only=True)
        return item

    def load(self, key: str, model: nn.Module, opt: torch.optim.Optimizer | None = None, scaler: Any = None) -> None:
        """Put the snapshot ``key`` back into ``model`` (and ``opt``, ``scaler``)."""
        state = self.get(key)
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(state["model"][name])
        if opt is not None and state["opt"] is not None:
            # (a copy of the per-parameter state: ``load_state_dict`` keeps the tensors it is given where their
            # device and dtype fit the parameter's, and the optimizer's steps would then change the snapshot)
            saved = state["opt"]
            opt.load_state_dict({k: _to(v, None) if k == "state" else v for k, v in saved.items()})
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])

    def model_state(self, key: str) -> dict[str, torch.Tensor]:
        return self.get(key)["model"]

    def drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if isinstance(item, Path):
            item.unlink(missing_ok=True)

    def keys(self) -> list[str]:
        return list(self._items)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the store holds in memory (for tests and memory accounting)."""
        out: list[torch.Tensor] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, torch.Tensor):
                out.append(obj)
            elif isinstance(obj, dict):
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v)

        for item in self._items.values():
            if not isinstance(item, Path):
                walk(item)
        return out

    def close(self) -> None:
        for key in list(self._items):
            self.drop(key)
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
