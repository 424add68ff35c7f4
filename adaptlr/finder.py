r"""The learning-rate range test (Smith, 2017; fastai's ``lr_find``; ``torch-lr-finder``'s ``range_test``).

Train for ``steps`` batches while the lr grows from ``start`` to ``end``, record the smoothed loss, stop when
it diverges, restore model and optimizer exactly, and suggest learning rates from the curve.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._validation import check_choice, check_count, check_real, duration

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .schedules import Schedule

__all__ = ["HEADLINE", "LRFindResult", "Suggestion", "lr_find", "suggest"]

#: The rule whose lr :attr:`LRFindResult.suggestion` (and ``adaptlr find-lr``'s "suggested lr") gives: the one
#: that trained best across the lab's tasks when AdamW + warmup-cosine ran at each rule's lr against a tuned lr
#: grid (``benchmarks/range_test_rules.py``; the table is in ``docs/range_test.md``).
HEADLINE = "minimum"


@dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate: the method that found it, the index of the curve point it was read from (for
    ``"minimum"``: the lowest loss, ten times its lr), a confidence in (0, 1]."""

    method: str
    lr: float
    index: int
    confidence: float

    @property
    def confidence_words(self) -> str:
        """``"high"`` (confidence >= 0.5), ``"medium"`` (>= 0.2) or ``"low"``."""
        return "high" if self.confidence >= 0.5 else "medium" if self.confidence >= 0.2 else "low"


