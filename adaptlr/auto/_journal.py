"""A race's progress on disk, so that a ``fit`` killed at any moment resumes where it stood.

``fit(..., checkpoint_dir=d)`` keeps the racers' states as files under ``d/states`` (a disk
:class:`StateStore`) and writes ``d/race.pt`` (plain data: ``torch.load(weights_only=True)``) after every rung-1
candidate, every finalist and every rollback point of the run: the racers' records, the plan, the validation
subsets, the cost so far, the torch RNG state, and where the training stream stood. Started again with the same
arguments, ``fit`` reads it, fast-forwards the training data to that point and goes on; with ``val_cost`` given
(a plan that does not depend on timing) and data in a fixed order (a list, or a ``DataLoader`` with its own
``generator``), it ends bit-identical to an uninterrupted run. The folder is emptied when ``fit`` returns.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch

from ._meter import Meter

__all__ = ["Journal", "restore_race"]


def racer_state(r: Any) -> dict[str, Any]:
    return {
        "lr": r.lr,
        "steps": r.steps,
        "scores": [list(s) for s in r.scores],
        "losses": list(r.losses),
        "diverged": r.diverged,
        "note": r.note,
        "parts": [list(p) for p in r.parts],
        "rule": r.rule.state_dict(),
        "timing": [r.seconds, r.timed],
    }


def restore_racer(racer: Any, state: dict[str, Any]) -> Any:
    racer.steps, racer.losses = int(state["steps"]), list(state["losses"])
    racer.scores = [(int(s), float(v)) for s, v in state["scores"]]
    racer.diverged, racer.note = bool(state["diverged"]), str(state["note"])
    racer.parts = [[float(v), float(k)] for v, k in state.get("parts", [])]
    racer.rule.load_state_dict(state["rule"])
    seconds, timed = state.get("timing", [0.0, 0])
    racer.seconds, racer.timed = float(seconds), int(timed)
    return racer


def meter_state(meter: Meter) -> dict[str, Any]:
    return {
        "train_steps": meter.train_steps,
        "val_rows": meter.val_rows,
        "train_seconds": meter.train_seconds,
        "val_seconds": meter.val_seconds,
        "elapsed": meter.seconds,
        "step_times": list(meter._step_times),
        "other_times": list(meter._other_times),
        "loop_times": list(meter._loop_times),
        "fetch": [meter.fetch_seconds, meter.fetched],
        "outside": meter.outside,
    }


def restore_meter(meter: Meter, state: dict[str, Any]) -> None:
    meter.train_steps, meter.val_rows = int(state["train_steps"]), int(state["val_rows"])
    meter.train_seconds, meter.val_seconds = float(state["train_seconds"]), float(state["val_seconds"])
    meter.started -= float(state["elapsed"])  # (seconds spent before the interruption count)
    meter._step_times[:] = [float(t) for t in state["step_times"]]
    meter._other_times[:] = [float(t) for t in state.get("other_times", [])]
    meter._loop_times[:] = [float(t) for t in state.get("loop_times", [])]
    seconds, fetched = state.get("fetch", [0.0, 0])
    meter.fetch_seconds, meter.fetched, meter._fetch_seen = float(seconds), int(fetched), True
    meter.outside = float(state.get("outside", 0.0))


class Journal:
    """Read and write ``race.pt`` in ``directory``; :attr:`states` is the folder of the racers' state files."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "race.pt"
        self.states = self.dir / "states"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, weights_only=True)

    def write(self, race: Any, phase: str, offset: int, extra: dict[str, Any] | None = None) -> None:
        """Record ``race`` in ``phase`` (``"rung1"``, ``"rung2"`` or ``"run"``), with the training stream's
        position ``offset`` (batches taken when the phase's batches were drawn) and ``extra`` (the commit's)."""
        state = {
            "phase": phase,
            "offset": int(offset),
            "racers": [racer_state(r) for r in race.racers],
            "alive": list(race.alive_lrs),
            "plan": race.plan.as_dict(),
            "counts": dict(race.validator.counts),
            "start_score": race.start_score if math.isfinite(race.start_score) else None,
            "start_score2": race.start_score2 if math.isfinite(race.start_score2) else None,
            "start_parts": [list(p) for p in race.start_parts],
            "warnings": list(race.warnings),
            "meter": meter_state(race.meter),
            "rng": torch.get_rng_state(),
            "extra": extra or {},
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)  # (atomic: a kill leaves the old record or the new one)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def restore_race(race: Any, state: dict[str, Any]) -> None:
    """Take up in ``race`` the race that :meth:`Journal.write` recorded."""
    from ._plan import Plan
    from ._racer import Racer

    race.racers = [restore_racer(Racer(float(r["lr"])), r) for r in state["racers"]]
    race.alive_lrs = [float(x) for x in state["alive"]]
    race.plan = Plan.of(state["plan"])
    race.validator.counts = {k: int(v) for k, v in state["counts"].items()}
    race.start_score = math.inf if state["start_score"] is None else float(state["start_score"])
    race.start_score2 = math.inf if state.get("start_score2") is None else float(state["start_score2"])
    race.start_parts = [[float(v), float(k)] for v, k in state.get("start_parts", [])]
    race.warnings = list(state["warnings"])
    restore_meter(race.meter, state["meter"])
    race.phase, race.offset = str(state["phase"]), int(state["offset"])
    extra = state.get("extra") or {}
    race.looks, race.look_steps = int(extra.get("looks", 0)), int(extra.get("x", 0))
    race.late_held = bool(extra.get("late", True))
    torch.set_rng_state(state["rng"])
