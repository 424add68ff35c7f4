"""The user's training step, applied the same way in the race, the branches and the final run.

A step is ``step_fn(model, batch) -> loss`` (any batch type: an HF-style ``model(**batch).loss``), or the classic
``loss_fn(model(inputs), targets)`` on ``(inputs, targets)`` batches. :class:`TrainStep` adds what real training
runs add around it: batches moved to the model's device, mixed precision (autocast, and a ``GradScaler`` for
float16: a step the scaler skips is not counted), gradient accumulation and gradient-norm clipping.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._validation import check_count, check_real
from . import _dist

__all__ = ["Batches", "TrainStep", "move", "rows"]

StepFn = Callable[[nn.Module, Any], torch.Tensor]
LossFn = Callable[[Any, Any], torch.Tensor]
MAX_SKIPS = 20  # a GradScaler that skips this many steps in a row means the loss is not finite


def move(batch: Any, device: torch.device) -> Any:
    """``batch`` with its tensors on ``device`` (tensors, and dicts, lists and tuples of them, recursively)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    kind = type(batch)
    if (kind is tuple or kind is list) and all(type(v) is torch.Tensor and v.device == device for v in batch):
        return batch  # (the common batch, already in place: a small model's step feels every microsecond)
    if isinstance(batch, Mapping):
        moved = {k: move(v, device) for k, v in batch.items()}
        try:  # keep the mapping's type (an HF BatchEncoding, an OrderedDict) where it takes a dict
            return moved if type(batch) is dict else type(batch)(moved)
        except TypeError:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move(v, device) for v in batch)
    return batch


def rows(batch: Any) -> int:
    """The rows of a batch: the leading size of its first tensor (1 when it holds none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = rows(v)
        if n:
            return n
    return 1 if not isinstance(batch, (Mapping, list, tuple)) else 0


class Batches:
    """The training data as a stream Auto takes batches from: an iterator is consumed; an iterable (a
    ``DataLoader``, a list) is iterated again each time it runs out. ``taken`` counts the batches taken;
    ``meter`` (a :class:`~adaptlr.auto.Meter`), when given, is told how long each take took."""

    def __init__(self, train: Iterable[Any] | Iterator[Any], meter: Any = None) -> None:
        self._stream = train if isinstance(train, Iterator) else self._epochs(train)
        self.taken = 0
        self.meter = meter

    @staticmethod
    def _epochs(train: Iterable[Any]) -> Iterator[Any]:
        for epoch in itertools.count():
            empty = True
            for b in train:
                empty = False
                yield b
            if empty:
                raise ValueError(f"Auto: the training data is empty (epoch {epoch})")

    def taker(self, pending: list[Any], accumulate: int) -> Callable[[int], list[Any]]:
        """Hand out one step's batches (``pending``); a step the scaler skipped takes ``accumulate`` fresh ones."""

        def take(n: int) -> list[Any]:
            while len(pending) < n:
                pending.extend(self.take(accumulate))
            out = pending[:n]
            del pending[:n]
            return out

        return take

    def skip(self, n: int) -> None:
        """Fast-forward past ``n`` batches (a resumed fit)."""
        self.take(n)

    def take(self, n: int) -> list[Any]:
        start = time.perf_counter()
        out = list(itertools.islice(self._stream, n))
        self.taken += len(out)
        if len(out) < n:
            raise ValueError(f"Auto: the training iterator ran out after {self.taken} batches")
        if self.meter is not None:
            self.meter.fetch(time.perf_counter() - start, n)
        return out