@dataclass
class LRFindResult:
    """The curve of a range test (``lrs[i]``: the lr of batch ``i``, ``losses[i]``: the smoothed loss after
    it) and the suggestions computed from it."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    diverged: bool
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what limits the suggestions, in words
    usable: tuple[int, int] = (0, 0)  # the points [start, stop) of the curve that suggestions may come from

    @property
    def suggestion(self) -> Suggestion:
        """The :data:`HEADLINE` rule's suggestion (the rule that trained best across the lab's tasks, whatever
        the confidences say; ``docs/range_test.md``); when that rule offers none, the most confident of the
        others (ties: valley, then steepest, then minimum/10). A ``ValueError`` saying why when there is none."""
        if not self.suggestions:
            why = self.warnings[0] if self.warnings else "the range test recorded too few points"
            raise ValueError(f"no learning rate can be suggested: {why}")
        if HEADLINE in self.suggestions:
            return self.suggestions[HEADLINE]
        order = {"valley": 0, "steepest": 1, "minimum": 2}
        return max(self.suggestions.values(), key=lambda s: (s.confidence, -order.get(s.method, 9)))

    @property
    def lr(self) -> float:
        """The learning rate of :attr:`suggestion`."""
        return self.suggestion.lr

    def schedule(
        self,
        total_steps: int,
        kind: str = "one_cycle",
        method: str | None = None,
        warmup: int | float = 0.05,
        final: float = 0.0,
        **kwargs: Any,
    ) -> Schedule:
        """A schedule peaking at the suggested lr: ``"one_cycle"`` (:func:`adaptlr.schedules.one_cycle`, extra
        keyword arguments go to it) or ``"warmup_cosine"`` (linear warmup over ``warmup`` steps or fraction,
        then cosine to ``final``)."""
        from . import schedules as S

        check_choice("kind", kind, ("one_cycle", "warmup_cosine"))
        peak = self.suggestions[method].lr if method else self.lr
        if kind == "one_cycle":
            return S.one_cycle(peak, total_steps, **kwargs)
        w = duration("warmup", warmup, total_steps, minimum=1)
        return S.warmup(S.cosine(peak, max(total_steps - w, 1), final=final), w)

    def _loss_at(self, lr: float, xs: list[float], ys: list[float]) -> float:
        """The plotted curve's loss at ``lr``: linear in log lr between its two neighbouring points, as a line
        on the log axis is drawn (the "minimum" rule's lr, a tenth of the lowest loss's, is between points).
        Outside the plotted part (``skip_start`` / ``skip_end``), the whole recorded curve's."""
        if not xs or not xs[0] <= lr <= xs[-1]:
            xs, ys = self.lrs, self.losses
        x, y = np.log(np.asarray(xs, dtype=np.float64)), np.asarray(ys, dtype=np.float64)
        ok = np.isfinite(y)
        return float(np.interp(math.log(lr), x[ok], y[ok]))

    def plot(self, path: str | Path | None = None, *, ax: Any = None, skip_start: int = 0, skip_end: int = 0) -> Figure:
        """Loss against lr (log scale) with each suggestion marked on the curve at its lr; saved to ``path``
        when given."""
        from matplotlib.figure import Figure

        if ax is None:
            fig = Figure(figsize=(7, 4), layout="constrained")
            ax = fig.subplots()
        else:
            fig = ax.figure
        stop = len(self.lrs) - skip_end
        xs, ys = self.lrs[skip_start:stop], self.losses[skip_start:stop]
        if not xs:  # skipped everything: the whole curve
            xs, ys = self.lrs, self.losses
        (curve,) = ax.plot(xs, ys, label="smoothed loss")
        curve.set_gid("curve")
        for s, marker in zip(self.suggestions.values(), "ovs", strict=False):
            (point,) = ax.plot(
                [s.lr],
                [self._loss_at(s.lr, xs, ys)],
                marker,
                markersize=8,
                label=f"{s.method}: {s.lr:.2e} (confidence {s.confidence:.2f})",
            )
            point.set_gid(f"suggestion {s.method}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _batches(data: Iterable[Any]) -> Iterator[Any]:
    """Cycle through ``data`` (re-iterating a loader when it is exhausted)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty or iter(data) is data:
            raise ValueError("data ran out: pass a DataLoader or another re-iterable of batches")


def _set_lrs(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    for group, r in zip(optimizer.param_groups, ratios, strict=True):
        if group.get("adaptlr_schedule") is not None:  # the test drives group["lr"] itself (restored after)
            group["adaptlr_schedule"] = None
        if "adaptlr_lr_scale" in group:
            group["adaptlr_lr_scale"] = 1.0
        group["lr"] = lr * r


def _current_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    if hasattr(optimizer, "current_lr"):
        return [float(optimizer.current_lr(i)) for i in range(len(optimizer.param_groups))]
    return [float(g["lr"]) for g in optimizer.param_groups]


def lr_find(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    data: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smooth: float = 0.05,
    diverge: float = 5.0,
    accumulation: int = 1,
    device: torch.device | str | None = None,
    skip_start: int = 10,
    skip_end: int = 5,
) -> LRFindResult:
    r"""Run the learning-rate range test, then restore model, optimizer and the RNG state exactly.

    Batch :math:`i` (of ``steps``) uses :math:`lr_i = start\,(end/start)^{i/(steps-1)}` (``"exp"``) or
    :math:`start + (end - start)\,i/(steps-1)` (``"linear"``) for the first param group; other groups keep
    their lr ratio to it. Each batch is ``(inputs, targets)``; its loss is ``loss_fn(model(inputs), targets)``
    (divided by ``accumulation``, summed over that many batches per step). The recorded loss is smoothed,
    :math:`\bar L_i = smooth\,L_i + (1 - smooth)\,\bar L_{i-1}`, and the test stops once
    :math:`\bar L_i > diverge \cdot \min_{j \le i} \bar L_j` (or at a non-finite loss; ``diverge=math.inf``:
    only there). This is ``torch-lr-finder``'s ``range_test(start_lr=start, end_lr=end, num_iter=steps,
    step_mode=mode, smooth_f=smooth, diverge_th=diverge, accumulation_steps=accumulation)`` and gives the same
    curve.

    Suggestions (on the curve without its first ``skip_start`` and last ``skip_end`` points, as
    ``torch-lr-finder``'s plot): ``"steepest"``, where the smoothed loss falls fastest against
    :math:`\log lr`; ``"valley"`` (fastai): the lr a third plus a sixth of the way into the longest
    decreasing stretch of the curve; ``"minimum"`` (fastai): the lr of the lowest loss divided by 10. The
    headline, :attr:`LRFindResult.suggestion` (and ``result.lr``), is the :data:`HEADLINE` rule, ``"minimum"``:
    trained at with AdamW + warmup-cosine on the lab's tasks, it came within 1 point / 2% of a tuned lr grid
    on more tasks than the others (``docs/range_test.md``). Each has a confidence in (0, 1]: how far the loss
    fell during the test, :math:`(L_0 - L_{min}) / |L_0|`, halved for a steepest point at the edge of the
    curve, or a minimum that the curve never rose from.

    No suggestion comes from where the test failed: points with a non-finite loss, the point where it
    diverged, and everything after the lowest loss once the loss is back above its first value are left out;
    a ``"minimum"`` below the tested range (lowest-loss lr / 10 < ``start``) is not offered; a suggestion of
    confidence 0 (the loss never fell) is none. :attr:`LRFindResult.warnings` says in words what limited
    the suggestions (diverged at once, never fell, still falling at the end, low confidence), and each
    suggestion's ``confidence_words`` reads ``high`` / ``medium`` / ``low``.

    >>> import torch
    >>> model = torch.nn.Linear(3, 1)
    >>> data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> result = lr_find(model, torch.nn.functional.mse_loss, data, opt, steps=30)
    >>> sorted(result.suggestions) == ["minimum", "steepest", "valley"]
    True
    """
    check_real("start", start, 0.0, low_open=True)
    check_real("end", end, start, low_open=True)  # (above start)
    check_count("steps", steps, 2)
    check_choice("mode", mode, ("exp", "linear"))
    check_real("smooth", smooth, 0.0, 1.0, high_open=True)
    check_real("diverge", diverge, 1.0, low_open=True, allow_inf=True)  # (inf: no limit)
    check_count("accumulation", accumulation, 1)

    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(optimizer.state_dict())
    schedules = [g.get("adaptlr_schedule") for g in optimizer.param_groups]  # (a lambda has no spec to save)
    rng = torch.get_rng_state()
    lrs0 = _current_lrs(optimizer)
    ratios = [lr / lrs0[0] if lrs0[0] else 1.0 for lr in lrs0]
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batches = _batches(data)
    lrs: list[float] = []
    losses: list[float] = []
    raw: list[float] = []
    diverged = False
    try:
        best = math.inf
        for i in range(steps):
            frac = i / (steps - 1)
            lr = start * (end / start) ** frac if mode == "exp" else start + frac * (end - start)
            _set_lrs(optimizer, lr, ratios)
            loss = _train_batch(model, loss_fn, batches, optimizer, accumulation, device)
            raw.append(loss)
            lrs.append(lr)
            if i == 0:
                best = loss
            else:
                if smooth > 0:
                    loss = smooth * loss + (1 - smooth) * losses[-1]
                best = min(best, loss)
            losses.append(loss)
            if loss > diverge * best or not math.isfinite(loss):
                diverged = True
                break
    finally:
        model.load_state_dict(model_state)
        for group, schedule in zip(optimizer.param_groups, schedules):
            if schedule is not None:
                group["adaptlr_schedule"] = schedule  # load_state_dict keeps the schedule it finds here
        optimizer.load_state_dict(opt_state)
        torch.set_rng_state(rng)
    result = LRFindResult(lrs=lrs, losses=losses, raw_losses=raw, diverged=diverged)
    result.suggestions, result.warnings, result.usable = _suggest(lrs, losses, skip_start, skip_end, diverged)
    return result


def _train_batch(
    model: torch.nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    batches: Iterator[Any],
    optimizer: torch.optim.Optimizer,
    accumulation: int,
    device: torch.device,
) -> float:
    model.train()
    optimizer.zero_grad()
    total = None
    for _ in range(accumulation):
        inputs, targets, *_ = next(batches)
        inputs, targets = _to(inputs, device), _to(targets, device)
        loss = loss_fn(model(inputs), targets) / accumulation
        loss.backward()
        total = loss if total is None else total + loss
    optimizer.step()
    assert total is not None
    return float(total.item())


def _to(obj: Any, device: torch.device) -> Any:
    if hasattr(obj, "to"):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def suggest(lrs: list[float], losses: list[float], skip_start: int = 10, skip_end: int = 5) -> dict[str, Suggestion]:
    """The ``steepest``, ``valley`` and ``minimum`` suggestions of a curve (see :func:`lr_find`)."""
    return _suggest(lrs, losses, skip_start, skip_end, diverged=False)[0]


def _suggest(
    lrs: list[float], losses: list[float], skip_start: int, skip_end: int, diverged: bool
) -> tuple[dict[str, Suggestion], list[str], tuple[int, int]]:
    """Suggestions, the warnings that explain what limited them, and the points they may come from."""
    n = len(losses)
    warnings: list[str] = []
    # the usable curve ends at the first non-finite loss, and before the point where the test stopped
    end = next((i for i in range(n) if not math.isfinite(losses[i])), n)
    if diverged:
        end = min(end, n - 1)
    if end < 3:
        at = f"lr {lrs[0]:.3g}" if lrs else "the start"
        return {}, [f"the loss diverged right at the start of the tested range ({at}): start lower"], (0, 0)
    if end - skip_start - skip_end < 3:  # a short curve: keep what there is
        skip_start, skip_end = 0, 0
    lo, hi = skip_start, max(skip_start, min(n - skip_end, end))
    y = np.asarray(losses[lo:hi], dtype=np.float64)
    if len(y) < 3:
        return {}, ["the range test recorded too few usable points (fewer than 3)"], (lo, lo)
    first, low = float(y[0]), float(np.min(y))
    m = int(np.argmin(y))
    # diverged region: after the lowest loss, from where the loss is back above its first value
    back = next((i for i in range(m + 1, len(y)) if y[i] > first), len(y))
    rose = float(np.max(y[m:])) > low + 0.1 * abs(low) if m < len(y) - 1 else False
    if diverged:
        rose = True
    x = np.log(np.asarray(lrs[lo:hi], dtype=np.float64))
    # gradients over the whole finite curve (as torch-lr-finder's), candidates only from the usable part
    grad = (np.gradient(y, x) if np.all(np.diff(x) > 0) else np.gradient(y))[:back]
    y = y[:back]
    usable = (lo, lo + len(y))
    drop = max(0.0, min(1.0, (first - low) / abs(first))) if first else 0.0
    if drop == 0.0:
        return (
            {},
            [
                f"the loss never fell below its first value in the tested range ({lrs[0]:.3g} .. "
                f"{lrs[-1]:.3g}): the range is too high (start lower) or the model does not learn"
            ],
            usable,
        )
    out: dict[str, Suggestion] = {}
    if len(y) >= 3:
        steep = int(np.argmin(grad))
        edge = steep in (0, len(y) - 1)
        out["steepest"] = Suggestion("steepest", float(lrs[lo + steep]), lo + steep, drop * (0.5 if edge else 1.0))
        start, stop = _longest_decrease(y)
        sections = (stop - start) / 3
        v = max(0, start + int(sections) + int(sections / 2))
        out["valley"] = Suggestion("valley", float(lrs[lo + v]), lo + v, drop * (stop - start + 1) / len(y))
    lr_min = float(lrs[lo + m]) / 10
    if lr_min >= lrs[0]:
        out["minimum"] = Suggestion("minimum", lr_min, lo + m, drop * (1.0 if rose else 0.5))
    else:
        warnings.append(
            f"the 'minimum' rule (lowest-loss lr / 10 = {lr_min:.3g}) falls below the tested range "
            f"(from {lrs[0]:.3g}), so it is not offered: start lower to use it"
        )
    out = {k: s for k, s in out.items() if s.confidence > 0}
    if diverged:
        warnings.append(
            f"the loss diverged at lr {lrs[n - 1]:.3g}; suggestions come only from the lrs below "
            f"{lrs[lo + len(y) - 1]:.3g}"
        )
    elif not rose:
        warnings.append("the loss was still falling at the end of the tested range: try a higher end")
    best = max((s.confidence for s in out.values()), default=0.0)
    if out and best < 0.2:
        warnings.append(f"low confidence: the loss fell by only {100 * drop:.1f}% during the test")
    return out, warnings, usable


def _longest_decrease(y: np.ndarray) -> tuple[int, int]:
    """fastai's valley: the start and end of the longest decreasing subsequence (O(n^2), n <= a few 100)."""
    n = len(y)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    return max_start, max_end