class TrainStep:
    """One optimizer step of the user's training: ``accumulate`` batches' gradients (the loss of each divided by
    ``accumulate``), clipped to ``max_grad_norm``, under autocast when ``amp`` is set.

    Args:
        step_fn: ``(model, batch) -> loss``; or ``loss_fn``: ``(model(inputs), targets) -> loss`` on
            ``(inputs, targets)`` batches. Exactly one of the two.
        amp: None (full precision), True (float16 on CUDA, bfloat16 on CPU) or a dtype; float16 uses a
            ``torch.amp.GradScaler``, whose state is part of each racer's state.
        accumulate: batches per optimizer step (>= 1).
        max_grad_norm: clip the gradients' global norm to this (``torch.nn.utils.clip_grad_norm_``), or None.
        score_fn: ``(model, batch) -> float``, a validation batch's mean score (lower is better) when it is not
            the training loss (an error rate, say); the validation score is its mean over rows.
    """

    def __init__(
        self,
        step_fn: StepFn | None = None,
        loss_fn: LossFn | None = None,
        *,
        amp: bool | torch.dtype | None = None,
        accumulate: int = 1,
        max_grad_norm: float | None = None,
        score_fn: Callable[[nn.Module, Any], float] | None = None,
    ) -> None:
        self.score_fn = score_fn
        if (step_fn is None) == (loss_fn is None):
            raise TypeError("Auto: pass a step_fn(model, batch) -> loss or a loss_fn(outputs, targets), not both")
        if step_fn is None:
            step_fn = _classic(loss_fn)  # type: ignore[arg-type]
        self.step_fn = step_fn
        self.accumulate = check_count("accumulate", accumulate, 1)
        self.max_grad_norm = (
            None if max_grad_norm is None else check_real("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        )
        if amp is not None and amp is not False and amp is not True and not isinstance(amp, torch.dtype):
            raise TypeError(f"Invalid amp: {amp!r} (expected None, True or a torch.dtype)")
        self.amp = amp
        self.sync: Callable[[nn.Module], None] | None = None  # averages gradients over ranks (racing in groups)

    def dtype(self, device: torch.device) -> torch.dtype | None:
        if self.amp is None or self.amp is False:
            return None
        if self.amp is True:
            return torch.float16 if device.type == "cuda" else torch.bfloat16
        return self.amp

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A fresh ``GradScaler`` when this step needs one (float16 autocast), else None."""
        return torch.amp.GradScaler(device.type) if self.dtype(device) == torch.float16 else None

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        dtype = self.dtype(device)
        if dtype is None:  # (no autocast context: a few microseconds a step, which tiny models feel)
            return self.step_fn(model, move(batch, device))
        with torch.autocast(device.type, dtype=dtype):
            return self.step_fn(model, move(batch, device))

    def __call__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        take: Callable[[int], list[Any]],
        scaler: Any = None,
        stop: Callable[[float], bool] | None = None,
        device: torch.device | None = None,
    ) -> float:
        """Take one optimizer step (repeated while the scaler skips it); the mean loss of its batches (nan when
        one is not finite). ``stop(loss)``, called once the gradients are in and before the optimizer steps,
        says not to step (a divergence, decided by every rank together); without it, a non-finite loss does not
        step. Every batch's backward runs even after a non-finite loss, so that every rank of a data-parallel
        model makes the same collective calls whatever its own loss was. ``device``: the model's (found when not
        given)."""
        device = device_of(model) if device is None else device
        acc = self.accumulate
        for _ in range(MAX_SKIPS):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for batch in take(acc):
                loss = self.loss(model, batch, device)
                total += float(loss.detach()) / acc
                scaled = loss / acc if acc > 1 else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total = total if math.isfinite(total) else math.nan
            if self.sync is not None:
                self.sync(model)
            if stop(total) if stop is not None else math.isnan(total):
                opt.zero_grad(set_to_none=True)  # (no step: a diverged step's gradients are not kept)
                return total
            if not self._apply(model, opt, scaler):
                return total
        return math.nan  # the scaler skipped every try: the gradients are not finite

    def _apply(self, model: nn.Module, opt: torch.optim.Optimizer, scaler: Any) -> bool:
        """Clip and step; True when the scaler skipped the step (inf/nan gradients: it does not count)."""
        if scaler is None:
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
            opt.step()
            return False
        if self.max_grad_norm is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        return scaler.get_scale() < before

    def score(
        self, model: nn.Module, batches: Sequence[Any], group: Any = None, parts: list[list[float]] | None = None
    ) -> tuple[float, int]:
        """The mean loss over ``batches`` (weighted by their rows; under no_grad, in eval mode), all-reduced
        over ``group`` when torch.distributed runs; and the rows read on this process. ``parts`` collects each
        batch's ``[mean, rows]`` on this process."""
        device = device_of(model)
        total, n = 0.0, 0
        with _evaluating(model), torch.no_grad():
            for batch in batches:
                k = rows(batch) or 1
                if self.score_fn is not None:
                    value = float(self.score_fn(model, move(batch, device)))
                else:
                    value = float(self.loss(model, batch, device))
                total += value * k
                n += k
                if parts is not None:
                    parts.append([value, float(k)])
        total, count = _dist.sum2(total, float(n), device, group)
        return (total / count if count else math.inf), n


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class _evaluating:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.was = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was)


def _classic(loss_fn: LossFn) -> StepFn:
    def step(model: nn.Module, batch: Any) -> torch.Tensor:
        if type(batch) is tuple and len(batch) == 2:  # (the common case, without the checks below)
            return loss_fn(model(batch[0]), batch[1])
        try:
            if isinstance(batch, Mapping):
                raise TypeError
            inputs, targets = batch
        except (TypeError, ValueError):
            raise TypeError(
                f"Auto: loss_fn expects (inputs, targets) batches, got {type(batch).__name__}; for other batches "
                "pass step_fn=lambda model, batch: ... returning the loss"
            ) from None
        return loss_fn(model(inputs), targets)

    return step


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
